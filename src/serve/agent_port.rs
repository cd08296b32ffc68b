//! The agent port of `serve --agent`: every connection gets the latest
//! agent line at accept, whatever the others do, then the port waits (up
//! to [`CHECK_DEADLINE`]) for the checker to close. The line is computed by
//! serve's supervisor ([`super::headroom::Throttle`]) and shared through a
//! mutex; the connections live on a [`super::side_port`] loop, so idle or
//! flooding peers never delay a real check (#17).
//!
//! HAProxy's checker connects, may send its `agent-send` string (one line),
//! reads one line and closes. What it sends changes nothing in the answer;
//! [`heard`] only says when the port may close: after one whole line, or at
//! once if the peer sends more than a checker does.

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::side_port::{Bounds, Exchange, SidePort, Step};
use crate::error::{Error, Result};

/// From accept to close, whatever the checker does: a checker reads the
/// line and closes within a round trip.
pub const CHECK_DEADLINE: Duration = Duration::from_millis(500);
/// Checks open at once; the oldest is closed to admit a new one (the line
/// was written at its accept). A few balancers make a few at a time.
pub const MAX_CHECKS: usize = 128;
/// The longest `agent-send` string taken, its newline included.
pub const MAX_SEND: usize = 1024;

/// What the bytes a checker sent so far call for (the answer, sent at
/// accept, does not depend on them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// Nothing yet, or part of a line: wait for the rest or the close.
    More,
    /// One whole line and nothing after it: nothing more is expected.
    Line,
    /// Bytes after the first line, or [`MAX_SEND`] bytes without one: not
    /// a checker.
    Excess,
}

/// Classifies all bytes a checker sent so far. Pure, for any bytes.
pub fn heard(received: &[u8]) -> Heard {
    match received.iter().position(|&b| b == b'\n') {
        Some(i) if i + 1 == received.len() && received.len() <= MAX_SEND => Heard::Line,
        Some(_) => Heard::Excess,
        None if received.len() >= MAX_SEND => Heard::Excess,
        None => Heard::More,
    }
}

/// The agent-check endpoint, until dropped.
#[derive(Debug)]
pub struct AgentPort {
    line: Arc<Mutex<String>>,
    port: SidePort,
}

/// The latest line, shared with the supervisor.
#[derive(Debug)]
struct Check {
    line: Arc<Mutex<String>>,
}

impl Exchange for Check {
    fn greeting(&self) -> Option<Vec<u8>> {
        // A poisoned lock still holds the last line written.
        let line = self.line.lock().unwrap_or_else(|p| p.into_inner());
        Some(line.as_bytes().to_vec())
    }

    fn heard(&self, received: &[u8]) -> Step {
        match heard(received) {
            Heard::More => Step::More,
            Heard::Line | Heard::Excess => Step::Close,
        }
    }

    fn limit(&self) -> usize {
        MAX_SEND
    }
}

impl AgentPort {
    /// Listens on `addr` and answers with `first` until [`AgentPort::set`].
    pub fn start(addr: SocketAddr, first: String) -> Result<AgentPort> {
        let listener = TcpListener::bind(addr).map_err(|e| Error::Input(format!("--agent {addr}: {e}")))?;
        let line = Arc::new(Mutex::new(first));
        let bounds = Bounds { max_conns: MAX_CHECKS, deadline: CHECK_DEADLINE };
        let port = SidePort::start("agent", listener, bounds, Check { line: line.clone() })?;
        Ok(AgentPort { line, port })
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.port.addr()
    }

    /// Replaces the line served.
    pub fn set(&self, line: String) {
        *self.line.lock().unwrap_or_else(|p| p.into_inner()) = line;
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::*;

    #[test]
    fn answers_one_line_and_closes() {
        let port = AgentPort::start("127.0.0.1:0".parse().unwrap(), "up ready 100% maxconn:5\n".into()).unwrap();
        let read = |send: &[u8]| {
            let mut c = TcpStream::connect(port.addr()).unwrap();
            // What an `agent-send` would send: ignored, and no reset.
            c.write_all(send).unwrap();
            let mut s = String::new();
            c.read_to_string(&mut s).unwrap();
            s
        };
        assert_eq!(read(b"hello\n"), "up ready 100% maxconn:5\n");
        port.set("drain maxconn:5\n".into());
        assert_eq!(read(b""), "drain maxconn:5\n");
        assert_eq!(read(b"hel"), "drain maxconn:5\n");
    }

    #[test]
    fn a_checker_sends_at_most_one_line() {
        assert_eq!(heard(b""), Heard::More);
        assert_eq!(heard(b"hello"), Heard::More);
        assert_eq!(heard(b"hello\r\n"), Heard::Line);
        assert_eq!(heard(b"\n"), Heard::Line);
        assert_eq!(heard(b"hello\nmore"), Heard::Excess);
        assert_eq!(heard(&[b'a'; MAX_SEND]), Heard::Excess);
        assert_eq!(heard(&[b'a'; MAX_SEND - 1]), Heard::More);
        let mut long = vec![b'a'; MAX_SEND];
        long.push(b'\n');
        assert_eq!(heard(&long), Heard::Excess);
        assert_eq!(heard(&[0xff, 0x00, b'\n']), Heard::Line);
    }
}
