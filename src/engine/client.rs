//! The client side of the engine: opens a target number of connections
//! from given source IPs to given destinations, holds them, pings a share of
//! them per second, and closes them all (RST by default).
//!
//! The shards share one [`Work`]: each claims connection
//! numbers one at a time, and connection `i` goes to pair `i mod pairs`,
//! pairs being every (source, destination) combination, so the load is spread
//! evenly over the four-tuple space whatever the number of shards. A shard
//! stops claiming when its fd table is nearly full; the supervisor then adds
//! one ([`elastic`](super::elastic)). Each socket is bound with
//! IP_BIND_ADDRESS_NO_PORT, so the kernel picks the local port at connect
//! time and reuses it across destinations.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::book::{Claim, InFlight, Work, WorkState};
use super::elastic::Policy;
use super::frame::{self, Partial, Ping};
use super::reactor::{CLOSE_REPORT_EVERY, Handler, Turn};
use super::samples::{Batch, Hists};
use super::sched::RoundRobin;
use super::session::ClientSessions;
use super::shard::{Mail, Pool, ShardCtl};
use super::sizing;
use super::stats::ShardStats;
use super::table::{ConnTable, Record};
use super::token::Token;
use crate::error::{Error, Result};
use crate::proto::{ClientSpec, Fault, tls};
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

mod wire;
mod writes;

/// One (source, destination) pair: `None` lets the kernel pick the source.
pub type Pair = (Option<IpAddr>, SocketAddr);

/// Every (source, destination) combination, destinations outermost.
pub fn cross(sources: &[IpAddr], targets: &[SocketAddr]) -> Vec<Pair> {
    if sources.is_empty() {
        return targets.iter().map(|t| (None, *t)).collect();
    }
    targets.iter().flat_map(|t| sources.iter().map(move |s| (Some(*s), *t))).collect()
}

/// Heartbeats are sent in batches at least this far apart: a shard wakes
/// for them at most 50 times a second, whatever the rate.
const PING_BATCH: Duration = Duration::from_millis(20);

/// Reads of one connection per readiness event at most (of the 4 KiB
/// scratch buffer): a peer that floods without end is read in turns with the
/// others, and the stop is seen between turns.
const READ_BUDGET: usize = 16;

/// How long the stop waits for the servers' answers to WebSocket closes.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// What to open and how.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// (source, destination) pairs; connection `i` goes to pair `i mod len`,
    /// so pair counts differ by at most one.
    pub pairs: Vec<Pair>,
    /// Connections to open in total.
    pub count: u64,
    /// Shards to start with; with `elastic`, more are added as they fill.
    pub shards: usize,
    /// Add shards as the running ones fill, retire empty extra ones.
    pub elastic: bool,
    /// Connects in flight per shard at most, with the starting `shards`:
    /// `in_flight * shards` is the cap over all shards, shared among those
    /// running when the pool grows ([`in_flight_share`]).
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

/// One shard's share of the connects in flight over all shards: `total`
/// split among the `running` shards, at least one each (the shards grow in
/// an elastic pool, and the cap is over all of them).
pub fn in_flight_share(total: usize, running: usize) -> usize {
    (total / running.max(1)).max(1)
}

/// What every shard of one client shares.
#[derive(Debug)]
struct Shared {
    cfg: ClientConfig,
    work: Work,
    /// The whole ramp is over: heartbeats may start.
    heartbeats: AtomicBool,
    /// Connections one shard holds at most before it stops claiming.
    full_at: u64,
    /// Connects in flight over all shards at most.
    in_flight_total: usize,
    /// Shards running now (the in-flight cap is shared among them).
    running: AtomicUsize,
    /// The protocol spoken over each connection once TCP is connected.
    proto: ClientSpec,
    /// TLS under the protocol, if any.
    tls: Option<tls::ClientSetup>,
    /// Protocol sessions started so far (MQTT client ids are numbered by it).
    sessions: AtomicU64,
}

/// A running client.
#[derive(Debug)]
pub struct Client {
    pool: Pool<ClientShard>,
    shared: Arc<Shared>,
    policy: Policy,
    warning: Option<String>,
}

impl Client {
    /// Starts the shards; they begin connecting at once, over bare TCP.
    pub fn start(config: &ClientConfig) -> Result<Client> {
        Client::start_with(config, &ClientSpec::Tcp, None)
    }

    /// Starts the shards, speaking `proto` over each connection, over TLS
    /// when `tls` is given.
    pub fn start_with(config: &ClientConfig, proto: &ClientSpec, tls: Option<&tls::ClientSetup>) -> Result<Client> {
        if config.pairs.is_empty() {
            return Err(Error::Input("no (source, destination) pair to connect over".into()));
        }
        let nofile = crate::sys::process::getrlimit(crate::sys::process::Resource::NoFile)
            .map_err(|e| Error::os("reading RLIMIT_NOFILE", e))?;
        let per_shard = nofile.soft.saturating_sub(sizing::HEADROOM_FDS).max(1);
        let max = sizing::max_shards(config.count, &sizing::ThreadLimits::read(&crate::procfs::ProcFs::default())).max;
        let policy = Policy::new(per_shard, sizing::cores(), max, config.elastic);
        let shards = config.shards.clamp(1, max);
        let shared = Arc::new(Shared {
            cfg: config.clone(),
            work: Work::new(WorkState::new(config.count, config.rate, config.reconnect, Instant::now())),
            heartbeats: AtomicBool::new(false),
            // A pinned pool spreads the target evenly; an elastic one fills
            // each table to near its cap before the next one takes over.
            full_at: if config.elastic { policy.full_at() } else { config.count.div_ceil(shards as u64).max(1) },
            in_flight_total: config.in_flight.saturating_mul(shards).max(1),
            running: AtomicUsize::new(shards),
            proto: proto.clone(),
            tls: tls.cloned(),
            sessions: AtomicU64::new(0),
        });
        let s = shared.clone();
        let pool = Pool::start("load", shards, Arc::new(move |_id, _ep: &Epoll| Ok(ClientShard::new(s.clone()))))?;
        Ok(Client { pool, shared, policy, warning: None })
    }

    /// Stops opening connections (a guard tripped): connects in flight
    /// finish, what is established stays held, nothing new is opened.
    pub fn halt_ramp(&self) {
        self.shared.work.with(WorkState::halt);
        self.pool.broadcast(&Mail::Halt);
    }

    /// Starts the heartbeats (pings), once the whole ramp is over: they then
    /// measure the cost of a ready event among held connections, not the
    /// scheduling delays of a connect storm on other shards.
    pub fn start_heartbeats(&self) {
        if !self.shared.heartbeats.swap(true, Ordering::Relaxed) {
            self.pool.broadcast(&Mail::Heartbeats);
        }
    }

    /// Shards running now.
    pub fn shards(&self) -> usize {
        self.pool.running()
    }

    /// Shards ever started.
    pub fn shards_started(&self) -> usize {
        self.pool.len()
    }

    /// The merged counters as last published.
    pub fn totals(&self) -> ShardStats {
        self.pool.totals()
    }

    /// The merged histograms so far.
    pub fn hists(&self) -> Hists {
        self.pool.hists()
    }

    /// The merged round-trip histogram so far.
    pub fn rtt_hist(&self) -> hdrhistogram::Histogram<u32> {
        self.pool.rtt_hist()
    }

    /// Waits up to `limit` for a shard to publish, grows or shrinks the pool
    /// as the elastic policy says, and returns the merged counters. A shard
    /// that cannot be added is not fatal: [`Client::take_warning`] says why.
    pub fn poll_wait(&mut self, limit: Duration) -> ShardStats {
        let t = self.pool.wait_change(limit);
        if let Err(e) = self.rebalance() {
            self.warning.get_or_insert_with(|| format!("cannot add a shard: {e}"));
        }
        t
    }

    /// Why the pool could not grow, once.
    pub fn take_warning(&mut self) -> Option<String> {
        self.warning.take()
    }

    fn rebalance(&mut self) -> Result<()> {
        let views = self.pool.views(|s| s.open + s.connecting, |_| false);
        let more = self.shared.work.with(|w| w.more());
        let d = self.policy.decide(&views, more, Instant::now());
        for _ in 0..d.grow {
            self.pool.add()?;
        }
        for id in d.retire {
            self.pool.retire(id);
        }
        self.shared.running.store(self.pool.running().max(1), Ordering::Relaxed);
        Ok(())
    }

    /// Waits until every connection was attempted (established or failed)
    /// or `limit` passed, then starts the heartbeats; returns the counters.
    pub fn wait_settled(&mut self, limit: Duration) -> ShardStats {
        let deadline = Instant::now() + limit;
        let count = self.shared.cfg.count;
        loop {
            let t = self.poll_wait(Duration::from_millis(250));
            if t.opened + t.failed >= count && t.connecting == 0 || Instant::now() >= deadline {
                self.start_heartbeats();
                return t;
            }
        }
    }

    /// Closes everything, joins the shards, returns counters and histograms.
    pub fn stop(self) -> (ShardStats, Hists) {
        self.stop_watching(Duration::MAX, |_| {})
    }

    /// Like [`stop`](Self::stop), calling `progress` with the connections
    /// left to close every `every` while the shards close them.
    pub fn stop_watching(mut self, every: Duration, progress: impl FnMut(u64)) -> (ShardStats, Hists) {
        self.shared.work.with(WorkState::halt);
        let t = self.pool.stop_watching(every, progress);
        (t, self.pool.hists())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Conn {
    state: u8,
    ping_out: bool,
    /// The protocol's state byte (see [`crate::proto`]); in the padding, so
    /// the record stays 8 bytes.
    proto: u8,
    /// Its read budget ran out with bytes left: it waits in
    /// [`ClientShard::unread`] (edge-triggered epoll says nothing more).
    unread: bool,
    /// Connect or handshake start, or ping send time, in microseconds on the
    /// shard clock (wrapping).
    started_us: u32,
}

const FREE: u8 = 0;
const CONNECTING: u8 = 1;
const ESTABLISHED: u8 = 2;
/// TCP is connected; the protocol's handshake is under way.
const HANDSHAKING: u8 = 3;
/// TCP is connected; the TLS handshake is under way.
const TLS_HANDSHAKING: u8 = 4;

impl Record for Conn {
    fn is_open(&self) -> bool {
        self.state != FREE
    }
}

/// One client shard: the handler the engine loop drives.
pub struct ClientShard {
    shared: Arc<Shared>,
    conns: ConnTable<Conn>,
    in_flight: InFlight,
    /// Bytes of a ping frame split across reads (rare; only then allocated).
    partial: HashMap<RawFd, Partial>,
    /// Bytes the kernel did not take yet, per connection (see `writes`).
    unsent: HashMap<RawFd, Vec<u8>>,
    stats: ShardStats,
    /// Samples taken in this batch, published at its end under one lock.
    samples: Batch,
    /// Protocol state beyond the record (side buffers while incomplete).
    sessions: ClientSessions,
    /// TLS state of each connection that has it (keys: unavoidable).
    tls: crate::engine::session::TlsTable,
    /// Bytes of a TLS record split over reads, only while incomplete.
    tls_partial: HashMap<RawFd, Vec<u8>>,
    /// Scratch: plaintext of the last records, TLS bytes to send.
    plain: Vec<u8>,
    cipher: Vec<u8>,
    epoch: Instant,
    pings: RoundRobin,
    last_turn: Instant,
    seq: u32,
    /// A socket-level failure that no claim can fix (EMFILE): stop claiming.
    starved: bool,
    /// The stop came: sessions are being closed.
    stopping: bool,
    retiring: bool,
    scratch: Vec<u8>,
    /// Connections whose read budget ran out with bytes left, read again at
    /// the next turn.
    unread: Vec<RawFd>,
}

impl std::fmt::Debug for ClientShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientShard").field("open", &self.stats.open).finish()
    }
}

impl ClientShard {
    fn new(shared: Arc<Shared>) -> ClientShard {
        let fd_limit = crate::sys::process::getrlimit(crate::sys::process::Resource::NoFile)
            .map_or(usize::MAX, |l| l.soft.min(usize::MAX as u64) as usize);
        let now = Instant::now();
        ClientShard {
            shared,
            conns: ConnTable::with_limit(fd_limit),
            in_flight: InFlight::default(),
            partial: HashMap::new(),
            unsent: HashMap::new(),
            stats: ShardStats::default(),
            samples: Batch::default(),
            sessions: ClientSessions::new(),
            tls: crate::engine::session::TlsTable::new(),
            tls_partial: HashMap::new(),
            plain: Vec::new(),
            cipher: Vec::new(),
            epoch: now,
            pings: RoundRobin::new(0.0),
            last_turn: now,
            seq: 0,
            starved: false,
            stopping: false,
            retiring: false,
            scratch: vec![0; 4096],
            unread: Vec::new(),
        }
    }

    fn cfg(&self) -> &ClientConfig {
        &self.shared.cfg
    }

    fn now_us(&self) -> u32 {
        self.epoch.elapsed().as_micros() as u32
    }

    /// Opens connections while the shard has room, the in-flight cap allows
    /// and the shared work has some; returns when the rate allows the next.
    fn fill(&mut self, epoll: &Epoll, now: Instant) -> Turn {
        if self.retiring || self.starved {
            return Turn::Idle;
        }
        let cap = in_flight_share(self.shared.in_flight_total, self.shared.running.load(Ordering::Relaxed));
        while (self.stats.connecting as usize) < cap && self.stats.open + self.stats.connecting < self.shared.full_at {
            let claim = self.shared.work.with(|w| w.claim(now));
            let (index, reconnect) = match claim {
                Claim::Open { index, reconnect } => (index, reconnect),
                Claim::NotBefore(at) => return Turn::Until(at),
                Claim::Done => return Turn::Idle,
            };
            if reconnect {
                self.stats.reconnects += 1;
            }
            let pairs = &self.shared.cfg.pairs;
            let (src, dst) = pairs[(index % pairs.len() as u64) as usize];
            if let Err(e) = self.open(epoll, src, dst) {
                let errno = errno_of(&e);
                self.stats.failed += 1;
                self.stats.errors.add(errno);
                self.shared.work.with(WorkState::lost);
                if matches!(errno, libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS) {
                    // This table (or the kernel) has no room: let others work.
                    self.starved = true;
                    return Turn::Idle;
                }
            }
        }
        Turn::Idle
    }

    fn open(&mut self, epoll: &Epoll, src: Option<IpAddr>, dst: SocketAddr) -> std::io::Result<()> {
        let fd = net::socket(&dst, Kind::Tcp)?;
        let setup = || -> std::io::Result<bool> {
            if let Some(ip) = src {
                net::bind_ip_no_port(fd, ip)?;
            }
            if self.cfg().ping_rate > 0.0 || self.cfg().message.is_some() {
                net::set_nodelay(fd)?;
            }
            if self.cfg().close == CloseMode::Rst {
                // Set now, so that teardown is one close() per socket.
                net::set_linger_zero(fd)?;
            }
            epoll.add(fd, epoll::IN | epoll::OUT | epoll::RDHUP | epoll::ET, Token::Conn(fd).encode())?;
            net::connect(fd, &dst)
        };
        let started_us = self.now_us();
        match setup() {
            Ok(done) => {
                self.conns.insert(fd, Conn { state: CONNECTING, ping_out: false, proto: 0, unread: false, started_us });
                self.stats.connecting += 1;
                self.stats.max_fd = self.stats.max_fd.max(fd as u64);
                if done {
                    self.established(fd);
                } else {
                    self.in_flight.push(fd, started_us);
                }
                Ok(())
            }
            Err(e) => {
                let _ = net::set_linger_zero(fd);
                net::close(fd);
                Err(e)
            }
        }
    }

    fn fail_connect(&mut self, fd: RawFd, errno: i32) {
        self.fail_named(fd, crate::sys::errno_name(errno));
    }

    /// A connect or a handshake failed, for the reason `name` (an errno's
    /// or a protocol failure's).
    fn fail_named(&mut self, fd: RawFd, name: &'static str) {
        self.stats.errors.add_name(name);
        self.stats.failed += 1;
        self.stats.connecting -= 1;
        self.conns.remove(fd);
        self.forget(fd);
        let _ = net::set_linger_zero(fd);
        net::close(fd);
        self.shared.work.with(WorkState::lost);
    }

    /// Reads what `fd` has, [`READ_BUDGET`] reads at most: a connection
    /// with more is queued to be read again at the next turn.
    fn read_ready(&mut self, fd: RawFd) {
        for _ in 0..READ_BUDGET {
            match net::read(fd, &mut self.scratch) {
                Ok(Io::Done(0)) => return self.lost(fd, None),
                Ok(Io::Done(n)) => {
                    self.stats.bytes_in += n as u64;
                    self.on_wire(fd, n);
                    if self.conns.get(fd).is_none() {
                        return; // the protocol closed it
                    }
                }
                Ok(Io::WouldBlock) => return,
                Err(e) => return self.lost(fd, Some(errno_of(&e))),
            }
        }
        if let Some(c) = self.conns.get_mut(fd)
            && !c.unread
        {
            c.unread = true;
            self.unread.push(fd);
        }
    }

    /// Reads again the connections whose budget ran out; `Turn::Again`
    /// while some still have more.
    fn read_unread(&mut self) -> Turn {
        let fds = std::mem::take(&mut self.unread);
        for &fd in &fds {
            match self.conns.get_mut(fd) {
                Some(c) if c.unread => c.unread = false,
                _ => continue, // closed since (its number may be reused)
            }
            self.read_ready(fd);
        }
        let again = if self.unread.is_empty() { Turn::Idle } else { Turn::Again };
        if self.unread.is_empty() {
            // Keep the buffer for the next flood.
            self.unread = fds;
            self.unread.clear();
        }
        again
    }

    /// Application bytes (decrypted, with TLS) of `fd`.
    fn on_plain(&mut self, fd: RawFd, data: &[u8]) {
        if self.shared.proto != ClientSpec::Tcp {
            return self.on_app_proto(fd, data);
        }
        if self.cfg().message.is_some() {
            // Any reply ends the round trip of the message outstanding.
            let now = self.now_us();
            if let Some(c) = self.conns.get_mut(fd)
                && c.ping_out
            {
                c.ping_out = false;
                self.stats.pongs += 1;
                self.samples.rtt.push(now.wrapping_sub(c.started_us).max(1));
            }
            return;
        }
        let mut part = self.partial.remove(&fd).unwrap_or_default();
        let now_ns = self.epoch.elapsed().as_nanos() as u64;
        let (mut pongs, samples) = (0, &mut self.samples.rtt);
        let bad = part.feed(data, |p| {
            pongs += 1;
            samples.push((now_ns.saturating_sub(p.sent_ns) / 1000).clamp(1, u64::from(u32::MAX)) as u32);
        });
        self.stats.pongs += pongs;
        if bad > 0 {
            // Not our frames: once for the connection, which is closed (a
            // peer that sends anything else would be counted per frame).
            return self.lost(fd, Some(libc::EPROTO));
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
        if self.conns.get(fd).is_some_and(|c| c.state == HANDSHAKING || c.state == TLS_HANDSHAKING) {
            // During the handshake it counts as a failed connect.
            let name = errno.map_or(Fault::HandshakeClosed.name(), crate::sys::errno_name);
            return self.fail_named(fd, name);
        }
        if let Some(e) = errno {
            self.stats.errors.add(e);
        }
        if self.conns.remove(fd).is_some() {
            self.stats.open -= 1;
            self.stats.closed += 1;
            self.shared.work.with(WorkState::lost);
        }
        self.forget(fd);
        net::close(fd);
    }

    fn expire_connects(&mut self) -> Turn {
        let now = self.now_us();
        let limit = self.cfg().connect_timeout.as_micros().min(u32::MAX as u128) as u32;
        let conns = &self.conns;
        let expired = self.in_flight.expired(now, limit, |fd, started| {
            conns.get(fd).is_some_and(|c| {
                matches!(c.state, CONNECTING | HANDSHAKING | TLS_HANDSHAKING) && c.started_us == started
            })
        });
        self.in_flight.release_if_empty();
        for fd in expired {
            match self.conns.get(fd) {
                Some(c) if c.state == HANDSHAKING || c.state == TLS_HANDSHAKING => {
                    self.fail_named(fd, Fault::HandshakeTimeout.name())
                }
                _ => self.fail_connect(fd, libc::ETIMEDOUT),
            }
        }
        match self.in_flight.next_deadline_us(self.now_us(), limit) {
            Some(us) => Turn::Until(Instant::now() + Duration::from_micros(u64::from(us))),
            None => Turn::Idle,
        }
    }

    /// Sends the heartbeats due; returns when the next batch is due.
    /// The MQTT keepalive in seconds (0: none, or not MQTT).
    fn keepalive_s(&self) -> u16 {
        match &self.shared.proto {
            ClientSpec::Mqtt(m) => m.keepalive_s,
            _ => 0,
        }
    }

    /// `beats`: the heartbeats proper have started (else only keepalives).
    fn ping(&mut self, now: Instant, beats: bool) -> Turn {
        let elapsed = now.duration_since(self.last_turn);
        // This shard's share of the rate follows the connections it holds.
        let count = self.cfg().count.max(1) as f64;
        let mut rate = if beats { self.cfg().ping_rate * self.stats.open as f64 / count } else { 0.0 };
        if self.keepalive_s() > 0 {
            // Every session must send something within its keepalive: visit
            // each one in two thirds of it at least.
            rate = rate.max(self.stats.open as f64 * 1.5 / f64::from(self.keepalive_s()));
        }
        // Heartbeats that start now have nothing to make up: a shard that
        // slept through the end of the ramp would otherwise send its whole
        // backlog at once and time its own queue.
        let elapsed = if self.pings.set_rate(rate) { Duration::ZERO } else { elapsed };
        let due = self.pings.earn(elapsed);
        if due > 0 && self.stats.open > 0 {
            self.send_pings(due);
        }
        match self.pings.until_due() {
            Some(wait) => Turn::Until(now + wait.max(PING_BATCH)),
            None => Turn::Idle,
        }
    }

    fn send_pings(&mut self, due: usize) {
        let len = self.conns.capacity();
        let mut targets = Vec::with_capacity(due.min(4096));
        let conns = &self.conns;
        self.pings.visit(
            due,
            len,
            |i| conns.at(i).is_some_and(|(_, c)| c.state == ESTABLISHED && !c.ping_out),
            |i| targets.push(i as RawFd),
        );
        let now_ns = self.epoch.elapsed().as_nanos() as u64;
        let now_us = self.now_us();
        let message = self.cfg().message.clone();
        let shared = self.shared.clone();
        let mut beat = Vec::new();
        for fd in targets {
            self.seq = self.seq.wrapping_add(1);
            let frame = frame::encode(Ping { seq: self.seq, sent_ns: now_ns });
            let bytes: &[u8] = if shared.proto != ClientSpec::Tcp {
                self.sessions.heartbeat(&shared.proto, now_ns);
                std::mem::swap(&mut beat, &mut self.sessions.out);
                &beat
            } else {
                message.as_deref().unwrap_or(&frame)
            };
            if self.send(fd, bytes) {
                self.stats.pings += 1;
                if let Some(c) = self.conns.get_mut(fd) {
                    c.ping_out = true;
                    c.started_us = now_us;
                }
            }
        }
    }
}

impl Handler for ClientShard {
    fn on_ready(&mut self, _epoll: &Epoll, token: Token, flags: u32) {
        let Token::Conn(fd) = token else { return };
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
        if flags & epoll::OUT != 0 && !self.unsent.is_empty() {
            self.flush_unsent(fd);
        }
        if flags & (epoll::IN | epoll::RDHUP | epoll::HUP | epoll::ERR) != 0 {
            self.read_ready(fd);
        }
    }

    fn on_mail(&mut self, _epoll: &Epoll, mail: Mail) {
        match mail {
            Mail::Retire => self.retiring = true,
            // Halt is in the shared work; heartbeats start at the next turn.
            Mail::Halt | Mail::Heartbeats | Mail::Steer(_) => {}
        }
    }

    fn on_turn(&mut self, epoll: &Epoll, now: Instant) -> Turn {
        let mut turn = self.read_unread();
        turn = turn.min(self.expire_connects());
        turn = turn.min(self.fill(epoll, now));
        let beats = self.shared.heartbeats.load(Ordering::Relaxed) && self.stats.connecting == 0;
        if beats || self.keepalive_s() > 0 {
            // MQTT keepalives run during the ramp too: a broker drops a
            // session silent for 1.5 keepalives, and a long ramp is longer.
            turn = turn.min(self.ping(now, beats));
        }
        self.last_turn = now;
        turn
    }

    fn on_stop(&mut self, epoll: &Epoll, left: &dyn Fn(u64)) {
        let established = |c: &Conn| c.state == ESTABLISHED;
        let held = self.conns.open_fds().into_iter().filter(|&fd| self.conns.get(fd).is_some_and(established)).count();
        if self.shared.proto != ClientSpec::Tcp {
            self.say_goodbye(epoll);
        }
        let fds = self.conns.open_fds();
        for (i, &fd) in fds.iter().enumerate() {
            if i % CLOSE_REPORT_EVERY == 0 {
                left((fds.len() - i) as u64);
            }
            // With --close rst, SO_LINGER 0 was set when the socket was made.
            net::close(fd);
            self.conns.remove(fd);
        }
        let held = held as u64;
        self.stats.held_at_stop = held;
        self.stats.open = 0;
        self.stats.connecting = 0;
        self.in_flight.clear();
        self.unread = Vec::new();
        self.unsent = HashMap::new();
        self.partial.clear();
        self.sessions.clear();
        self.tls = crate::engine::session::TlsTable::new();
        self.tls_partial = HashMap::new();
    }

    fn stats(&self) -> &ShardStats {
        &self.stats
    }

    fn publish_extra(&mut self, ctl: &ShardCtl) {
        ctl.put_samples(&mut self.samples);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// #18: three shards of an elastic pool started with two kept 2,048
    /// connects each in flight: 6,144 with `--in-flight 4096`.
    #[test]
    fn the_in_flight_cap_is_shared_by_the_running_shards() {
        let total = 4096usize.div_ceil(2) * 2;
        for running in 1..=64 {
            let share = in_flight_share(total, running);
            assert!(share * running <= total.max(running), "{running} shards: {share} each");
            assert!(share >= 1);
        }
        assert_eq!(in_flight_share(total, 3), 1365);
        assert_eq!(in_flight_share(total, 0), total);
        assert_eq!(in_flight_share(2, 8), 1);
    }

    #[test]
    fn pairs_cross_sources_and_destinations() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let s1: IpAddr = "127.0.0.2".parse().unwrap();
        let s2: IpAddr = "127.0.0.3".parse().unwrap();
        assert_eq!(cross(&[s1, s2], &[a, b]).len(), 4);
        assert_eq!(cross(&[], &[a, b]), vec![(None, a), (None, b)]);
    }
}
