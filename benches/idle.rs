//! What a server costs when nothing happens: CPU ticks (utime + stime of
//! all its threads, from /proc/PID/stat and per thread from
//! /proc/PID/task/TID/stat), CPU nanoseconds (schedstat), context switches
//! (each one a wake-up) and threads, over a window of `--duration` (60 s),
//! side by side:
//!
//! - `tcpmax serve` idle, with no connection;
//! - the same `tcpmax serve` holding `--count` (500,000) idle connections
//!   with no heartbeats, opened by `tcpmax load` in another process and
//!   measured after the ramp; then the time it takes to stop on SIGINT
//!   while it holds them; connections established but left in the accept
//!   queues (never taken by the server) are counted;
//! - `tcpmax serve --max-conns COUNT` (shards sized up front) the same way;
//! - nginx idle (`daemon off; worker_processes auto;`), and nginx holding
//!   the same idle connections with enough worker processes for them (one
//!   worker is one fd table); then the time it takes to stop on SIGTERM
//!   (its fast shutdown) while it holds them. Closing that many sockets is
//!   the kernel's work in both servers: the two stop times side by side
//!   show what any server pays.
//!
//! The goal: `serve` idle runs at most cores + 2 threads and uses at most
//! 0.1% of one core over the window; holding the connections, the same CPU
//! figure. Only the server's processes are measured.
//!
//! `cargo bench --bench idle -- --duration 60s --count 500k --json docs/bench/idle.json`
//! (`--nginx PATH`, default /usr/sbin/nginx; skipped with a note if absent.)

#[path = "common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tcpmax::machine::Machine;
use tcpmax::units::group;

/// Time given to a process after start-up (or after a ramp) before the
/// window opens, so that the window holds only the state at rest.
const SETTLE: Duration = Duration::from_secs(3);

/// One thread's counters at one moment.
#[derive(Debug, Clone)]
struct Thread {
    pid: u32,
    name: String,
    ticks: u64,
    cpu_ns: u64,
    switches: u64,
}

/// A set of processes' counters at one moment.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    /// utime + stime of each process, dead threads included.
    ticks: u64,
    threads: HashMap<u32, Thread>,
}

/// utime + stime (fields 14 and 15) of a /proc stat line.
fn stat_ticks(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat[open + 1..close].to_string();
    let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

fn switches(status: &str) -> u64 {
    status
        .lines()
        .filter(|l| l.starts_with("voluntary_ctxt_switches:") || l.starts_with("nonvoluntary_ctxt_switches:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

fn snapshot(pids: &[u32]) -> Snapshot {
    let mut s = Snapshot::default();
    for &pid in pids {
        let read = |p: String| std::fs::read_to_string(p).unwrap_or_default();
        if let Some((_, t)) = stat_ticks(&read(format!("/proc/{pid}/stat"))) {
            s.ticks += t;
        }
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for t in tasks.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let dir = t.path();
            let Some((name, ticks)) = stat_ticks(&read(dir.join("stat").display().to_string())) else { continue };
            let cpu_ns = read(dir.join("schedstat").display().to_string())
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let switches = switches(&read(dir.join("status").display().to_string()));
            s.threads.insert(tid, Thread { pid, name, ticks, cpu_ns, switches });
        }
    }
    s
}

fn thread_count(pids: &[u32]) -> usize {
    pids.iter().filter_map(|p| std::fs::read_dir(format!("/proc/{p}/task")).ok()).map(|d| d.count()).sum()
}

/// USER_HZ: the unit of utime and stime.
fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// Measures `pids` over `window`; `name` and `command` describe the run.
fn measure(name: &str, command: &str, pids: &[u32], window: Duration, extra: Value) -> Value {
    eprintln!("measuring {name} for {window:?}");
    let hz = clock_ticks();
    let threads_start = thread_count(pids);
    let before = snapshot(pids);
    let started = Instant::now();
    let mut threads_max = threads_start;
    while started.elapsed() < window {
        std::thread::sleep(Duration::from_secs(1).min(window.saturating_sub(started.elapsed())));
        threads_max = threads_max.max(thread_count(pids));
    }
    let after = snapshot(pids);
    let secs = started.elapsed().as_secs_f64();
    let threads_end = thread_count(pids);
    let mut per_thread: Vec<Value> = Vec::new();
    let (mut cpu_ns, mut wakeups) = (0u64, 0u64);
    let mut tids: Vec<&u32> = after.threads.keys().collect();
    tids.sort();
    for tid in tids {
        let a = &after.threads[tid];
        let b = before.threads.get(tid);
        let d = |f: fn(&Thread) -> u64| f(a).saturating_sub(b.map_or(0, f));
        cpu_ns += d(|t| t.cpu_ns);
        wakeups += d(|t| t.switches);
        per_thread.push(json!({
            "pid": a.pid, "tid": tid, "name": a.name,
            "ticks": d(|t| t.ticks), "cpu_ns": d(|t| t.cpu_ns), "context_switches": d(|t| t.switches),
        }));
    }
    let ticks = after.ticks.saturating_sub(before.ticks);
    let cpu_share = ticks as f64 / hz as f64 / secs;
    eprintln!(
        "  {ticks} ticks ({:.4}% of one core), {:.3} ms on CPU, {wakeups} context switches, threads {threads_start}..{threads_max}",
        cpu_share * 100.0,
        cpu_ns as f64 / 1e6
    );
    let mut v = json!({
        "name": name,
        "command": command,
        "processes": pids.len(),
        "window_seconds": secs,
        "threads_start": threads_start,
        "threads_end": threads_end,
        "threads_max": threads_max,
        "cpu_ticks": ticks,
        "cpu_seconds": ticks as f64 / hz as f64,
        "cpu_share_of_one_core": cpu_share,
        "cpu_ns_schedstat": cpu_ns,
        "cpu_share_of_one_core_schedstat": cpu_ns as f64 / 1e9 / secs,
        "context_switches": wakeups,
        "context_switches_per_second": wakeups as f64 / secs,
        "per_thread": per_thread,
    });
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    v
}

/// A child process killed and reaped when dropped (by its pid only).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(sig: &str, pid: u32) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

/// Descriptors in all fd tables of `pid`.
fn fds_of(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks.flatten().filter_map(|t| std::fs::read_dir(t.path().join("fd")).ok()).map(|d| d.count() as u64).sum()
}

/// Connections waiting in the accept queues of the listeners on `port`
/// (the `rx_queue` of the LISTEN rows of /proc/net/tcp, which come first).
fn queued_on(port: u16) -> u64 {
    use std::io::BufRead;
    let Ok(f) = std::fs::File::open("/proc/net/tcp") else { return 0 };
    let local = format!(":{port:04X}");
    let mut queued = 0;
    for line in std::io::BufReader::new(f).lines().skip(1).map_while(Result::ok) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || f[3] != "0A" {
            break;
        }
        if f[1].ends_with(&local) {
            queued += f[4].split(':').nth(1).and_then(|q| u64::from_str_radix(q, 16).ok()).unwrap_or(0);
        }
    }
    queued
}

/// `tcpmax load ADDR -c COUNT --hold LONG`, no heartbeats; returns once the
/// progress line shows every connection established and the server's
/// descriptor count (`fds`) reached `want` or stopped growing (a server
/// that cannot accept some of them leaves them in its accept queues).
fn load_to(addr: SocketAddr, count: u64, fds: &dyn Fn() -> u64, want: u64) -> Result<(Guard, String), String> {
    let command = format!("tcpmax load {addr} -c {count} --hold 1h");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tcpmax"))
        .args(["load", &addr.to_string(), "-c", &count.to_string(), "--hold", "1h"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("tcpmax load: {e}"))?;
    let progress = common::lines(child.stderr.take().ok_or("no stderr")?);
    let mut load = Guard(child);
    let want_line = format!("established {} / {}", group(count), group(count));
    let deadline = Instant::now() + Duration::from_secs(900);
    eprintln!("{command}");
    let mut last = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match progress.recv_timeout(left) {
            Ok(line) if line.contains(&want_line) => break,
            Ok(line) => {
                last.push(line);
                if last.len() > 5 {
                    last.remove(0);
                }
            }
            Err(_) => {
                let status = load.0.try_wait().ok().flatten();
                return Err(format!("the load never established {count} (exit {status:?}); last lines: {last:#?}"));
            }
        }
    }
    // Drain the progress lines from here on, so the load never blocks on a
    // full pipe.
    std::thread::spawn(move || for _ in progress {});
    let mut seen = fds();
    while seen < want {
        std::thread::sleep(Duration::from_secs(3));
        let now = fds();
        if now == seen {
            eprintln!("  the server stopped accepting at {} of {} descriptors", group(now), group(want));
            break;
        }
        seen = now;
    }
    Ok((load, command))
}

/// A `tcpmax serve` child and its announce lines.
struct Serve {
    guard: Guard,
    stdout: std::sync::mpsc::Receiver<String>,
    addr: SocketAddr,
    command: String,
}

impl Serve {
    fn start(extra: &[&str]) -> Result<Serve, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tcpmax"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("tcpmax serve: {e}"))?;
        let stdout = common::lines(child.stdout.take().ok_or("no stdout")?);
        let guard = Guard(child);
        let mut addr: Option<SocketAddr> = None;
        loop {
            let line = stdout.recv_timeout(Duration::from_secs(60)).map_err(|_| "serve did not start")?;
            if let Some(rest) = line.strip_prefix("listening ") {
                addr = rest.split_whitespace().next().and_then(|a| a.parse().ok());
            }
            if line.starts_with("shards ") {
                break;
            }
        }
        let addr = addr.ok_or("no listening line")?;
        let command = format!("tcpmax serve --listen {addr} {}", extra.join(" ")).trim_end().to_string();
        std::thread::sleep(SETTLE);
        Ok(Serve { guard, stdout, addr, command })
    }

    fn pid(&self) -> u32 {
        self.guard.0.id()
    }

    /// Holds `count` idle connections opened by `tcpmax load`, measures
    /// over `window`, then stops the server with one SIGINT while it holds
    /// them: the measurement and the time to stop.
    fn hold(mut self, name: &str, count: u64, window: Duration) -> Result<(Value, Value), String> {
        let pid = self.pid();
        let baseline = fds_of(pid);
        let (load, load_command) = load_to(self.addr, count, &|| fds_of(pid), baseline + count)?;
        let queued = queued_on(self.addr.port());
        std::thread::sleep(SETTLE);
        let held = measure(
            name,
            &self.command,
            &[pid],
            window,
            json!({
                "connections": count,
                "opened_by": load_command,
                "heartbeats": false,
                "established_but_never_accepted": queued,
                "held_by_server": count - queued.min(count),
            }),
        );
        let sent = Instant::now();
        signal("-INT", pid);
        let mut summary = String::new();
        while let Ok(l) = self.stdout.recv_timeout(Duration::from_secs(600)) {
            summary.push_str(&l);
            summary.push('\n');
        }
        let took = sent.elapsed();
        let status = self.guard.0.wait().map_err(|e| e.to_string())?;
        eprintln!("serve holding {count} stopped {took:?} after SIGINT ({status})");
        drop(load);
        let stop = json!({
            "command": self.command,
            "connections": count - queued.min(count),
            "signal_to_exit_seconds": took.as_secs_f64(),
            "exit_code": status.code(),
            "summary_printed": summary.contains("served "),
        });
        Ok((held, stop))
    }
}

/// `serve` idle; `serve` holding `count` as a user runs it (elastic); and
/// `serve --max-conns COUNT` holding them (shards sized up front).
fn run_serve(count: u64, window: Duration) -> Result<(Vec<Value>, Vec<Value>), String> {
    let serve = Serve::start(&[])?;
    let idle = measure("tcpmax serve, idle", &serve.command, &[serve.pid()], window, json!({ "connections": 0 }));
    let (elastic, stop_elastic) =
        serve.hold(&format!("tcpmax serve, holding {} idle connections", group(count)), count, window)?;
    let sized = Serve::start(&["--max-conns", &count.to_string()])?;
    let (sized, stop_sized) = sized.hold(
        &format!("tcpmax serve --max-conns {count}, holding {} idle connections", group(count)),
        count,
        window,
    )?;
    Ok((vec![idle, elastic, sized], vec![stop_elastic, stop_sized]))
}

/// nginx in the foreground with a configuration in a directory of its own.
struct Nginx {
    master: Guard,
    workers: Vec<u32>,
    dir: PathBuf,
    addr: SocketAddr,
    config: String,
}

impl Nginx {
    fn start(nginx: &Path, workers: &str, worker_connections: u64) -> Result<Nginx, String> {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        let dir = std::env::temp_dir().join(format!("tcpmax-idle-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("logs")).map_err(|e| e.to_string())?;
        let config = format!(
            "daemon off;\nworker_processes {workers};\nworker_rlimit_nofile 20000;\n\
             pid {d}/nginx.pid;\nerror_log {d}/logs/error.log warn;\n\
             events {{ worker_connections {worker_connections}; use epoll; }}\n\
             http {{\n  access_log off;\n  client_header_timeout 1h;\n  keepalive_timeout 1h;\n\
             \x20 server {{ listen 127.0.0.1:{port} reuseport backlog=4096; location / {{ return 200 \"ok\\n\"; }} }}\n}}\n",
            d = dir.display()
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, &config).map_err(|e| e.to_string())?;
        let child = Command::new(nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting nginx: {e}"))?;
        let master = Guard(child);
        let pid = master.0.id();
        let want = if workers == "auto" { tcpmax::engine::sizing::cores() } else { workers.parse().unwrap_or(1) };
        // Listening (read from /proc/net/tcp: no connection that would wake
        // it) and every worker started.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut found = Vec::new();
        while !(listening(port) && found.len() >= want) {
            if Instant::now() > deadline {
                return Err(format!(
                    "nginx did not start: {}",
                    std::fs::read_to_string(dir.join("logs/error.log")).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
            found = children(pid);
        }
        Ok(Nginx { master, workers: found, dir, addr: ([127, 0, 0, 1], port).into(), config })
    }

    fn pids(&self) -> Vec<u32> {
        let mut p = vec![self.master.0.id()];
        p.extend(&self.workers);
        p
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // Fast shutdown: the master ends its workers, then itself.
        signal("-TERM", self.master.0.id());
        let _ = self.master.0.wait();
        for &w in &self.workers {
            if Path::new(&format!("/proc/{w}")).exists() {
                signal("-KILL", w);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn listening(port: u16) -> bool {
    let t = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local = format!(":{port:04X}");
    t.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[1].ends_with(&local) && f[3] == "0A"
    })
}

/// Processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return vec![] };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|c| {
            let stat = std::fs::read_to_string(format!("/proc/{c}/stat")).unwrap_or_default();
            stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)).and_then(|p| p.parse().ok()) == Some(pid)
        })
        .collect()
}

fn run_nginx(nginx: &Path, count: u64, window: Duration) -> Result<(Value, Value, Value), String> {
    let idle_server = Nginx::start(nginx, "auto", 19_900)?;
    let command = format!("nginx -c nginx.conf (worker_processes auto; {} workers)", idle_server.workers.len());
    std::thread::sleep(SETTLE);
    let idle = measure(
        "nginx, idle",
        &command,
        &idle_server.pids(),
        window,
        json!({ "connections": 0, "config": idle_server.config }),
    );
    drop(idle_server);

    // One worker is one fd table of at most 20,000 descriptors here: enough
    // workers for the connections at 90% of a table each.
    let workers = count.div_ceil(17_900).max(2);
    let server = Nginx::start(nginx, &workers.to_string(), 19_900)?;
    let pids = server.pids();
    let fds = || pids.iter().map(|&p| fds_of(p)).sum::<u64>();
    let baseline = fds();
    let (load, load_command) = load_to(server.addr, count, &fds, baseline + count)?;
    let queued = queued_on(server.addr.port());
    std::thread::sleep(SETTLE);
    let holding = measure(
        &format!("nginx, holding {} idle connections", group(count)),
        &format!("nginx -c nginx.conf (worker_processes {workers})"),
        &pids,
        window,
        json!({
            "connections": count, "opened_by": load_command, "heartbeats": false, "config": server.config,
            "established_but_never_accepted": queued, "held_by_server": count - queued.min(count),
            "note": format!("{workers} worker processes of 19,900 connections each: one worker is one fd table of 20,000 here"),
        }),
    );
    // Fast shutdown (SIGTERM), as serve gets SIGINT: the master ends its
    // workers, whose exit closes what they hold, then exits itself.
    let mut server = server;
    let sent = Instant::now();
    signal("-TERM", server.master.0.id());
    let status = server.master.0.wait().map_err(|e| e.to_string())?;
    let took = sent.elapsed();
    eprintln!("nginx holding {count} stopped {took:?} after SIGTERM ({status})");
    let stop = json!({
        "command": format!("nginx -c nginx.conf (worker_processes {workers}), SIGTERM"),
        "connections": count - queued.min(count),
        "signal_to_exit_seconds": took.as_secs_f64(),
        "exit_code": status.code(),
    });
    drop(load);
    drop(server);
    Ok((idle, holding, stop))
}

fn main() -> Result<(), String> {
    let window =
        common::arg("--duration").map_or(Ok(Duration::from_secs(60)), |d| tcpmax::units::parse_duration(&d))?;
    let count = common::arg("--count").map_or(Ok(500_000), |c| tcpmax::units::parse_count(&c))?;
    let out = common::arg("--json").unwrap_or_else(|| "docs/bench/idle.json".into());
    let nginx = PathBuf::from(common::arg("--nginx").unwrap_or_else(|| "/usr/sbin/nginx".into()));
    tcpmax::machine::raise_nofile().map_err(|e| e.to_string())?;
    let cores = tcpmax::engine::sizing::cores();

    let (serve_runs, serve_stops) = run_serve(count, window)?;
    let version =
        Command::new(&nginx).arg("-v").output().map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string());
    let (nginx_runs, nginx_stop, nginx_note) = match &version {
        Ok(_) => {
            let (idle, holding, stop) = run_nginx(&nginx, count, window)?;
            (vec![idle, holding], Some(stop), None)
        }
        Err(e) => {
            (vec![], None, Some(format!("{}: {e}; install nginx (Debian: nginx-light) to compare", nginx.display())))
        }
    };
    let share = |v: &Value| v["cpu_share_of_one_core"].as_f64().unwrap_or(f64::MAX);
    let all_held = |v: &Value| v["established_but_never_accepted"].as_u64() == Some(0);
    let goal = json!({
        "threads_at_most": cores + 2,
        "cpu_share_of_one_core_at_most": 0.001,
        "idle_threads_met": serve_runs[0]["threads_max"].as_u64().is_some_and(|t| t <= cores as u64 + 2),
        "idle_cpu_met": share(&serve_runs[0]) <= 0.001,
        "holding_cpu_met": share(&serve_runs[1]) <= 0.001,
        "holding_all_accepted": all_held(&serve_runs[1]),
        "holding_sized_cpu_met": share(&serve_runs[2]) <= 0.001,
        "holding_sized_all_accepted": all_held(&serve_runs[2]),
    });
    let mut runs = serve_runs;
    runs.extend(nginx_runs);
    let report = json!({
        "benchmark": "idle",
        "window_seconds": window.as_secs_f64(),
        "connections": count,
        "clock_ticks_per_second": clock_ticks(),
        "goal": goal,
        "runs": runs,
        "serve_stop_holding": serve_stops,
        "nginx_stop_holding": nginx_stop,
        "nginx_version": version.ok(),
        "nginx_note": nginx_note,
        "commit": env!("TCPMAX_COMMIT"),
        "machine": Machine::read(),
    });
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&out, text + "\n").map_err(|e| format!("writing {out}: {e}"))?;
    let brief: Vec<String> = report["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{}: {} ticks ({:.4}% of one core), {} threads, {} context switches",
                r["name"].as_str().unwrap_or_default(),
                r["cpu_ticks"],
                share(r) * 100.0,
                r["threads_max"],
                r["context_switches"]
            )
        })
        .collect();
    println!("{}\ngoal: {}\nwritten to {out}", brief.join("\n"), report["goal"]);
    Ok(())
}
