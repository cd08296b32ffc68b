//! The agent port of `serve --agent`: a thread with a blocking listener
//! that answers each connection with the latest agent line and closes. A
//! load balancer connects a few times a second, so one thread on
//! `std::net` is all it needs; the line is computed by serve's supervisor
//! ([`super::headroom::Throttle`]) and shared through a mutex.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How long one check may take before the thread moves on.
const CHECK_TIMEOUT: Duration = Duration::from_millis(500);

/// The agent-check endpoint, until dropped.
#[derive(Debug)]
pub struct AgentPort {
    addr: SocketAddr,
    line: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AgentPort {
    /// Listens on `addr` and answers with `first` until [`AgentPort::set`].
    pub fn start(addr: SocketAddr, first: String) -> Result<AgentPort> {
        let listener = TcpListener::bind(addr).map_err(|e| Error::Input(format!("--agent {addr}: {e}")))?;
        let addr = listener.local_addr().map_err(|e| Error::os("agent address", e))?;
        let line = Arc::new(Mutex::new(first));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (line.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("agent".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.load(Ordering::Acquire) {
                        break;
                    }
                    if let Ok(c) = conn {
                        let text = l.lock().map(|g| g.clone()).unwrap_or_default();
                        let _ = answer(c, &text);
                    }
                }
            })
            .map_err(|e| Error::os("spawning the agent thread", e))?;
        Ok(AgentPort { addr, line, stop, thread: Some(thread) })
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the line served.
    pub fn set(&self, line: String) {
        if let Ok(mut g) = self.line.lock() {
            *g = line;
        }
    }
}

impl Drop for AgentPort {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Writes the line, then reads until the checker closes (bounded): closing
/// with unread bytes (an `agent-send` string) would reset the connection,
/// and a reset can reach the checker before it has read the line.
fn answer(mut c: TcpStream, line: &str) -> std::io::Result<()> {
    c.set_write_timeout(Some(CHECK_TIMEOUT))?;
    c.write_all(line.as_bytes())?;
    c.shutdown(Shutdown::Write)?;
    let deadline = Instant::now() + CHECK_TIMEOUT;
    let mut sink = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        c.set_read_timeout(Some(left))?;
        match c.read(&mut sink) {
            Ok(0) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_one_line_and_closes() {
        let port = AgentPort::start("127.0.0.1:0".parse().unwrap(), "up ready 100% maxconn:5\n".into()).unwrap();
        let read = || {
            let mut c = TcpStream::connect(port.addr()).unwrap();
            // What an `agent-send` would send: ignored, and no reset.
            c.write_all(b"hello\n").unwrap();
            let mut s = String::new();
            c.read_to_string(&mut s).unwrap();
            s
        };
        assert_eq!(read(), "up ready 100% maxconn:5\n");
        port.set("drain maxconn:5\n".into());
        assert_eq!(read(), "drain maxconn:5\n");
    }
}
