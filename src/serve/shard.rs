//! One server shard: its listeners (one per address, SO_REUSEPORT), its UDP
//! echo sockets, and the edge-triggered loop over its connections.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Instant;

use super::Mode;
use crate::engine::gate::{Admit, Gate};
use crate::engine::shard::{Reporter, ShardCtl};
use crate::engine::stats::ShardStats;
use crate::engine::table::{ConnTable, Record};
use crate::sys::epoll::{self, Epoll};
use crate::sys::net::{self, Io, Kind};
use crate::sys::{errno_name, errno_of};

/// Read size, and the most a backpressured connection ever buffers.
pub const CHUNK: usize = 16 * 1024;

const KIND_SHIFT: u32 = 32;
const TOKEN_BELL: u64 = 1 << KIND_SHIFT;
const TOKEN_LISTENER: u64 = 2 << KIND_SHIFT;
const TOKEN_UDP: u64 = 3 << KIND_SHIFT;
const FD_MASK: u64 = 0xffff_ffff;

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
    /// silent or echo.
    pub mode: Mode,
}

/// The server's per-connection record: one byte of flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Conn(u8);

const OPEN: u8 = 1;
/// The peer is not reading: stop reading until the pending bytes are out.
const BLOCKED: u8 = 2;
/// The peer sent FIN: close once the pending bytes are out.
const EOF: u8 = 4;

impl Record for Conn {
    fn is_open(&self) -> bool {
        self.0 & OPEN != 0
    }
}

/// Runs shard `id` until a stop is requested. Called on the shard's thread,
/// after its private fd table is set up.
pub fn run(_id: usize, setup: Arc<ShardSetup>, gate: Arc<Gate>, ctl: Arc<ShardCtl>, reporter: Reporter) {
    match Shard::new(&setup, gate, ctl) {
        Ok(mut shard) => {
            reporter.ready(Ok(()));
            shard.run(reporter);
        }
        Err(e) => reporter.ready(Err(e)),
    }
}

struct Shard {
    epoll: Epoll,
    ctl: Arc<ShardCtl>,
    gate: Arc<Gate>,
    mode: Mode,
    listeners: Vec<RawFd>,
    udp: Vec<RawFd>,
    conns: ConnTable<Conn>,
    /// Unsent echo bytes of backpressured connections only (bounded by CHUNK each).
    pending: HashMap<RawFd, Vec<u8>>,
    scratch: Vec<u8>,
    stats: ShardStats,
    /// accept hit EMFILE/ENFILE/ENOMEM: retry once a descriptor is freed.
    accept_starved: bool,
}

fn setup_error(what: &str, addr: &SocketAddr, e: &io::Error) -> String {
    format!("{what} {addr}: {e} ({})", errno_name(errno_of(e)))
}

impl Shard {
    fn new(setup: &ShardSetup, gate: Arc<Gate>, ctl: Arc<ShardCtl>) -> Result<Shard, String> {
        let epoll = Epoll::new().map_err(|e| format!("epoll_create1: {e}"))?;
        epoll.add(ctl.bell_fd(), epoll::IN | epoll::ET, TOKEN_BELL).map_err(|e| format!("epoll_ctl(doorbell): {e}"))?;
        let mut shard = Shard {
            epoll,
            ctl,
            gate,
            mode: setup.mode,
            listeners: Vec::new(),
            udp: Vec::new(),
            conns: ConnTable::new(),
            pending: HashMap::new(),
            scratch: vec![0; CHUNK],
            stats: ShardStats::default(),
            accept_starved: false,
        };
        for addr in &setup.tcp {
            let fd = open_listener(addr, setup.backlog).map_err(|e| setup_error("cannot listen on", addr, &e))?;
            let token = TOKEN_LISTENER | shard.listeners.len() as u64;
            shard.listeners.push(fd);
            shard.watch(fd, token, addr)?;
        }
        for addr in &setup.udp {
            let fd = open_udp(addr).map_err(|e| setup_error("cannot bind UDP", addr, &e))?;
            let token = TOKEN_UDP | shard.udp.len() as u64;
            shard.udp.push(fd);
            shard.watch(fd, token, addr)?;
        }
        Ok(shard)
    }

    /// Registers a listening or UDP socket of this shard for readability.
    fn watch(&self, fd: RawFd, token: u64, addr: &SocketAddr) -> Result<(), String> {
        self.epoll.add(fd, epoll::IN | epoll::ET, token).map_err(|e| setup_error("epoll_ctl", addr, &e))
    }

    fn run(&mut self, mut reporter: Reporter) {
        let mut events = vec![epoll::empty_event(); 256];
        while !self.ctl.stop_requested() {
            let timeout = reporter.timeout_ms(Instant::now());
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(e) => {
                    self.stats.errors.add(errno_of(&e));
                    break;
                }
            };
            for ev in &events[..n] {
                let token = epoll::token(ev);
                let flags = epoll::flags(ev);
                match token & !FD_MASK {
                    0 => self.on_conn(token as RawFd, flags),
                    TOKEN_LISTENER => self.accept_all((token & FD_MASK) as usize),
                    TOKEN_UDP => self.echo_udp((token & FD_MASK) as usize),
                    _ => self.ctl.drain_bell(),
                }
            }
            if self.accept_starved {
                self.retry_accept();
            }
            self.stats.open = self.conns.len() as u64;
            self.stats.backpressured = self.pending.len() as u64;
            reporter.maybe_send(Instant::now(), &self.stats);
        }
        self.close_everything();
        reporter.last(&self.stats);
    }

    fn accept_all(&mut self, i: usize) {
        let Some(&lfd) = self.listeners.get(i) else {
            return;
        };
        loop {
            match net::accept(lfd) {
                Ok(Some(fd)) => self.admit(fd),
                Ok(None) => return,
                Err(e) => {
                    let errno = errno_of(&e);
                    self.stats.errors.add(errno);
                    match errno {
                        // The peer went away before we took it: next one.
                        libc::ECONNABORTED | libc::EPROTO | libc::EPERM => continue,
                        // Out of descriptors or memory: the queued connections
                        // wait until we close one (see retry_accept).
                        _ => {
                            self.accept_starved = true;
                            return;
                        }
                    }
                }
            }
        }
    }

    fn retry_accept(&mut self) {
        self.accept_starved = false;
        for i in 0..self.listeners.len() {
            self.accept_all(i);
        }
    }

    fn admit(&mut self, fd: RawFd) {
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
        if let Err(e) = self.epoll.add(fd, READ_INTEREST, fd as u64) {
            self.stats.errors.add(errno_of(&e));
            self.gate.release();
            net::close(fd);
            return;
        }
        self.conns.insert(fd, Conn(OPEN));
        self.stats.opened += 1;
        self.stats.max_fd = self.stats.max_fd.max(fd as u64);
        // No read here: registering a socket that already holds data makes
        // epoll report it at once, so an idle connection costs no syscall
        // beyond accept4 and epoll_ctl.
    }

    fn on_conn(&mut self, fd: RawFd, flags: u32) {
        if self.conns.get(fd).is_none() {
            return;
        }
        if flags & (epoll::ERR | epoll::HUP) != 0 && self.pending.contains_key(&fd) {
            // Reset or fully shut while blocked: nothing more can be sent.
            let errno = net::take_error(fd).ok().filter(|&e| e != 0).unwrap_or(libc::EPIPE);
            self.stats.errors.add(errno);
            self.close_conn(fd, true);
            return;
        }
        if flags & epoll::HUP != 0 {
            // Both directions are shut: the peer reset it (EPOLLERR then
            // holds ECONNRESET). Nothing left can be read or answered, so close
            // at once: no read, no linger, two syscalls fewer per reset.
            if flags & epoll::ERR != 0 {
                self.stats.errors.add(libc::ECONNRESET);
            }
            self.close_conn(fd, false);
            return;
        }
        if flags & epoll::OUT != 0 && self.pending.contains_key(&fd) {
            // Once the backlog is out, read what waited in the kernel: no
            // new edge will announce it.
            if self.flush(fd) {
                self.read_ready(fd);
            }
            return;
        }
        if flags & (epoll::IN | epoll::RDHUP | epoll::HUP | epoll::ERR) != 0 {
            self.read_ready(fd);
        }
    }

    /// Reads until EAGAIN, unless the connection is blocked on its peer.
    fn read_ready(&mut self, fd: RawFd) {
        loop {
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
                        self.close_conn(fd, false);
                    }
                    return;
                }
                Ok(Io::Done(n)) => {
                    self.stats.bytes_in += n as u64;
                    if self.mode == Mode::Echo && !self.echo(fd, n) {
                        return;
                    }
                }
                Ok(Io::WouldBlock) => return,
                Err(e) => {
                    self.stats.errors.add(errno_of(&e));
                    self.close_conn(fd, true);
                    return;
                }
            }
        }
    }

    /// Writes back the `n` bytes just read. On a short write the rest is kept
    /// and reading stops: backpressure reaches the peer through TCP's window.
    /// Returns false when the connection is blocked or gone.
    fn echo(&mut self, fd: RawFd, n: usize) -> bool {
        let mut off = 0;
        while off < n {
            match net::write(fd, &self.scratch[off..n]) {
                Ok(Io::Done(w)) => {
                    off += w;
                    self.stats.bytes_out += w as u64;
                }
                Ok(Io::WouldBlock) => {
                    self.pending.insert(fd, self.scratch[off..n].to_vec());
                    self.set_flag(fd, BLOCKED);
                    if let Err(e) = self.epoll.modify(fd, READ_INTEREST | epoll::OUT, fd as u64) {
                        self.stats.errors.add(errno_of(&e));
                        self.close_conn(fd, true);
                    }
                    return false;
                }
                Err(e) => {
                    self.stats.errors.add(errno_of(&e));
                    self.close_conn(fd, true);
                    return false;
                }
            }
        }
        true
    }

    /// Sends pending bytes; returns true once all are out and reading may go
    /// on (false when still blocked or the connection closed).
    fn flush(&mut self, fd: RawFd) -> bool {
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
                    self.close_conn(fd, false);
                    return false;
                }
                self.clear_flag(fd, BLOCKED);
                // Quiet again: stop watching writability.
                if let Err(e) = self.epoll.modify(fd, READ_INTEREST, fd as u64) {
                    self.stats.errors.add(errno_of(&e));
                    self.close_conn(fd, true);
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
                self.close_conn(fd, true);
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

    fn close_conn(&mut self, fd: RawFd, reset: bool) {
        if self.conns.remove(fd).is_none() {
            return;
        }
        self.pending.remove(&fd);
        if reset {
            let _ = net::set_linger_zero(fd);
        }
        net::close(fd);
        self.gate.release();
        self.stats.closed += 1;
        if self.accept_starved {
            self.retry_accept();
        }
    }

    fn echo_udp(&mut self, i: usize) {
        let Some(&fd) = self.udp.get(i) else { return };
        loop {
            match net::recv_from(fd, &mut self.scratch) {
                Ok(Some((n, peer))) => {
                    self.stats.udp_datagrams += 1;
                    if let Err(e) = net::send_to(fd, &self.scratch[..n], &peer) {
                        self.stats.errors.add(errno_of(&e));
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    // ICMP errors surface here (e.g. ECONNREFUSED): count, go on.
                    self.stats.errors.add(errno_of(&e));
                }
            }
        }
    }

    /// Stop accepting first, then reset every connection: nothing lingers in
    /// TIME_WAIT after the server exits.
    fn close_everything(&mut self) {
        for fd in self.listeners.drain(..).chain(self.udp.drain(..)) {
            net::close(fd);
        }
        for fd in self.conns.open_fds() {
            self.close_conn(fd, true);
        }
        self.stats.open = 0;
        self.stats.backpressured = 0;
    }
}

/// A listening socket on `addr` in the shard's table, joined to the
/// SO_REUSEPORT group of the other shards.
fn open_listener(addr: &SocketAddr, backlog: i32) -> io::Result<RawFd> {
    let fd = net::socket(addr, Kind::Tcp)?;
    let setup = || {
        net::set_reuseaddr(fd)?;
        net::set_reuseport(fd)?;
        net::bind(fd, addr)?;
        net::listen(fd, backlog)
    };
    setup().inspect_err(|_| net::close(fd))?;
    Ok(fd)
}

/// A UDP socket on `addr`, SO_REUSEPORT like the listeners.
fn open_udp(addr: &SocketAddr) -> io::Result<RawFd> {
    let fd = net::socket(addr, Kind::Udp)?;
    let setup = || {
        net::set_reuseaddr(fd)?;
        net::set_reuseport(fd)?;
        net::bind(fd, addr)
    };
    setup().inspect_err(|_| net::close(fd))?;
    Ok(fd)
}
