//! `tcpmax serve`: a server that holds a huge number of connections.
//!
//! Every shard listens on every address with SO_REUSEPORT, so the kernel
//! spreads new connections over the shards' accept queues. `silent` reads and
//! discards; `echo` writes back with backpressure. Admission control refuses
//! new connections (with RST) above `--max-conns` or above the memory
//! watermark, and admits again below the low mark. In ws and mqtt modes a
//! header block, frame or packet split over reads is held 5 s at most and
//! within a budget all connections share ([`input`]); memory freed goes
//! back to the kernel, so RSS follows what is live.
//!
//! Its headroom is measured once a second ([`headroom`]) against
//! `--memory-budget`, else its cgroup's memory limit, else the machine, and
//! shown in the status line and on `/metrics`; `--agent` tells a load
//! balancer the same headroom with HAProxy's agent-check protocol
//! ([`agent`]), so it steers new connections away before refusals start.

pub mod agent;
pub mod agent_port;
pub mod headroom;
pub mod input;
pub mod metrics;
pub mod server;
pub mod shard;
pub mod side_port;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::engine::sizing;
use crate::engine::stats::ShardStats;
use crate::load::target::{self, Target};
use crate::output;
use crate::procfs::ProcFs;
use crate::sys::process;
use crate::units::{self, MemoryLimit, group};
pub use server::{Server, ServerConfig};

/// What the server does with bytes it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Read and discard.
    Silent,
    /// Write back what was read, with backpressure.
    Echo,
    /// WebSocket: answer upgrades, echo data frames, answer pings and closes.
    Ws,
    /// MQTT 3.1.1: answer CONNECT, PINGREQ and SUBSCRIBE.
    Mqtt,
}

/// Arguments of `tcpmax serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Addresses to listen on, comma-separated (port 0 picks one free port);
    /// a host name listens on every address it resolves to.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:9000", value_parser = target::parse_listen)]
    pub listen: Vec<Target>,
    /// silent: read and discard; echo: write back, with backpressure; ws:
    /// WebSocket echo; mqtt: an MQTT broker that answers CONNECT and PINGREQ.
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    pub mode: Mode,
    /// Also echo UDP datagrams on the same port numbers.
    #[arg(long)]
    pub udp: bool,
    /// Refuse connections above this many (e.g. 500k); also sizes the shards.
    #[arg(long, allow_hyphen_values = true, value_parser = units::parse_positive_count)]
    pub max_conns: Option<u64>,
    /// Refuse new connections while machine memory in use is above this
    /// (85% of MemTotal, or a size like 20GiB); admit again 5% below.
    #[arg(long, value_parser = units::parse_memory_limit)]
    pub max_memory: Option<MemoryLimit>,
    /// Serve Prometheus metrics over HTTP on this address.
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// Answer HAProxy's agent-check on this address: weight, drain and
    /// maxconn from this backend's headroom.
    #[arg(long, value_name = "ADDR:PORT")]
    pub agent: Option<SocketAddr>,
    /// This backend's own memory budget (64MiB): its footprint is its
    /// anonymous RSS plus sockets held x the kernel's bytes per socket;
    /// refused above it. Default: the cgroup's limit, else the machine.
    #[arg(long, value_name = "SIZE", value_parser = units::parse_bytes)]
    pub memory_budget: Option<u64>,
    /// The agent's marks, shares of the limit in use: the weight falls above
    /// FALL, drain at HIGH, admit again below LOW.
    #[arg(long, value_name = "FALL,LOW,HIGH", default_value = "45%,55%,60%", value_parser = agent::parse_marks)]
    pub agent_marks: agent::Marks,
    /// How long a balancer takes to hear the agent (its agent-inter plus
    /// one second of measurement): sockets arriving meanwhile count as held.
    #[arg(long, value_name = "DURATION", default_value = "1500ms", value_parser = units::parse_duration)]
    pub agent_reaction: Duration,
    /// Number of shards (default: derived from --max-conns, or from the
    /// doctor's server ceiling, and the fd limit).
    #[arg(long, allow_hyphen_values = true, value_parser = crate::load::run::parse_shards)]
    pub shards: Option<usize>,
    /// Stop by itself after this long (default: run until SIGINT/SIGTERM).
    #[arg(long, value_parser = units::parse_duration)]
    pub duration: Option<Duration>,
    /// Print the status line every second even when stderr is not a terminal.
    #[arg(long)]
    pub status: bool,
    /// Write the final summary as JSON to FILE (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// TLS 1.3 under the mode: CERT,KEY (PEM files), or self-signed (a
    /// generated certificate for localhost, its PEM written out for --ca).
    #[arg(long, value_name = "CERT,KEY|self-signed", value_parser = crate::proto::tls::parse_cert_source)]
    pub tls: Option<crate::proto::tls::CertSource>,
}

/// The final summary of a serve run.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Addresses served.
    pub listen: Vec<SocketAddr>,
    /// Mode.
    pub mode: Mode,
    /// Most shards that ran at once.
    pub shards: usize,
    /// Descriptors one shard may hold.
    pub per_shard: u64,
    /// Seconds served.
    pub seconds: f64,
    /// Most connections open at once (as sampled each second).
    pub peak_open: u64,
    /// From the stop to every connection closed (the kernel's work, which
    /// grows with the connections held).
    pub teardown_seconds: f64,
    /// What ended the run: `SIGINT`, `SIGTERM` or `duration`.
    pub stopped_by: &'static str,
    /// Counters at the end.
    pub totals: ShardStats,
    /// One sample a second (established is the connections open).
    pub timeline: Vec<crate::load::timeline::Sample>,
    /// Where it ran.
    pub machine: crate::machine::Machine,
    /// Memory against its limit, and the agent's state changes.
    pub headroom: headroom::Summary,
    /// Connections the peer closed with a reset (RST, e.g. `load`'s default
    /// close), counted in `totals.closed`; not in `totals.errors`.
    pub closed_by_peer_reset: u64,
}

/// Takes the peers' resets out of the error table: a server sees
/// ECONNRESET only when a client closed abortively (`SO_LINGER` 0, as `load`
/// closes by default), which is a close, not a failure of the server.
fn peer_resets(t: &mut ShardStats) -> u64 {
    t.errors.take(crate::sys::errno_name(libc::ECONNRESET))
}

/// Decides the shard layout for `args` on this machine: refuses a
/// `--max-conns` above the doctor's server ceiling (a cap the machine never
/// reaches is a mistake) and a `--shards` above what the machine can run.
/// With `--max-conns`, enough shards for it start up front; without, about
/// one per core, and the pool grows as they fill. `--shards` pins the count.
pub fn shard_plan(args: &Args) -> anyhow::Result<sizing::ShardPlan> {
    let nofile = process::raise_nofile().context("reading RLIMIT_NOFILE")?;
    let fs = ProcFs::default();
    let doctor = crate::doctor::diagnose(&fs);
    if let (Some(n), Some(ceiling)) = (args.max_conns, doctor.ceiling.server)
        && n > ceiling
    {
        let binding = doctor.binding.server.as_deref().unwrap_or("unknown");
        return Err(crate::Error::Refused {
            reason: format!(
                "--max-conns {} is above the {} connections the doctor predicts a server here holds, bound by {binding}",
                group(n),
                group(ceiling)
            ),
            fix: "leave --max-conns out (serve then sizes for the ceiling), or give a smaller one; `tcpmax doctor` explains".into(),
        }
        .into());
    }
    // The bound is for what the doctor predicts a server here holds.
    let target = args.max_conns.or(doctor.ceiling.server).unwrap_or(nofile.soft);
    let bound = sizing::max_shards(target, &sizing::ThreadLimits::read(&fs));
    let mut plan = sizing::plan_hashed(args.max_conns.unwrap_or(0), nofile.soft, sizing::cores());
    plan.shards = plan.shards.min(bound.max);
    if let Some(n) = args.shards {
        plan.shards = bound.check(n)?;
    }
    Ok(plan)
}

/// How often the supervisor looks at the shards while connections change;
/// once a second at rest.
const BUSY_LOOK: Duration = Duration::from_millis(100);
const IDLE_LOOK: Duration = Duration::from_secs(1);

/// Runs `tcpmax serve` until SIGINT/SIGTERM or `--duration`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Before any thread starts, so every shard inherits the blocked mask and
    // only the watcher ever takes these signals.
    crate::interrupt::install().context("watching SIGINT/SIGTERM")?;
    // Memory freed after a burst (incomplete frames, TLS handshakes) goes
    // back to the kernel, so RSS and the agent follow what is live (#17).
    process::return_freed_promptly();
    let plan = shard_plan(&args)?;
    let backlog = ProcFs::default().sysctl_u64("net.core.somaxconn").unwrap_or(4096).min(i32::MAX as u64) as i32;
    let max_memory = match args.max_memory {
        Some(limit) => Some(limit.bytes_of(ProcFs::default().meminfo().context("reading /proc/meminfo")?.total)),
        None => None,
    };
    let config = ServerConfig {
        listen: args.listen.iter().flat_map(|t| t.addrs.iter().copied()).collect(),
        mode: args.mode,
        udp: args.udp,
        max_conns: args.max_conns,
        max_memory,
        shards: plan.shards,
        elastic: args.shards.is_none(),
        backlog,
    };
    // One stateless session ticket per handshake: clients may resume.
    let tls = args.tls.as_ref().map(|t| crate::files::server_tls(t, 1)).transpose()?;
    let mut server = Server::start_with_tls(&config, tls.as_ref().map(|t| t.0.clone()))?;
    let metrics =
        args.metrics.map(|addr| metrics::MetricsServer::start(addr, metrics::Metrics::new(true))).transpose()?;
    let limit = plan.per_shard.saturating_mul(plan.shards as u64);
    let mut throttle =
        headroom::Throttle::start(args.memory_budget, args.agent, args.agent_marks, args.agent_reaction, limit)?;
    if let Some(b) = args.memory_budget {
        // Incomplete input may take a quarter of the budget.
        server.input_budget().set_limit(server::INPUT_BUDGET.min(b / 4));
    }
    let mut human = output::human(args.json.as_deref());
    if let Some((_, Some(pem))) = &tls {
        writeln!(human, "tls self-signed certificate {}", pem.path().display())?;
    }
    announce(&mut *human, &server, plan, metrics.as_ref().map(|m| m.addr()), &throttle)?;

    let live = args.status || output::stderr_is_tty();
    let tty = output::stderr_is_tty();
    let started = Instant::now();
    let mut peak = 0;
    let mut last_open;
    let mut last = (Instant::now(), 0u64, u64::MAX);
    let mut timeline = crate::load::timeline::Recorder::start(started, 0);
    let mut next_status = Instant::now();
    let mut trimmed = (0u64, 0u64, 0u64);
    let signal = loop {
        let look = if last.2 == last.1 { IDLE_LOOK } else { BUSY_LOOK };
        let sig = crate::interrupt::wait(look);
        let t = server.poll();
        if let Some(w) = server.take_warning() {
            eprintln!("serve: {w}");
        }
        peak = peak.max(t.open);
        last_open = t.open;
        timeline.tick_server(Instant::now(), &t, server.shards());
        let now = Instant::now();
        if now >= next_status {
            next_status = now + IDLE_LOOK;
            // A second without accepts after connections closed, buffers
            // were released or TLS handshakes ran: what they freed goes back
            // to the kernel before memory is measured, so RSS (and the
            // agent's drain) follows what is live, in every mode.
            let freed = (t.opened, t.closed, server.input_budget().released());
            if t.opened == last.1 && freed != trimmed {
                crate::sys::process::trim_heap();
                trimmed = freed;
            }
            // Once a second: the agent's rate estimate is calibrated for it.
            let view = throttle.tick(t.open, t.opened);
            if let Some(ok) = throttle.budget_admits() {
                server.set_memory_ok(ok && (args.max_memory.is_none() || server.memory_ok()));
            }
            if let Some(m) = &metrics {
                m.metrics().update(&t, server.shards(), server.memory_ok(), view.as_ref());
            }
            if live {
                let rate = (t.opened - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-3);
                status_line(&t, rate, server.shards(), started.elapsed(), tty, &throttle.status());
            }
            last = (now, t.opened, last.1);
        }
        if sig.is_some() || args.duration.is_some_and(|d| started.elapsed() >= d) {
            break sig;
        }
    };
    if tty && live {
        eprintln!();
    }
    let per_shard = plan.per_shard;
    let shards = server.peak_shards();
    let listen = server.local_addrs().to_vec();
    let stop_began = Instant::now();
    let held = last_open;
    let stopped_by = match signal {
        Some(crate::sys::process::SIGINT) => "SIGINT",
        Some(_) => "SIGTERM",
        None => "duration",
    };
    if held >= output::SHOW_TEARDOWN {
        eprintln!(
            "serve: stopping ({stopped_by}): closing {} connections, the kernel's work; a second signal exits at once",
            group(held)
        );
    }
    let totals = server.shutdown_watching(IDLE_LOOK, |left| {
        if live {
            output::closing_line(left, held, tty);
        }
    });
    if tty && live && held >= output::SHOW_TEARDOWN {
        eprintln!();
    }
    let teardown_seconds = stop_began.elapsed().as_secs_f64();
    let mut totals = totals;
    let closed_by_peer_reset = peer_resets(&mut totals);
    let summary = Summary {
        listen,
        mode: args.mode,
        shards,
        per_shard,
        seconds: started.elapsed().as_secs_f64(),
        peak_open: peak.max(totals.held_at_stop),
        teardown_seconds,
        stopped_by,
        totals,
        timeline: timeline.finish(),
        headroom: throttle.summary(),
        machine: crate::machine::Machine::read(),
        closed_by_peer_reset,
    };
    let mut text = Vec::new();
    print_summary(&mut text, &summary, args.agent.is_some())?;
    output::emit(args.json.as_deref(), &summary, &String::from_utf8_lossy(&text))?;
    Ok(ExitCode::from(signal.map_or(0, crate::interrupt::exit_code)))
}

fn announce(
    out: &mut dyn Write,
    server: &Server,
    plan: sizing::ShardPlan,
    metrics: Option<SocketAddr>,
    throttle: &headroom::Throttle,
) -> anyhow::Result<()> {
    for a in server.local_addrs() {
        let proto = if server.udp() { "tcp+udp" } else { "tcp" };
        writeln!(out, "listening {a} {proto}")?;
    }
    writeln!(
        out,
        "shards {} (each its own fd table, up to {} sockets each; more are added as they fill)",
        server.shards(),
        group(plan.per_shard)
    )?;
    if let Some(m) = metrics {
        writeln!(out, "metrics http://{m}/metrics")?;
    }
    throttle.announce(out)?;
    out.flush()?;
    Ok(())
}

fn status_line(t: &ShardStats, rate: f64, shards: usize, up: Duration, tty: bool, headroom: &str) {
    let mut errors = t.errors.clone();
    errors.take(crate::sys::errno_name(libc::ECONNRESET));
    let line = format!(
        "[{:>5}s] conns {} | shards {} | accepted {}/s | closed {} | refused {} max-conns, {} memory | backpressured {} | {headroom} | errors: {}",
        up.as_secs(),
        group(t.open),
        shards,
        group(rate as u64),
        group(t.closed),
        group(t.refused_max_conns),
        group(t.refused_memory),
        group(t.backpressured),
        errors.summary()
    );
    output::live_line(&line, tty);
}

/// The human summary; the agent's state changes only when `--agent` was
/// given (without it no balancer heard them).
fn print_summary(w: &mut dyn Write, s: &Summary, agent: bool) -> std::io::Result<()> {
    let t = &s.totals;
    writeln!(w, "served {:.1}s on {} shards", s.seconds, s.shards)?;
    writeln!(w, "  peak connections    {}", group(s.peak_open))?;
    writeln!(w, "  accepted            {}", group(t.opened))?;
    writeln!(w, "  closed              {}", group(t.closed))?;
    if s.closed_by_peer_reset > 0 {
        writeln!(w, "    by peer (RST)     {}", group(s.closed_by_peer_reset))?;
    }
    writeln!(w, "  refused (max-conns) {}", group(t.refused_max_conns))?;
    writeln!(w, "  refused (memory)    {}", group(t.refused_memory))?;
    writeln!(w, "  bytes in / out      {} / {}", group(t.bytes_in), group(t.bytes_out))?;
    if t.udp_datagrams > 0 {
        writeln!(w, "  udp datagrams       {}", group(t.udp_datagrams))?;
    }
    writeln!(w, "  errors              {}", t.errors.summary())?;
    writeln!(w, "  teardown            {:.1}s ({} held at the stop)", s.teardown_seconds, group(t.held_at_stop))?;
    let h = &s.headroom;
    let label = format!("memory ({})", h.basis.name());
    writeln!(
        w,
        "  {label:<20}peak {} of {}",
        units::human_bytes(h.peak_memory_used_bytes),
        units::human_bytes(h.memory_limit_bytes)
    )?;
    if agent && h.transitions.len() > 1 {
        let changes: Vec<String> = h.transitions.iter().map(|c| format!("{} at {:.1}s", c.state, c.t)).collect();
        writeln!(w, "  agent               {}", changes.join(", "))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(resets: u64) -> Summary {
        let mut totals = ShardStats { opened: 20_000, closed: 20_000, ..ShardStats::default() };
        for _ in 0..resets {
            totals.errors.add(libc::ECONNRESET);
        }
        totals.errors.add(libc::EMFILE);
        let closed_by_peer_reset = peer_resets(&mut totals);
        let up = agent::State::Up { weight: 100 };
        Summary {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 9000))],
            mode: Mode::Echo,
            shards: 2,
            per_shard: 10_000,
            seconds: 5.0,
            peak_open: 20_000,
            teardown_seconds: 0.1,
            stopped_by: "SIGTERM",
            totals,
            timeline: Vec::new(),
            machine: crate::machine::Machine::read(),
            headroom: headroom::Summary {
                basis: agent::Basis::Machine,
                memory_limit_bytes: 1 << 30,
                peak_memory_used_bytes: 1 << 20,
                transitions: vec![
                    headroom::Transition { t: 0.0, state: up },
                    headroom::Transition { t: 3.1, state: agent::State::Drain },
                ],
            },
            closed_by_peer_reset,
        }
    }

    fn text(s: &Summary, agent: bool) -> String {
        let mut out = Vec::new();
        print_summary(&mut out, s, agent).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn peers_resets_are_closes_not_errors() {
        // #18: "errors ECONNRESET 20000" after a clean `load` run.
        let s = summary(20_000);
        let out = text(&s, false);
        assert!(out.contains("  closed              20,000\n    by peer (RST)     20,000\n"), "{out}");
        assert!(out.contains("  errors              EMFILE 1\n"), "{out}");
        assert!(!out.contains("ECONNRESET"), "{out}");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["closed_by_peer_reset"], 20_000);
        assert_eq!(json["totals"]["errors"], serde_json::json!({ "EMFILE": 1 }));
        assert!(!text(&summary(0), false).contains("by peer"));
    }

    #[test]
    fn the_agent_line_only_with_an_agent() {
        // #18: "agent up 100% at 0.0s, drain at 3.1s" without --agent.
        let s = summary(0);
        assert!(!text(&s, false).contains("agent"), "{}", text(&s, false));
        assert!(
            text(&s, true).contains("  agent               up 100% at 0.0s, drain at 3.1s\n"),
            "{}",
            text(&s, true)
        );
    }
}
