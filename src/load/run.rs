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
use super::explain::AcceptQueue;
use super::hist::Histograms;
use super::plan::{self, PairBudget, Plan, SourceSpec};
use super::protocol::ProtoArgs;
use super::report::{LoadReport, Percentiles, Sample, errno_rows, errno_rows_named, first_limit, unix_ms_now};
use super::target::{self, Target};
use super::timeline::Recorder;
use crate::engine::client::{Client, ClientConfig, CloseMode};
use crate::engine::sizing;
use crate::engine::stats::ShardStats;
use crate::machine::{self, Machine};
use crate::output;
use crate::procfs::ProcFs;
use crate::procfs::drops::Drops;
use crate::sys::process;
use crate::units::{self, CountOrPercent, group};

/// Bytes given on the command line with escapes (`\r\n`, `\x00`).
#[derive(Debug, Clone)]
pub struct Payload(pub Vec<u8>);

fn parse_payload(s: &str) -> Result<Payload, String> {
    parse_escaped(s).map(Payload)
}

/// `--rate`: connects per second, at least 1.
fn parse_rate(s: &str) -> Result<u64, String> {
    match units::parse_positive_count(s) {
        Err(_) if units::parse_count(s) == Ok(0) => Err(format!(
            "`{s}` connects per second would never connect: give at least 1, or leave --rate out to connect as fast as the kernel accepts"
        )),
        r => r,
    }
}

/// `--connect-timeout`: a duration above zero.
fn parse_connect_timeout(s: &str) -> Result<Duration, String> {
    match units::parse_duration(s)? {
        d if d.is_zero() => {
            Err(format!("`{s}` would time out every connect at once: give more than 0 (examples: 500ms, 3s)"))
        }
        d => Ok(d),
    }
}

/// `--shards`: a count of at least 1 (the machine's bound is checked in
/// [`prepare`]).
pub fn parse_shards(s: &str) -> Result<usize, String> {
    let n = units::parse_positive_count(s)?;
    usize::try_from(n).map_err(|_| format!("`{s}` is more shards than this machine can address"))
}

/// Arguments of `tcpmax load`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Destinations: HOST:PORT[,HOST:PORT...] (any TCP server); a host name
    /// is resolved once and every address it resolves to is used.
    #[arg(value_delimiter = ',', required = true, value_name = "ADDR:PORT", value_parser = target::parse_target)]
    pub targets: Vec<Target>,
    /// Connections to open and hold (10k, 1M).
    #[arg(short = 'c', long = "connections", default_value = "10k", allow_hyphen_values = true, value_parser = units::parse_positive_count)]
    pub count: u64,
    /// Connects per second at most (default: as fast as the kernel accepts,
    /// with a bounded number in flight).
    #[arg(long, allow_hyphen_values = true, value_parser = parse_rate)]
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
    #[arg(long, default_value = "30s", allow_hyphen_values = true, value_parser = units::parse_duration)]
    pub hold: Duration,
    /// Pings per second over all held connections (10k), or a share of the
    /// target per second (1%); 0 for none. Pings are 16-byte frames that an
    /// echo server returns; with --message, that message instead.
    #[arg(long, default_value = "0", allow_hyphen_values = true, value_parser = units::parse_count_or_percent)]
    pub ping_rate: CountOrPercent,
    /// Bytes to send at the ping rate instead of ping frames, escapes
    /// allowed ('PING\r\n'); the reply's first bytes end the round trip.
    #[arg(long, value_parser = parse_payload)]
    pub message: Option<Payload>,
    /// Bytes to send once right after each connect, escapes allowed.
    #[arg(long, value_parser = parse_payload)]
    pub first_message: Option<Payload>,
    /// A connect not established after this long fails with ETIMEDOUT.
    #[arg(long, default_value = "3s", allow_hyphen_values = true, value_parser = parse_connect_timeout)]
    pub connect_timeout: Duration,
    /// How to close at the end: rst leaves no TIME_WAIT; fin is orderly.
    #[arg(long, value_enum, default_value_t = CloseMode::Rst)]
    pub close: CloseMode,
    /// Reopen connections the server closes (or that fail), to keep the
    /// target held; at most as many reopenings as the target.
    #[arg(long)]
    pub reconnect: bool,
    /// Connects in flight at most, over all shards.
    #[arg(long, default_value = "4096", allow_hyphen_values = true, value_parser = units::parse_positive_count)]
    pub in_flight: u64,
    /// Number of shards (default: derived from the target and the fd limit;
    /// never more than the connections or than the machine can run).
    #[arg(long, allow_hyphen_values = true, value_parser = parse_shards)]
    pub shards: Option<usize>,
    /// Write the report as JSON to FILE (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// The protocol spoken over each connection (boxed: the command line
    /// stays small on the stack).
    #[command(flatten)]
    pub proto: Box<ProtoArgs>,
}

/// What a load is asked to do, typed and independent of the command line:
/// `tcpmax load` builds it from its arguments, `bench` and other runners
/// build it directly ([`Spec::new`] and the fields they change).
#[derive(Debug, Clone)]
pub struct Spec {
    /// Destinations, host names already resolved.
    pub targets: Vec<Target>,
    /// Connections to open and hold.
    pub count: u64,
    /// Connects per second at most.
    pub rate: Option<u64>,
    /// Source IPs given (empty: as many 127.x as needed for loopback).
    pub sources: Vec<SourceSpec>,
    /// Connections per (source, destination) pair at most.
    pub pair_budget: PairBudget,
    /// How long to hold once every connection was attempted.
    pub hold: Duration,
    /// Heartbeats per second, or a share of the target.
    pub ping_rate: CountOrPercent,
    /// Bytes sent at the ping rate instead of ping frames.
    pub message: Option<Vec<u8>>,
    /// Bytes sent once right after each connect.
    pub first_message: Option<Vec<u8>>,
    /// A connect not established after this long fails with ETIMEDOUT.
    pub connect_timeout: Duration,
    /// How connections end.
    pub close: CloseMode,
    /// Reopen lost connections within a budget of the target.
    pub reconnect: bool,
    /// Connects in flight at most, over all shards.
    pub in_flight: u64,
    /// Pinned shard count (None: elastic).
    pub shards: Option<usize>,
    /// The protocol spoken over each connection (bare TCP by default).
    pub proto: Box<ProtoArgs>,
}

impl Spec {
    /// `count` connections to `targets` with the command line's defaults.
    pub fn new(targets: Vec<Target>, count: u64) -> Spec {
        Spec {
            targets,
            count,
            rate: None,
            sources: Vec::new(),
            pair_budget: PairBudget::default(),
            hold: Duration::from_secs(30),
            ping_rate: CountOrPercent::Count(0),
            message: None,
            first_message: None,
            connect_timeout: Duration::from_secs(3),
            close: CloseMode::Rst,
            reconnect: false,
            in_flight: 4096,
            shards: None,
            proto: Box::default(),
        }
    }
}

impl From<&Args> for Spec {
    fn from(a: &Args) -> Spec {
        Spec {
            targets: a.targets.clone(),
            count: a.count,
            rate: a.rate,
            sources: a.sources.clone(),
            pair_budget: a.pair_budget,
            hold: a.hold,
            ping_rate: a.ping_rate,
            message: a.message.as_ref().map(|p| p.0.clone()),
            first_message: a.first_message.as_ref().map(|p| p.0.clone()),
            connect_timeout: a.connect_timeout,
            close: a.close,
            reconnect: a.reconnect,
            in_flight: a.in_flight,
            shards: a.shards,
            proto: a.proto.clone(),
        }
    }
}

/// A checked load: the plan and the engine's configuration.
#[derive(Debug, Clone)]
pub struct Load {
    /// The address plan.
    pub plan: Plan,
    /// What the engine runs.
    pub client: ClientConfig,
    /// The protocol spoken over each connection.
    pub proto: crate::proto::ClientSpec,
    /// TLS under it, if any.
    pub tls: Option<crate::proto::tls::ClientSetup>,
    /// How long to hold.
    pub hold: Duration,
    /// What each target given by name resolved to and which addresses are
    /// used, one line each.
    pub notes: Vec<String>,
    /// Which agent of which whole plan.
    pub agent: AgentInfo,
}

/// Checks the request and computes the plan, before any socket opens.
pub fn prepare(args: &Spec) -> crate::Result<Load> {
    let fs = ProcFs::default();
    let usable = plan::usable_local_ports(&fs).unwrap_or(28_232);
    let given = plan::expand_sources(&args.sources)?;
    let (targets, notes) = target::choose(&args.targets, &given)?;
    let sources = if args.sources.is_empty() {
        plan::auto_loopback_sources(args.count, &targets, usable, args.pair_budget)
    } else {
        given
    };
    let plan = plan::plan(args.count, &targets, &sources, usable, args.pair_budget)?;
    let proto = args.proto.spec(&args.targets, args.message.is_some() || args.first_message.is_some())?;
    let tls = args.proto.tls_setup(&args.targets)?;
    let nofile = process::raise_nofile().map_err(|e| crate::Error::os("raising RLIMIT_NOFILE", e))?;
    let bound = sizing::max_shards(args.count, &sizing::ThreadLimits::read(&fs));
    let shards = match args.shards {
        Some(n) => bound.check(n)?,
        // Elastic: about one per core to start; more as they fill.
        None => sizing::plan(args.count, nofile.soft, sizing::cores()).shards.min(sizing::cores()).min(bound.max),
    };
    let client = ClientConfig {
        pairs: plan.pairs.iter().map(|p| (p.source, p.dest)).collect(),
        count: args.count,
        shards,
        elastic: args.shards.is_none(),
        in_flight: (args.in_flight as usize).div_ceil(shards).max(1),
        rate: args.rate.map(|r| r as f64),
        connect_timeout: args.connect_timeout,
        ping_rate: args.ping_rate.of(args.count) as f64,
        message: args.message.as_deref().map(Arc::from),
        first_message: args.first_message.as_deref().map(Arc::from),
        reconnect: args.reconnect,
        close: args.close,
    };
    Ok(Load { plan, client, proto, tls, hold: args.hold, notes, agent: AgentInfo::single(args) })
}

/// What a caller of [`execute`] hooks into the run.
#[allow(missing_debug_implementations)] // closures
pub struct Hooks<'a> {
    /// Sees one sample a second.
    pub tick: &'a mut dyn FnMut(&Sample, &ShardStats),
    /// Asked each time the client is looked at (about ten times a second):
    /// during the ramp, a reason stops opening connections (what is held
    /// stays held for the hold).
    pub guard: &'a mut dyn FnMut() -> Option<String>,
    /// Called once when the hold ends, before teardown: the peak.
    pub at_peak: &'a mut dyn FnMut(&ShardStats),
    /// During the teardown, `(left, held)`: connections left to close of
    /// those held at the stop; once as it begins (left = held), then once a
    /// second (closing a million is seconds of the kernel's work).
    pub closing: &'a mut dyn FnMut(u64, u64),
    /// Once every connection was attempted: true when the other end holds
    /// the `n` connections established too (bench sees its server; a load
    /// cannot see its server and says true). The ramp ends, and heartbeats
    /// start, only then: a server still accepting the last connections of
    /// the ramp would delay the first heartbeats.
    pub peer_holds: &'a mut dyn FnMut(u64) -> bool,
}

/// The longest the ramp's end waits for the other end to hold what this one
/// does (a server that refused or lost some never will).
const PEER_WAIT: Duration = Duration::from_secs(2);

/// How often the supervisor looks at the shards' counters at most (it wakes
/// sooner when a shard publishes).
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// Runs a load to the end: ramp until every connection was attempted (or a
/// guard stops it), hold, close. A first SIGINT or SIGTERM
/// ([`interrupt`](crate::interrupt)) ends it early. What was measured is
/// always returned, also when the run is stopped early.
pub fn execute(load: &Load, hooks: Hooks<'_>) -> crate::Result<LoadReport> {
    let Hooks { tick, guard, at_peak, peer_holds, closing } = hooks;
    let count = load.client.count;
    // The kernel's drop counters, to name what dropped the SYNs of connects
    // that time out (read again at the peak, before the teardown).
    let drops_before = Drops::read(&ProcFs::default());
    let started = Instant::now();
    let mut client = Client::start_with(&load.client, &load.proto, load.tls.as_ref())?;
    let mut timeline = Recorder::start(started, load.client.shards);
    let (mut peak, mut rss, mut peak_shards) = (0u64, 0u64, client.shards());
    let mut ramp_end: Option<Instant> = None;
    let mut attempted_at: Option<Instant> = None;
    let mut interrupted = false;
    let mut stopped_by: Option<String> = None;
    let mut ended_early: Option<String> = None;
    let t = loop {
        let t = client.poll_wait(LOOK_EVERY);
        if let Some(w) = client.take_warning() {
            eprintln!("load: {w}");
        }
        let now = Instant::now();
        peak = peak.max(t.open);
        peak_shards = peak_shards.max(client.shards());
        let verdict = guard();
        if ramp_end.is_none()
            && stopped_by.is_none()
            && let Some(reason) = verdict
        {
            client.halt_ramp();
            stopped_by = Some(reason);
        }
        let attempted = t.opened + t.failed >= count || stopped_by.is_some();
        if attempted && t.connecting == 0 {
            attempted_at.get_or_insert(now);
        }
        let waited = attempted_at.is_some_and(|a| now.duration_since(a) >= PEER_WAIT);
        if ramp_end.is_none()
            && attempted
            && t.connecting == 0
            && (stopped_by.is_some() || waited || peer_holds(t.open))
        {
            ramp_end = Some(now);
            // What the handshakes freed goes back to the kernel (at rest,
            // RSS is what the connections hold), before the heartbeats: the
            // trim holds the allocator's locks for a moment.
            crate::sys::process::trim_heap();
            client.start_heartbeats();
            rss = rss.max(machine::rss_anon(std::process::id()).unwrap_or(0));
        }
        if let Some(s) = timeline.tick(now, &t, client.shards(), || client.rtt_hist()) {
            tick(&s, &t);
        }
        if crate::interrupt::requested().is_some() {
            interrupted = true;
            break t;
        }
        if ramp_end.is_some() && t.open == 0 && t.connecting == 0 && !load.client.reconnect {
            ended_early = Some(if t.opened == 0 {
                "nothing to hold: no connection was established".into()
            } else {
                format!("nothing left to hold: the server closed all {} connections", group(t.opened))
            });
            break t;
        }
        if ramp_end.is_some_and(|r| now.duration_since(r) >= load.hold) {
            break t;
        }
    };
    rss = rss.max(machine::rss_anon(std::process::id()).unwrap_or(0));
    at_peak(&t);
    let drops_after = Drops::read(&ProcFs::default());
    let targets = unique_targets(&load.plan);
    let queue = accept_queue(&targets, &drops_before, &drops_after);
    let ramp = ramp_end.unwrap_or_else(Instant::now).duration_since(started);
    let hold = ramp_end.map_or(Duration::ZERO, |r| r.elapsed());
    let down = Instant::now();
    // Every count below comes from the shards' last publication: each took
    // in the events pending at the stop, then counted what it still held.
    let held = t.open + t.connecting;
    closing(held, held);
    let (fin, hists) = client.stop_watching(Duration::from_secs(1), |left| closing(left, held));
    let teardown = down.elapsed();
    let accepted = fin.held_at_stop.saturating_sub(queue.map_or(0, |q| q.not_accepted()));
    let named_queue = queue.as_ref().and_then(AcceptQueue::name);
    let errors = match named_queue {
        Some(n) => errno_rows_named(&fin.errors, Some(n)),
        None => errno_rows(&fin.errors, Some((&drops_before, &drops_after))),
    };
    let goal_met = !interrupted
        && stopped_by.is_none()
        && ended_early.is_none()
        && accepted == count
        && (fin.closed == 0 || load.client.reconnect);
    Ok(LoadReport {
        report_version: output::REPORT_VERSION,
        first_limit: first_limit(
            queue.as_ref(),
            stopped_by.as_deref(),
            &errors,
            fin.failed > 0 || accepted < count,
            fin.closed,
        ),
        targets,
        count,
        plan: load.plan.clone(),
        shards: peak_shards,
        peak_established: peak.max(fin.held_at_stop),
        held_at_end: accepted,
        held_at_end_kernel: fin.held_at_stop,
        accept_queue: queue,
        opened: fin.opened,
        failed: fin.failed,
        closed_by_peer: fin.closed,
        reconnects: fin.reconnects,
        ramp_seconds: ramp.as_secs_f64(),
        connect_rate_per_s: fin.opened.min(count) as f64 / ramp.as_secs_f64().max(1e-9),
        hold_seconds: hold.as_secs_f64(),
        teardown_seconds: teardown.as_secs_f64(),
        interrupted,
        goal_met,
        hold_ended_early: ended_early,
        stopped_by,
        connect_latency_us: Percentiles::of(&hists.connect_us),
        protocol: load.proto.protocol(),
        handshake_latency_us: hists.handshake_us.as_ref().map(Percentiles::of).unwrap_or_default(),
        tls: load.tls.is_some(),
        handshake_rate_per_s: if load.proto.protocol() == crate::proto::Protocol::Tcp && load.tls.is_none() {
            0.0
        } else {
            fin.opened.min(count) as f64 / ramp.as_secs_f64().max(1e-9)
        },
        close_handshakes: fin.close_handshakes,
        ping_rtt_us: Percentiles::of(&hists.rtt_us),
        histograms: Histograms::of(&hists)?,
        pings_sent: fin.pings,
        pongs: fin.pongs,
        errors,
        timeline: timeline.finish(),
        rss_anon_bytes: rss,
        rss_anon_bytes_per_connection: if peak == 0 { 0.0 } else { rss as f64 / peak as f64 },
        agent: load.agent.clone(),
        machine: Machine::read(),
    })
}

/// The accept queues of the targets served on this machine, summed (None
/// when no target is local or none has a listener here).
fn accept_queue(targets: &[SocketAddr], before: &Drops, after: &Drops) -> Option<AcceptQueue> {
    let fs = ProcFs::default();
    let mut sum: Option<crate::procfs::listen::Listener> = None;
    for t in targets.iter().filter(|t| crate::procfs::listen::is_local(t.ip())) {
        if let Some(l) = crate::procfs::listen::read(&fs, *t) {
            let s = sum.get_or_insert_default();
            s.waiting = s.waiting.saturating_add(l.waiting);
            s.half_open = s.half_open.saturating_add(l.half_open);
            s.sockets = s.sockets.saturating_add(l.sockets);
        }
    }
    sum.map(|l| AcceptQueue::of(l, fs.sysctl_u64("net.core.somaxconn").ok(), before, after))
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
    crate::interrupt::install().context("watching SIGINT/SIGTERM")?;
    let CommandLine { load: args, agent } = cmd;
    let mine = agent.resolve(Spec::from(&args), std::env::var_os(INDEX_ENV), SystemTime::now())?;
    let mut load = prepare(&mine.spec)?;
    load.agent = mine.info;
    if let Some(sig) = crate::interrupt::requested() {
        // Reading the CA or resolving names took the signal: stop before
        // any connection opens.
        eprintln!("tcpmax: interrupted while starting: no connection was opened");
        return Ok(ExitCode::from((128 + sig).clamp(0, 255) as u8));
    }
    let mut human: Box<dyn std::io::Write> =
        if agent.quiet { Box::new(std::io::sink()) } else { output::human(args.json.as_deref()) };
    for note in &load.notes {
        writeln!(human, "{note}")?;
    }
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
        if let Waited::Signal(sig) = wait_until(at) {
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
            guard: &mut || None,
            at_peak: &mut |_| {},
            peer_holds: &mut |_| true,
            closing: &mut |left, held| {
                if !agent.quiet {
                    output::closing_line(left, held, tty)
                }
            },
        },
    )?;
    if tty {
        eprintln!();
    }
    match (agent.quiet, args.json.as_deref()) {
        // --quiet: the JSON report alone (it requires --json).
        (true, Some(dest)) => output::write_json(dest, &report)?,
        _ => output::emit(args.json.as_deref(), &report, &report.render())?,
    }
    Ok(exit_code(report.interrupted, report.goal_met))
}

/// 130 (SIGINT) or 143 (SIGTERM) when a signal ended the run, 0 when the
/// goal was met, 1 otherwise: the report is written in every case.
pub fn exit_code(interrupted: bool, goal_met: bool) -> ExitCode {
    match crate::interrupt::requested() {
        Some(sig) if interrupted => ExitCode::from((128 + sig).clamp(0, 255) as u8),
        _ if goal_met => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
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
