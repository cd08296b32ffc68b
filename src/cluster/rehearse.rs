//! The rehearsal itself: build the hosts, start the backends, the load
//! balancer tier and the client, watch once a second, wind down, report.
//! Everything started goes into the [`Guard`], which the caller empties
//! whatever this returns.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::Args;
use super::haproxy::{self, Server, Tier};
use super::live::{self, BackendLine, ClientLine, LbStat, Overflows};
use super::netns;
use super::report::{ClientReport, ClusterReport, ErrnoCount, HostOverflows, KillReport, LbReport, NetworkReport};
use super::supervise::{Guard, Proc};
use super::topology::{AGENT_PORT, BRIDGE, FRONTEND_PORT, Role, SERVE_PORT, Topology, run_prefix};
use super::watch::Tracker;
use crate::doctor::Probe;
use crate::engine::sizing;
use crate::load::plan::PairBudget;
use crate::machine::Machine;
use crate::procfs::ProcFs;
use crate::sys::child::{SIGINT, SIGKILL, SIGTERM};
use crate::sys::process;
use crate::units::{group, human_bytes};

/// How long a process may take to announce itself.
const START_LIMIT: Duration = Duration::from_secs(30);

/// True once SIGINT or SIGTERM arrived.
fn signalled() -> bool {
    process::wait_signal(&[SIGINT, SIGTERM], Duration::ZERO).ok().flatten().is_some()
}

/// Waits for a stdout line starting with `prefix`; an error quotes the
/// process's last stderr lines when it exits or stays silent.
fn wait_announce(p: &mut Proc, prefix: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + START_LIMIT;
    while Instant::now() < deadline {
        if let Some(line) = p.next_stdout(Duration::from_millis(100)) {
            if line.starts_with(prefix) {
                return Ok(line);
            }
            continue;
        }
        if let Some(status) = p.exited() {
            bail!("{}", p.failure(&format!("exited ({status}) before starting")));
        }
    }
    bail!("{}", p.failure(&format!("did not start within {START_LIMIT:?}")))
}

/// Runs the rehearsal; `None` when SIGINT/SIGTERM came before the client
/// started (nothing to report).
pub fn rehearse(
    args: &Args,
    budgets: &[u64],
    guard: &mut Guard,
    human: &mut dyn Write,
    config_out: Option<PathBuf>,
) -> anyhow::Result<Option<ClusterReport>> {
    let me = std::process::id();
    let n = args.backends;
    let tmp = guard.tmp.clone().context("the temporary directory")?;

    // The namespaces first: the limits inside them size everything else.
    let others = netns::list()?;
    let names = Topology::plan(me, 0, n, 0, 1)?.namespaces();
    netns::add(&names, &mut guard.namespaces)?;
    let prefix = run_prefix(me);
    let lb_in = netns::inside(&format!("{prefix}lb"))?;
    let client_in = netns::inside(&format!("{prefix}client"))?;
    let tier = Tier::plan(args.count, n, lb_in.nofile, lb_in.usable_ports, args.lb_processes)?;
    let client_pair = PairBudget::default().per_pair(client_in.usable_ports).max(1);
    let client_addrs = args.count.div_ceil(client_pair) as usize;
    let x = netns::pick_subnet(me, &others)?;
    let topo = Topology::plan(me, x, n, tier.sources(), client_addrs)?;
    netns::wire(&topo)?;
    writeln!(
        human,
        "network {} (private, not routed): bridge {BRIDGE} in {}, hosts {}",
        topo.cidr(),
        topo.switch,
        topo.hosts.iter().map(|h| h.netns.as_str()).collect::<Vec<_>>().join(", ")
    )?;
    if signalled() {
        return Ok(None);
    }

    let backends = start_backends(args, budgets, &topo, guard, human, lb_in.nofile)?;
    let (haproxies, sockets) = start_lb(args, &tier, &topo, guard, human, &tmp, config_out.as_deref())?;
    if signalled() {
        return Ok(None);
    }
    // Each host with a process living in it, to read its counters through.
    let mut hosts: Vec<Host> =
        topo.hosts.iter().map(|h| Host { name: h.name.clone(), netns: h.netns.clone(), proc: None }).collect();
    for (h, &i) in hosts.iter_mut().zip(&backends) {
        h.proc = Some(i);
    }
    if let Some(h) = hosts.iter_mut().find(|h| h.name == "lb") {
        h.proc = haproxies.first().copied();
    }
    let base = overflows(guard, &hosts);

    // The client.
    let client = topo.host(Role::Client).context("the client host")?;
    let frontend = SocketAddrV4::new(topo.frontend().context("the frontend address")?, FRONTEND_PORT);
    topo.owner(*frontend.ip())?;
    let (first, last) = (client.addrs[0], client.addrs[client.addrs.len() - 1]);
    let load_json = tmp.join("load.json");
    let load_args: Vec<String> = vec![
        "load".into(),
        frontend.to_string(),
        "-c".into(),
        args.count.to_string(),
        "--reconnect".into(),
        // A bound: the rehearsal interrupts it at the end of its own hold.
        "--hold".into(),
        format!("{}s", args.hold.as_secs() + 120),
        "--source".into(),
        format!("{first}-{last}"),
        "--connect-timeout".into(),
        "10s".into(),
        "--json".into(),
        load_json.display().to_string(),
    ];
    let exe = std::env::current_exe().context("locating the tcpmax binary")?;
    let load = guard.spawn("load", &client.netns, exe.as_os_str(), &load_args, &[])?;
    if let Some(h) = hosts.iter_mut().find(|h| h.name == "client") {
        h.proc = Some(load);
    }
    writeln!(
        human,
        "client: tcpmax load {frontend} -c {} --reconnect from {} source addresses ({}-{last}, {} per pair)",
        group(args.count),
        client.addrs.len(),
        first,
        group(client_pair)
    )?;
    human.flush()?;

    let backend_rows: Vec<(String, String, u64)> = topo
        .backends()
        .zip(budgets)
        .map(|(h, b)| (h.name.clone(), SocketAddrV4::new(h.addrs[0], SERVE_PORT).to_string(), *b))
        .collect();
    let mut tracker = Tracker::new(&backend_rows, tier.maxconn);
    let procs = Procs { backends: &backends, haproxies: &haproxies, sockets: &sockets, load };
    let end = watch(args, guard, &procs, &mut tracker, &hosts)?;

    // The figures at the end of the hold, then wind down.
    let descriptors: Vec<u64> = haproxies.iter().map(|&i| live::descriptors(guard.procs[i].pid())).collect();
    let total_held = tracker.total_held();
    let (lb_held, lb_peak) = tracker.lb();
    let client_line = tracker.client();
    let after = overflows(guard, &hosts);
    guard.procs[load].stop(SIGINT, Duration::from_secs(120));
    let load_report: serde_json::Value = std::fs::read_to_string(&load_json)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    for &i in &haproxies {
        guard.procs[i].stop(SIGTERM, Duration::from_secs(5));
    }
    for &i in &backends {
        guard.procs[i].stop(SIGINT, Duration::from_secs(10));
    }

    let overflows = deltas(&hosts, &after, &base);
    let kill = tracker.kill().map(|k| KillReport {
        overflows: end.at_kill.as_ref().map(|at| deltas(&hosts, &after, at)).unwrap_or_default(),
        ..k
    });
    let errors = load_report["errors"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| {
                    Some(ErrnoCount { errno: r["errno"].as_str()?.to_string(), count: r["count"].as_u64()? })
                })
                .collect()
        })
        .unwrap_or_default();
    let report = ClusterReport {
        target: args.count,
        total_held,
        goal_met: total_held >= args.count,
        interrupted: end.interrupted,
        ramp_seconds: end.ramp,
        hold_seconds: end.hold,
        backends: tracker.backends(),
        lb: LbReport {
            frontend: frontend.to_string(),
            processes: tier.processes,
            maxconn_per_process: tier.maxconn,
            nofile_per_process: tier.nofile,
            held: lb_held,
            peak_held: lb_peak,
            descriptors,
            sources: topo.lb_sources().iter().map(Ipv4Addr::to_string).collect(),
            sources_per_process: tier.sources_per_process,
            arithmetic: tier.arithmetic(args.count),
        },
        client: ClientReport {
            sources: client.addrs.iter().map(Ipv4Addr::to_string).collect(),
            held: client_line.established,
            peak_held: tracker.client_peak().max(load_report["peak_established"].as_u64().unwrap_or(0)),
            failed: load_report["failed"].as_u64().unwrap_or(client_line.failed),
            reconnects: load_report["reconnects"].as_u64().unwrap_or(0),
            errors,
        },
        first_limit: tracker.first_limit(),
        kill,
        overflows,
        network: NetworkReport {
            subnet: topo.cidr(),
            bridge: format!("{BRIDGE} in {}", topo.switch),
            namespaces: topo.namespaces(),
        },
        haproxy_config: config_out,
        leftovers_removed: Vec::new(),
        cleanup: Default::default(),
        timeline: std::mem::take(&mut tracker.samples),
        machine: Machine::read(),
    };
    Ok(Some(report))
}

/// A host whose accept-queue counters are read.
struct Host {
    name: String,
    netns: String,
    /// A process of the guard living in it.
    proc: Option<usize>,
}

/// Every host's counters now.
fn overflows(guard: &mut Guard, hosts: &[Host]) -> Vec<Overflows> {
    hosts
        .iter()
        .map(|h| {
            let pid = h.proc.and_then(|i| {
                let p = &mut guard.procs[i];
                p.exited().is_none().then(|| p.pid())
            });
            live::read_overflows(&h.netns, pid)
        })
        .collect()
}

fn deltas(hosts: &[Host], after: &[Overflows], before: &[Overflows]) -> Vec<HostOverflows> {
    hosts
        .iter()
        .zip(after.iter().zip(before))
        .map(|(h, (a, b))| HostOverflows { host: h.name.clone(), counters: a.since(*b) })
        .collect()
}

/// Starts `serve --agent` in every backend host; their indices in the guard.
fn start_backends(
    args: &Args,
    budgets: &[u64],
    topo: &Topology,
    guard: &mut Guard,
    human: &mut dyn Write,
    nofile: u64,
) -> anyhow::Result<Vec<usize>> {
    let cost = Probe::read(&ProcFs::default()).socket_cost.bytes.max(1);
    let exe = std::env::current_exe().context("locating the tcpmax binary")?;
    let mut started = Vec::new();
    for (h, &budget) in topo.backends().zip(budgets) {
        let ip = h.addrs[0];
        topo.owner(ip)?;
        // Enough fd tables for what the budget (or the whole target) holds.
        let sockets = (budget / cost).min(args.count);
        let shards = sizing::plan_hashed(sockets, nofile, 1).shards;
        let a: Vec<String> = [
            "serve",
            "--listen",
            &SocketAddrV4::new(ip, SERVE_PORT).to_string(),
            "--agent",
            &SocketAddrV4::new(ip, AGENT_PORT).to_string(),
            "--memory-budget",
            &budget.to_string(),
            "--mode",
            "silent",
            "--shards",
            &shards.to_string(),
            "--status",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let i = guard.spawn(&format!("serve {}", h.name), &h.netns, exe.as_os_str(), &a, &[])?;
        started.push((i, shards));
    }
    for ((i, shards), (h, budget)) in started.iter().zip(topo.backends().zip(budgets)) {
        wait_announce(&mut guard.procs[*i], "agent ")?;
        writeln!(
            human,
            "backend {} {}:{SERVE_PORT}, budget {} (~{} sockets at {} B each), agent port {AGENT_PORT}, {shards} shards",
            h.name,
            h.addrs[0],
            human_bytes(*budget),
            group(budget / cost),
            group(cost)
        )?;
    }
    Ok(started.into_iter().map(|(i, _)| i).collect())
}

/// Writes the configuration, checks it with `haproxy -c`, starts the
/// processes and waits until each answers on its stats socket.
fn start_lb(
    args: &Args,
    tier: &Tier,
    topo: &Topology,
    guard: &mut Guard,
    human: &mut dyn Write,
    tmp: &Path,
    config_out: Option<&Path>,
) -> anyhow::Result<(Vec<usize>, Vec<PathBuf>)> {
    let lb = topo.host(Role::Lb).context("the load balancer host")?;
    let frontend = SocketAddrV4::new(topo.frontend().context("the frontend address")?, FRONTEND_PORT);
    topo.owner(*frontend.ip())?;
    let servers: Vec<Server> = topo
        .backends()
        .map(|h| Server {
            name: h.name.clone(),
            addr: SocketAddrV4::new(h.addrs[0], SERVE_PORT),
            agent_port: AGENT_PORT,
        })
        .collect();
    for s in &servers {
        topo.owner(*s.addr.ip())?;
    }
    for a in topo.lb_sources() {
        topo.owner(*a)?;
    }
    let text = haproxy::config(tier, args.count, frontend, &servers);
    let cfg = tmp.join("haproxy.cfg");
    std::fs::write(&cfg, &text).with_context(|| format!("writing {}", cfg.display()))?;
    if let Some(out) = config_out {
        std::fs::write(out, &text).with_context(|| format!("writing {}", out.display()))?;
    }
    let sockets: Vec<PathBuf> = (0..tier.processes).map(|k| tmp.join(format!("lb-{}.sock", k + 1))).collect();
    let env = |k: usize| haproxy::process_env(tier, k, &sockets[k].display().to_string(), topo.lb_sources());
    let check = Command::new("ip")
        .args(["netns", "exec", &lb.netns, "haproxy", "-c", "-f"])
        .arg(&cfg)
        .envs(env(0))
        .output()
        .context("running haproxy -c")?;
    if !check.status.success() {
        bail!(
            "haproxy rejected the generated configuration:\n{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
    }
    let cfg_arg = cfg.display().to_string();
    let mut started = Vec::new();
    for k in 0..tier.processes {
        let a = vec!["-db".to_string(), "-f".to_string(), cfg_arg.clone()];
        started.push(guard.spawn(&format!("haproxy {}", k + 1), &lb.netns, "haproxy".as_ref(), &a, &env(k))?);
    }
    let deadline = Instant::now() + START_LIMIT;
    for (&i, sock) in started.iter().zip(&sockets) {
        while live::query_stat(sock).is_none() {
            let p = &mut guard.procs[i];
            if let Some(status) = p.exited() {
                bail!("{}", p.failure(&format!("exited ({status})")));
            }
            if Instant::now() >= deadline {
                bail!("{}", p.failure(&format!("did not answer on {} within {START_LIMIT:?}", sock.display())));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    writeln!(
        human,
        "load balancer {frontend}: {} HAProxy processes (mode tcp, balance leastconn, agent-check every {} ms on each server){}",
        tier.processes,
        haproxy::AGENT_INTER_MS,
        config_out.map_or_else(String::new, |p| format!(", configuration {}", p.display()))
    )?;
    for line in tier.arithmetic(args.count) {
        writeln!(human, "  {line}")?;
    }
    Ok((started, sockets))
}

/// The guard indices of the processes watched.
struct Procs<'a> {
    backends: &'a [usize],
    haproxies: &'a [usize],
    sockets: &'a [PathBuf],
    load: usize,
}

/// How the watch ended.
struct End {
    interrupted: bool,
    ramp: f64,
    hold: f64,
    at_kill: Option<Vec<Overflows>>,
}

/// Once a second until the end of the hold: read every status, print one
/// line, kill a backend when asked.
fn watch(args: &Args, guard: &mut Guard, p: &Procs<'_>, tracker: &mut Tracker, hosts: &[Host]) -> anyhow::Result<End> {
    let started = Instant::now();
    let ramp_limit = Duration::from_secs(120 + args.count / 500);
    let mut hold_start: Option<f64> = None;
    let mut stalled = 0;
    let mut killed = false;
    let mut at_kill = None;
    let mut interrupted = false;
    let kill_index = args
        .kill_backend
        .as_ref()
        .and_then(|k| k.backend.strip_prefix('b')?.parse::<usize>().ok())
        .map(|i| i.saturating_sub(1));
    loop {
        let sig = process::wait_signal(&[SIGINT, SIGTERM], Duration::from_secs(1)).context("waiting for signals")?;
        let t = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
        let lines: Vec<Option<BackendLine>> = p
            .backends
            .iter()
            .map(|&i| guard.procs[i].stderr_lines().iter().rev().find_map(|l| live::parse_backend(l)))
            .collect();
        let client: Option<ClientLine> =
            guard.procs[p.load].stderr_lines().iter().rev().find_map(|l| live::parse_client(l));
        let stats: Vec<LbStat> = p.sockets.iter().filter_map(|s| live::query_stat(s)).collect();
        tracker.observe(t, client, &stats, &lines);
        eprintln!("{}", tracker.line(t, args.count));

        let c = tracker.client();
        if hold_start.is_none() {
            stalled = if c.connecting == 0 && c.rate == 0 && c.established > 0 { stalled + 1 } else { 0 };
            if c.established >= args.count || stalled >= 3 || started.elapsed() >= ramp_limit {
                hold_start = Some(t);
            }
        }
        if let (Some(h0), Some(k), Some(i)) = (hold_start, &args.kill_backend, kill_index)
            && !killed
            && t - h0 >= k.after.as_secs_f64()
        {
            at_kill = Some(overflows(guard, hosts));
            let victim = &mut guard.procs[p.backends[i]];
            victim.stop(SIGKILL, Duration::from_secs(5));
            tracker.killed(i, t);
            killed = true;
            eprintln!("killed backend {} (SIGKILL) at {t:.0}s", k.backend);
        }
        if let Some(status) = guard.procs[p.load].exited() {
            bail!("{}", guard.procs[p.load].failure(&format!("ended early ({status})")));
        }
        for &i in p.haproxies {
            if let Some(status) = guard.procs[i].exited() {
                bail!("{}", guard.procs[i].failure(&format!("ended early ({status})")));
            }
        }
        for (n, &i) in p.backends.iter().enumerate() {
            if kill_index == Some(n) && killed {
                continue;
            }
            if let Some(status) = guard.procs[i].exited() {
                bail!("{}", guard.procs[i].failure(&format!("ended early ({status})")));
            }
        }
        if sig.is_some() {
            interrupted = true;
            break;
        }
        if hold_start.is_some_and(|h0| t - h0 >= args.hold.as_secs_f64()) {
            break;
        }
    }
    let now = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    let ramp = hold_start.unwrap_or(now);
    Ok(End { interrupted, ramp, hold: ((now - ramp) * 10.0).round() / 10.0, at_kill })
}
