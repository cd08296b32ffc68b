//! Bad command lines through the binary. The rule each one is held to:
//! exit code 2; stderr is exactly one line, `tcpmax: error: ` and then the
//! cause (a fragment of which every case names); no panic; nothing on
//! stdout; the process has ended within 10 s (it is killed and the case
//! fails otherwise); and no connection was ever attempted (the load targets
//! are a listener of this test that must have nothing to accept).
//!
//! Also here: what bad input used to break, working when the input is good:
//! a host name as a load target and a listen address, and `serve --json -`
//! keeping stdout for the JSON alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{Serve, validate};
use serde_json::Value;

/// The longest any of these runs may take.
const LIMIT: Duration = Duration::from_secs(10);

/// Every bad command line and a fragment of the cause it must name.
/// `{addr}` is a listener of the test: a refused command must never
/// connect to it (nor bind it).
const CASES: &[(&str, &str)] = &[
    // Shards beyond what a run can use.
    ("serve --listen {addr} --shards 100000", "--shards 100,000 is more than this run can use: at most"),
    ("load -c 100 --shards 100000 {addr}", "at most 100 (no more shards than the 100 connections"),
    ("load --shards 0 {addr}", "--shards: `0` is too small"),
    // Zero, negative, absurd and non-numeric counts.
    ("serve --listen {addr} --max-conns 100000000000", "--max-conns: `100000000000` is beyond what any machine holds"),
    ("serve --listen {addr} --max-conns 0", "--max-conns: `0` is too small: counts are positive"),
    ("load --rate 0 {addr}", "--rate: `0` connects per second would never connect"),
    ("load -c 0 {addr}", "--connections: `0` is too small: counts are positive"),
    ("load -c -5 {addr}", "--connections: `-5` is not a count: counts are positive (examples: 20000, 10k, 1M)"),
    ("load --rate -1 {addr}", "--rate: `-1` is not a count: counts are positive"),
    ("load -c 100000000000000 {addr}", "counts stop at 10G"),
    ("load --in-flight 0 {addr}", "--in-flight: `0` is too small"),
    ("load --connect-timeout 0s {addr}", "--connect-timeout: `0s` would time out every connect"),
    ("load -c abc {addr}", "--connections: `abc` is not a count"),
    ("load -c 100k --source 127.0.0.5 {addr}", "; fix: add"),
    ("bench -c abc", "--connections: `abc` is not a count"),
    ("bench -c 0", "--connections: `0` is too small"),
    ("bench -c -5", "--connections: `-5` is not a count"),
    // Addresses and ports.
    ("load 127.0.0.1:0", "port 0 is not a destination"),
    ("load 300.1.1.1:80", "`300.1.1.1` is not an IPv4 address"),
    ("load 127.0.0.1:99999", "`99999` is not a port: ports are 1-65535"),
    ("load 127.0.0.1", "has no port"),
    ("load ::1:80", "in brackets"),
    ("serve --listen 300.1.1.1:80", "`300.1.1.1` is not an IPv4 address"),
    ("serve --listen 127.0.0.1:99999", "`99999` is not a port: ports are 0-65535"),
    // Port ranges: reversed or empty (the sysctl form `LO HI` is in tests/calc.rs).
    ("calc --port-range 60999-32768", "port range 60999-32768 is reversed: LO must not be above HI"),
    ("calc --port-range=", "the port range is empty: give LO-HI or `LO HI` as sysctl prints it"),
    ("calc --port-range 100-", "`100-` is not a port range"),
    // Unknown flags and subcommands, missing arguments.
    ("load --bogus", "unexpected argument '--bogus' found"),
    ("load", "the following required arguments were not provided"),
    ("lod", "unrecognized subcommand 'lod'"),
    // Report destinations that cannot be written, found before any work.
    ("load --json /nonexistent/dir/x.json {addr}", "--json /nonexistent/dir/x.json: cannot write there"),
    ("serve --listen {addr} --json /nonexistent/dir/x.json", "--json /nonexistent/dir/x.json: cannot write there"),
    ("bench -c 10 --json /nonexistent/dir/x.json", "--json /nonexistent/dir/x.json: cannot write there"),
    ("doctor --json /nonexistent/dir/x.json", "--json /nonexistent/dir/x.json: cannot write there"),
    ("calc --json /nonexistent/dir/x.json", "--json /nonexistent/dir/x.json: cannot write there"),
    ("prove --json /nonexistent/dir/x.json", "--json /nonexistent/dir/x.json: cannot write there"),
    // A doctor root with nothing to read (#18: it printed a table of unknowns).
    ("doctor --root /nonexistent", "--root /nonexistent: no such directory; fix: leave --root out"),
    ("doctor --root /etc/hostname", "--root /etc/hostname: is not a directory"),
    ("doctor --root /var/empty-tcpmax-none --json -", "--root /var/empty-tcpmax-none: no such directory"),
];

/// Runs the binary to the end, or kills it after [`LIMIT`]: an error then.
fn run_bounded(args: &[String]) -> Result<Output, String> {
    let child = Command::new(env!("CARGO_BIN_EXE_tcpmax"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tcpmax");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(LIMIT) {
        Ok(out) => Ok(out.unwrap()),
        Err(_) => {
            Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
            // Reaped: nothing is left running.
            let _ = rx.recv();
            Err(format!("`tcpmax {}` still running after {LIMIT:?}: killed", args.join(" ")))
        }
    }
}

/// What is wrong with how `args` was refused, if anything.
fn check(args: &[String], cause: &str) -> Option<String> {
    let out = match run_bounded(args) {
        Ok(out) => out,
        Err(why) => return Some(why),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stderr.lines().collect();
    let mut wrong = Vec::new();
    if out.status.code() != Some(2) {
        wrong.push(format!("exit {:?}, not 2", out.status));
    }
    if stderr.contains("panicked") {
        wrong.push("a panic".into());
    }
    match lines[..] {
        [line] => match line.strip_prefix("tcpmax: error: ") {
            Some(rest) if !rest.trim().is_empty() => {}
            _ => wrong.push("stderr is not `tcpmax: error: CAUSE`".into()),
        },
        _ => wrong.push(format!("{} lines on stderr, not 1", lines.len())),
    }
    if !stderr.contains(cause) {
        wrong.push(format!("the cause `{cause}` is not named"));
    }
    if !stdout.is_empty() {
        wrong.push("output on stdout".into());
    }
    (!wrong.is_empty())
        .then(|| format!("`tcpmax {}`: {}\n  stderr: {stderr}  stdout: {stdout}", args.join(" "), wrong.join("; ")))
}

fn words(line: &str, addr: SocketAddr) -> Vec<String> {
    line.split_whitespace().map(|w| w.replace("{addr}", &addr.to_string())).collect()
}

#[test]
fn bad_command_lines_exit_2_with_one_line() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cases: Vec<(String, String)> = CASES.iter().map(|(a, c)| (a.to_string(), c.to_string())).collect();
    // A cap above the doctor's server ceiling can never be reached. Twice
    // the ceiling: the memory row moves with what the machine is doing.
    let doctor = tcpmax::doctor::diagnose(&tcpmax::procfs::ProcFs::default());
    match doctor.ceiling.server {
        Some(c) if c <= tcpmax::units::MAX_COUNT / 2 => cases.push((
            format!("serve --listen {{addr}} --max-conns {}", 2 * c),
            "the doctor predicts a server here holds, bound by".into(),
        )),
        other => eprintln!("skipping --max-conns above the server ceiling: the ceiling is {other:?}"),
    }
    let failures: Vec<String> = cases.iter().filter_map(|(args, cause)| check(&words(args, addr), cause)).collect();
    assert!(failures.is_empty(), "{} of {} cases:\n{}", failures.len(), cases.len(), failures.join("\n"));
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("a refused command line connected to the test's listener: {other:?}"),
    }
}

#[test]
fn load_resolves_localhost_and_says_so() {
    // serve listens on what localhost resolves to (port 0: a free port each).
    let srv = Serve::start(&["--listen", "localhost:0"]);
    assert!(srv.addrs.iter().all(|a| a.ip().is_loopback()), "{:?}", srv.addrs);
    let v4 = srv.addrs.iter().find(|a| a.is_ipv4()).expect("localhost resolves to 127.0.0.1");
    // --source 127.0.0.1 keeps the run on IPv4 whatever else localhost is.
    let target = format!("localhost:{}", v4.port());
    let args: Vec<String> = ["load", "-c", "20", "--hold", "0s", "--source", "127.0.0.1", &target, "--json", "-"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = run_bounded(&args).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("localhost resolved to 127.0.0.1"), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    validate("load", &report);
    assert_eq!(report["peak_established"], 20, "{report:#}");
    assert_eq!(report["targets"][0], v4.to_string());
}

#[test]
fn serve_json_to_stdout_keeps_the_human_lines_on_stderr() {
    let args: Vec<String> = ["serve", "--listen", "127.0.0.1:0", "--shards", "1", "--duration", "1s", "--json", "-"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = run_bounded(&args).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("listening 127.0.0.1:"), "{stderr}");
    assert!(stderr.contains("shards 1 "), "{stderr}");
    // stdout is the JSON and nothing else.
    let summary: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON alone ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(summary["shards"], 1);
}
