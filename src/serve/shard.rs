//! One server shard: its listeners (one per address, SO_REUSEPORT), its UDP
//! echo sockets, and what it does on each event, as a [`Handler`] of the
//! engine's one loop.
//!
//! Work per event is bounded (a batch of accepts per listener, a few chunks
//! per connection), and what is left over is taken up at the next turn: a
//! peer that never stops sending, or a flood of connects, cannot keep the
//! loop from seeing a stop.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Mode;
use super::input::InputBudget;
use crate::engine::gate::{Admit, Gate};
use crate::engine::reactor::{CLOSE_REPORT_EVERY, Handler, Turn};
use crate::engine::shard::Mail;
use crate::engine::stats::ShardStats;
use crate::engine::table::{ConnTable, Record};
use crate::engine::token::Token;
use crate::error::{Error, Result};
use crate::proto::{self, Event, Fault, Held, mqtt, tls, ws};
use crate::sys::epoll::{self, Epoll};
use crate::sys::errno_of;
use crate::sys::net::{self, Io, Kind};

/// Read size, and the most a backpressured connection ever buffers.
pub const CHUNK: usize = 16 * 1024;

/// Accepts per listener per turn.
const ACCEPT_BATCH: usize = 256;
/// Reads per connection per turn.
const READ_BATCH: usize = 8;
/// While accept is starved of descriptors, how often it is tried again
/// (a close retries at once).
const STARVED_RETRY: Duration = Duration::from_millis(100);

/// What every connection is watched for while its peer reads what it is sent.
const READ_INTEREST: u32 = epoll::IN | epoll::RDHUP | epoll::ET;

/// What a shard needs to know, shared read-only by all shards.
#[derive(Debug)]
pub struct ShardSetup {
    /// TCP addresses, ports resolved.
    pub tcp: Vec<SocketAddr>,
    /// UDP addresses (empty without `--udp`).
    pub udp: Vec<SocketAddr>,
    /// Listen backlog (net.core.somaxconn).
    pub backlog: i32,
    /// silent, echo, ws or mqtt.
    pub mode: Mode,
    /// TLS under the mode, if any.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// ws and mqtt: the budget of incomplete input all shards share.
    pub input: Arc<InputBudget>,
}

/// The server's per-connection record: one byte of flags and, in ws and
/// mqtt modes, the protocol's state in four bits of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Conn(u8);

const OPEN: u8 = 1;
/// The peer is not reading: stop reading until the pending bytes are out.
const BLOCKED: u8 = 2;
/// The peer sent FIN, or the protocol ended the session: close once the
/// pending bytes are out.
const EOF: u8 = 4;
/// The protocol's state (0 to 15, see [`crate::proto`]) in bits 3 to 6.
const PROTO_SHIFT: u8 = 3;
const PROTO_MASK: u8 = 0b1111 << PROTO_SHIFT;
const _: () = assert!(ws::server_state::LAST <= PROTO_MASK >> PROTO_SHIFT);

impl Record for Conn {
    fn is_open(&self) -> bool {
        self.0 & OPEN != 0
    }
}

/// One server shard.
pub struct Shard {
    gate: Arc<Gate>,
    mode: Mode,
    listeners: Vec<OwnedFd>,
    udp: Vec<OwnedFd>,
    conns: ConnTable<Conn>,
    /// Unsent echo bytes of backpressured connections only (bounded by CHUNK each).
    pending: HashMap<RawFd, Vec<u8>>,
    /// ws and mqtt: bytes of a unit split over reads, only while incomplete,
    /// with when it began.
    partial: HashMap<RawFd, Held>,
    /// When held units time out, in order (a unit's deadline is set once,
    /// [`proto::PARTIAL_DEADLINE`] after its first byte); entries whose unit
    /// completed are skipped when they come due.
    deadlines: VecDeque<(Instant, RawFd)>,
    input: Arc<InputBudget>,
    /// ws and mqtt: the answers of the last read, and what happened.
    out: Vec<u8>,
    events: Vec<Event>,
    tls_config: Option<Arc<rustls::ServerConfig>>,
    /// TLS state of each connection (keys: unavoidable).
    tls: crate::engine::session::TlsTable,
    /// Bytes of a TLS record split over reads, only while incomplete.
    tls_partial: HashMap<RawFd, Vec<u8>>,
    /// Scratch: plaintext of the last records, TLS bytes to send.
    plain: Vec<u8>,
    cipher: Vec<u8>,
    /// Connections and listeners whose batch ran out before EAGAIN.
    again: Vec<Token>,
    scratch: Vec<u8>,
    stats: ShardStats,
    /// accept hit EMFILE/ENFILE/ENOMEM: retry once a descriptor is freed.
    accept_starved: bool,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard").field("open", &self.conns.len()).finish()
    }
}

fn setup_error(what: &str, addr: &SocketAddr, e: io::Error) -> Error {
    super::server::bind_error_or_os(what, *addr, e)
}

impl Shard {
    /// Opens the shard's listeners and UDP sockets in its own fd table and
    /// registers them with its epoll.
    pub fn new(setup: &ShardSetup, gate: Arc<Gate>, epoll: &Epoll) -> Result<Shard> {
        let mut shard = Shard {
            gate,
            mode: setup.mode,
            listeners: Vec::new(),
            udp: Vec::new(),
            conns: ConnTable::new(),
            pending: HashMap::new(),
            partial: HashMap::new(),
            deadlines: VecDeque::new(),
            input: setup.input.clone(),
            out: Vec::new(),
            events: Vec::new(),
            tls_config: setup.tls.clone(),
            tls: crate::engine::session::TlsTable::new(),
            tls_partial: HashMap::new(),
            plain: Vec::new(),
            cipher: Vec::new(),
            again: Vec::new(),
            scratch: vec![0; CHUNK],
            stats: ShardStats::default(),
            accept_starved: false,
        };
        for addr in &setup.tcp {
            let fd = open_listener(addr, setup.backlog).map_err(|e| setup_error("listen", addr, e))?;
            let token = Token::Listener(shard.listeners.len() as u32);
            epoll.add(fd.as_raw_fd(), epoll::IN | epoll::ET, token.encode()).map_err(|e| Error::os("epoll_ctl", e))?;
            shard.listeners.push(fd);
        }
        for addr in &setup.udp {
            let fd = open_udp(addr).map_err(|e| setup_error("bind UDP", addr, e))?;
            let token = Token::Udp(shard.udp.len() as u32);
            epoll.add(fd.as_raw_fd(), epoll::IN | epoll::ET, token.encode()).map_err(|e| Error::os("epoll_ctl", e))?;
            shard.udp.push(fd);
        }
        Ok(shard)
    }

    /// Accepts up to a batch from listener `i`; true when the batch ran out
    /// before the queue did.
    fn accept_batch(&mut self, ep: &Epoll, i: usize) -> bool {
        let Some(lfd) = self.listeners.get(i).map(AsRawFd::as_raw_fd) else {
            return false;
        };
        for _ in 0..ACCEPT_BATCH {
            match net::accept(lfd) {
                Ok(Some(fd)) => self.admit(ep, fd),
                Ok(None) => return false,
                Err(e) => {
                    let errno = errno_of(&e);
                    self.stats.errors.add(errno);
                    match errno {
                        // The peer went away before we took it: next one.
                        libc::ECONNABORTED | libc::EPROTO | libc::EPERM => continue,
                        // Out of descriptors or memory: the queued connections
                        // wait until we close one, or the retry deadline.
                        _ => {
                            self.accept_starved = true;
                            return false;
                        }
                    }
                }
            }
        }
        true
    }

    fn retry_accept(&mut self, ep: &Epoll) {
        self.accept_starved = false;
        for i in 0..self.listeners.len() {
            if self.accept_batch(ep, i) {
                self.again.push(Token::Listener(i as u32));
            }
        }
    }

    fn admit(&mut self, ep: &Epoll, fd: RawFd) {
        match self.gate.admit() {
            Admit::Yes => {}
            refused => {
                if refused == Admit::OverMaxConns {
                    self.stats.refused_max_conns += 1;
                } else {
                    self.stats.refused_memory += 1;
                }
                // Refuse at once with RST: the peer learns now and can retry
                // elsewhere, and no TIME_WAIT is left here.
                let _ = net::set_linger_zero(fd);
                net::close(fd);
                return;
            }
        }
        // Writability is watched only while a peer is not reading (see
        // `echo`): a new socket is writable at once, and asking for EPOLLOUT
        // here would cost one wake-up per accepted connection.
        if let Err(e) = ep.add(fd, READ_INTEREST, Token::Conn(fd).encode()) {
            self.stats.errors.add(errno_of(&e));
            self.gate.release();
            net::close(fd);
            return;
        }
        if let Some(config) = &self.tls_config {
            match tls::Session::server(config) {
                Ok(session) => {
                    self.tls.insert(fd, session);
                }
                Err(f) => {
                    self.stats.errors.add_name(f.name());
                    let _ = ep.delete(fd);
                    self.gate.release();
                    net::close(fd);
                    return;
                }
            }
        }
        self.conns.insert(fd, Conn(OPEN));
        self.stats.opened += 1;
        self.stats.max_fd = self.stats.max_fd.max(fd as u64);
        // No read here: registering a socket that already holds data makes
        // epoll report it at once, so an idle connection costs no syscall
        // beyond accept4 and epoll_ctl.
    }

    fn on_conn(&mut self, ep: &Epoll, fd: RawFd, flags: u32) {
        if self.conns.get(fd).is_none() {
            return;
        }
        if flags & (epoll::ERR | epoll::HUP) != 0 && self.pending.contains_key(&fd) {
            // Reset or fully shut while blocked: nothing more can be sent.
            let errno = net::take_error(fd).ok().filter(|&e| e != 0).unwrap_or(libc::EPIPE);
            self.stats.errors.add(errno);
            self.close_conn(ep, fd, true);
            return;
        }
        if flags & epoll::HUP != 0 {
            // Both directions are shut: the peer reset it (EPOLLERR then
            // holds ECONNRESET). Nothing left can be read or answered, so close
            // at once: no read, no linger, two syscalls fewer per reset.
            if flags & epoll::ERR != 0 {
                self.stats.errors.add(libc::ECONNRESET);
            }
            self.close_conn(ep, fd, false);
            return;
        }
        if flags & epoll::OUT != 0 && self.pending.contains_key(&fd) {
            // Once the backlog is out, read what waited in the kernel: no
            // new edge will announce it.
            if self.flush(ep, fd) {
                self.read_ready(ep, fd);
            }
            return;
        }
        if flags & (epoll::IN | epoll::RDHUP | epoll::HUP | epoll::ERR) != 0 {
            self.read_ready(ep, fd);
        }
    }

    /// Reads a batch, or until EAGAIN, unless the connection is blocked on
    /// its peer; a connection whose batch ran out is read again next turn.
    fn read_ready(&mut self, ep: &Epoll, fd: RawFd) {
        for _ in 0..READ_BATCH {
            let Some(&Conn(flags)) = self.conns.get(fd) else {
                return;
            };
            if flags & (BLOCKED | EOF) != 0 {
                return;
            }
            match net::read(fd, &mut self.scratch) {
                Ok(Io::Done(0)) => {
                    if self.pending.contains_key(&fd) {
                        self.set_flag(fd, EOF);
                    } else {
                        self.close_conn(ep, fd, false);
                    }
                    return;
                }
                Ok(Io::Done(n)) => {
                    self.stats.bytes_in += n as u64;
                    let go_on = if self.tls_config.is_some() {
                        self.tls_in(ep, fd, n)
                    } else {
                        let buf = std::mem::take(&mut self.scratch);
                        let go_on = self.app_in(ep, fd, &buf[..n]);
                        self.scratch = buf;
                        go_on
                    };
                    if !go_on {
                        return;
                    }
                }
                Ok(Io::WouldBlock) => return,
                Err(e) => {
                    self.stats.errors.add(errno_of(&e));
                    self.close_conn(ep, fd, true);
                    return;
                }
            }
        }
        self.again.push(Token::Conn(fd));
    }

    /// What the mode does with application bytes (decrypted, with TLS);
    /// false when the connection is blocked or gone.
    fn app_in(&mut self, ep: &Epoll, fd: RawFd, data: &[u8]) -> bool {
        match self.mode {
            Mode::Silent => true,
            Mode::Echo => self.send_app(ep, fd, data),
            Mode::Ws | Mode::Mqtt => self.converse(ep, fd, data),
        }
    }

    /// Decrypts the `n` bytes just read (an incomplete record waits in a
    /// side map), answers the handshake, hands the plaintext to the mode.
    fn tls_in(&mut self, ep: &Epoll, fd: RawFd, n: usize) -> bool {
        let Some(mut session) = self.tls.remove(&fd) else { return false };
        let mut buf = self.tls_partial.remove(&fd).unwrap_or_default();
        buf.extend_from_slice(&self.scratch[..n]);
        let (mut plain, mut out) = (std::mem::take(&mut self.plain), std::mem::take(&mut self.cipher));
        plain.clear();
        out.clear();
        let r = session.feed(&mut buf, &mut plain, &mut out);
        self.tls.insert(fd, session);
        let used = r.as_ref().map_or(buf.len(), |p| p.used);
        let mut go_on = true;
        if used < buf.len() {
            buf.drain(..used);
            if buf.len() > tls::MAX_RECORD {
                self.stats.errors.add_name("TLS_RECORD_TOO_LARGE");
                self.close_conn(ep, fd, true);
                go_on = false;
            } else {
                self.tls_partial.insert(fd, buf);
            }
        }
        if go_on && !out.is_empty() {
            go_on = self.write_all(ep, fd, &out);
        }
        match r {
            Err(fault) => {
                self.stats.errors.add_name(fault.name());
                self.end_after_flush(ep, fd);
                go_on = false;
            }
            Ok(p) => {
                if go_on && !plain.is_empty() {
                    go_on = self.app_in(ep, fd, &plain);
                }
                if p.peer_closed {
                    self.end_after_flush(ep, fd);
                    go_on = false;
                }
            }
        }
        self.plain = plain;
        self.cipher = out;
        go_on
    }

    /// Closes `fd` once what is pending is out (at once when nothing is).
    fn end_after_flush(&mut self, ep: &Epoll, fd: RawFd) {
        if self.pending.contains_key(&fd) {
            self.set_flag(fd, EOF);
        } else {
            self.close_conn(ep, fd, false);
        }
    }

    /// Writes application bytes: encrypted when the connection has TLS.
    fn send_app(&mut self, ep: &Epoll, fd: RawFd, bytes: &[u8]) -> bool {
        let Some(session) = self.tls.get_mut(&fd) else {
            return self.write_all(ep, fd, bytes);
        };
        let mut out = std::mem::take(&mut self.cipher);
        out.clear();
        let go_on = match session.send(bytes, &mut out) {
            Ok(()) => self.write_all(ep, fd, &out),
            Err(fault) => {
                self.stats.errors.add_name(fault.name());
                self.close_conn(ep, fd, true);
                false
            }
        };
        self.cipher = out;
        go_on
    }

    /// Feeds the `n` bytes just read to the protocol's state machine and
    /// sends its answers; a fault or the end of the session closes the
    /// connection once the answers are out. False when the connection is
    /// blocked or gone.
    fn converse(&mut self, ep: &Epoll, fd: RawFd, input: &[u8]) -> bool {
        let Some(&Conn(flags)) = self.conns.get(fd) else { return false };
        let mut state = (flags & PROTO_MASK) >> PROTO_SHIFT;
        let mut held = self.partial.remove(&fd).unwrap_or_default();
        let (had, began) = (held.bytes.capacity() as u64, held.since);
        let now = Instant::now();
        self.out.clear();
        self.events.clear();
        let (out, events) = (&mut self.out, &mut self.events);
        let mut r = match self.mode {
            Mode::Ws => proto::feed_at(&mut ws::Server, &mut state, &mut held, input, now, out, events),
            _ => proto::feed_at(&mut mqtt::Server, &mut state, &mut held, input, now, out, events),
        };
        if let Some(c) = self.conns.get_mut(fd) {
            c.0 = (c.0 & !PROTO_MASK) | ((state << PROTO_SHIFT) & PROTO_MASK);
        }
        // What the budget counts for this connection: its buffer if kept.
        let keep = r.is_ok() && !held.bytes.is_empty();
        let has = if keep { held.bytes.capacity() as u64 } else { 0 };
        if has > had && !self.input.take(has - had) {
            r = Err(self.refuse(state, Fault::PartialBudget));
            self.input.give(had);
        } else if r.is_ok() && keep {
            self.input.give(had.saturating_sub(has));
            if held.since != began
                && let Some(due) = held.deadline()
            {
                self.deadlines.push_back((due, fd));
            }
            self.partial.insert(fd, held);
        } else {
            self.input.give(had);
        }
        if let Err(fault) = r {
            self.stats.errors.add_name(fault.name());
        }
        let end = r.is_err() || self.events.contains(&Event::PeerClose);
        self.answer(ep, fd, end)
    }

    /// The machine's last word for `fault` decided outside it, into `out`.
    fn refuse(&mut self, state: u8, fault: Fault) -> Fault {
        match self.mode {
            Mode::Ws => proto::refuse(&ws::Server, state, fault, &mut self.out),
            _ => proto::refuse(&mqtt::Server, state, fault, &mut self.out),
        }
    }

    /// Sends what the machine wrote into `out`, then closes when `end`.
    /// False when the connection is blocked or gone.
    fn answer(&mut self, ep: &Epoll, fd: RawFd, end: bool) -> bool {
        if !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            let sent = self.send_app(ep, fd, &out);
            self.out = out;
            if !sent {
                if end {
                    self.set_flag(fd, EOF); // closes once the answer is out
                }
                return false;
            }
        }
        if end {
            self.close_conn(ep, fd, false);
            return false;
        }
        true
    }

    /// Closes the connections whose held unit is past its deadline at
    /// `now`, each with its protocol's last word.
    fn expire(&mut self, ep: &Epoll, now: Instant) {
        while let Some(&(due, fd)) = self.deadlines.front() {
            if due > now {
                break;
            }
            self.deadlines.pop_front();
            let Some(&Conn(flags)) = self.conns.get(fd) else { continue };
            let Some(held) = self.partial.get(&fd) else { continue };
            let state = (flags & PROTO_MASK) >> PROTO_SHIFT;
            self.out.clear();
            let fault = match self.mode {
                Mode::Ws => proto::expire(&ws::Server, state, held, now, &mut self.out),
                _ => proto::expire(&mqtt::Server, state, held, now, &mut self.out),
            };
            let Some(fault) = fault else { continue }; // a later unit: its own entry follows
            self.stats.errors.add_name(fault.name());
            if self.pending.contains_key(&fd) {
                // Its peer is not reading either: no last word, no wait.
                self.close_conn(ep, fd, true);
            } else {
                self.answer(ep, fd, true);
            }
        }
        // Entries of completed units pile up only as fast as units do:
        // drop them once they outnumber the live ones.
        if self.deadlines.len() > 2 * self.partial.len() + 64 {
            let partial = &self.partial;
            self.deadlines.retain(|(due, fd)| partial.get(fd).and_then(Held::deadline) == Some(*due));
        }
    }

    /// Writes `bytes`. On a short write the rest is kept and reading stops:
    /// backpressure reaches the peer through TCP's window. Returns false
    /// when the connection is blocked or gone.
    fn write_all(&mut self, ep: &Epoll, fd: RawFd, bytes: &[u8]) -> bool {
        if let Some(pending) = self.pending.get_mut(&fd) {
            // Already blocked: after what waits, in order.
            pending.extend_from_slice(bytes);
            return false;
        }
        let (mut off, n) = (0, bytes.len());
        while off < n {
            match net::write(fd, &bytes[off..n]) {
                Ok(Io::Done(w)) => {
                    off += w;
                    self.stats.bytes_out += w as u64;
                }
                Ok(Io::WouldBlock) => {
                    self.pending.insert(fd, bytes[off..n].to_vec());
                    self.set_flag(fd, BLOCKED);
                    if let Err(e) = ep.modify(fd, READ_INTEREST | epoll::OUT, Token::Conn(fd).encode()) {
                        self.stats.errors.add(errno_of(&e));
                        self.close_conn(ep, fd, true);
                    }
                    return false;
                }
                Err(e) => {
                    self.stats.errors.add(errno_of(&e));
                    self.close_conn(ep, fd, true);
                    return false;
                }
            }
        }
        true
    }

    /// Sends pending bytes; returns true once all are out and reading may go
    /// on (false when still blocked or the connection closed).
    fn flush(&mut self, ep: &Epoll, fd: RawFd) -> bool {
        let Some(buf) = self.pending.get_mut(&fd) else {
            return true;
        };
        let mut off = 0;
        let result = loop {
            if off == buf.len() {
                break Ok(true);
            }
            match net::write(fd, &buf[off..]) {
                Ok(Io::Done(w)) => off += w,
                Ok(Io::WouldBlock) => break Ok(false),
                Err(e) => break Err(e),
            }
        };
        self.stats.bytes_out += off as u64;
        match result {
            Ok(true) => {
                self.pending.remove(&fd);
                let eof = self.conns.get(fd).is_some_and(|c| c.0 & EOF != 0);
                if eof {
                    self.close_conn(ep, fd, false);
                    return false;
                }
                self.clear_flag(fd, BLOCKED);
                // Quiet again: stop watching writability.
                if let Err(e) = ep.modify(fd, READ_INTEREST, Token::Conn(fd).encode()) {
                    self.stats.errors.add(errno_of(&e));
                    self.close_conn(ep, fd, true);
                    return false;
                }
                true
            }
            Ok(false) => {
                buf.drain(..off);
                false
            }
            Err(e) => {
                self.stats.errors.add(errno_of(&e));
                self.close_conn(ep, fd, true);
                false
            }
        }
    }

    fn set_flag(&mut self, fd: RawFd, f: u8) {
        if let Some(c) = self.conns.get_mut(fd) {
            c.0 |= f;
        }
    }

    fn clear_flag(&mut self, fd: RawFd, f: u8) {
        if let Some(c) = self.conns.get_mut(fd) {
            c.0 &= !f;
        }
    }

    fn close_conn(&mut self, ep: &Epoll, fd: RawFd, reset: bool) {
        if self.conns.remove(fd).is_none() {
            return;
        }
        self.pending.remove(&fd);
        if let Some(held) = self.partial.remove(&fd) {
            self.input.give(held.bytes.capacity() as u64);
        }
        self.tls.remove(&fd);
        self.tls_partial.remove(&fd);
        if reset {
            let _ = net::set_linger_zero(fd);
        }
        net::close(fd);
        self.gate.release();
        self.stats.closed += 1;
        if self.accept_starved {
            self.retry_accept(ep);
        }
    }

    /// Gives back the side maps' memory once a burst is over: a map keeps
    /// its largest size otherwise.
    fn shrink_at_rest(&mut self) {
        const KEEP: usize = 64;
        if self.partial.is_empty() && self.partial.capacity() > KEEP {
            self.partial.shrink_to_fit();
        }
        if self.deadlines.is_empty() && self.deadlines.capacity() > KEEP {
            self.deadlines.shrink_to_fit();
        }
        if self.pending.is_empty() && self.pending.capacity() > KEEP {
            self.pending.shrink_to_fit();
        }
        if self.tls_partial.is_empty() && self.tls_partial.capacity() > KEEP {
            self.tls_partial.shrink_to_fit();
        }
    }

    fn echo_udp(&mut self, i: usize) -> bool {
        let Some(fd) = self.udp.get(i).map(AsRawFd::as_raw_fd) else { return false };
        for _ in 0..ACCEPT_BATCH {
            match net::recv_from(fd, &mut self.scratch) {
                Ok(Some((n, peer))) => {
                    self.stats.udp_datagrams += 1;
                    if let Err(e) = net::send_to(fd, &self.scratch[..n], &peer) {
                        self.stats.errors.add(errno_of(&e));
                    }
                }
                Ok(None) => return false,
                Err(e) => {
                    // ICMP errors surface here (e.g. ECONNREFUSED): count, go on.
                    self.stats.errors.add(errno_of(&e));
                }
            }
        }
        true
    }

    fn dispatch(&mut self, ep: &Epoll, token: Token, flags: u32) {
        match token {
            Token::Conn(fd) => self.on_conn(ep, fd, flags),
            Token::Listener(i) => {
                if self.accept_batch(ep, i as usize) {
                    self.again.push(token);
                }
            }
            Token::Udp(i) => {
                if self.echo_udp(i as usize) {
                    self.again.push(token);
                }
            }
            Token::Bell => {}
        }
    }
}

impl Handler for Shard {
    fn on_ready(&mut self, ep: &Epoll, token: Token, flags: u32) {
        self.dispatch(ep, token, flags);
    }

    fn on_mail(&mut self, _ep: &Epoll, mail: Mail) {
        if let Mail::Steer(program) = mail {
            for l in &self.listeners {
                if let Err(e) = net::attach_reuseport_cbpf(l.as_raw_fd(), &program) {
                    self.stats.errors.add(errno_of(&e));
                }
            }
        }
    }

    fn on_turn(&mut self, ep: &Epoll, now: Instant) -> Turn {
        // Take up what a batch left over; new leftovers wait for the next turn.
        for token in std::mem::take(&mut self.again) {
            let flags = if matches!(token, Token::Conn(_)) { epoll::IN } else { 0 };
            self.dispatch(ep, token, flags);
        }
        self.expire(ep, now);
        self.stats.open = self.conns.len() as u64;
        self.stats.backpressured = self.pending.len() as u64;
        self.shrink_at_rest();
        let turn = if !self.again.is_empty() {
            Turn::Again
        } else if self.accept_starved {
            Turn::Until(now + STARVED_RETRY)
        } else {
            Turn::Idle
        };
        match self.deadlines.front() {
            Some(&(due, _)) => turn.min(Turn::Until(due)),
            None => turn,
        }
    }

    /// Stop accepting first, then reset every connection: nothing lingers in
    /// TIME_WAIT after the server exits.
    fn on_stop(&mut self, ep: &Epoll, left: &dyn Fn(u64)) {
        self.listeners.clear();
        self.udp.clear();
        let fds = self.conns.open_fds();
        self.stats.held_at_stop = fds.len() as u64;
        for (i, &fd) in fds.iter().enumerate() {
            if i % CLOSE_REPORT_EVERY == 0 {
                left((fds.len() - i) as u64);
            }
            self.close_conn(ep, fd, true);
        }
        self.stats.open = 0;
        self.stats.backpressured = 0;
    }

    fn stats(&self) -> &ShardStats {
        &self.stats
    }
}

/// A listening socket on `addr` in the shard's table, joined to the
/// SO_REUSEPORT group of the other shards.
fn open_listener(addr: &SocketAddr, backlog: i32) -> io::Result<OwnedFd> {
    let fd = net::socket_owned(addr, Kind::Tcp)?;
    net::set_reuseaddr(fd.as_raw_fd())?;
    net::set_reuseport(fd.as_raw_fd())?;
    net::bind(fd.as_raw_fd(), addr)?;
    net::listen(fd.as_raw_fd(), backlog)?;
    Ok(fd)
}

/// A UDP socket on `addr`, SO_REUSEPORT like the listeners.
fn open_udp(addr: &SocketAddr) -> io::Result<OwnedFd> {
    let fd = net::socket_owned(addr, Kind::Udp)?;
    net::set_reuseaddr(fd.as_raw_fd())?;
    net::set_reuseport(fd.as_raw_fd())?;
    net::bind(fd.as_raw_fd(), addr)?;
    Ok(fd)
}
