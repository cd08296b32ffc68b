//! `tcpmax doctor`: reads this machine's limits and predicts how many
//! concurrent TCP connections it can hold in three roles: **server**
//! (accepting on one port), **client** (connecting out) and **loopback**
//! (both ends here: two sockets per connection).
//!
//! Everything is read from files under a root path (`/` by default, a
//! fixture tree in tests). A missing, unreadable or malformed file makes its
//! row "unknown" with the reason; it never stops the report.
//!
//! # Rules
//!
//! Each row's `allows` is how many connections the limit lets through per
//! role, or null where the limit does not apply. The ceiling of a role is the
//! smallest non-null `allows` over all rows (first row wins a tie); that row
//! *binds*. Unknown rows allow nothing and are skipped.
//!
//! - **RLIMIT_NOFILE** caps one fd table, not the machine: tcpmax raises the
//!   soft limit to the hard limit and spreads sockets over shards, each a
//!   thread with its own table (`unshare(CLONE_FILES)`). Shards are bounded
//!   by threads: `max_shards = min(RLIMIT_NPROC soft, kernel.threads-max,
//!   kernel.pid_max)` (every thread takes a pid), over the known values.
//!   `allows = (hard - 64) × max_shards` for server and client, half of it
//!   for loopback (64 descriptors of headroom per table; an unlimited hard
//!   limit counts as `fs.nr_open`). Without CAP_SYS_RESOURCE and with
//!   `hard < fs.nr_open` the fix says raising the hard limit needs that
//!   capability.
//! - **fs.file-max**: `free = file-max - allocated` (first field of
//!   `fs.file-nr`); server = client = free, loopback = free / 2. The kernel
//!   does not enforce it for a process with CAP_SYS_ADMIN: when this process
//!   holds it, the row allows null and its note gives the unprivileged values.
//! - **fs.epoll.max_user_watches**: per user, one watch per socket in epoll:
//!   server = client = watches, loopback = watches / 2.
//! - **memory**: `sockets = (really_free - margin) / kernel_bytes_per_socket`
//!   with `margin = max(10% of MemTotal, 256 MiB)` and `really_free` the rule
//!   of [`crate::procfs::Meminfo::really_free`]; server = client = sockets,
//!   loopback = sockets / 2. The bytes per socket sum one object of each
//!   cache in [`probe::SOCKET_CACHES`] (`TCP`, `sock_inode_cache`, `filp`,
//!   `dentry`, `eventpoll_epi`, `eventpoll_pwq`), read from `proc/slabinfo`
//!   (object size including its share of the slab page),
//!   else `sys/kernel/slab/NAME/slab_size` (merged caches), else a per-cache
//!   default; with no `TCP` cache at all it is 4,200 bytes.
//! - **cgroup memory**: inside a container the cgroup's limit binds before
//!   the machine's memory ([`crate::procfs::cgroup`] finds the tightest
//!   limit up the tree): `sockets = (limit - working_set - 10% of limit) /
//!   kernel_bytes_per_socket`, the same per role as `memory`. No limit, or
//!   no memory controller: null with a note.
//! - **net.ipv4.ip_local_port_range**: `hi - lo + 1` minus the reserved
//!   ports (`ip_local_reserved_ports`) inside the range, per (source IP,
//!   destination). Client allows that; server and loopback are null: a
//!   listening port uses no ephemeral port, and `tcpmax load` spreads over
//!   many source IPs of 127.0.0.0/8 and destinations.
//! - **net.netfilter.nf_conntrack_max**: once a NAT or `ct` rule exists
//!   (nftables or iptables), every new connection takes an entry, so it caps
//!   every role at `max - nf_conntrack_count` (one entry per connection,
//!   one for both ends on loopback) even while the table is empty.
//!   [`tracking`] finds out: loopback is tracked when one loopback
//!   connection of our own is (else when a rule tracks); server and client
//!   when a rule tracks or the loopback connection was (a `notrack` rule for
//!   `lo` can hide tracking from the experiment, never show it). With
//!   neither known, entries in the table now mean something tracks; an
//!   empty table then leaves it unknown (null, the cap in the note). Module
//!   not loaded (no `nf_conntrack_max`): null, it cannot cap.
//! - Queues (`somaxconn`, `tcp_max_syn_backlog`, `tcp_syncookies`) limit the
//!   connection *rate*, not the count; TIME_WAIT settings, buffer sizes
//!   (`tcp_mem` limits buffer memory in flight, not idle sockets), threads
//!   and pids are shown with their fix and allow null.

mod predict;
pub mod probe;
mod render;
pub mod tracking;

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use crate::procfs::ProcFs;
pub use predict::{FD_HEADROOM, margin, max_shards, usable_ports};
pub use probe::Probe;

/// Arguments of `tcpmax doctor`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Read /proc and /sys under this root (a fixture tree in tests).
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Write the report as JSON to FILE (`-` for stdout, then no table).
    #[arg(long, value_name = "FILE|-")]
    pub json: Option<PathBuf>,
    /// Show every limit: the full table, each row's note and fix, and the
    /// notes (by default only the ceiling, the binding limits and their fixes).
    #[arg(long)]
    pub all: bool,
}

/// A role a machine plays in a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Accepting on one port.
    Server,
    /// Connecting out.
    Client,
    /// Both ends on this machine.
    Loopback,
}

impl Role {
    /// The three roles, in report order.
    pub const ALL: [Role; 3] = [Role::Server, Role::Client, Role::Loopback];

    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
            Role::Loopback => "loopback",
        }
    }
}

/// One value per role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Roles<T> {
    /// Accepting on one port.
    pub server: T,
    /// Connecting out.
    pub client: T,
    /// Both ends here.
    pub loopback: T,
}

impl<T: Clone> Roles<T> {
    /// The value of `role`.
    pub fn get(&self, role: Role) -> T {
        match role {
            Role::Server => self.server.clone(),
            Role::Client => self.client.clone(),
            Role::Loopback => self.loopback.clone(),
        }
    }

    /// The value of `role`, mutable.
    pub fn get_mut(&mut self, role: Role) -> &mut T {
        match role {
            Role::Server => &mut self.server,
            Role::Client => &mut self.client,
            Role::Loopback => &mut self.loopback,
        }
    }
}

/// What a limit's value counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// File descriptors of one fd table.
    Descriptors,
    /// Open files (file handles) of the whole system.
    Files,
    /// epoll watches (one per registered socket).
    Watches,
    /// Bytes.
    Bytes,
    /// Memory pages.
    Pages,
    /// A port number (not a count).
    Port,
    /// Connection tracking entries.
    Entries,
    /// Connections waiting in a queue.
    Connections,
    /// Sockets.
    Sockets,
    /// Seconds.
    Seconds,
    /// Threads (processes).
    Threads,
    /// Process ids.
    Pids,
}

/// A limit's value as read, in its row's [`Unit`]. Serialized as a bare
/// number or an object of numbers, never as formatted text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// One number.
    Number(u64),
    /// A resource limit pair; `None` (null) is unlimited.
    SoftHard {
        /// The soft limit.
        soft: Option<u64>,
        /// The hard limit.
        hard: Option<u64>,
    },
    /// An inclusive range of port numbers.
    Range {
        /// The first port.
        low: u64,
        /// The last port.
        high: u64,
    },
    /// `net.ipv4.tcp_mem`: the three thresholds.
    Pressure {
        /// Below it, no pressure.
        low: u64,
        /// Above it, buffers are moderated.
        pressure: u64,
        /// The most.
        high: u64,
    },
    /// `net.ipv4.tcp_rmem` / `tcp_wmem`: per-socket buffer sizes.
    Buffer {
        /// The least a socket gets.
        min: u64,
        /// A new socket's size.
        default: u64,
        /// The most autotuning gives.
        max: u64,
    },
    /// The machine's memory and what is left for sockets.
    Memory(Memory),
}

/// The memory row's value, all in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Memory {
    /// MemTotal.
    pub total: u64,
    /// MemAvailable.
    pub available: u64,
    /// MemFree.
    pub free: u64,
    /// Free for sockets: see [`crate::procfs::Meminfo::really_free`].
    pub really_free: u64,
    /// The safety margin kept: max(10% of total, 256 MiB).
    pub margin: u64,
    /// `really_free - margin`: what the sockets may take.
    pub usable: u64,
}

/// One limit of the machine and what it allows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limit {
    /// The limit's name (`RLIMIT_NOFILE`, `fs.file-max`, `memory`, ...).
    pub name: String,
    /// The value as read; null when unknown.
    pub value: Option<Value>,
    /// What the value counts; null for a mode switch (`tcp_syncookies`).
    pub unit: Option<Unit>,
    /// Connections allowed per role; null where it does not apply.
    pub allows: Roles<Option<u64>>,
    /// The roles whose ceiling this limit sets.
    pub binds: Vec<Role>,
    /// The change that raises it; null when no change would: the value
    /// already reaches what a fix would set (a fix never repeats the value
    /// or lowers it), or the limit does not cap idle connections.
    pub fix: Option<String>,
    /// What the value means here, or why it is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Limit {
    fn new(
        name: &str,
        value: Option<Value>,
        unit: Option<Unit>,
        allows: Roles<Option<u64>>,
        fix: Option<String>,
    ) -> Limit {
        Limit { name: name.into(), value, unit, allows, binds: Vec::new(), fix, note: None }
    }

    fn with_note(mut self, note: impl Into<String>) -> Limit {
        self.note = Some(note.into());
        self
    }

    /// True when the value could not be read (not a limit that is absent,
    /// such as a cgroup without a memory limit: its note says so instead of
    /// starting with `unknown:`).
    pub fn is_unknown(&self) -> bool {
        self.value.is_none() && self.note.as_deref().is_none_or(|n| n.starts_with("unknown:"))
    }
}

/// Where the kernel bytes per socket come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BytesSource {
    /// Summed over the slab caches listed in `kernel_bytes_caches`.
    Slab,
    /// No `TCP` slab cache found: [`probe::DEFAULT_BYTES_PER_SOCKET`].
    Default,
}

/// The doctor's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The predicted ceiling per role, in connections (null only when every
    /// row is unknown).
    pub ceiling: Roles<Option<u64>>,
    /// The name of the limit that binds each role.
    pub binding: Roles<Option<String>>,
    /// Kernel bytes per idle IPv4 TCP socket.
    pub kernel_bytes_per_socket: u64,
    /// Whether it was summed over slab caches or is the default.
    pub kernel_bytes_source: BytesSource,
    /// The slab caches summed (empty for the default).
    pub kernel_bytes_caches: Vec<probe::CacheCost>,
    /// Bytes of one `TCPv6` object (used instead of `TCP` by IPv6 sockets),
    /// when listed.
    pub tcpv6_object_bytes: Option<u64>,
    /// Every limit read, in report order.
    pub limits: Vec<Limit>,
    /// Remarks on the whole report.
    pub notes: Vec<String>,
}

/// Reads the limits under the root of `fs`, finds out whether conntrack
/// tracks new connections ([`tracking`]), and predicts the ceiling.
pub fn diagnose(fs: &ProcFs) -> Report {
    // Before nf_conntrack_count is read: the experiment's own entry, when it
    // is tracked, stays in the table for a while and takes room.
    let tracking = tracking::Tracking::detect(fs);
    let mut probe = Probe::read(fs);
    probe.tracking = tracking;
    predict_report(&probe)
}

/// Predicts the ceiling from readings already taken.
pub fn predict_report(p: &Probe) -> Report {
    let mut limits = predict::rows(p);
    let (ceiling, binding) = predict::ceiling(&mut limits);
    Report {
        ceiling,
        binding,
        kernel_bytes_per_socket: p.socket_cost.bytes,
        kernel_bytes_source: if p.socket_cost.caches.is_empty() { BytesSource::Default } else { BytesSource::Slab },
        kernel_bytes_caches: p.socket_cost.caches.clone(),
        tcpv6_object_bytes: p.tcpv6_bytes,
        notes: notes(p, &limits),
        limits,
    }
}

fn notes(p: &Probe, limits: &[Limit]) -> Vec<String> {
    let mut notes = Vec::new();
    let unknown: Vec<&str> = limits.iter().filter(|l| l.is_unknown()).map(|l| l.name.as_str()).collect();
    if !unknown.is_empty() {
        notes.push(format!("unknown, skipped: {}", unknown.join(", ")));
    }
    match &p.cap_eff {
        Ok(caps) => {
            let yes = |bit| if p.has_cap(bit) { "held" } else { "not held" };
            notes.push(format!(
                "CapEff {caps:016x}: CAP_SYS_RESOURCE {}, CAP_SYS_ADMIN {}",
                yes(probe::CAP_SYS_RESOURCE),
                yes(probe::CAP_SYS_ADMIN)
            ));
            if !p.has_cap(probe::CAP_SYS_ADMIN) {
                notes.push("the sysctl fixes need root; this process lacks CAP_SYS_ADMIN".into());
            }
        }
        Err(why) => notes.push(format!("capabilities unknown: {why}")),
    }
    if let Some(v6) = p.tcpv6_bytes {
        notes.push(format!("IPv6 sockets use the TCPv6 cache: {v6} B instead of the TCP object"));
    }
    notes
}

/// Refuses a root with nothing to read: missing, not a directory, or
/// without `proc/` and `sys/` (every row would be unknown).
pub fn check_root(root: &std::path::Path) -> crate::error::Result<()> {
    let shown = root.display();
    let fix = "fix: leave --root out (the live machine) or give a tree with proc/ and sys/ as on a live machine";
    let why = match std::fs::metadata(root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "no such directory".to_string(),
        Err(e) => format!("cannot be read ({e})"),
        Ok(m) if !m.is_dir() => "is not a directory".to_string(),
        Ok(_) if !root.join("proc").is_dir() && !root.join("sys").is_dir() => {
            "has no proc/ and no sys/: nothing to read".to_string()
        }
        Ok(_) => return Ok(()),
    };
    Err(crate::error::Error::Input(format!("--root {shown}: {why}; {fix}")))
}

/// Runs `tcpmax doctor`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    check_root(&args.root)?;
    let report = diagnose(&ProcFs::new(&args.root));
    crate::output::emit(args.json.as_deref(), &report, &render::render(&report, args.all))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests;
