//! The supervisor side of `serve`: resolves and checks the addresses, starts
//! the shards, reads their counters, runs the memory watermark and the
//! elastic policy (adding shards as the running ones fill, steering new
//! connections away from full ones, retiring empty extras), and stops
//! everything.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Mode;
use super::input::InputBudget;
use super::shard::{Shard, ShardSetup};
use crate::engine::elastic::{self, Group, Policy};
use crate::engine::gate::{Gate, Watermark};
use crate::engine::shard::{Mail, Pool};
use crate::engine::sizing;
use crate::engine::stats::ShardStats;
use crate::error::{Error, Result};
use crate::procfs::ProcFs;
use crate::sys::net::{self, Kind};
use crate::sys::{errno_name, errno_of};

/// Everything `Server::start` needs, already validated.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// TCP addresses to listen on (port 0: one free port, shared by shards).
    pub listen: Vec<SocketAddr>,
    /// silent or echo.
    pub mode: Mode,
    /// Also echo UDP on the same port numbers.
    pub udp: bool,
    /// Admission cap on connections (None: no cap).
    pub max_conns: Option<u64>,
    /// High watermark on machine memory in use, in bytes.
    pub max_memory: Option<u64>,
    /// Shards to start with.
    pub shards: usize,
    /// Add shards as the running ones fill and retire empty extras; false
    /// pins the count (`--shards`).
    pub elastic: bool,
    /// Listen backlog.
    pub backlog: i32,
}

/// The default budget of incomplete input (header blocks, frames, packets
/// split over reads) across all connections: a thousand 64 KiB frames.
pub const INPUT_BUDGET: u64 = 64 << 20;

/// How long a shard steered away from stays empty before it retires.
const RETIRE_GRACE: Duration = Duration::from_secs(1);

/// A running server.
#[derive(Debug)]
pub struct Server {
    bound: Vec<SocketAddr>,
    udp: bool,
    pool: Pool<Shard>,
    gate: Arc<Gate>,
    watermark: Option<Watermark>,
    procfs: ProcFs,
    started: Instant,
    policy: Policy,
    group: Group,
    /// The shards new connections are steered to now.
    steered: Vec<usize>,
    /// Shards steered away from, waiting to retire, since when.
    retiring: HashMap<usize, Instant>,
    peak_shards: usize,
    warning: Option<String>,
    input: Arc<InputBudget>,
}

impl Server {
    /// Binds every address, starts `config.shards` shards and returns once
    /// all of them listen (or the first set-up error).
    pub fn start(config: &ServerConfig) -> Result<Server> {
        Server::start_with_tls(config, None)
    }

    /// [`Server::start`], every connection under TLS when `tls` is given.
    pub fn start_with_tls(config: &ServerConfig, tls: Option<Arc<rustls::ServerConfig>>) -> Result<Server> {
        let procfs = ProcFs::default();
        let (tcp, holders) = resolve(&config.listen, config.udp)?;
        let udp = if config.udp { tcp.clone() } else { Vec::new() };
        let input = Arc::new(InputBudget::new(INPUT_BUDGET));
        let setup = Arc::new(ShardSetup {
            tcp: tcp.clone(),
            udp,
            backlog: config.backlog,
            mode: config.mode,
            tls,
            input: input.clone(),
        });
        let gate = Arc::new(Gate::new(config.max_conns.unwrap_or(u64::MAX)));
        let watermark = match config.max_memory {
            Some(high) => {
                let total = procfs.meminfo().map_err(|e| Error::Input(format!("--max-memory needs {e}")))?.total;
                Some(Watermark::new(high, total))
            }
            None => None,
        };
        let nofile = crate::sys::process::getrlimit(crate::sys::process::Resource::NoFile)
            .map_err(|e| Error::os("reading RLIMIT_NOFILE", e))?;
        let per_shard = nofile.soft.saturating_sub(sizing::HEADROOM_FDS).max(1);
        let max = if config.elastic {
            let connections = config.max_conns.unwrap_or(u64::MAX);
            sizing::max_shards(connections, &sizing::ThreadLimits::read(&procfs)).max
        } else {
            config.shards.max(1)
        };
        let policy = Policy::new(per_shard, sizing::cores(), max, config.elastic);
        let g = gate.clone();
        let pool = Pool::start(
            "serve",
            config.shards.max(1),
            Arc::new(move |_id, ep: &crate::sys::epoll::Epoll| Shard::new(&setup, g.clone(), ep)),
        )?;
        // The sockets that reserved the ports close only now that every
        // shard listens.
        drop(holders);
        let mut group = Group::default();
        for id in 0..pool.len() {
            group.join(id);
        }
        let peak_shards = pool.len();
        Ok(Server {
            bound: tcp,
            udp: config.udp,
            pool,
            gate,
            watermark,
            procfs,
            started: Instant::now(),
            policy,
            group,
            steered: Vec::new(),
            retiring: HashMap::new(),
            peak_shards,
            warning: None,
            input,
        })
    }

    /// The TCP addresses served, ports resolved.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.bound
    }

    /// True when UDP is echoed on the same ports.
    pub fn udp(&self) -> bool {
        self.udp
    }

    /// Shards running now.
    pub fn shards(&self) -> usize {
        self.pool.running()
    }

    /// Most shards that ran at once.
    pub fn peak_shards(&self) -> usize {
        self.peak_shards
    }

    /// Time since start.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Applies the memory watermark and the elastic policy, and returns the
    /// merged counters. Never waits. A shard that cannot be added is not
    /// fatal (the running ones keep serving): [`Server::take_warning`] says why.
    pub fn poll(&mut self) -> ShardStats {
        if let Some(w) = self.watermark
            && let Ok(m) = self.procfs.meminfo()
        {
            self.gate.set_memory_ok(w.next(self.gate.memory_ok(), m.in_use()));
        }
        if let Err(e) = self.rebalance() {
            self.warning.get_or_insert_with(|| format!("cannot add a shard: {e}"));
        }
        self.pool.totals()
    }

    /// Waits up to `limit` for a shard to publish, then polls.
    pub fn poll_wait(&mut self, limit: Duration) -> ShardStats {
        self.pool.wait_change(limit);
        self.poll()
    }

    /// Why the pool could not grow, once.
    pub fn take_warning(&mut self) -> Option<String> {
        self.warning.take()
    }

    fn rebalance(&mut self) -> Result<()> {
        let now = Instant::now();
        let views = self.pool.views(|s| s.open, |id| self.retiring.contains_key(&id));
        let d = self.policy.decide(&views, true, now);
        for _ in 0..d.grow {
            let id = self.pool.add()?;
            self.group.join(id);
            self.peak_shards = self.peak_shards.max(self.pool.running());
        }
        for id in d.retire {
            self.retiring.insert(id, now);
        }
        // A retiring shard still empty after the grace period leaves.
        let due: Vec<usize> = self
            .retiring
            .iter()
            .filter(|(id, since)| {
                now.duration_since(**since) >= RETIRE_GRACE && views.iter().any(|v| v.id == **id && v.used == 0)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.retiring.remove(&id);
            self.pool.retire(id);
            self.group.leave(id);
        }
        let mut open: Vec<usize> = d.open_to_new;
        open.retain(|id| !self.retiring.contains_key(id) && self.pool.is_running(*id));
        let running: Vec<usize> = (0..self.pool.len()).filter(|&i| self.pool.is_running(i)).collect();
        for &id in &running {
            if !open.contains(&id) && !self.retiring.contains_key(&id) && views.iter().all(|v| v.id != id) {
                open.push(id);
            }
        }
        open.sort_unstable();
        if open != self.steered && self.policy.elastic {
            let program = elastic::steering_program(&self.group.slots_of(&open));
            // Any listener of the group attaches the program for all; the
            // first running shard does it.
            if let Some(&first) = running.first() {
                self.pool.send(first, Mail::Steer(program));
            }
            self.steered = open;
        }
        Ok(())
    }

    /// The merged counters as last published.
    pub fn totals(&self) -> ShardStats {
        self.pool.totals()
    }

    /// True while the memory watermark admits new connections.
    pub fn memory_ok(&self) -> bool {
        self.gate.memory_ok()
    }

    /// The budget of incomplete input the shards share (ws and mqtt): what
    /// is held now, what was given back, its limit.
    pub fn input_budget(&self) -> &InputBudget {
        &self.input
    }

    /// Asks every shard to stop, without waiting.
    pub fn request_stop(&self) {
        self.pool.request_stop();
    }

    /// Opens or closes admission for memory from outside the watermark (a
    /// `--memory-budget` checked by the supervisor).
    pub fn set_memory_ok(&self, ok: bool) {
        self.gate.set_memory_ok(ok);
    }

    /// Stops accepting, resets every connection, joins every shard and
    /// returns the final counters.
    pub fn shutdown(self) -> ShardStats {
        self.shutdown_watching(std::time::Duration::MAX, |_| {})
    }

    /// Stops every shard; while they close what they hold, calls
    /// `progress` with the connections left every `every`.
    pub fn shutdown_watching(mut self, every: std::time::Duration, progress: impl FnMut(u64)) -> ShardStats {
        self.pool.stop_watching(every, progress)
    }
}

/// Sockets that hold the resolved ports until the shards listen.
#[derive(Debug)]
struct PortHolders(Vec<OwnedFd>);

/// Checks that every address is free and resolves port 0 to one concrete
/// port that all shards then share. A plain bind (without SO_REUSEPORT)
/// finds a port in use by anyone else; a SO_REUSEPORT placeholder that never
/// listens then holds the port until the shards have joined it.
fn resolve(listen: &[SocketAddr], udp: bool) -> Result<(Vec<SocketAddr>, PortHolders)> {
    let mut holders = PortHolders(Vec::new());
    let mut out = Vec::with_capacity(listen.len());
    for addr in listen {
        let probe = net::socket_owned(addr, Kind::Tcp).map_err(|e| bind_error(*addr, e))?;
        let p = probe.as_raw_fd();
        let probed = net::set_reuseaddr(p).and_then(|()| net::bind(p, addr)).and_then(|()| net::local_addr(p));
        drop(probe);
        let resolved = probed.map_err(|e| bind_error(*addr, e))?;
        let hold = |kind: Kind| -> std::io::Result<OwnedFd> {
            let fd = net::socket_owned(&resolved, kind)?;
            let raw = fd.as_raw_fd();
            net::set_reuseaddr(raw)?;
            net::set_reuseport(raw)?;
            net::bind(raw, &resolved)?;
            Ok(fd)
        };
        holders.0.push(hold(Kind::Tcp).map_err(|e| bind_error(resolved, e))?);
        if udp {
            holders.0.push(hold(Kind::Udp).map_err(|e| bind_error(resolved, e))?);
        }
        out.push(resolved);
    }
    Ok((out, holders))
}

/// A shard's set-up failure: a bind error (the user's to fix) when the
/// errno says so, else an OS failure with what was done.
pub(crate) fn bind_error_or_os(what: &str, addr: SocketAddr, source: std::io::Error) -> Error {
    match errno_of(&source) {
        libc::EADDRINUSE | libc::EADDRNOTAVAIL | libc::EACCES => bind_error(addr, source),
        _ => Error::os(format!("{what} {addr}"), source),
    }
}

fn bind_error(addr: SocketAddr, source: std::io::Error) -> Error {
    let errno = errno_of(&source);
    let hint = match errno {
        libc::EADDRINUSE => {
            format!(": another socket already uses this port (see `ss -tulpn 'sport = :{}'`)", addr.port())
        }
        libc::EADDRNOTAVAIL => ": this address is not on this machine (see `ip addr`)".into(),
        libc::EACCES => {
            ": ports below net.ipv4.ip_unprivileged_port_start need CAP_NET_BIND_SERVICE; use a higher port".into()
        }
        _ => String::new(),
    };
    Error::Bind { addr, errno: errno_name(errno), hint, source }
}
