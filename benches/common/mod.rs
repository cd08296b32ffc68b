//! Shared pieces of the benchmark programs: a `tcpmax serve` child process
//! read through its announce and status lines, and argument parsing.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// A `tcpmax serve` child.
#[derive(Debug)]
pub struct ServeChild {
    pub child: Child,
    pub addr: SocketAddr,
    pub shards: usize,
    pub status: Receiver<String>,
    pub stdout: Receiver<String>,
}

impl ServeChild {
    pub fn start(args: &[&str]) -> Result<ServeChild, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tcpmax"))
            .args(["serve", "--listen", "127.0.0.1:0", "--status"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawning tcpmax serve: {e}"))?;
        let stdout = lines(child.stdout.take().ok_or("no stdout")?);
        let status = lines(child.stderr.take().ok_or("no stderr")?);
        let mut addr = None;
        let shards;
        loop {
            let line = stdout.recv_timeout(Duration::from_secs(60)).map_err(|_| "serve did not start".to_string())?;
            if let Some(rest) = line.strip_prefix("listening ") {
                addr = rest.split_whitespace().next().and_then(|a| a.parse().ok());
            }
            if let Some(rest) = line.strip_prefix("shards ") {
                shards = rest.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
                break;
            }
        }
        let addr = addr.ok_or("no listening line")?;
        Ok(ServeChild { child, addr, shards, status, stdout })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The `conns N` figure of the next status line.
    pub fn next_conns(&self, limit: Duration) -> Option<u64> {
        let line = self.status.recv_timeout(limit).ok()?;
        let rest = line.split("conns ").nth(1)?;
        rest.split_whitespace().next()?.replace(',', "").parse().ok()
    }

    /// Waits until a status line shows `conns` satisfying `pred`; returns the
    /// time it was seen.
    pub fn until_conns(&self, limit: Duration, pred: impl Fn(u64) -> bool) -> Option<Instant> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(n) = self.next_conns(deadline.saturating_duration_since(Instant::now())) {
                if pred(n) {
                    return Some(Instant::now());
                }
            }
        }
        None
    }

    /// SIGINT, then waits for exit.
    pub fn stop(mut self) -> Result<(), String> {
        let pid = self.pid().to_string();
        Command::new("kill").args(["-INT", &pid]).status().map_err(|e| e.to_string())?;
        self.child.wait().map_err(|e| e.to_string())?;
        Ok(())
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[path = "../../tests/common/mod.rs"]
mod tests_common;

/// Lines of a child's output, on a channel (shared with the tests).
pub use tests_common::lines;

/// `--name value` from the command line (cargo bench adds `--bench`, which
/// is ignored).
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}
