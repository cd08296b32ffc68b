//! Shared pieces of the integration tests: a `tcpmax serve` child read
//! through its announce lines (stdout) and status lines (stderr), and JSON
//! schema validation.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const LIMIT: Duration = Duration::from_secs(30);

/// Says why a test skips. Under `CI=true` a skip is a failure instead:
/// `.ci/run` installs every peer and tool the tests use, so a skip there
/// means a missing install step, not a machine without the peer.
pub fn skip(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("this test would skip, which CI does not allow: {why}");
    }
    eprintln!("skipped: {why}");
}

/// A peer process (nginx, mosquitto, openssl, Python), killed when dropped.
pub struct Peer(pub Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Peer {
    /// Starts `cmd` (output discarded) and waits until it listens on
    /// 127.0.0.1:`port`.
    pub fn listening(cmd: &mut Command, port: u16) -> (Peer, SocketAddr) {
        let mut peer = Peer(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_listening(addr, &mut peer);
        (peer, addr)
    }
}

/// Waits until `addr` accepts TCP connections.
pub fn wait_listening(addr: SocketAddr, peer: &mut Peer) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(peer.0.try_wait().unwrap().is_none(), "the peer exited before listening");
        assert!(Instant::now() < deadline, "{addr} never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A free loopback port (bound then released: the peer binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// True when `cmd args` runs and succeeds.
pub fn runs(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

pub struct Serve {
    pub child: Child,
    pub addrs: Vec<SocketAddr>,
    pub addr: SocketAddr,
    pub status: Receiver<String>,
    pub stdout_rest: Receiver<String>,
    /// The announce lines on stdout, up to `shards`.
    pub announce: Vec<String>,
}

impl Serve {
    /// `serve --status` on a free loopback port with two pinned shards,
    /// unless `extra` says otherwise.
    pub fn start(extra: &[&str]) -> Serve {
        let pin: &[&str] = if extra.contains(&"--shards") { &[] } else { &["--shards", "2"] };
        Serve::spawn(&[pin, extra].concat())
    }

    /// `serve --status` on a free loopback port with its own shard sizing:
    /// elastic, as a user runs it.
    pub fn start_elastic(extra: &[&str]) -> Serve {
        Serve::spawn(extra)
    }

    fn spawn(extra: &[&str]) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tcpmax"))
            .args(["serve", "--status"])
            .args(if extra.contains(&"--listen") { &[][..] } else { &["--listen", "127.0.0.1:0"][..] })
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tcpmax serve");
        let stdout = lines(child.stdout.take().unwrap());
        let status = lines(child.stderr.take().unwrap());
        let (mut addrs, mut announce) = (Vec::new(), Vec::new());
        loop {
            let line = stdout.recv_timeout(LIMIT).expect("serve announces itself");
            announce.push(line.clone());
            if let Some(rest) = line.strip_prefix("listening ") {
                addrs.push(rest.split_whitespace().next().unwrap().parse().unwrap());
            }
            if line.starts_with("shards ") {
                break;
            }
        }
        let addr = *addrs.first().expect("a listening line");
        Serve { child, addrs, addr, status, stdout_rest: stdout, announce }
    }

    /// The PEM `serve --tls self-signed` wrote for clients (its announce).
    pub fn self_signed_pem(&self) -> std::path::PathBuf {
        let line = self.announce.iter().find_map(|l| l.strip_prefix("tls self-signed certificate "));
        line.expect("a `tls self-signed certificate PATH` line").into()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a status line for which `pred` holds; returns it.
    pub fn until(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.until_within(what, LIMIT, pred)
    }

    /// [`Serve::until`] with a bound of its own.
    pub fn until_within(&self, what: &str, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.status.recv_timeout(left).unwrap_or_else(|_| panic!("no status line with {what}"));
            if pred(&line) {
                return line;
            }
        }
    }

    pub fn until_conns(&self, n: u64) -> String {
        let want = format!("conns {} |", group(n));
        self.until(&want, |l| l.contains(&want))
    }

    /// Sends `signal` and waits at most `limit` for the process to end:
    /// the end of its stdout (closed when it exits) is the event. Returns
    /// the time from the signal to that end, the exit status and the rest of
    /// stdout; panics past `limit`.
    pub fn stop_within(&mut self, signal: &str, limit: Duration) -> Stopped {
        let sent = Instant::now();
        kill(signal, self.pid());
        let mut stdout = String::new();
        loop {
            let left = (sent + limit).saturating_duration_since(Instant::now());
            match self.stdout_rest.recv_timeout(left) {
                Ok(l) => {
                    stdout.push_str(&l);
                    stdout.push('\n');
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("serve still running {limit:?} after kill {signal}; stdout so far:\n{stdout}")
                }
            }
        }
        let took = sent.elapsed();
        let status = self.child.wait().unwrap();
        Stopped { took, status, stdout }
    }

    pub fn stop(mut self, signal: &str) -> (std::process::ExitStatus, String) {
        kill(signal, self.pid());
        let status = self.child.wait().unwrap();
        let mut out = String::new();
        while let Ok(l) = self.stdout_rest.recv_timeout(Duration::from_secs(5)) {
            out.push_str(&l);
            out.push('\n');
        }
        (status, out)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a process ended after a signal.
#[derive(Debug)]
pub struct Stopped {
    /// From sending the signal to the end of the process's stdout.
    pub took: Duration,
    pub status: std::process::ExitStatus,
    /// What it printed to stdout after start-up.
    pub stdout: String,
}

/// `kill SIGNAL PID`.
pub fn kill(signal: &str, pid: u32) {
    let ok = Command::new("kill").args([signal, &pid.to_string()]).status().unwrap().success();
    assert!(ok, "kill {signal} {pid}");
}

/// Descriptors open in every fd table of a process (each task's table:
/// shards have their own).
pub fn fds_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_dir(t.ok()?.path().join("fd")).ok())
        .map(|d| d.count())
        .sum()
}

pub fn lines(r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

pub fn group(n: u64) -> String {
    tcpmax::units::group(n)
}

/// Validates `report` against `schemas/NAME.schema.json`.
pub fn validate(name: &str, report: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("schemas/{name}.schema.json"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> =
        validator.iter_errors(report).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

/// Runs the binary with `args` to the end.
pub fn tcpmax(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tcpmax")).args(args).output().unwrap()
}
