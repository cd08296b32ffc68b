//! Shared pieces of the benchmark programs: a `tcpmax serve` child process
//! read through its announce and status lines, and argument parsing.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};
use tcpmax::machine;

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

/// Builds and runs the C baseline (`benches/c/kernel_hold.c`) to `count`;
/// `watch` also registers every accepted socket in epoll. Its JSON output.
pub fn kernel_baseline(count: u64, watch: bool) -> Result<Value, String> {
    let exe = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/kernel_hold");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/c/kernel_hold.c");
    let built = Command::new("cc")
        .args(["-O2", "-Wall", "-Wextra", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .map_err(|e| format!("cc: {e}"))?;
    if !built.success() {
        return Err("building benches/c/kernel_hold.c failed".into());
    }
    eprintln!("kernel baseline (watch: {watch}): {count} connections");
    let mut cmd = Command::new(&exe);
    cmd.arg(count.to_string());
    if watch {
        cmd.arg("--watch");
    }
    let out = cmd.output().map_err(|e| format!("kernel_hold: {e}"))?;
    if !out.status.success() {
        return Err(format!("kernel_hold failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("kernel_hold output: {e}"))
}

/// `tcpmax serve` and `tcpmax load` (1% pings, held for `hold`) to `count`:
/// the load report and the server's shards and memory at the peak.
pub fn tcpmax_run(count: u64, hold: &str) -> Result<Value, String> {
    eprintln!("tcpmax: {count} connections");
    let server = ServeChild::start(&["--mode", "echo", "--max-conns", &count.to_string()])?;
    server.next_conns(Duration::from_secs(10)).ok_or("no status line")?;
    let report = std::env::temp_dir().join(format!("tcpmax-ramp-{}.json", std::process::id()));
    let mut load = Command::new(env!("CARGO_BIN_EXE_tcpmax"))
        .args(["load", &server.addr.to_string(), "-c", &count.to_string(), "--hold", hold, "--ping-rate", "1%"])
        .arg("--json")
        .arg(&report)
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("tcpmax load: {e}"))?;
    // While the load holds, the server's memory is read at its peak.
    server.until_conns(Duration::from_secs(600), |n| n >= count).ok_or("the server never held the count")?;
    let server_rss = machine::rss_anon(server.pid()).unwrap_or(0);
    let status = load.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("tcpmax load exited with {status}"));
    }
    let shards = server.shards;
    server.stop()?;
    let text = std::fs::read_to_string(&report).map_err(|e| format!("reading the load report: {e}"))?;
    let _ = std::fs::remove_file(&report);
    let load: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let held = load["peak_established"].as_u64().unwrap_or(0).max(1);
    Ok(json!({
        "load": load,
        "server_shards": shards,
        "server_rss_anon_bytes": server_rss,
        "server_rss_anon_bytes_per_connection": server_rss as f64 / held as f64,
    }))
}
