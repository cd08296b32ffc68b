//! Side by side in one run: `tcpmax serve` and nginx, the server a user
//! would otherwise pick, each holding the same number of idle connections
//! under the same fd cap, both driven by `tcpmax load`. Writes JSON with each
//! server's accept rate and user memory (anonymous RSS of all its processes)
//! per connection, and the machine.
//!
//! nginx (Debian's `nginx-light`) runs with enough worker processes to hold
//! the count at 90% of 20,000 descriptors each, `reuseport` listeners, and
//! header/keep-alive timeouts of an hour so idle connections stay open.
//!
//! `cargo bench --bench servers -- --count 500k --nginx /usr/sbin/nginx --json docs/bench/servers_500k.json`

#[path = "common/mod.rs"]
mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::ServeChild;
use serde_json::{Value, json};
use tcpmax::machine::{self, Machine};

/// Anonymous RSS of `pid` and all its children.
fn rss_tree(pid: u32) -> u64 {
    let mut total = machine::rss_anon(pid).unwrap_or(0);
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            // The parent pid is the 2nd field after the ")" that ends the name.
            let ppid = stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)).and_then(|p| p.parse().ok());
            if ppid == Some(pid) {
                total += machine::rss_anon(child).unwrap_or(0);
            }
        }
    }
    total
}

/// Runs `tcpmax load` to `addr`; calls `at_peak` once everything is held.
fn drive(addr: SocketAddr, count: u64, at_peak: &mut dyn FnMut()) -> Result<Value, String> {
    let report = std::env::temp_dir().join(format!("tcpmax-servers-{}-{}.json", std::process::id(), addr.port()));
    let mut load = Command::new(env!("CARGO_BIN_EXE_tcpmax"))
        .args(["load", &addr.to_string(), "-c", &count.to_string(), "--hold", "3s", "--json"])
        .arg(&report)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("tcpmax load: {e}"))?;
    let progress = common::lines(load.stderr.take().ok_or("no stderr")?);
    let want = format!("established {} /", tcpmax::units::group(count));
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        match progress.recv_timeout(Duration::from_secs(5)) {
            Ok(line) if line.contains(&want) => {
                at_peak();
                break;
            }
            Ok(_) => {}
            Err(_) if matches!(load.try_wait(), Ok(Some(_))) => break,
            Err(_) => {}
        }
    }
    let status = load.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("tcpmax load exited with {status}"));
    }
    let text = std::fs::read_to_string(&report).map_err(|e| format!("load report: {e}"))?;
    let _ = std::fs::remove_file(&report);
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

fn summary(name: &str, processes: usize, idle_rss: u64, peak_rss: u64, load: &Value) -> Value {
    let held = load["peak_established"].as_u64().unwrap_or(0);
    let per = |b: u64| if held == 0 { 0.0 } else { b as f64 / held as f64 };
    json!({
        "server": name,
        "processes_or_shards": processes,
        "held": held,
        "failed": load["failed"],
        "accept_rate_per_s": load["connect_rate_per_s"],
        "ramp_seconds": load["ramp_seconds"],
        "rss_anon_idle_bytes": idle_rss,
        "rss_anon_peak_bytes": peak_rss,
        "user_bytes_per_connection": per(peak_rss),
        "user_growth_bytes_per_connection": per(peak_rss.saturating_sub(idle_rss)),
        "errors": load["errors"],
    })
}

fn run_tcpmax(count: u64) -> Result<Value, String> {
    eprintln!("tcpmax serve: {count} idle connections");
    let server = ServeChild::start(&["--mode", "silent", "--max-conns", &count.to_string()])?;
    server.next_conns(Duration::from_secs(10)).ok_or("no status line")?;
    let idle = rss_tree(server.pid());
    let mut peak = 0;
    let pid = server.pid();
    let load = drive(server.addr, count, &mut || peak = rss_tree(pid))?;
    let shards = server.shards;
    server.stop()?;
    Ok(summary("tcpmax serve", shards, idle, peak, &load))
}

struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Workers die with their master's QUIT; make sure none is left.
        let _ = Command::new("pkill").args(["-f", &self.dir.display().to_string()]).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run_nginx(nginx: &Path, count: u64) -> Result<Value, String> {
    let workers = count.div_ceil(17_900).max(2);
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let dir = std::env::temp_dir().join(format!("tcpmax-nginx-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("logs")).map_err(|e| e.to_string())?;
    let conf = format!(
        "worker_processes {workers};\nworker_rlimit_nofile 20000;\ndaemon off;\nmaster_process on;\n\
         pid {d}/nginx.pid;\nerror_log {d}/logs/error.log warn;\n\
         events {{ worker_connections 19900; multi_accept on; use epoll; }}\n\
         http {{\n  access_log off;\n  client_header_timeout 1h;\n  keepalive_timeout 1h;\n\
         \n  server {{ listen 127.0.0.1:{port} reuseport backlog=4096; location / {{ return 200 \"ok\\n\"; }} }}\n}}\n",
        d = dir.display()
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
    eprintln!("nginx: {count} idle connections over {workers} worker processes");
    let child = Command::new(nginx)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting nginx: {e}"))?;
    let guard = Nginx { child, dir };
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return Err("nginx did not start listening".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = guard.child.id();
    let idle = rss_tree(pid);
    let mut peak = 0;
    let load = drive(addr, count, &mut || peak = rss_tree(pid))?;
    drop(guard);
    Ok(summary("nginx", workers as usize, idle, peak, &load))
}

fn main() -> Result<(), String> {
    let count = common::arg("--count").map_or(Ok(500_000), |c| tcpmax::units::parse_count(&c))?;
    let out = common::arg("--json").unwrap_or_else(|| "servers.json".into());
    let nginx = PathBuf::from(common::arg("--nginx").unwrap_or_else(|| "/usr/sbin/nginx".into()));
    let version = Command::new(&nginx)
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
        .map_err(|e| format!("{}: {e} (install Debian's nginx-light)", nginx.display()))?;
    let ours = run_tcpmax(count)?;
    let theirs = run_nginx(&nginx, count)?;
    let report = json!({
        "benchmark": "servers",
        "count": count,
        "nginx_version": version,
        "tcpmax": ours,
        "nginx": theirs,
        "machine": Machine::read(),
    });
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&out, text.clone() + "\n").map_err(|e| format!("writing {out}: {e}"))?;
    println!("{text}");
    Ok(())
}
