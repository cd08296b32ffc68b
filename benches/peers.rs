//! tcpmax beside independent peers, in one run:
//!
//! - TLS handshake rate: `tcpmax serve --tls` and nginx terminating TLS,
//!   with the same certificate (ECDSA P-256) and suite (TLS 1.3,
//!   TLS_AES_256_GCM_SHA384, X25519), both driven by `tcpmax load --tls` at
//!   the same count; the ratio of the rates.
//! - `tcpmax load --mqtt` against mosquitto (Debian's package) until the
//!   broker stops taking sessions: held sessions, PINGREQ round trips, and
//!   what stopped it, read from the broker's own descriptor table.
//!
//! `cargo bench --bench peers -- --count 20k --mqtt-count 25k --json docs/bench/peers.json`

#[path = "common/mod.rs"]
mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::ServeChild;
use serde_json::{Value, json};
use tcpmax::machine::Machine;

/// A child process killed and reaped when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).map_err(|e| e.to_string())
}

fn wait_listening(addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return Err(format!("nothing listens on {addr}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Runs `tcpmax load ARGS --json F` to its end (exit 0 or 1: the report is
/// written either way) and returns the report.
fn load(args: &[&str]) -> Result<Value, String> {
    let report = std::env::temp_dir().join(format!("tcpmax-peers-{}-{}.json", std::process::id(), args.len()));
    let status = Command::new(env!("CARGO_BIN_EXE_tcpmax"))
        .arg("load")
        .args(args)
        .arg("--json")
        .arg(&report)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("tcpmax load: {e}"))?;
    if !matches!(status.code(), Some(0 | 1)) {
        return Err(format!("tcpmax load exited with {status}"));
    }
    let text = std::fs::read_to_string(&report).map_err(|e| format!("load report: {e}"))?;
    let _ = std::fs::remove_file(&report);
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

fn handshakes(name: &str, r: &Value) -> Value {
    json!({
        "server": name,
        "held": r["held_at_end"],
        "failed": r["failed"],
        "handshake_rate_per_s": r["handshake_rate_per_s"],
        "handshake_latency_us": r["handshake_latency_us"],
        "connect_latency_us": r["connect_latency_us"],
        "ramp_seconds": r["ramp_seconds"],
        "errors": r["errors"],
    })
}

fn tls_side_by_side(nginx: &Path, count: u64, dir: &Path) -> Result<Value, String> {
    let (_, _, cert_pem, key_pem) = tcpmax::proto::tls::self_signed().map_err(|e| e.to_string())?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, cert_pem).map_err(|e| e.to_string())?;
    std::fs::write(&key, key_pem).map_err(|e| e.to_string())?;
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let n = count.to_string();
    let drive = |addr: SocketAddr| {
        load(&[&addr.to_string(), "-c", &n, "--hold", "2s", "--tls", "--ca", &cert_s, "--sni", "localhost"])
    };

    eprintln!("tcpmax serve --tls: {count} handshakes");
    let server = ServeChild::start(&["--mode", "silent", "--tls", &format!("{cert_s},{key_s}")])?;
    let ours = drive(server.addr)?;
    server.stop()?;

    let workers = count.div_ceil(17_900).max(2);
    let port = free_port()?;
    std::fs::create_dir_all(dir.join("logs")).map_err(|e| e.to_string())?;
    let conf = format!(
        "worker_processes {workers};\nworker_rlimit_nofile 20000;\ndaemon off;\nmaster_process on;\n\
         pid {d}/nginx.pid;\nerror_log {d}/logs/error.log warn;\n\
         events {{ worker_connections 19900; multi_accept on; use epoll; }}\n\
         http {{\n  access_log off;\n  client_header_timeout 1h;\n  keepalive_timeout 1h;\n\
         ssl_protocols TLSv1.3;\n  ssl_ecdh_curve X25519;\n  ssl_session_tickets off;\n\
         ssl_conf_command Ciphersuites TLS_AES_256_GCM_SHA384;\n\
         server {{ listen 127.0.0.1:{port} ssl reuseport backlog=4096;\n\
         ssl_certificate {cert_s};\n    ssl_certificate_key {key_s};\n\
         location / {{ return 200 \"ok\\n\"; }} }}\n}}\n",
        d = dir.display()
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
    eprintln!("nginx ({workers} workers): {count} handshakes");
    let child = Command::new(nginx)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting nginx: {e}"))?;
    let guard = Guard(child);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_listening(addr)?;
    let theirs = drive(addr)?;
    // SIGQUIT lets the master take its workers down with it; it is killed
    // only if it has not exited after 30 s.
    let mut guard = guard;
    let _ = Command::new("kill").args(["-QUIT", &guard.0.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while matches!(guard.0.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(guard);
    let rate = |r: &Value| r["handshake_rate_per_s"].as_f64().unwrap_or(0.0);
    let ratio = if rate(&theirs) > 0.0 { rate(&ours) / rate(&theirs) } else { 0.0 };
    Ok(json!({
        "count": count,
        "certificate": "ECDSA P-256, self-signed",
        "suite": "TLS 1.3, TLS_AES_256_GCM_SHA384, X25519, no session tickets",
        "nginx_workers": workers,
        "tcpmax": handshakes("tcpmax serve --tls", &ours),
        "nginx": handshakes("nginx", &theirs),
        "tcpmax_over_nginx": ratio,
    }))
}

/// `Max open files` of a process: (soft, hard).
fn fd_limit(pid: u32) -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut nums = line.split_whitespace().filter_map(|w| w.parse().ok());
    Some((nums.next()?, nums.next()?))
}

fn fds_open(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

fn mosquitto_to_its_limit(mosquitto: &Path, count: u64, dir: &Path) -> Result<Value, String> {
    let port = free_port()?;
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nmax_connections -1\npersistence false\nlog_type error\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let child = Command::new(mosquitto)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting mosquitto: {e}"))?;
    let guard = Guard(child);
    let pid = guard.0.id();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_listening(addr)?;
    eprintln!("tcpmax load --mqtt: {count} sessions against mosquitto");
    // Sample the broker's descriptors while the load holds.
    let sampler = std::thread::spawn(move || {
        let mut most = 0;
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline && std::fs::metadata(format!("/proc/{pid}")).is_ok() {
            most = most.max(fds_open(pid));
            std::thread::sleep(Duration::from_millis(200));
        }
        most
    });
    let n = count.to_string();
    let r = load(&[
        &addr.to_string(),
        "-c",
        &n,
        "--hold",
        "10s",
        "--ping-rate",
        "1%",
        "--mqtt",
        "--keepalive",
        "60s",
        "--connect-timeout",
        "3s",
    ])?;
    let limit = fd_limit(pid);
    let most_fds = fds_open(pid);
    drop(guard);
    let most_fds = sampler.join().unwrap_or(0).max(most_fds);
    let held = r["peak_established"].as_u64().unwrap_or(0);
    let soft = limit.map_or(0, |l| l.0);
    let stopped_by = if held < count && soft > 0 && most_fds + 16 >= soft {
        format!(
            "mosquitto's descriptor table: {most_fds} of its {soft} descriptors in use (one process, RLIMIT_NOFILE {soft}); the sessions past it were reset or closed before CONNACK (see errors)"
        )
    } else if held < count {
        "something other than the broker's descriptor table (see errors)".to_string()
    } else {
        "nothing: every session was held".to_string()
    };
    Ok(json!({
        "asked": count,
        "held": held,
        "held_at_end": r["held_at_end"],
        "failed": r["failed"],
        "broker_fd_limit": soft,
        "broker_fds_at_peak": most_fds,
        "stopped_by": stopped_by,
        "pingreq_rtt_us": r["ping_rtt_us"],
        "handshake_latency_us": r["handshake_latency_us"],
        "handshake_rate_per_s": r["handshake_rate_per_s"],
        "errors": r["errors"],
    }))
}

fn version(bin: &Path, flag: &str) -> String {
    Command::new(bin).arg(flag).output().map_or_else(
        |_| "unknown".into(),
        |o| {
            let text = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&text).lines().next().unwrap_or("").trim().to_string()
        },
    )
}

fn main() -> Result<(), String> {
    let count = common::arg("--count").map_or(Ok(20_000), |c| tcpmax::units::parse_count(&c))?;
    let mqtt_count = common::arg("--mqtt-count").map_or(Ok(25_000), |c| tcpmax::units::parse_count(&c))?;
    let out = common::arg("--json").unwrap_or_else(|| "peers.json".into());
    let nginx = PathBuf::from(common::arg("--nginx").unwrap_or_else(|| "/usr/sbin/nginx".into()));
    let mosquitto = PathBuf::from(common::arg("--mosquitto").unwrap_or_else(|| "/usr/sbin/mosquitto".into()));
    for (bin, pkg) in [(&nginx, "nginx-light"), (&mosquitto, "mosquitto")] {
        if !bin.exists() {
            return Err(format!("{} is missing: apt-get install {pkg}", bin.display()));
        }
    }
    let dir = std::env::temp_dir().join(format!("tcpmax-peers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let tls = tls_side_by_side(&nginx, count, &dir)?;
    let mqtt = mosquitto_to_its_limit(&mosquitto, mqtt_count, &dir)?;
    let _ = std::fs::remove_dir_all(&dir);
    let report = json!({
        "benchmark": "peers",
        "nginx_version": version(&nginx, "-v"),
        "mosquitto_version": version(&mosquitto, "-h"),
        "tls_handshakes": tls,
        "mqtt_broker": mqtt,
        "machine": Machine::read(),
    });
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&out, text.clone() + "\n").map_err(|e| format!("writing {out}: {e}"))?;
    println!("{text}");
    Ok(())
}
