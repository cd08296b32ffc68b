//! RLIMIT_NOFILE caps one fd table, not the machine. The limit is per
//! process, so a child (this binary, re-executed with a hidden flag) lowers
//! its own limit, meets EMFILE, then holds more connections than the limit
//! on the engine's shards, and reports in one JSON line.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Ctx;
use super::kit::{self, errno};
use super::report::Outcome;
use crate::engine::client::{Client, ClientConfig, CloseMode, cross};
use crate::engine::sizing;
use crate::serve::{Mode, Server, ServerConfig};
use crate::sys::net::{self, Kind};
use crate::sys::process::{self, Resource, Rlimit};
use crate::units::group;

/// The limit the child lowers itself to.
pub const LIMIT: u64 = 256;
/// Connections the child holds, as a multiple of its limit.
const TIMES: u64 = 4;
/// The longest the child may run before it is killed.
const CHILD_LIMIT: Duration = Duration::from_secs(30);
/// The longest the child's ramp may take.
const RAMP_LIMIT: Duration = Duration::from_secs(15);

/// What the child found, printed as one JSON line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChildReport {
    /// The soft and hard limit it set.
    pub nofile: u64,
    /// Descriptors below the limit already open before the sockets.
    pub already_open: u64,
    /// Sockets opened before the first failure.
    pub opened: u64,
    /// The errno of that failure (`none` if nothing failed).
    pub errno: String,
    /// Connections the engine tried to hold.
    pub target: u64,
    /// Established on the client side.
    pub client_established: u64,
    /// Open on the server side.
    pub server_open: u64,
    /// Client shards (fd tables).
    pub client_shards: usize,
    /// Server shards (fd tables).
    pub server_shards: usize,
    /// Client connect failures: count by errno name.
    pub client_errors: BTreeMap<String, u64>,
}

/// Descriptors below `limit` open in this process now.
fn open_below(limit: u64) -> std::io::Result<u64> {
    let dir = std::fs::read_dir("/proc/self/fd")?;
    let fds: Vec<u64> = dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    // The directory being read is itself one of them.
    Ok(fds.iter().filter(|&&fd| fd < limit).count().saturating_sub(1) as u64)
}

/// The child: `tcpmax prove --child fd-limit N`.
pub fn child(n: u64) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(n > sizing::HEADROOM_FDS, "the fd-limit child needs N above {}", sizing::HEADROOM_FDS);
    process::setrlimit(Resource::NoFile, Rlimit { soft: n, hard: n })?;
    let already_open = open_below(n)?;
    let mut fds = Vec::new();
    let mut failure = "none".to_string();
    let any = kit::v4(Ipv4Addr::LOCALHOST, 0);
    for _ in 0..n + 16 {
        match net::socket(&any, Kind::Tcp) {
            Ok(fd) => fds.push(fd),
            Err(e) => {
                failure = errno(&e).to_string();
                break;
            }
        }
    }
    let opened = fds.len() as u64;
    for fd in fds {
        net::close(fd);
    }
    let target = TIMES * n;
    let cores = sizing::cores();
    // The server's shards get half-full tables: the SO_REUSEPORT hash never
    // pushes one of them to EMFILE.
    let mut server = Server::start(&ServerConfig {
        listen: vec![kit::v4(Ipv4Addr::LOCALHOST, 0)],
        mode: Mode::Silent,
        udp: false,
        max_conns: None,
        max_memory: None,
        shards: sizing::plan(2 * target, n, cores).shards,
        elastic: false,
        backlog: 4096,
    })?;
    let mut client = Client::start(&ClientConfig {
        pairs: cross(&[IpAddr::V4(Ipv4Addr::new(127, 0, 3, 1))], server.local_addrs()),
        count: target,
        shards: sizing::plan(target, n, cores).shards,
        elastic: false,
        in_flight: 256,
        rate: None,
        connect_timeout: Duration::from_secs(5),
        ping_rate: 0.0,
        message: None,
        first_message: None,
        reconnect: false,
        close: CloseMode::Rst,
    })?;
    let t = client.wait_settled(RAMP_LIMIT);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut open = server.poll().open;
    while open < t.opened && Instant::now() < deadline {
        open = server.poll_wait(Duration::from_millis(100)).open;
    }
    let report = ChildReport {
        nofile: n,
        already_open,
        opened,
        errno: failure,
        target,
        client_established: t.open,
        server_open: open,
        client_shards: client.shards(),
        server_shards: server.shards(),
        client_errors: t.errors.ranked().into_iter().map(|(name, n)| (name.to_string(), n)).collect(),
    };
    drop(client);
    drop(server);
    println!("{}", serde_json::to_string(&report)?);
    Ok(ExitCode::SUCCESS)
}

/// A child process killed and reaped when dropped, whatever happened.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Runs the child to its end (killed after [`CHILD_LIMIT`]); its stdout.
fn run_child(n: u64) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let child = Command::new(exe)
        .args(["prove", "--child", "fd-limit", &n.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawning the child: {e}"))?;
    let mut child = Reaped(child);
    let deadline = Instant::now() + CHILD_LIMIT;
    let status = loop {
        match child.0.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                return Err(format!("the child ran past {}s and was killed", CHILD_LIMIT.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for the child: {e}")),
        }
    };
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut s) = child.0.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.0.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    if !status.success() {
        return Err(format!("the child failed ({status}): {}", err.trim()));
    }
    Ok(out)
}

/// fd-limit: EMFILE at the N-th descriptor, and the engine holds more than N
/// connections anyway.
pub fn fd_limit(_ctx: &Ctx) -> Outcome {
    let out = match run_child(LIMIT) {
        Ok(out) => out,
        Err(e) => return Outcome::skipped(e),
    };
    let Some(r) = out.lines().rev().find_map(|l| serde_json::from_str::<ChildReport>(l).ok()) else {
        return Outcome::skipped(format!("the child printed no report: {:?}", out.trim()));
    };
    let free = r.nofile.saturating_sub(r.already_open);
    let emfile = r.errno == "EMFILE" && r.opened == free;
    let held = r.client_established >= r.target && r.server_open >= r.target && r.target > r.nofile;
    let summary = format!(
        "RLIMIT_NOFILE {}: {} sockets + {} open descriptors, then {}; shards held {} connections ({} client + {} server fd tables)",
        r.nofile,
        group(r.opened),
        r.already_open,
        r.errno,
        group(r.client_established.min(r.server_open)),
        r.client_shards,
        r.server_shards
    );
    let evidence = json!({
        "nofile": r.nofile,
        "already_open": r.already_open,
        "opened_until_failure": r.opened,
        "expected_opened": free,
        "errno": r.errno,
        "target": r.target,
        "client_established": r.client_established,
        "server_open": r.server_open,
        "client_shards": r.client_shards,
        "server_shards": r.server_shards,
        "client_errors": r.client_errors,
    });
    Outcome::decide(emfile && held, evidence, summary)
}
