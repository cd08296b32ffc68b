//! One small epoll loop on its own thread for each of serve's side ports
//! (`/metrics`, the agent-check port): a peer can hold a slot but never the
//! thread (#17).
//!
//! - **A deadline per connection, from its accept.** Bytes arriving do not
//!   extend it, so a peer trickling a byte a second is closed on time like
//!   an idle one.
//! - **A cap on connections at once.** Beyond it the *oldest* is closed to
//!   make room for the newest: a peer that holds connections to starve the
//!   port holds by definition the oldest ones, while a real checker or
//!   scraper is the one arriving now and needs one round trip. Refusing the
//!   newest instead would let a few idle connections, renewed as they
//!   expire, shut every real client out.
//! - **A stop that waits on no peer.** Dropping the [`SidePort`] rings an
//!   eventfd; the loop returns at once and every connection closes with it.
//!
//! What a connection says is decided by an [`Exchange`], pure over the bytes
//! received; the loop only moves bytes: read while the exchange wants more,
//! write its one answer, half-close, then read and discard until the peer
//! closes (closing with unread bytes would reset the connection, and a reset
//! can reach the peer before it has read the answer), or the deadline.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::engine::reactor::Turn;
use crate::error::{Error, Result};
use crate::sys::epoll::{self, Epoll, EventFd};

/// What a connection's bytes call for, as far as they go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Read more.
    More,
    /// Send this, half-close, and read nothing more into the exchange.
    Answer(Vec<u8>),
    /// Close once what is being sent is sent.
    Close,
}

/// A side port's protocol: what to send at accept, what the bytes received
/// call for. Pure; the loop owns the sockets.
pub trait Exchange: Send + 'static {
    /// Sent at accept, before anything is read (the agent's line); the one
    /// answer of the connection when there is one.
    fn greeting(&self) -> Option<Vec<u8>>;
    /// All bytes received so far, at most [`Exchange::limit`] of them.
    fn heard(&self, received: &[u8]) -> Step;
    /// The most bytes [`Exchange::heard`] is given; at the limit it must
    /// decide (a `More` there closes).
    fn limit(&self) -> usize;
}

/// How a side port is bounded.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Connections at once; the oldest is closed to admit one more.
    pub max_conns: usize,
    /// From accept to close, whatever the peer does.
    pub deadline: Duration,
}

/// Bytes read and discarded after the answer before the peer is cut off.
const DISCARD: usize = 64 << 10;
/// Accepts per readiness of the listener (it stays ready if more wait).
const ACCEPTS: usize = 64;
/// How long the listener rests after an accept error such as EMFILE, which
/// would otherwise report it ready at once, again and again.
const ACCEPT_REST: Duration = Duration::from_millis(100);
const BELL: u64 = 0;
const LISTENER: u64 = 1;
const FIRST_CONN: u64 = 2;

/// A side port served by its own thread until dropped.
#[derive(Debug)]
pub struct SidePort {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    bell: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
}

impl SidePort {
    /// Serves `listener` with `exchange` on a thread named `name`.
    pub fn start<E: Exchange>(name: &str, listener: TcpListener, bounds: Bounds, exchange: E) -> Result<SidePort> {
        let addr = listener.local_addr().map_err(|e| Error::os(format!("{name} address"), e))?;
        listener.set_nonblocking(true).map_err(|e| Error::os(format!("{name} listener"), e))?;
        let epoll = Epoll::new().map_err(|e| Error::os(format!("{name} epoll"), e))?;
        let bell = Arc::new(EventFd::new().map_err(|e| Error::os(format!("{name} eventfd"), e))?);
        epoll.add(bell.raw(), epoll::IN, BELL).map_err(|e| Error::os(format!("{name} epoll"), e))?;
        epoll.add(listener.as_raw_fd(), epoll::IN, LISTENER).map_err(|e| Error::os(format!("{name} epoll"), e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut lp = Loop { epoll, listener, bounds, exchange, conns: BTreeMap::new(), next: FIRST_CONN, rest: None };
        let (s, who) = (stop.clone(), name.to_string());
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                if let Err(e) = lp.run(&s) {
                    eprintln!("serve: the {who} port stopped: {e}");
                }
            })
            .map_err(|e| Error::os(format!("spawning the {name} thread"), e))?;
        Ok(SidePort { addr, stop, bell, thread: Some(thread) })
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for SidePort {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // The loop blocks only in epoll_wait, which the bell ends.
        let _ = self.bell.notify();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One connection: bytes in until the exchange answers, then the answer out.
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    deadline: Instant,
    received: Vec<u8>,
    out: Vec<u8>,
    sent: usize,
    /// The one answer is queued or sent (a greeting or the exchange's).
    said: bool,
    /// The exchange has answered: what arrives now is discarded.
    answered: bool,
    discarded: usize,
    /// Close as soon as `out` is sent.
    closing: bool,
    /// The answer is all out and the write side shut.
    shut: bool,
}

impl Conn {
    fn pending(&self) -> bool {
        self.sent < self.out.len()
    }

    fn interest(&self) -> u32 {
        match (self.closing, self.pending()) {
            (true, _) => epoll::OUT,
            (false, true) => epoll::IN | epoll::OUT,
            (false, false) => epoll::IN,
        }
    }
}

/// What became of a connection after some I/O.
#[derive(Debug, PartialEq, Eq)]
enum Fate {
    Keep,
    Close,
}

struct Loop<E> {
    epoll: Epoll,
    listener: TcpListener,
    bounds: Bounds,
    exchange: E,
    /// By token; tokens rise with accepts, so the first is the oldest and
    /// has the earliest deadline.
    conns: BTreeMap<u64, Conn>,
    next: u64,
    /// The listener is out of the epoll set until then (after an accept error).
    rest: Option<Instant>,
}

impl<E: Exchange> Loop<E> {
    fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        let mut events = vec![epoll::empty_event(); 64];
        loop {
            if stop.load(Ordering::Acquire) {
                return Ok(());
            }
            let turn = self.turn(Instant::now())?;
            let n = self.epoll.wait(&mut events, turn.timeout_ms(Instant::now()))?;
            for ev in &events[..n] {
                match epoll::token(ev) {
                    // Only the stop rings; the flag is read at the top.
                    BELL => {}
                    LISTENER => self.accept()?,
                    token => self.ready(token, epoll::flags(ev)),
                }
            }
        }
    }

    /// Closes the connections past their deadline, brings the listener back
    /// from a rest; says when the next of those is due.
    fn turn(&mut self, now: Instant) -> io::Result<Turn> {
        while let Some(entry) = self.conns.first_entry() {
            if entry.get().deadline > now {
                break;
            }
            entry.remove();
        }
        if let Some(until) = self.rest {
            if until <= now {
                self.epoll.add(self.listener.as_raw_fd(), epoll::IN, LISTENER)?;
                self.rest = None;
            }
        }
        let first = self.conns.first_key_value().map_or(Turn::Idle, |(_, c)| Turn::Until(c.deadline));
        Ok(first.min(self.rest.map_or(Turn::Idle, Turn::Until)))
    }

    fn accept(&mut self) -> io::Result<()> {
        for _ in 0..ACCEPTS {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted) => {
                    continue;
                }
                Err(_) => {
                    // EMFILE and the like: rest the listener instead of
                    // spinning on it; the pending peers wait in the backlog.
                    self.epoll.delete(self.listener.as_raw_fd())?;
                    self.rest = Some(Instant::now() + ACCEPT_REST);
                    return Ok(());
                }
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            while self.conns.len() >= self.bounds.max_conns.max(1) {
                self.conns.pop_first();
            }
            let token = self.next;
            self.next += 1;
            let greeting = self.exchange.greeting();
            let mut conn = Conn {
                stream,
                deadline: Instant::now() + self.bounds.deadline,
                received: Vec::new(),
                said: greeting.is_some(),
                out: greeting.unwrap_or_default(),
                sent: 0,
                answered: false,
                discarded: 0,
                closing: false,
                shut: false,
            };
            if flush(&mut conn) == Fate::Close {
                continue;
            }
            if self.epoll.add(conn.stream.as_raw_fd(), conn.interest(), token).is_ok() {
                self.conns.insert(token, conn);
            }
        }
        Ok(())
    }

    fn ready(&mut self, token: u64, flags: u32) {
        let Some(conn) = self.conns.get_mut(&token) else { return };
        let before = conn.interest();
        // A hang-up is both directions gone (our write side shuts only once
        // the answer is out): nothing more to read or deliver.
        let mut fate = if flags & (epoll::ERR | epoll::HUP) != 0 { Fate::Close } else { Fate::Keep };
        if fate == Fate::Keep && flags & epoll::IN != 0 && !conn.closing {
            fate = take_in(conn, &self.exchange);
        }
        if fate == Fate::Keep && flags & epoll::OUT != 0 {
            fate = flush(conn);
        }
        if fate == Fate::Keep && conn.interest() != before {
            let interest = conn.interest();
            if self.epoll.modify(conn.stream.as_raw_fd(), interest, token).is_err() {
                fate = Fate::Close;
            }
        }
        if fate == Fate::Close {
            // Closing the socket also takes it out of the epoll set.
            self.conns.remove(&token);
        }
    }
}

/// One read, handed to the exchange (before its answer) or discarded (after).
fn take_in<E: Exchange>(conn: &mut Conn, exchange: &E) -> Fate {
    let mut buf = [0u8; 4096];
    let room = if conn.answered {
        buf.len().min(DISCARD.saturating_sub(conn.discarded))
    } else {
        buf.len().min(exchange.limit().saturating_sub(conn.received.len()))
    };
    if room == 0 {
        return Fate::Close;
    }
    let n = match conn.stream.read(&mut buf[..room]) {
        Ok(0) => return if conn.pending() { closing(conn) } else { Fate::Close },
        Ok(n) => n,
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => return Fate::Keep,
        Err(_) => return Fate::Close,
    };
    if conn.answered {
        conn.discarded += n;
        return Fate::Keep;
    }
    conn.received.extend_from_slice(&buf[..n]);
    match exchange.heard(&conn.received) {
        Step::More if conn.received.len() >= exchange.limit() => Fate::Close,
        Step::More => Fate::Keep,
        Step::Answer(bytes) => {
            conn.answered = true;
            conn.received = Vec::new();
            // One answer per connection: a greeting stays the answer.
            if !conn.said {
                conn.said = true;
                conn.out = bytes;
                return flush(conn);
            }
            Fate::Keep
        }
        Step::Close => closing(conn),
    }
}

/// Close now, or once what is being sent is sent.
fn closing(conn: &mut Conn) -> Fate {
    if conn.pending() {
        conn.closing = true;
        Fate::Keep
    } else {
        Fate::Close
    }
}

/// Writes what is left of the answer; once it is all out, half-closes.
fn flush(conn: &mut Conn) -> Fate {
    while conn.pending() {
        match conn.stream.write(&conn.out[conn.sent..]) {
            Ok(0) => return Fate::Close,
            Ok(n) => conn.sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Fate::Keep,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Fate::Close,
        }
    }
    if conn.closing {
        return Fate::Close;
    }
    if conn.said && !conn.shut {
        conn.shut = true;
        conn.out = Vec::new();
        conn.sent = 0;
        if conn.stream.shutdown(Shutdown::Write).is_err() {
            return Fate::Close;
        }
    }
    Fate::Keep
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Greets with `hi\n` and closes on the first whole line.
    struct Hello;

    impl Exchange for Hello {
        fn greeting(&self) -> Option<Vec<u8>> {
            Some(b"hi\n".to_vec())
        }
        fn heard(&self, received: &[u8]) -> Step {
            if received.contains(&b'\n') { Step::Close } else { Step::More }
        }
        fn limit(&self) -> usize {
            64
        }
    }

    fn port(max_conns: usize, deadline: Duration) -> SidePort {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        SidePort::start("test", l, Bounds { max_conns, deadline }, Hello).unwrap()
    }

    fn read_all(c: &mut TcpStream) -> io::Result<String> {
        c.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut s = String::new();
        c.read_to_string(&mut s)?;
        Ok(s)
    }

    #[test]
    fn beyond_the_cap_the_oldest_is_closed() {
        // The deadline is far: only the cap can close the first connection.
        let p = port(4, Duration::from_secs(600));
        let mut conns: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(p.addr()).unwrap()).collect();
        let mut buf = [0u8; 3];
        for c in &mut conns {
            c.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"hi\n");
        }
        let mut fifth = TcpStream::connect(p.addr()).unwrap();
        fifth.read_exact(&mut buf).unwrap();
        // The oldest ends (its greeting was read: a clean end of stream).
        assert_eq!(read_all(&mut conns[0]).unwrap(), "");
        // The others are still open: each answers a line by closing.
        for c in &mut conns[1..] {
            c.write_all(b"bye\n").unwrap();
            assert_eq!(read_all(c).unwrap(), "");
        }
    }

    #[test]
    fn the_deadline_runs_from_the_accept() {
        let p = port(8, Duration::from_millis(500));
        let mut c = TcpStream::connect(p.addr()).unwrap();
        let began = Instant::now();
        // Bytes keep coming, never a line: the deadline still closes it.
        let mut w = c.try_clone().unwrap();
        let trickle = std::thread::spawn(move || {
            for _ in 0..40 {
                if w.write_all(b"x").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        assert_eq!(read_all(&mut c).unwrap_or_default(), "hi\n");
        let took = began.elapsed();
        trickle.join().unwrap();
        // Restarted by each byte, it would outlast the 4 s of trickle.
        assert!(took < Duration::from_secs(3), "closed after {took:?}");
    }

    #[test]
    fn a_stop_waits_on_no_peer() {
        let p = port(8, Duration::from_secs(600));
        let mut idle: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(p.addr()).unwrap()).collect();
        let mut buf = [0u8; 3];
        for c in &mut idle {
            c.read_exact(&mut buf).unwrap();
        }
        drop(p);
        for c in &mut idle {
            assert_eq!(read_all(c).unwrap(), "", "closed by the stop");
        }
    }
}
