//! The client side of the engine: opens a target number of connections
//! from given source IPs to given destinations, holds them, pings a share of
//! them per second, and closes them all (RST by default).
//!
//! Connection `i` (over all shards) goes to pair `i mod pairs`, pairs being
//! every (source, destination) combination, so the load is spread evenly
//! over the four-tuple space. Shard `k` opens connections `k, k+S, k+2S...`.
//! Each socket is bound with IP_BIND_ADDRESS_NO_PORT, so the kernel picks the
//! local port at connect time and reuses it across destinations.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::frame::{self, Partial, Ping};
use super::sched::RoundRobin;
use super::shard::{Hists, Pool, Reporter, ShardCtl};
use super::stats::ShardStats;
use super::table::{ConnTable, Record};
use crate::error::{Error, Result};
use crate::sys::epoll::{self, Epoll};
use crate::sys::errno_of;
use crate::sys::net::{self, Io, Kind};

/// How connections end when the client stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CloseMode {
    /// RST (SO_LINGER 0): nothing is left in TIME_WAIT.
    Rst,
    /// FIN: an orderly close; this side keeps TIME_WAIT entries.
    Fin,
}

/// One (source, destination) pair: `None` lets the kernel pick the source.
pub type Pair = (Option<IpAddr>, SocketAddr);

/// Every (source, destination) combination, destinations outermost.
pub fn cross(sources: &[IpAddr], targets: &[SocketAddr]) -> Vec<Pair> {
    if sources.is_empty() {
        return targets.iter().map(|t| (None, *t)).collect();
    }
    targets.iter().flat_map(|t| sources.iter().map(move |s| (Some(*s), *t))).collect()
}

/// What to open and how.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// (source, destination) pairs; connection `i` goes to pair `i mod len`,
    /// so pair counts differ by at most one.
    pub pairs: Vec<Pair>,
    /// Connections to open in total.
    pub count: u64,
    /// Number of shards.
    pub shards: usize,
    /// Connects in flight per shard at most.
    pub in_flight: usize,
    /// Connects per second in total (None: as fast as the kernel accepts).
    pub rate: Option<f64>,
    /// A connect not done after this long fails with ETIMEDOUT.
    pub connect_timeout: Duration,
    /// Pings (or `message`s) per second in total over all held connections.
    pub ping_rate: f64,
    /// Bytes sent instead of a ping frame; the reply's first bytes end the
    /// round trip. None: 16-byte ping frames, checked when echoed.
    pub message: Option<Arc<[u8]>>,
    /// Bytes sent once, right after each connect.
    pub first_message: Option<Arc<[u8]>>,
    /// Open a new connection when the server closes one or a connect fails,
    /// at most `count` times in all, so the target stays held.
    pub reconnect: bool,
    /// How connections end.
    pub close: CloseMode,
}

/// A running client.
#[derive(Debug)]
pub struct Client {
    pool: Pool,
    count: u64,
    phase: Arc<Phase>,
}

/// What the supervisor tells every shard at once (read each loop turn).
#[derive(Debug, Default)]
struct Phase {
    /// Stop opening connections.
    halt: AtomicBool,
    /// The whole ramp is over: heartbeats may start.
    heartbeats: AtomicBool,
}

impl Client {
    /// Starts the shards; they begin connecting at once.
    pub fn start(config: &ClientConfig) -> Result<Client> {
        if config.pairs.is_empty() {
            return Err(Error::Input("no (source, destination) pair to connect over".into()));
        }
        let shards = config.shards.max(1);
        let cfg = Arc::new(ClientConfig { shards, ..config.clone() });
        let phase = Arc::new(Phase::default());
        let p = phase.clone();
        let pool =
            Pool::start("load", shards, move |id, ctl, reporter| run_shard(id, cfg.clone(), p.clone(), ctl, reporter))
                .map_err(Error::Input)?;
        Ok(Client { pool, count: config.count, phase })
    }

    /// Stops opening connections (a guard tripped): connects in flight
    /// finish, what is established stays held, nothing new is opened.
    pub fn halt_ramp(&self) {
        self.phase.halt.store(true, Ordering::Relaxed);
    }

    /// Starts the heartbeats (pings), once the whole ramp is over: they then
    /// measure the cost of a ready event among held connections, not the
    /// scheduling delays of a connect storm on other shards.
    pub fn start_heartbeats(&self) {
        self.phase.heartbeats.store(true, Ordering::Relaxed);
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.pool.len()
    }

    /// Waits up to `limit` for a report and returns the merged counters.
    pub fn poll_wait(&mut self, limit: Duration) -> ShardStats {
        self.pool.poll_wait(limit)
    }

    /// Waits until every connection was attempted (established or failed)
    /// or `limit` passed; returns the merged counters.
    pub fn wait_settled(&mut self, limit: Duration) -> ShardStats {
        let deadline = Instant::now() + limit;
        loop {
            let t = self.pool.poll_wait(Duration::from_millis(250));
            if t.opened + t.failed >= self.count || Instant::now() >= deadline {
                self.start_heartbeats();
                return t;
            }
        }
    }

    /// Closes everything, joins the shards, returns counters and histograms.
    pub fn stop(mut self) -> (ShardStats, Hists) {
        let t = self.pool.stop();
        (t, self.pool.hists().clone())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Conn {
    state: u8,
    ping_out: bool,
    /// Connect start, microseconds on the shard clock (wrapping).
    started_us: u32,
}

const FREE: u8 = 0;
const CONNECTING: u8 = 1;
const ESTABLISHED: u8 = 2;

impl Record for Conn {
    fn is_open(&self) -> bool {
        self.state != FREE
    }
}

fn run_shard(id: usize, cfg: Arc<ClientConfig>, phase: Arc<Phase>, ctl: Arc<ShardCtl>, mut reporter: Reporter) {
    let epoll = match Epoll::new().and_then(|ep| ep.add(ctl.bell_fd(), epoll::IN | epoll::ET, BELL).map(|()| ep)) {
        Ok(ep) => ep,
        Err(e) => return reporter.ready(Err(format!("epoll: {e}"))),
    };
    reporter.ready(Ok(()));
    let shards = cfg.shards as u64;
    let fd_limit = crate::sys::process::getrlimit(crate::sys::process::Resource::NoFile)
        .map_or(usize::MAX, |l| l.soft.min(usize::MAX as u64) as usize);
    let mut s = ClientShard {
        pairs: cfg.pairs.clone(),
        epoll,
        conns: ConnTable::with_limit(fd_limit),
        in_flight: VecDeque::new(),
        partial: HashMap::new(),
        stats: ShardStats::default(),
        hists: Hists::new(),
        epoch: Instant::now(),
        next: id as u64,
        step: shards,
        owed: 0,
        reconnects_left: if cfg.reconnect { cfg.count.div_ceil(shards) } else { 0 },
        seq: 0,
        scratch: vec![0; 4096],
        cfg,
    };
    let per_shard_rate = s.cfg.rate.map(|r| r / shards as f64);
    let mut connect_budget = per_shard_rate.map(RoundRobin::new);
    let mut pings = RoundRobin::new(s.cfg.ping_rate / shards as f64);
    let mut events = vec![epoll::empty_event(); 256];
    let mut last_tick = Instant::now();
    let mut ramp_reported = false;
    while !ctl.stop_requested() {
        if phase.halt.load(Ordering::Relaxed) {
            s.next = s.next.max(s.cfg.count);
            s.owed = 0;
            s.reconnects_left = 0;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(last_tick);
        last_tick = now;
        let allowed = match connect_budget.as_mut() {
            Some(b) => b.earn(elapsed),
            None => usize::MAX,
        };
        s.fill(allowed);
        let busy = s.stats.connecting > 0 || s.cfg.ping_rate > 0.0 || per_shard_rate.is_some() && s.next < s.cfg.count;
        let timeout = if busy { reporter.timeout_ms(now).min(10) } else { reporter.timeout_ms(now) };
        let n = match s.epoll.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(e) => {
                s.stats.errors.add(errno_of(&e));
                break;
            }
        };
        for ev in &events[..n] {
            let token = epoll::token(ev);
            if token == BELL {
                ctl.drain_bell();
            } else {
                s.on_event(token as RawFd, epoll::flags(ev));
            }
        }
        s.expire_connects();
        // Heartbeats start once the supervisor says the whole ramp is over.
        let due = pings.earn(elapsed);
        let ramping = s.next < s.cfg.count || s.stats.connecting > 0;
        if !ramping && phase.heartbeats.load(Ordering::Relaxed) {
            s.ping(&mut pings, due);
        }
        if !ramping && !ramp_reported {
            // The supervisor times the ramp: tell it at once, not at the next tick.
            ramp_reported = true;
            reporter.send_now(Instant::now(), &s.stats);
        }
        reporter.maybe_send(Instant::now(), &s.stats);
    }
    s.close_all();
    reporter.hists(s.hists);
    reporter.last(&s.stats);
}

const BELL: u64 = u64::MAX;

struct ClientShard {
    cfg: Arc<ClientConfig>,
    pairs: Vec<(Option<IpAddr>, SocketAddr)>,
    epoll: Epoll,
    conns: ConnTable<Conn>,
    /// Connects in flight, oldest first: one deadline order, no timers.
    in_flight: VecDeque<(RawFd, u32)>,
    /// Bytes of a ping frame split across reads (rare; only then allocated).
    partial: HashMap<RawFd, Partial>,
    stats: ShardStats,
    hists: Hists,
    epoch: Instant,
    next: u64,
    step: u64,
    /// Connections lost that `--reconnect` still has to open again.
    owed: u64,
    reconnects_left: u64,
    seq: u32,
    scratch: Vec<u8>,
}

impl ClientShard {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn fill(&mut self, mut allowed: usize) {
        while allowed > 0 && (self.stats.connecting as usize) < self.cfg.in_flight {
            let i = if self.next < self.cfg.count {
                self.next += self.step;
                self.next - self.step
            } else if self.owed > 0 {
                self.owed -= 1;
                self.stats.reconnects += 1;
                self.seq as u64
            } else {
                return;
            };
            allowed -= 1;
            let (src, dst) = self.pairs[(i % self.pairs.len() as u64) as usize];
            if let Err(e) = self.open(src, dst) {
                self.stats.failed += 1;
                self.stats.errors.add(errno_of(&e));
                self.owe();
            }
        }
    }

    /// Counts one connection to open again, within the reconnect budget.
    fn owe(&mut self) {
        if self.reconnects_left > 0 {
            self.reconnects_left -= 1;
            self.owed += 1;
        }
    }

    fn open(&mut self, src: Option<IpAddr>, dst: SocketAddr) -> std::io::Result<()> {
        let fd = net::socket(&dst, Kind::Tcp)?;
        let setup = || -> std::io::Result<bool> {
            if let Some(ip) = src {
                net::bind_ip_no_port(fd, ip)?;
            }
            if self.cfg.ping_rate > 0.0 {
                net::set_nodelay(fd)?;
            }
            if self.cfg.close == CloseMode::Rst {
                // Set now, so that teardown is one close() per socket.
                net::set_linger_zero(fd)?;
            }
            self.epoll.add(fd, epoll::IN | epoll::OUT | epoll::RDHUP | epoll::ET, fd as u64)?;
            net::connect(fd, &dst)
        };
        let started_us = self.now_us() as u32;
        match setup() {
            Ok(true) => {
                self.conns.insert(fd, Conn { state: CONNECTING, ping_out: false, started_us });
                self.stats.connecting += 1;
                self.established(fd);
                Ok(())
            }
            Ok(false) => {
                self.conns.insert(fd, Conn { state: CONNECTING, ping_out: false, started_us });
                self.stats.connecting += 1;
                self.in_flight.push_back((fd, started_us));
                self.stats.max_fd = self.stats.max_fd.max(fd as u64);
                Ok(())
            }
            Err(e) => {
                let _ = net::set_linger_zero(fd);
                net::close(fd);
                Err(e)
            }
        }
    }

    fn established(&mut self, fd: RawFd) {
        let now = self.now_us() as u32;
        let Some(c) = self.conns.get_mut(fd) else { return };
        let took = now.wrapping_sub(c.started_us);
        c.state = ESTABLISHED;
        self.stats.connecting -= 1;
        self.stats.opened += 1;
        self.stats.open += 1;
        self.hists.connect_us.saturating_record(u64::from(took).max(1));
        if let Some(first) = self.cfg.first_message.clone() {
            self.send(fd, &first);
        }
    }

    /// Writes a whole small message or drops the connection: a torn message
    /// would misalign every later one.
    fn send(&mut self, fd: RawFd, bytes: &[u8]) -> bool {
        match net::write(fd, bytes) {
            Ok(Io::Done(n)) if n == bytes.len() => {
                self.stats.bytes_out += n as u64;
                true
            }
            Ok(Io::WouldBlock) => {
                self.stats.errors.add(libc::EAGAIN);
                false
            }
            Ok(Io::Done(_)) => {
                self.lost(fd, Some(libc::EIO));
                false
            }
            Err(e) => {
                self.lost(fd, Some(errno_of(&e)));
                false
            }
        }
    }

    fn on_event(&mut self, fd: RawFd, flags: u32) {
        let Some(&c) = self.conns.get(fd) else { return };
        if c.state == CONNECTING {
            if flags & (epoll::OUT | epoll::ERR | epoll::HUP) == 0 {
                return;
            }
            match net::take_error(fd) {
                Ok(0) => self.established(fd),
                Ok(errno) => return self.fail_connect(fd, errno),
                Err(e) => return self.fail_connect(fd, errno_of(&e)),
            }
        }
        if flags & (epoll::IN | epoll::RDHUP | epoll::HUP | epoll::ERR) != 0 {
            self.read_ready(fd);
        }
    }

    fn fail_connect(&mut self, fd: RawFd, errno: i32) {
        self.stats.errors.add(errno);
        self.stats.failed += 1;
        self.stats.connecting -= 1;
        self.conns.remove(fd);
        let _ = net::set_linger_zero(fd);
        net::close(fd);
        self.owe();
    }

    fn read_ready(&mut self, fd: RawFd) {
        loop {
            match net::read(fd, &mut self.scratch) {
                Ok(Io::Done(0)) => return self.lost(fd, None),
                Ok(Io::Done(n)) => {
                    self.stats.bytes_in += n as u64;
                    self.on_bytes(fd, n);
                }
                Ok(Io::WouldBlock) => return,
                Err(e) => return self.lost(fd, Some(errno_of(&e))),
            }
        }
    }

    fn on_bytes(&mut self, fd: RawFd, n: usize) {
        if self.cfg.message.is_some() {
            // Any reply ends the round trip of the message outstanding.
            let now = self.now_us() as u32;
            if let Some(c) = self.conns.get_mut(fd)
                && c.ping_out
            {
                c.ping_out = false;
                self.stats.pongs += 1;
                self.hists.rtt_us.saturating_record(u64::from(now.wrapping_sub(c.started_us)).max(1));
            }
            return;
        }
        let mut part = self.partial.remove(&fd).unwrap_or_default();
        let now_ns = self.epoch.elapsed().as_nanos() as u64;
        let (mut pongs, hist) = (0, &mut self.hists.rtt_us);
        let bad = part.feed(&self.scratch[..n], |p| {
            pongs += 1;
            hist.saturating_record((now_ns.saturating_sub(p.sent_ns) / 1000).max(1));
        });
        self.stats.pongs += pongs;
        if bad > 0 {
            self.stats.errors.add(libc::EPROTO);
        }
        if pongs > 0
            && let Some(c) = self.conns.get_mut(fd)
        {
            c.ping_out = false;
        }
        if !part.is_empty() {
            self.partial.insert(fd, part);
        }
    }

    /// The server closed or reset an established connection.
    fn lost(&mut self, fd: RawFd, errno: Option<i32>) {
        if let Some(e) = errno {
            self.stats.errors.add(e);
        }
        if self.conns.remove(fd).is_some() {
            self.stats.open -= 1;
            self.stats.closed += 1;
            self.owe();
        }
        self.partial.remove(&fd);
        net::close(fd);
    }

    fn expire_connects(&mut self) {
        let now = self.now_us() as u32;
        let limit = self.cfg.connect_timeout.as_micros().min(u32::MAX as u128) as u32;
        while let Some(&(fd, started)) = self.in_flight.front() {
            let live = self.conns.get(fd).is_some_and(|c| c.state == CONNECTING && c.started_us == started);
            if !live {
                self.in_flight.pop_front();
            } else if now.wrapping_sub(started) >= limit {
                self.in_flight.pop_front();
                self.fail_connect(fd, libc::ETIMEDOUT);
            } else {
                return;
            }
        }
    }

    fn ping(&mut self, rr: &mut RoundRobin, due: usize) {
        if due == 0 || self.stats.open == 0 {
            return;
        }
        let len = self.conns.capacity();
        let mut targets = Vec::with_capacity(due.min(4096));
        let conns = &self.conns;
        rr.visit(
            due,
            len,
            |i| conns.at(i).is_some_and(|(_, c)| c.state == ESTABLISHED && !c.ping_out),
            |i| targets.push(i as RawFd),
        );
        let now_ns = self.epoch.elapsed().as_nanos() as u64;
        let now_us = self.now_us() as u32;
        let message = self.cfg.message.clone();
        for fd in targets {
            self.seq = self.seq.wrapping_add(1);
            let frame = frame::encode(Ping { seq: self.seq, sent_ns: now_ns });
            let bytes: &[u8] = message.as_deref().unwrap_or(&frame);
            if self.send(fd, bytes) {
                self.stats.pings += 1;
                if let Some(c) = self.conns.get_mut(fd) {
                    c.ping_out = true;
                    c.started_us = now_us;
                }
            }
        }
    }

    fn close_all(&mut self) {
        for fd in self.conns.open_fds() {
            // With --close rst, SO_LINGER 0 was set when the socket was made.
            net::close(fd);
            if let Some(c) = self.conns.remove(fd)
                && c.state == ESTABLISHED
            {
                self.stats.open -= 1;
                self.stats.closed += 1;
            }
        }
        self.stats.connecting = 0;
        self.in_flight.clear();
        self.partial.clear();
    }
}
