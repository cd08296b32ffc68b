//! The supervisor side of `serve`: resolves and checks the addresses, starts
//! the shards, aggregates their counters, runs the memory watermark, and
//! stops everything.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Mode;
use super::shard::{self, ShardSetup};
use crate::engine::gate::{Gate, Watermark};
use crate::engine::shard::Pool;
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
    /// Number of shards.
    pub shards: usize,
    /// Listen backlog.
    pub backlog: i32,
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    bound: Vec<SocketAddr>,
    udp: bool,
    pool: Pool,
    gate: Arc<Gate>,
    watermark: Option<Watermark>,
    procfs: ProcFs,
    started: Instant,
}

impl Server {
    /// Binds every address, starts `config.shards` shards and returns once
    /// all of them listen (or the first set-up error).
    pub fn start(config: &ServerConfig) -> Result<Server> {
        let procfs = ProcFs::default();
        let (tcp, holders) = resolve(&config.listen, config.udp)?;
        let udp = if config.udp { tcp.clone() } else { Vec::new() };
        let setup = Arc::new(ShardSetup { tcp: tcp.clone(), udp, backlog: config.backlog, mode: config.mode });
        let gate = Arc::new(Gate::new(config.max_conns.unwrap_or(u64::MAX)));
        let watermark = match config.max_memory {
            Some(high) => {
                let total = procfs.meminfo().map_err(|e| Error::Input(format!("--max-memory needs {e}")))?.total;
                Some(Watermark::new(high, total))
            }
            None => None,
        };
        let g = gate.clone();
        let pool = Pool::start("serve", config.shards, move |id, ctl, reporter| {
            shard::run(id, setup.clone(), g.clone(), ctl, reporter)
        })
        .map_err(Error::Input)?;
        // The sockets that reserved the ports close only now that every
        // shard listens.
        drop(holders);
        Ok(Server { bound: tcp, udp: config.udp, pool, gate, watermark, procfs, started: Instant::now() })
    }

    /// The TCP addresses served, ports resolved.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.bound
    }

    /// True when UDP is echoed on the same ports.
    pub fn udp(&self) -> bool {
        self.udp
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.pool.len()
    }

    /// Time since start.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Drains shard reports without blocking, applies the memory watermark,
    /// and returns the merged counters.
    pub fn poll(&mut self) -> ShardStats {
        if let Some(w) = self.watermark
            && let Ok(m) = self.procfs.meminfo()
        {
            self.gate.set_memory_ok(w.next(self.gate.memory_ok(), m.in_use()));
        }
        self.pool.poll()
    }

    /// Waits up to `limit` for the next report, then polls.
    pub fn poll_wait(&mut self, limit: Duration) -> ShardStats {
        self.pool.poll_wait(limit);
        self.poll()
    }

    /// The merged counters as last reported.
    pub fn totals(&self) -> ShardStats {
        self.pool.totals()
    }

    /// True while the memory watermark admits new connections.
    pub fn memory_ok(&self) -> bool {
        self.gate.memory_ok()
    }

    /// Opens or closes admission for memory from outside the watermark (a
    /// `--memory-budget` checked by the supervisor).
    pub fn set_memory_ok(&self, ok: bool) {
        self.gate.set_memory_ok(ok);
    }

    /// Stops accepting, resets every connection, joins every shard and
    /// returns the final counters.
    pub fn shutdown(mut self) -> ShardStats {
        self.pool.stop()
    }
}

/// Sockets that hold the resolved ports until the shards listen.
#[derive(Debug)]
struct PortHolders(Vec<i32>);

impl Drop for PortHolders {
    fn drop(&mut self) {
        for &fd in &self.0 {
            net::close(fd);
        }
    }
}

/// Checks that every address is free and resolves port 0 to one concrete
/// port that all shards then share. A plain bind (without SO_REUSEPORT)
/// finds a port in use by anyone else; a SO_REUSEPORT placeholder that never
/// listens then holds the port until the shards have joined it.
fn resolve(listen: &[SocketAddr], udp: bool) -> Result<(Vec<SocketAddr>, PortHolders)> {
    let mut holders = PortHolders(Vec::new());
    let mut out = Vec::with_capacity(listen.len());
    for addr in listen {
        let probe = net::socket(addr, Kind::Tcp).map_err(|e| bind_error(*addr, e))?;
        let probed =
            net::set_reuseaddr(probe).and_then(|()| net::bind(probe, addr)).and_then(|()| net::local_addr(probe));
        net::close(probe);
        let resolved = probed.map_err(|e| bind_error(*addr, e))?;
        let hold = |kind: Kind| -> std::io::Result<i32> {
            let fd = net::socket(&resolved, kind)?;
            let r =
                net::set_reuseaddr(fd).and_then(|()| net::set_reuseport(fd)).and_then(|()| net::bind(fd, &resolved));
            r.inspect_err(|_| net::close(fd)).map(|()| fd)
        };
        holders.0.push(hold(Kind::Tcp).map_err(|e| bind_error(resolved, e))?);
        if udp {
            holders.0.push(hold(Kind::Udp).map_err(|e| bind_error(resolved, e))?);
        }
        out.push(resolved);
    }
    Ok((out, holders))
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
