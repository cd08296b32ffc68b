//! Running a load: the command line of `tcpmax load`, the supervisor loop
//! (ramp, hold, teardown, one sample a second) and the progress line.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;

use super::agent::{AgentInfo, CommandLine, INDEX_ENV, Waited, wait_until};
use super::bytes::parse_escaped;
use super::hist::Histograms;
use super::plan::{self, PairBudget, Plan, SourceSpec};
use super::report::{LoadReport, Percentiles, Sample, errno_rows, unix_ms_now};
use crate::engine::client::{Client, ClientConfig, CloseMode};
use crate::engine::sizing;
use crate::engine::stats::ShardStats;
use crate::machine::{self, Machine};
use crate::output;
use crate::procfs::ProcFs;
use crate::sys::process::{self, SIGINT, SIGTERM};
use crate::units::{self, CountOrPercent, group};

/// Bytes given on the command line with escapes (`\r\n`, `\x00`).
#[derive(Debug, Clone)]
pub struct Payload(pub Vec<u8>);

fn parse_payload(s: &str) -> Result<Payload, String> {
    parse_escaped(s).map(Payload)
}

/// Arguments of `tcpmax load`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Destinations: ADDR:PORT[,ADDR:PORT...] (any TCP server).
    #[arg(value_delimiter = ',', required = true, value_name = "ADDR:PORT")]
    pub targets: Vec<SocketAddr>,
    /// Connections to open and hold (10k, 1M).
    #[arg(short = 'c', long = "connections", default_value = "10k", value_parser = units::parse_count)]
    pub count: u64,
    /// Connects per second at most (default: as fast as the kernel accepts,
    /// with a bounded number in flight).
    #[arg(long, value_parser = units::parse_count)]
    pub rate: Option<u64>,
    /// Source IPs: an address, a range (127.0.0.2-127.0.0.40) or a CIDR;
    /// repeatable. Default for loopback targets: as many 127.x as needed.
    #[arg(long = "source", value_name = "SPEC")]
    pub sources: Vec<SourceSpec>,
    /// Connections per (source, destination) pair at most: a share of the
    /// local port range (40%) or a count. Connect slows down sharply past
    /// about half of a pair's range.
    #[arg(long, default_value = "40%")]
    pub pair_budget: PairBudget,
    /// How long to hold the connections once all are attempted.
    #[arg(long, default_value = "30s", value_parser = units::parse_duration)]
    pub hold: Duration,
    /// Pings per second over all held connections (10k), or a share of the
    /// target per second (1%); 0 for none. Pings are 16-byte frames that an
    /// echo server returns; with --message, that message instead.
    #[arg(long, default_value = "0", value_parser = units::parse_count_or_percent)]
    pub ping_rate: CountOrPercent,
    /// Bytes to send at the ping rate instead of ping frames, escapes
    /// allowed ('PING\r\n'); the reply's first bytes end the round trip.
    #[arg(long, value_parser = parse_payload)]
    pub message: Option<Payload>,
    /// Bytes to send once right after each connect, escapes allowed.
    #[arg(long, value_parser = parse_payload)]
    pub first_message: Option<Payload>,
    /// A connect not established after this long fails with ETIMEDOUT.
    #[arg(long, default_value = "3s", value_parser = units::parse_duration)]
    pub connect_timeout: Duration,
    /// How to close at the end: rst leaves no TIME_WAIT; fin is orderly.
    #[arg(long, value_enum, default_value_t = CloseMode::Rst)]
    pub close: CloseMode,
    /// Reopen connections the server closes (or that fail), to keep the
    /// target held; at most as many reopenings as the target.
    #[arg(long)]
    pub reconnect: bool,
    /// Connects in flight at most, over all shards.
    #[arg(long, default_value = "4096", value_parser = units::parse_count)]
    pub in_flight: u64,
    /// Number of shards (default: derived from the target and the fd limit).
    #[arg(long)]
    pub shards: Option<usize>,
    /// Write the report as JSON to FILE (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// A checked load: the plan and the engine's configuration.
#[derive(Debug, Clone)]
pub struct Load {
    /// The address plan.
    pub plan: Plan,
    /// What the engine runs.
    pub client: ClientConfig,
    /// How long to hold.
    pub hold: Duration,
    /// Which agent of which whole plan.
    pub agent: AgentInfo,
}

/// Checks the arguments and computes the plan, before any socket opens.
pub fn prepare(args: &Args) -> crate::Result<Load> {
    let usable = plan::usable_local_ports(&ProcFs::default()).unwrap_or(28_232);
    let sources = if args.sources.is_empty() {
        plan::auto_loopback_sources(args.count, &args.targets, usable, args.pair_budget)
    } else {
        plan::expand_sources(&args.sources)?
    };
    let plan = plan::plan(args.count, &args.targets, &sources, usable, args.pair_budget)?;
    let nofile = process::raise_nofile().map_err(|e| crate::Error::os("raising RLIMIT_NOFILE", e))?;
    let shards = match args.shards {
        Some(0) => return Err(crate::Error::Input("--shards must be at least 1".into())),
        Some(n) => n,
        None => sizing::plan(args.count, nofile.soft, sizing::cores()).shards,
    };
    let client = ClientConfig {
        pairs: plan.pairs.iter().map(|p| (p.source, p.dest)).collect(),
        count: args.count,
        shards,
        in_flight: (args.in_flight as usize).div_ceil(shards).max(1),
        rate: args.rate.map(|r| r as f64),
        connect_timeout: args.connect_timeout,
        ping_rate: args.ping_rate.of(args.count) as f64,
        message: args.message.as_ref().map(|p| Arc::from(p.0.as_slice())),
        first_message: args.first_message.as_ref().map(|p| Arc::from(p.0.as_slice())),
        reconnect: args.reconnect,
        close: args.close,
    };
    Ok(Load { plan, client, hold: args.hold, agent: AgentInfo::single(args) })
}

/// What a caller of [`execute`] hooks into the run.
#[allow(missing_debug_implementations)] // closures
pub struct Hooks<'a> {
    /// Sees one sample a second.
    pub tick: &'a mut dyn FnMut(&Sample, &ShardStats),
    /// Asked about ten times a second: true ends the run now (Ctrl-C).
    pub stop: &'a mut dyn FnMut() -> bool,
    /// Asked about ten times a second during the ramp: a reason stops
    /// opening connections (what is held stays held for the hold).
    pub guard: &'a mut dyn FnMut() -> Option<String>,
    /// Called once when the hold ends, before teardown: the peak.
    pub at_peak: &'a mut dyn FnMut(&ShardStats),
}

/// Runs a load to the end: ramp until every connection was attempted (or a
/// guard stops it), hold, close. What was measured is always returned, also
/// when the run is stopped early.
pub fn execute(load: &Load, hooks: Hooks<'_>) -> crate::Result<LoadReport> {
    let Hooks { tick, stop, guard, at_peak } = hooks;
    let count = load.client.count;
    let started = Instant::now();
    let mut client = Client::start(&load.client)?;
    let mut timeline = Vec::new();
    let (mut peak, mut rss) = (0u64, 0u64);
    let mut last = (0.0f64, ShardStats::default());
    let mut ramp_end: Option<Instant> = None;
    let mut interrupted = false;
    let mut stopped_by: Option<String> = None;
    let t = loop {
        let t = client.poll_wait(Duration::from_millis(100));
        let now = Instant::now();
        peak = peak.max(t.open);
        if ramp_end.is_none()
            && stopped_by.is_none()
            && let Some(reason) = guard()
        {
            client.halt_ramp();
            stopped_by = Some(reason);
        }
        let attempted = t.opened + t.failed >= count || stopped_by.is_some();
        if ramp_end.is_none() && attempted && t.connecting == 0 {
            ramp_end = Some(now);
            client.start_heartbeats();
            rss = rss.max(machine::rss_anon(std::process::id()).unwrap_or(0));
        }
        let secs = now.duration_since(started).as_secs_f64();
        if secs - last.0 >= 1.0 {
            let dt = secs - last.0;
            let s = Sample {
                t: (secs * 10.0).round() / 10.0,
                unix_ms: unix_ms_now(),
                established: t.open,
                connecting: t.connecting,
                opened_per_s: (t.opened - last.1.opened) as f64 / dt,
                failed: t.failed,
                closed: t.closed,
                pongs_per_s: (t.pongs - last.1.pongs) as f64 / dt,
                errors: t.errors.total(),
            };
            tick(&s, &t);
            timeline.push(s);
            last = (secs, t.clone());
        }
        if stop() {
            interrupted = true;
            break t;
        }
        if ramp_end.is_some_and(|r| now.duration_since(r) >= load.hold) {
            break t;
        }
    };
    rss = rss.max(machine::rss_anon(std::process::id()).unwrap_or(0));
    at_peak(&t);
    let held_at_end = t.open;
    let ramp = ramp_end.unwrap_or_else(Instant::now).duration_since(started);
    let hold = ramp_end.map_or(Duration::ZERO, |r| r.elapsed());
    let down = Instant::now();
    let (fin, hists) = client.stop();
    let teardown = down.elapsed();
    Ok(LoadReport {
        targets: unique_targets(&load.plan),
        count,
        plan: load.plan.clone(),
        shards: load.client.shards,
        peak_established: peak,
        held_at_end,
        opened: fin.opened,
        failed: fin.failed,
        closed_by_peer: t.closed,
        reconnects: fin.reconnects,
        ramp_seconds: ramp.as_secs_f64(),
        connect_rate_per_s: t.opened.min(count) as f64 / ramp.as_secs_f64().max(1e-9),
        hold_seconds: hold.as_secs_f64(),
        teardown_seconds: teardown.as_secs_f64(),
        interrupted,
        stopped_by,
        connect_latency_us: Percentiles::of(&hists.connect_us),
        ping_rtt_us: Percentiles::of(&hists.rtt_us),
        histograms: Histograms::of(&hists)?,
        pings_sent: fin.pings,
        pongs: fin.pongs,
        errors: errno_rows(&fin.errors),
        timeline,
        rss_anon_bytes: rss,
        rss_anon_bytes_per_connection: if peak == 0 { 0.0 } else { rss as f64 / peak as f64 },
        agent: load.agent.clone(),
        machine: Machine::read(),
    })
}

fn unique_targets(plan: &Plan) -> Vec<SocketAddr> {
    let mut v: Vec<SocketAddr> = Vec::new();
    for p in &plan.pairs {
        if !v.contains(&p.dest) {
            v.push(p.dest);
        }
    }
    v
}

/// Runs `tcpmax load`.
pub fn run(cmd: CommandLine) -> anyhow::Result<ExitCode> {
    process::block_signals(&[SIGINT, SIGTERM]).context("blocking SIGINT/SIGTERM")?;
    let CommandLine { load: args, agent } = cmd;
    let mine = agent.resolve(args, std::env::var_os(INDEX_ENV), SystemTime::now())?;
    let args = mine.args;
    let mut load = prepare(&args)?;
    load.agent = mine.info;
    let json_to_stdout = output::is_stdout(args.json.as_deref());
    let mut human: Box<dyn std::io::Write> = match (agent.quiet, json_to_stdout) {
        (true, _) => Box::new(std::io::sink()),
        (false, true) => Box::new(std::io::stderr()),
        (false, false) => Box::new(std::io::stdout()),
    };
    if agent.agents.is_some() {
        write!(human, "{}", load.agent.render())?;
    }
    if let Some((lo, hi)) = mine.sources {
        writeln!(human, "  sources {lo}-{hi} (agents on one host take disjoint loopback ranges)")?;
    }
    write!(human, "{}", plan::render(&load.plan))?;
    writeln!(human, "shards {} (each its own fd table)", load.client.shards)?;
    human.flush()?;
    if let Some(at) = agent.start_at {
        let left = at.duration_since(SystemTime::now()).unwrap_or_default();
        let stamp = humantime::format_rfc3339_millis(at);
        writeln!(human, "waiting for the start at {stamp} (in {:.1} s)", left.as_secs_f64())?;
        human.flush()?;
        if let Waited::Signal(sig) = wait_until(at, &[SIGINT, SIGTERM])? {
            eprintln!("tcpmax: interrupted while waiting for the start: no connection was opened");
            return Ok(ExitCode::from(128 + sig as u8));
        }
    }
    load.agent.ramp_start_unix_ms = unix_ms_now();

    let tty = output::stderr_is_tty() && !agent.quiet;
    let count = load.client.count;
    let report = execute(
        &load,
        Hooks {
            tick: &mut |s: &Sample, t: &ShardStats| {
                if !agent.quiet {
                    progress(s, t, count, tty)
                }
            },
            stop: &mut || process::wait_signal(&[SIGINT, SIGTERM], Duration::ZERO).ok().flatten().is_some(),
            guard: &mut || None,
            at_peak: &mut |_| {},
        },
    )?;
    if tty {
        eprintln!();
    }
    // The JSON first: a closed stdout must not lose what was measured.
    if let Some(path) = &args.json {
        output::write_json(path, &report)?;
    }
    write!(human, "{}", report.render())?;
    human.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn progress(s: &Sample, t: &ShardStats, count: u64, tty: bool) {
    let line = format!(
        "[{:>5.0}s] established {} / {} | {}/s | connecting {} | failed {} | closed by server {} | errors: {}",
        s.t,
        group(s.established),
        group(count),
        group(s.opened_per_s as u64),
        group(s.connecting),
        group(s.failed),
        group(s.closed),
        t.errors.summary()
    );
    output::live_line(&line, tty);
}
