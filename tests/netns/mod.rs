//! A rehearsal of many load hosts on one machine: network namespaces
//! `tcpmax-agent0..N-1` and `tcpmax-srv` on a bridge `tcpmax-br0`, each with
//! its own address in 10.213.0.0/24; `tcpmax serve` on the server host and
//! one `tcpmax load --agents N` per agent host, started as a Kubernetes
//! Indexed Job starts them (`JOB_COMPLETION_INDEX`) with a common
//! `--start-at`; then `tcpmax merge`. Shared by `tests/rehearsal.rs` and
//! `benches/rehearsal.rs`.
//!
//! Namespaces and links are made with `ip` (iproute2). Everything created
//! is removed when [`Hosts`] drops (also on a panic or a failure midway);
//! a run killed before that leaves names behind, which the next run removes
//! by name, under a lock so that two rehearsals never touch each other's.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The bridge joining the hosts.
pub const BRIDGE: &str = "tcpmax-br0";
/// The server host.
pub const SERVER: &str = "tcpmax-srv";
/// The hosts' subnet, 10.213.0.0/24: the server is .1, agent K is .(10+K).
pub const SUBNET: [u8; 3] = [10, 213, 0];
/// Agents at most (addresses .10 to .73).
pub const MAX_AGENTS: usize = 64;

const LOCK: &str = "tcpmax-rehearsal.lock";

/// Agent host K's namespace name.
pub fn agent(k: usize) -> String {
    format!("tcpmax-agent{k}")
}

/// Why a rehearsal cannot run: missing here (skip, with the reason), or
/// broken (fail).
#[derive(Debug)]
pub enum Setup {
    /// A component or privilege is missing: skip and say why.
    Skip(String),
    /// Something went wrong: fail.
    Fail(String),
}

fn ip(args: &[&str]) -> Result<Output, String> {
    Command::new("ip").args(args).output().map_err(|e| format!("ip {}: {e}", args.join(" ")))
}

fn ip_ok(args: &[&str]) -> Result<String, String> {
    let out = ip(args)?;
    if !out.status.success() {
        return Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_ours(name: &str) -> bool {
    name == SERVER
        || name == BRIDGE
        || name == "tcpmax-vsrv"
        || ["tcpmax-agent", "tcpmax-va"]
            .iter()
            .any(|p| name.strip_prefix(p).is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit())))
}

fn netns_list() -> Result<Vec<String>, String> {
    Ok(ip_ok(&["netns", "list"])?.lines().filter_map(|l| l.split_whitespace().next()).map(String::from).collect())
}

fn link_list() -> Result<Vec<String>, String> {
    // "3: tcpmax-va0@if2: <...>": the name, without the peer suffix.
    Ok(ip_ok(&["-o", "link", "show"])?
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect())
}

/// The hosts of one rehearsal: what this run created, removed on drop.
#[derive(Debug)]
pub struct Hosts {
    namespaces: Vec<String>,
    links: Vec<String>,
    children: Vec<Child>,
    lock: PathBuf,
}

impl Hosts {
    /// Builds the server host and `agents` agent hosts.
    pub fn create(agents: usize) -> Result<Hosts, Setup> {
        assert!((1..=MAX_AGENTS).contains(&agents));
        match Command::new("ip").arg("-V").output() {
            Ok(o) if o.status.success() => {}
            _ => return Err(Setup::Skip("`ip` (iproute2) is not installed".into())),
        }
        let lock = take_lock()?;
        let mut hosts = Hosts { namespaces: Vec::new(), links: Vec::new(), children: Vec::new(), lock };
        clean_leftovers().map_err(Setup::Fail)?;
        check_free(agents).map_err(Setup::Fail)?;
        // The first namespace tells whether this process may make them.
        if let Err(why) = hosts.add_netns(SERVER) {
            let denied = ["Operation not permitted", "Permission denied"].iter().any(|w| why.contains(w));
            return Err(if denied {
                Setup::Skip(format!("no privilege for network namespaces (CAP_SYS_ADMIN): {why}"))
            } else {
                Setup::Fail(why)
            });
        }
        hosts.build(agents).map_err(Setup::Fail)?;
        Ok(hosts)
    }

    fn add_netns(&mut self, name: &str) -> Result<(), String> {
        ip_ok(&["netns", "add", name])?;
        self.namespaces.push(name.to_string());
        Ok(())
    }

    fn build(&mut self, agents: usize) -> Result<(), String> {
        ip_ok(&["link", "add", BRIDGE, "type", "bridge"])?;
        self.links.push(BRIDGE.into());
        ip_ok(&["link", "set", BRIDGE, "up"])?;
        self.attach(SERVER, "tcpmax-vsrv", 1)?;
        for k in 0..agents {
            let ns = agent(k);
            self.add_netns(&ns)?;
            self.attach(&ns, &format!("tcpmax-va{k}"), 10 + k as u8)?;
            // As the pod securityContext does on Kubernetes: the widest range.
            let set = "echo 1024 65535 > /proc/sys/net/ipv4/ip_local_port_range";
            ip_ok(&["netns", "exec", &ns, "sh", "-c", set])?;
        }
        Ok(())
    }

    /// A veth pair: `eth0` with address .`last` in `ns`, `root_end` on the bridge.
    fn attach(&mut self, ns: &str, root_end: &str, last: u8) -> Result<(), String> {
        ip_ok(&["link", "add", root_end, "type", "veth", "peer", "name", "eth0", "netns", ns])?;
        self.links.push(root_end.into());
        ip_ok(&["link", "set", root_end, "master", BRIDGE, "up"])?;
        let [a, b, c] = SUBNET;
        ip_ok(&["-n", ns, "addr", "add", &format!("{a}.{b}.{c}.{last}/24"), "dev", "eth0"])?;
        ip_ok(&["-n", ns, "link", "set", "eth0", "up"])?;
        ip_ok(&["-n", ns, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// The address of `host`, after checking that this run created that
    /// namespace and that the address is configured in it: traffic goes
    /// only to hosts of this rehearsal.
    pub fn addr(&self, host: &str) -> Ipv4Addr {
        assert!(self.namespaces.iter().any(|n| n == host), "{host} is not a namespace this run created");
        let last = if host == SERVER { 1 } else { 10 + host.trim_start_matches("tcpmax-agent").parse::<u8>().unwrap() };
        let [a, b, c] = SUBNET;
        let want = Ipv4Addr::new(a, b, c, last);
        let shown = ip_ok(&["-n", host, "-4", "-o", "addr", "show", "dev", "eth0"]).unwrap();
        assert!(shown.contains(&format!(" {want}/24 ")), "{want} is not configured in {host}: {shown}");
        want
    }

    /// Starts `tcpmax ARGS` in `host` with `env`; its index in the children.
    pub fn spawn(&mut self, host: &str, args: &[String], env: &[(&str, String)]) -> usize {
        assert!(self.namespaces.iter().any(|n| n == host), "{host} is not a namespace this run created");
        let child = Command::new("ip")
            .args(["netns", "exec", host, env!("CARGO_BIN_EXE_tcpmax")])
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ip netns exec");
        self.children.push(child);
        self.children.len() - 1
    }

    /// A child started by [`Hosts::spawn`].
    pub fn child(&mut self, i: usize) -> &mut Child {
        &mut self.children[i]
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Our processes first (`ip netns exec` execs tcpmax in place: the
        // pid is tcpmax's), then the namespaces (their veth ends go with
        // them), then the bridge and whatever link is left.
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = ip(&["netns", "del", ns]);
        }
        for link in self.links.iter().rev() {
            if link_list().is_ok_and(|l| l.contains(link)) {
                let _ = ip(&["link", "del", link]);
            }
        }
        let _ = std::fs::remove_dir_all(&self.lock);
    }
}

/// A directory made atomically, holding the owner's pid. A lock whose
/// owner is gone (a killed run) is taken over.
fn take_lock() -> Result<PathBuf, Setup> {
    let lock = std::env::temp_dir().join(LOCK);
    for _ in 0..2 {
        match std::fs::create_dir(&lock) {
            Ok(()) => {
                std::fs::write(lock.join("pid"), std::process::id().to_string())
                    .map_err(|e| Setup::Fail(format!("writing {}: {e}", lock.display())))?;
                return Ok(lock);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let owner = std::fs::read_to_string(lock.join("pid")).unwrap_or_default();
                let alive = !owner.trim().is_empty() && Path::new(&format!("/proc/{}", owner.trim())).exists();
                if alive {
                    return Err(Setup::Fail(format!(
                        "another rehearsal (pid {}) holds {}",
                        owner.trim(),
                        lock.display()
                    )));
                }
                eprintln!("rehearsal: taking over the lock of a run that is gone (pid {:?})", owner.trim());
                let _ = std::fs::remove_dir_all(&lock);
            }
            Err(e) => return Err(Setup::Skip(format!("cannot create {}: {e}", lock.display()))),
        }
    }
    Err(Setup::Fail(format!("cannot take {}", lock.display())))
}

/// Removes, by name, what a killed earlier rehearsal left: its processes
/// in our namespaces, the namespaces, the links. Called with the lock held,
/// so no live rehearsal owns them.
fn clean_leftovers() -> Result<(), String> {
    let mut cleaned = Vec::new();
    for ns in netns_list()?.into_iter().filter(|n| is_ours(n)) {
        for pid in ip_ok(&["netns", "pids", &ns]).unwrap_or_default().split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
        ip_ok(&["netns", "del", &ns])?;
        cleaned.push(ns);
    }
    // A deleted namespace takes its veth pairs with it, asynchronously:
    // a link may vanish between the listing and its deletion.
    for link in link_list()?.into_iter().filter(|n| is_ours(n)) {
        if let Err(why) = ip_ok(&["link", "del", &link])
            && !why.contains("Cannot find device")
        {
            return Err(why);
        }
        cleaned.push(link);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while link_list()?.iter().any(|n| is_ours(n)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if !cleaned.is_empty() {
        eprintln!("rehearsal: removed leftovers of an earlier run: {}", cleaned.join(", "));
    }
    Ok(())
}

/// Refuses to start when a name or the subnet is already in use here.
fn check_free(agents: usize) -> Result<(), String> {
    let names: Vec<String> = [SERVER.to_string(), BRIDGE.into(), "tcpmax-vsrv".into()]
        .into_iter()
        .chain((0..agents).flat_map(|k| [agent(k), format!("tcpmax-va{k}")]))
        .collect();
    let (netns, links) = (netns_list()?, link_list()?);
    if let Some(taken) = names.iter().find(|n| netns.contains(n) || links.contains(n)) {
        return Err(format!("{taken} exists and could not be removed"));
    }
    let [a, b, c] = SUBNET;
    let prefix = format!(" {a}.{b}.{c}.");
    if let Some(line) = ip_ok(&["-4", "-o", "addr", "show"])?.lines().find(|l| l.contains(&prefix)) {
        return Err(format!("{a}.{b}.{c}.0/24 is already in use on this machine: {line}"));
    }
    let routes = ip_ok(&["-4", "route", "show", "to", "match", &format!("{a}.{b}.{c}.1")])?;
    if let Some(route) = routes.lines().find(|l| !l.starts_with("default")) {
        return Err(format!("{a}.{b}.{c}.0/24 is routed on this machine: {route}"));
    }
    Ok(())
}

/// Lines of a reader, on a channel.
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

/// What a rehearsal runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Agent hosts.
    pub agents: usize,
    /// Connections of the whole plan.
    pub count: u64,
    /// How long the agents hold.
    pub hold: String,
    /// Ports the server listens on (each agent's pairs).
    pub ports: u16,
    /// From now to the common start.
    pub start_in: Duration,
    /// Where the reports go.
    pub dir: PathBuf,
}

/// What a rehearsal measured.
#[derive(Debug)]
pub struct Outcome {
    /// Each agent's load report.
    pub reports: Vec<Value>,
    /// The merged report.
    pub merged: Value,
    /// What `tcpmax merge` printed for people.
    pub merge_text: String,
    /// The most connections the server reported at once.
    pub server_peak: u64,
    /// The common start, unix ms.
    pub start_at_unix_ms: u64,
    /// The merge's exit code.
    pub merge_code: Option<i32>,
}

/// Runs a rehearsal to the end. Bounded: every wait has a deadline.
pub fn rehearse(plan: &Plan) -> Result<Outcome, Setup> {
    let mut hosts = Hosts::create(plan.agents)?;
    let fail = |what: String| Setup::Fail(what);
    let srv_ip = hosts.addr(SERVER);
    let listen: Vec<String> = (0..plan.ports).map(|p| format!("{srv_ip}:{}", 9000 + p)).collect();
    let max_conns = (plan.count + plan.count / 10).to_string();
    let serve_args: Vec<String> =
        ["serve", "--listen", &listen.join(","), "--mode", "echo", "--max-conns", &max_conns, "--status"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let srv = hosts.spawn(SERVER, &serve_args, &[]);
    let out = lines(hosts.child(srv).stdout.take().unwrap());
    let status = lines(hosts.child(srv).stderr.take().unwrap());
    loop {
        let line = out.recv_timeout(Duration::from_secs(60)).map_err(|_| fail("serve did not start".into()))?;
        if line.starts_with("shards ") {
            break;
        }
    }

    std::fs::create_dir_all(&plan.dir).map_err(|e| fail(format!("{}: {e}", plan.dir.display())))?;
    let at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + plan.start_in;
    let start_at = format!("{}.{:03}", at.as_secs(), at.subsec_millis());
    let targets = listen.join(",");
    let files: Vec<PathBuf> = (0..plan.agents).map(|k| plan.dir.join(format!("agent-{k}.json"))).collect();
    let mut agents = Vec::new();
    for (k, file) in files.iter().enumerate() {
        let _ = std::fs::remove_file(file);
        let args: Vec<String> = [
            "load",
            &targets,
            "-c",
            &plan.count.to_string(),
            "--agents",
            &plan.agents.to_string(),
            "--start-at",
            &start_at,
            "--hold",
            &plan.hold,
            "--connect-timeout",
            "10s",
            "--quiet",
            "--json",
            &file.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        agents.push(hosts.spawn(&agent(k), &args, &[("JOB_COMPLETION_INDEX", k.to_string())]));
    }

    // Wait for every agent, reading the server's status lines meanwhile.
    let deadline = Instant::now() + plan.start_in + Duration::from_secs(600);
    let mut server_peak = 0u64;
    let mut running: Vec<usize> = agents.clone();
    while !running.is_empty() {
        if Instant::now() > deadline {
            return Err(fail(format!("{} agents still running after the deadline", running.len())));
        }
        while let Ok(line) = status.recv_timeout(Duration::from_millis(200)) {
            server_peak = server_peak.max(conns_of(&line));
        }
        let mut still = Vec::new();
        for &i in &running {
            match hosts.child(i).try_wait().map_err(|e| fail(e.to_string()))? {
                None => still.push(i),
                Some(st) if st.success() => {}
                Some(st) => {
                    let mut err = String::new();
                    let _ = hosts.child(i).stderr.take().map(|mut e| e.read_to_string(&mut err));
                    return Err(fail(format!(
                        "agent {} exited with {st}: {err}",
                        agents.iter().position(|&a| a == i).unwrap()
                    )));
                }
            }
        }
        running = still;
    }
    let _ = Command::new("kill").args(["-INT", &hosts.child(srv).id().to_string()]).status();
    let _ = hosts.child(srv).wait();
    while let Ok(line) = status.try_recv() {
        server_peak = server_peak.max(conns_of(&line));
    }

    let reports: Vec<Value> =
        files.iter().map(|f| serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap()).collect();
    let merged_file = plan.dir.join("merged.json");
    let merge = Command::new(env!("CARGO_BIN_EXE_tcpmax"))
        .arg("merge")
        .args(&files)
        .arg("--json")
        .arg(&merged_file)
        .output()
        .map_err(|e| fail(format!("tcpmax merge: {e}")))?;
    let merge_text = String::from_utf8_lossy(&merge.stdout).into_owned() + &String::from_utf8_lossy(&merge.stderr);
    let merged =
        serde_json::from_str(&std::fs::read_to_string(&merged_file).map_err(|e| fail(format!("{merge_text}{e}")))?)
            .map_err(|e| fail(e.to_string()))?;
    drop(hosts);
    Ok(Outcome {
        reports,
        merged,
        merge_text,
        server_peak,
        start_at_unix_ms: at.as_millis() as u64,
        merge_code: merge.status.code(),
    })
}

/// The `conns N` figure of a serve status line (0 when there is none).
fn conns_of(line: &str) -> u64 {
    line.split("conns ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.replace(',', "").parse().ok())
        .unwrap_or(0)
}

/// After a rehearsal: nothing of ours is left (namespaces, links).
pub fn leftovers() -> Vec<String> {
    let mut left: Vec<String> = netns_list().unwrap_or_default().into_iter().filter(|n| is_ours(n)).collect();
    left.extend(link_list().unwrap_or_default().into_iter().filter(|n| is_ours(n)));
    left
}
