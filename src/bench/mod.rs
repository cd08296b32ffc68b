//! `tcpmax bench`: the main job. Starts a server and a client on loopback
//! in this process (each sharded over its own fd tables), ramps to the
//! target, holds with heartbeats, measures what it cost, tears down and
//! reports.
//!
//! Before any socket opens it asks the doctor for this machine's loopback
//! ceiling and refuses a target above it (unless `--force`). During the ramp
//! the [`guard`] stops opening connections before memory runs out; stopping
//! there is a result, reported as the first limit, not a failure.

pub mod guard;
pub mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::doctor::{self, Report as Doctor};
use crate::engine::sizing;
use crate::engine::stats::ShardStats;
use crate::error::Error;
use crate::load::protocol::ProtoArgs;
use crate::load::report::{LoadReport, Sample};
use crate::load::run::{self as load_run, Hooks};
use crate::machine::{self, Machine};
use crate::output;
use crate::procfs::ProcFs;
use crate::serve::{Mode, Server, ServerConfig};
use crate::sys::process;
use crate::units::{self, CountOrPercent, group, human_bytes};
use report::{BenchReport, FirstLimit, Shards};

/// Arguments of `tcpmax bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Connections to hold (both ends on this machine: two sockets each).
    #[arg(short = 'c', long = "connections", default_value = "100k", allow_hyphen_values = true, value_parser = units::parse_positive_count)]
    pub count: u64,
    /// How long to hold them, with heartbeats, once the ramp is over.
    #[arg(long, default_value = "10s", allow_hyphen_values = true, value_parser = units::parse_duration)]
    pub hold: Duration,
    /// Heartbeats per second: a share of the held connections (1%) or a count.
    #[arg(long, default_value = "1%", allow_hyphen_values = true, value_parser = units::parse_count_or_percent)]
    pub ping_rate: CountOrPercent,
    /// Run even when the doctor predicts the target does not fit.
    #[arg(long)]
    pub force: bool,
    /// Speak WebSocket over every connection: upgrade, masked ping frames
    /// as heartbeats, the close handshake at the end.
    #[arg(long, conflicts_with = "mqtt")]
    pub ws: bool,
    /// Speak MQTT 3.1.1 over every connection: CONNECT, PINGREQ as
    /// heartbeats, DISCONNECT at the end (keepalive 0: the heartbeat rate is
    /// --ping-rate's).
    #[arg(long)]
    pub mqtt: bool,
    /// TLS 1.3 under the protocol, with a generated ECDSA P-256 certificate.
    #[arg(long)]
    pub tls: bool,
    /// Write the report as JSON to FILE (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the report with its plots as one HTML page to FILE (what
    /// `tcpmax report` draws from the JSON).
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
}

/// Refuses a target the doctor says this machine cannot hold.
pub fn check_target(count: u64, doctor: &Doctor) -> crate::Result<()> {
    let Some(ceiling) = doctor.ceiling.loopback else { return Ok(()) };
    if count <= ceiling {
        return Ok(());
    }
    let binding = doctor.binding.loopback.clone().unwrap_or_else(|| "unknown".into());
    let fix = doctor.limits.iter().find(|l| l.name == binding).and_then(|l| l.fix.clone());
    let fix = fix.map(|f| format!("{f}; ")).unwrap_or_default();
    Err(Error::Refused {
        reason: format!(
            "-c {} needs {} sockets on loopback; the doctor predicts at most {} connections here, bound by {binding}",
            group(count),
            group(count.saturating_mul(2)),
            group(ceiling)
        ),
        fix: format!("{fix}or a smaller -c; or --force to try anyway (`tcpmax doctor` explains)"),
    })
}

/// Runs `tcpmax bench`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.count > 0, Error::Input("-c must be at least 1".into()));
    let doctor = doctor::diagnose(&ProcFs::default());
    if !args.force {
        check_target(args.count, &doctor)?;
    }
    if let Some(path) = &args.report {
        crate::report::check_writable(path)?;
    }
    crate::interrupt::install().context("watching SIGINT/SIGTERM")?;
    let mut human = output::human(args.json.as_deref());
    let report = bench(&args, &doctor, &mut *human)?;
    if let Some(path) = &args.report {
        crate::report::write_bench(path, &report)?;
    }
    let mut text = report.render();
    if let Some(path) = &args.report {
        text.push_str(&format!("  report              {} (open it in a browser)\n", path.display()));
    }
    output::emit(args.json.as_deref(), &report, &text)?;
    Ok(load_run::exit_code(report.interrupted, report.held >= args.count && report.failed == 0))
}

/// Memory and RSS read at the peak, before teardown.
#[derive(Debug, Default, Clone, Copy)]
struct Peak {
    rss: u64,
    slab: u64,
    free: u64,
}

fn bench(args: &Args, doctor: &Doctor, human: &mut dyn std::io::Write) -> anyhow::Result<BenchReport> {
    let fs = ProcFs::default();
    let nofile = process::raise_nofile().context("raising RLIMIT_NOFILE")?;
    let backlog = fs.sysctl_u64("net.core.somaxconn").unwrap_or(4096).min(i32::MAX as u64) as i32;
    let bound = sizing::max_shards(args.count, &sizing::ThreadLimits::read(&fs));
    let server_shards = sizing::plan_hashed(args.count, nofile.soft, sizing::cores()).shards.min(bound.max);
    let tls = if args.tls {
        let (cert, key, _, _) = crate::proto::tls::self_signed()?;
        let server = crate::proto::tls::server_config(vec![cert.clone()], key, 0)?;
        let client =
            crate::proto::tls::client_setup(crate::proto::tls::Trust::Roots(vec![cert]), "localhost", &[], false)?;
        Some((server, client))
    } else {
        None
    };
    let mut server = Server::start_with_tls(
        &ServerConfig {
            listen: vec!["127.0.0.1:0".parse().context("loopback address")?],
            mode: if args.ws {
                Mode::Ws
            } else if args.mqtt {
                Mode::Mqtt
            } else {
                Mode::Echo
            },
            udp: false,
            max_conns: Some(args.count),
            max_memory: None,
            shards: server_shards,
            elastic: true,
            backlog,
        },
        tls.as_ref().map(|t| t.0.clone()),
    )?;
    let target = server.local_addrs()[0];
    let mut load = load_run::prepare(&load_run::Spec {
        hold: args.hold,
        ping_rate: args.ping_rate,
        connect_timeout: Duration::from_secs(10),
        proto: Box::new(ProtoArgs {
            ws: args.ws.then(|| "/".to_string()),
            mqtt: args.mqtt,
            keepalive: Duration::ZERO,
            ..ProtoArgs::default()
        }),
        ..load_run::Spec::new(vec![target.into()], args.count)
    })?;
    load.tls = tls.map(|t| t.1);
    writeln!(
        human,
        "bench: {} {} connections to {target} from {} source IPs; starting with {} server + {} client shards",
        group(args.count),
        load.proto.protocol().name(),
        load.plan.sources,
        server_shards,
        load.client.shards
    )?;
    human.flush()?;

    let (slab0, free0) = machine::kernel_memory().context("reading /proc/meminfo")?;
    let tty = output::stderr_is_tty();
    let mut peak = Peak::default();
    let count = args.count;
    let server_open = std::cell::Cell::new(0u64);
    let load_report = load_run::execute(
        &load,
        Hooks {
            tick: &mut |s: &Sample, t: &ShardStats| progress(s, t, server_open.get(), count, tty),
            // Called each time the client is looked at: the server's
            // supervisor runs at the same pace (its pool grows then).
            guard: &mut || {
                server_open.set(server.poll().open);
                fs.meminfo().ok().and_then(|m| guard::check(&m))
            },
            peer_holds: &mut |held| server_open.get() >= held,
            closing: &mut |left, held| output::closing_line(left, held, tty),
            at_peak: &mut |_t: &ShardStats| {
                let (slab, free) = machine::kernel_memory().unwrap_or((slab0, free0));
                peak = Peak { rss: machine::rss_anon(std::process::id()).unwrap_or(0), slab, free };
            },
        },
    )?;
    if tty {
        eprintln!();
    }
    // The client has reset everything; the server drains as the resets land.
    let drain_start = Instant::now();
    let deadline = drain_start + Duration::from_secs(120);
    while server.poll_wait(Duration::from_millis(200)).open > 0
        && Instant::now() < deadline
        && crate::interrupt::requested().is_none()
    {}
    let server_drain = drain_start.elapsed();
    let server_shards = server.peak_shards();
    server.shutdown();
    Ok(assemble(args, doctor, &load_report, peak, (slab0, free0), server_shards, server_drain))
}

fn assemble(
    args: &Args,
    doctor: &Doctor,
    l: &LoadReport,
    peak: Peak,
    (slab0, free0): (u64, u64),
    server_shards: usize,
    server_drain: Duration,
) -> BenchReport {
    let held = l.peak_established;
    let per = |bytes: u64| if held == 0 { 0.0 } else { bytes as f64 / held as f64 };
    let first_limit = if let Some(why) = &l.stopped_by {
        let memory = doctor.limits.iter().find(|r| r.name == "memory");
        Some(FirstLimit {
            kind: "guard",
            name: "memory".into(),
            explanation: why.clone(),
            fix: memory.and_then(|r| r.fix.clone()).unwrap_or_default(),
        })
    } else if l.failed > 0 || held < args.count {
        // The row's words: for a connect timeout, the limit the drop
        // counters named.
        l.errors.first().map(|e| FirstLimit {
            kind: "errno",
            name: e.errno.to_string(),
            explanation: e.meaning.clone(),
            fix: e.fix.clone(),
        })
    } else {
        None
    };
    BenchReport {
        report_version: output::REPORT_VERSION,
        target: args.count,
        held,
        predicted: doctor.ceiling.loopback,
        predicted_binding: doctor.binding.loopback.clone(),
        ramp_seconds: l.ramp_seconds,
        connect_rate_per_s: l.connect_rate_per_s,
        hold_seconds: l.hold_seconds,
        predicted_bytes_per_connection: 2 * doctor.kernel_bytes_per_socket,
        kernel_bytes_per_connection: per(free0.saturating_sub(peak.free)),
        kernel_slab_bytes_per_connection: per(peak.slab.saturating_sub(slab0)),
        user_bytes_per_connection: per(peak.rss),
        user_rss_anon_bytes: peak.rss,
        ping_rtt_us: l.ping_rtt_us,
        connect_latency_us: l.connect_latency_us,
        histograms: l.histograms.clone(),
        protocol: l.protocol,
        tls: l.tls,
        handshake_latency_us: l.handshake_latency_us,
        handshake_rate_per_s: l.handshake_rate_per_s,
        failed: l.failed,
        first_limit,
        shards: Shards { server: server_shards, client: l.shards },
        teardown_seconds: l.teardown_seconds + server_drain.as_secs_f64(),
        interrupted: l.interrupted,
        timeline: l.timeline.iter().map(|s| s.with_server_shards(server_shards)).collect(),
        machine: Machine::read(),
    }
}

fn progress(s: &Sample, t: &ShardStats, server_open: u64, count: u64, tty: bool) {
    let free = ProcFs::default().meminfo().map(|m| human_bytes(m.really_free())).unwrap_or_else(|_| "?".into());
    let line = format!(
        "[{:>5.0}s] established {} / {} | {}/s | server holds {} | really free {} | errors: {}",
        s.t,
        group(s.established),
        group(count),
        group(s.opened_per_s as u64),
        group(server_open),
        free,
        t.errors.summary()
    );
    output::live_line(&line, tty);
}
