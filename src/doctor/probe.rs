//! Reading the limits through a [`ProcFs`] root. Every reading is a
//! [`Reading`]: the value, or the reason it is unknown (a missing,
//! unreadable or malformed file). Nothing here panics on bad input.

use super::tracking::Tracking;
use crate::procfs::cgroup::CgroupMemory;
use crate::procfs::{Meminfo, ProcFs, ReadError};

/// A value read from the machine, or why it is unknown.
pub type Reading<T> = Result<T, String>;

/// Linux capability bit of CAP_SYS_ADMIN.
pub const CAP_SYS_ADMIN: u32 = 21;
/// Linux capability bit of CAP_SYS_RESOURCE.
pub const CAP_SYS_RESOURCE: u32 = 24;

/// Bytes per idle socket assumed when `proc/slabinfo` cannot be read or has
/// no `TCP` cache.
pub const DEFAULT_BYTES_PER_SOCKET: u64 = 4_200;

/// The slab caches holding one object per idle TCP socket registered in
/// epoll, with the size assumed for each when neither `proc/slabinfo` nor
/// `sys/kernel/slab` lists it.
pub const SOCKET_CACHES: [(&str, u64); 6] = [
    ("TCP", 2_368),
    ("sock_inode_cache", 832),
    ("filp", 256),
    ("dentry", 192),
    ("eventpoll_epi", 128),
    ("eventpoll_pwq", 64),
];

/// A resource limit pair from `proc/self/limits`; `None` is "unlimited".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RLimit {
    /// The soft limit.
    pub soft: Option<u64>,
    /// The hard limit.
    pub hard: Option<u64>,
}

/// The kernel memory of one idle TCP socket, summed over slab caches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketCost {
    /// Bytes per socket.
    pub bytes: u64,
    /// The caches summed; empty when no `TCP` cache was found and the
    /// whole estimate is [`DEFAULT_BYTES_PER_SOCKET`].
    pub caches: Vec<CacheCost>,
}

/// One slab cache's share of an idle socket.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CacheCost {
    /// The cache's name (`TCP`, `filp`, ...).
    pub name: &'static str,
    /// Bytes of one object, its share of the slab page included.
    pub bytes: u64,
    /// Where the size came from: `slabinfo` (`proc/slabinfo`),
    /// `sys/kernel/slab` (a merged cache) or `default`.
    pub source: &'static str,
}

/// Everything `doctor` reads, raw.
#[derive(Debug, Clone)]
pub struct Probe {
    /// RLIMIT_NOFILE ("Max open files").
    pub nofile: Reading<RLimit>,
    /// RLIMIT_NPROC ("Max processes").
    pub nproc: Reading<RLimit>,
    /// CapEff of `proc/self/status`.
    pub cap_eff: Reading<u64>,
    /// fs.nr_open.
    pub nr_open: Reading<u64>,
    /// fs.file-max.
    pub file_max: Reading<u64>,
    /// First field of fs.file-nr: file handles allocated now.
    pub file_nr: Reading<u64>,
    /// fs.epoll.max_user_watches.
    pub epoll_watches: Reading<u64>,
    /// net.ipv4.ip_local_port_range.
    pub port_range: Reading<(u64, u64)>,
    /// net.ipv4.ip_local_reserved_ports, as inclusive ranges.
    pub reserved_ports: Reading<Vec<(u64, u64)>>,
    /// net.ipv4.ip_unprivileged_port_start.
    pub unprivileged_port_start: Reading<u64>,
    /// proc/meminfo.
    pub meminfo: Reading<Meminfo>,
    /// This process's memory cgroup (`None`: no memory controller for it).
    pub cgroup: Reading<Option<CgroupMemory>>,
    /// Kernel bytes per idle IPv4 socket.
    pub socket_cost: SocketCost,
    /// Object size of the `TCPv6` cache, when listed.
    pub tcpv6_bytes: Option<u64>,
    /// net.ipv4.tcp_mem (pages).
    pub tcp_mem: Reading<Vec<u64>>,
    /// net.ipv4.tcp_rmem (bytes).
    pub tcp_rmem: Reading<Vec<u64>>,
    /// net.ipv4.tcp_wmem (bytes).
    pub tcp_wmem: Reading<Vec<u64>>,
    /// net.core.somaxconn.
    pub somaxconn: Reading<u64>,
    /// net.ipv4.tcp_max_syn_backlog.
    pub syn_backlog: Reading<u64>,
    /// net.ipv4.tcp_syncookies.
    pub syncookies: Reading<u64>,
    /// net.netfilter.nf_conntrack_max.
    pub conntrack_max: Reading<u64>,
    /// net.netfilter.nf_conntrack_count (exists when the module is loaded).
    pub conntrack_count: Reading<u64>,
    /// net.ipv4.tcp_max_tw_buckets.
    pub tw_buckets: Reading<u64>,
    /// net.ipv4.tcp_tw_reuse.
    pub tw_reuse: Reading<u64>,
    /// net.ipv4.tcp_fin_timeout.
    pub fin_timeout: Reading<u64>,
    /// kernel.pid_max.
    pub pid_max: Reading<u64>,
    /// kernel.threads-max.
    pub threads_max: Reading<u64>,
    /// Whether new connections are tracked by conntrack: files alone do not
    /// tell, so [`Probe::read`] leaves it unknown and
    /// [`diagnose`](super::diagnose) finds out.
    pub tracking: Tracking,
}

impl Probe {
    /// Reads every limit under the root of `fs` (files only: no
    /// experiment, no tool run).
    pub fn read(fs: &ProcFs) -> Probe {
        let limits = fs.read("proc/self/limits").map_err(reason);
        let status = fs.read("proc/self/status").map_err(reason);
        let one = |name: &str| fs.sysctl_u64(name).map_err(reason);
        let many = |name: &str| fs.sysctl_values(name).map_err(reason);
        let (socket_cost, tcpv6_bytes) = socket_cost(fs);
        Probe {
            nofile: limits.clone().and_then(|t| rlimit(&t, "Max open files")),
            nproc: limits.and_then(|t| rlimit(&t, "Max processes")),
            cap_eff: status.and_then(|t| cap_eff(&t)),
            nr_open: one("fs.nr_open"),
            file_max: one("fs.file-max"),
            file_nr: many("fs.file-nr").map(|v| v[0]),
            epoll_watches: one("fs.epoll.max_user_watches"),
            port_range: many("net.ipv4.ip_local_port_range").and_then(|v| pair(&v)),
            reserved_ports: fs
                .read(&ProcFs::sysctl_rel("net.ipv4.ip_local_reserved_ports"))
                .map_err(reason)
                .and_then(|t| parse_port_list(&t)),
            unprivileged_port_start: one("net.ipv4.ip_unprivileged_port_start"),
            meminfo: fs.meminfo().map_err(reason),
            cgroup: crate::procfs::cgroup::memory(fs).map_err(reason),
            socket_cost,
            tcpv6_bytes,
            tcp_mem: many("net.ipv4.tcp_mem"),
            tcp_rmem: many("net.ipv4.tcp_rmem"),
            tcp_wmem: many("net.ipv4.tcp_wmem"),
            somaxconn: one("net.core.somaxconn"),
            syn_backlog: one("net.ipv4.tcp_max_syn_backlog"),
            syncookies: one("net.ipv4.tcp_syncookies"),
            conntrack_max: one("net.netfilter.nf_conntrack_max"),
            conntrack_count: one("net.netfilter.nf_conntrack_count"),
            tw_buckets: one("net.ipv4.tcp_max_tw_buckets"),
            tw_reuse: one("net.ipv4.tcp_tw_reuse"),
            fin_timeout: one("net.ipv4.tcp_fin_timeout"),
            pid_max: one("kernel.pid_max"),
            threads_max: one("kernel.threads-max"),
            tracking: Tracking::not_run("not looked for (the doctor's diagnosis does)"),
        }
    }

    /// True when CapEff holds capability `bit`; unknown reads as false.
    pub fn has_cap(&self, bit: u32) -> bool {
        self.cap_eff.as_ref().is_ok_and(|caps| bit < 64 && caps & (1u64 << bit) != 0)
    }
}

fn reason(e: ReadError) -> String {
    e.to_string()
}

fn pair(v: &[u64]) -> Reading<(u64, u64)> {
    match v {
        [lo, hi] if lo <= hi => Ok((*lo, *hi)),
        _ => Err(format!("expected two integers LO HI with LO <= HI, found {v:?}")),
    }
}

/// Parses one line of `proc/self/limits` (e.g. "Max open files").
pub fn rlimit(text: &str, label: &str) -> Reading<RLimit> {
    let line = text
        .lines()
        .find(|l| l.starts_with(label))
        .ok_or_else(|| format!("no \"{label}\" line in proc/self/limits"))?;
    let mut fields = line[label.len()..].split_whitespace();
    let mut next = || -> Reading<Option<u64>> {
        match fields.next() {
            Some("unlimited") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| format!("bad value {v:?} in \"{label}\" line")),
            None => Err(format!("short \"{label}\" line")),
        }
    };
    let soft = next()?;
    let hard = next()?;
    Ok(RLimit { soft, hard })
}

/// Parses CapEff (hex) from the text of `proc/self/status`.
pub fn cap_eff(text: &str) -> Reading<u64> {
    let hex = text.lines().find_map(|l| l.strip_prefix("CapEff:")).ok_or("no CapEff line in proc/self/status")?;
    u64::from_str_radix(hex.trim(), 16).map_err(|_| format!("bad CapEff {:?}", hex.trim()))
}

/// Parses a port list like `8080,9000-9010` (empty means none).
pub fn parse_port_list(text: &str) -> Reading<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    for item in text.trim().split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || format!("bad port list item {item:?}");
        let (lo, hi) = match item.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (item, item),
        };
        let lo: u64 = lo.parse().map_err(|_| bad())?;
        let hi: u64 = hi.parse().map_err(|_| bad())?;
        if lo > hi || hi > 65_535 {
            return Err(bad());
        }
        out.push((lo, hi));
    }
    Ok(out)
}

/// Page size assumed for slab arithmetic (x86-64, arm64 with 4 KiB pages).
const PAGE_BYTES: u64 = 4096;

/// Bytes each object of the slab caches really costs, from the text of
/// `proc/slabinfo`: a slab of `pagesperslab` pages holds `objperslab`
/// objects, so one object costs `pagesperslab × 4096 / objperslab`, which
/// counts the slab's unused tail (TCP: 8 pages / 13 objects = 2,520 bytes
/// for a 2,368-byte object). Lines without those columns fall back to
/// `objsize`.
pub fn slab_sizes(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("slabinfo"))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?;
            let objsize: u64 = f.nth(2)?.parse().ok()?;
            let per_slab: Option<u64> = f.next().and_then(|v| v.parse().ok());
            let pages: Option<u64> = f.next().and_then(|v| v.parse().ok());
            let size = match (per_slab, pages) {
                (Some(n), Some(p)) if n > 0 && p > 0 => (p * PAGE_BYTES / n).max(objsize),
                _ => objsize,
            };
            Some((name.to_string(), size))
        })
        .collect()
}

/// Kernel bytes per idle IPv4 socket (and the `TCPv6` object size).
///
/// Each cache of [`SOCKET_CACHES`] is looked up in `proc/slabinfo`, then in
/// `sys/kernel/slab/NAME/slab_size` (caches merged into another one are
/// missing from slabinfo but still listed there), then its default size is
/// used. Without a readable `TCP` entry the whole estimate is
/// [`DEFAULT_BYTES_PER_SOCKET`].
fn socket_cost(fs: &ProcFs) -> (SocketCost, Option<u64>) {
    let sizes = fs.read("proc/slabinfo").map(|t| slab_sizes(&t)).unwrap_or_default();
    let lookup = |name: &str| -> Option<(u64, &'static str)> {
        if let Some((_, s)) = sizes.iter().find(|(n, _)| n == name) {
            return Some((*s, "slabinfo"));
        }
        let rel = format!("sys/kernel/slab/{name}/slab_size");
        let size = fs.read(&rel).ok()?.trim().parse().ok()?;
        Some((size, "sys/kernel/slab"))
    };
    let tcpv6 = lookup("TCPv6").map(|(s, _)| s);
    if lookup("TCP").is_none() {
        let cost = SocketCost { bytes: DEFAULT_BYTES_PER_SOCKET, caches: Vec::new() };
        return (cost, tcpv6);
    }
    let caches: Vec<CacheCost> = SOCKET_CACHES
        .iter()
        .map(|&(name, default)| {
            let (bytes, source) = lookup(name).unwrap_or((default, "default"));
            CacheCost { name, bytes, source }
        })
        .collect();
    let bytes = caches.iter().fold(0u64, |sum, c| sum.saturating_add(c.bytes));
    (SocketCost { bytes, caches }, tcpv6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rlimit_lines() {
        let t = "Limit Soft Hard Units\nMax processes 96364 96364 processes\nMax open files 1024 unlimited files\n";
        assert_eq!(rlimit(t, "Max open files"), Ok(RLimit { soft: Some(1024), hard: None }));
        assert!(rlimit(t, "Max locked memory").is_err());
        assert!(rlimit("Max open files x 3\n", "Max open files").is_err());
        assert!(rlimit("Max open files 3\n", "Max open files").is_err());
    }

    #[test]
    fn caps() {
        let caps = cap_eff("Name: x\nCapEff:\t000001fffeffffff\n").unwrap();
        assert_eq!(caps & (1 << CAP_SYS_RESOURCE), 0);
        assert_ne!(caps & (1 << CAP_SYS_ADMIN), 0);
        assert!(cap_eff("CapEff: zz\n").is_err());
        assert!(cap_eff("").is_err());
    }

    #[test]
    fn port_lists() {
        assert_eq!(parse_port_list(""), Ok(vec![]));
        assert_eq!(parse_port_list("\n"), Ok(vec![]));
        assert_eq!(parse_port_list("8080,9000-9010\n"), Ok(vec![(8080, 8080), (9000, 9010)]));
        assert!(parse_port_list("9010-9000").is_err());
        assert!(parse_port_list("x").is_err());
        assert!(parse_port_list("70000").is_err());
    }

    #[test]
    fn slabinfo_sizes() {
        let t = "slabinfo - version: 2.1\n# name <active_objs> <num_objs> <objsize>\nTCP 26 26 2368 13 8 : tunables 0 0 0\nbad\n";
        assert_eq!(slab_sizes(t), vec![("TCP".to_string(), 2520)]);
    }
}
