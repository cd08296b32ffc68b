//! `tcpmax load` as one agent of many: `--agents N --agent-index I` runs
//! agent I's share of one plan (the arithmetic is in
//! [`plan::agents`]), `--start-at` lines the agents'
//! ramps up on one wall-clock instant, and the report's `agent` section
//! records the whole plan so that `tcpmax merge` can tell the agents of one
//! plan from the others.
//!
//! A run without `--agents` is agent 0 of 1: its report merges like any
//! other.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::plan::{self, SourceSpec, agents};
use super::run::{Args, Spec};
use super::target::Target;
use crate::error::Error;
use crate::procfs::ProcFs;
use crate::units::group;

/// The environment variable a Kubernetes Indexed Job sets to the pod's index.
pub const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// How far in the past `--start-at` may be and still start at once.
pub const START_GRACE: Duration = Duration::from_secs(1);

/// How far ahead `--start-at` may be (a guard against seconds given as
/// milliseconds).
pub const START_HORIZON: Duration = Duration::from_secs(24 * 3600);

/// The command line of `tcpmax load`: the load itself and the agent
/// options.
#[derive(Debug, clap::Args)]
pub struct CommandLine {
    /// The load (for an agent: the whole plan).
    #[command(flatten)]
    pub load: Args,
    /// Agent options.
    #[command(flatten)]
    pub agent: AgentArgs,
}

/// The agent options of `tcpmax load`.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "One plan over many hosts")]
pub struct AgentArgs {
    /// Run one agent's share of a plan split over N agents (hosts or pods):
    /// -c, --rate and --ping-rate then give the whole plan.
    #[arg(long, value_name = "N")]
    pub agents: Option<u64>,
    /// This agent's index, 0 to N-1 (default: $JOB_COMPLETION_INDEX, which
    /// a Kubernetes Indexed Job sets).
    #[arg(long, value_name = "I", requires = "agents")]
    pub agent_index: Option<u64>,
    /// Wait until this wall-clock instant before the first connect, so that
    /// every agent's ramp starts together: RFC 3339 in UTC
    /// (2030-01-02T03:04:05Z) or unix seconds (1893553445).
    #[arg(long, value_name = "TIME", value_parser = parse_start_at)]
    pub start_at: Option<SystemTime>,
    /// Print nothing but the JSON report and errors (for `--json -`
    /// collected with `kubectl logs`, which mixes stdout and stderr).
    #[arg(long, requires = "json")]
    pub quiet: bool,
}

/// Parses `--start-at`: RFC 3339 (UTC) or unix seconds with an optional
/// fraction.
pub fn parse_start_at(s: &str) -> Result<SystemTime, String> {
    let t = s.trim();
    let err =
        || format!("`{s}` is not a time: give RFC 3339 in UTC (2030-01-02T03:04:05Z) or unix seconds (1893553445)");
    if t.bytes().next().is_some_and(|b| b.is_ascii_digit()) && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let (secs, frac) = t.split_once('.').unwrap_or((t, "0"));
        if secs.len() > 12 || frac.is_empty() || frac.len() > 9 || frac.contains('.') {
            return Err(err());
        }
        let secs: u64 = secs.parse().map_err(|_| err())?;
        let nanos: u32 = format!("{frac:0<9}").parse().map_err(|_| err())?;
        return Ok(UNIX_EPOCH + Duration::new(secs, nanos));
    }
    humantime::parse_rfc3339(t).map_err(|e| format!("{}: {e}", err()))
}

/// Milliseconds since the Unix epoch of `t` (0 before it).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The whole plan the agents share: what `tcpmax merge` compares to tell
/// the reports of one plan from others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WholePlan {
    /// The tcpmax version that ran it.
    pub version: String,
    /// Connections of the whole plan.
    pub count: u64,
    /// Destinations, distinct, as given.
    #[serde(deserialize_with = "crate::bounded::vec")]
    pub targets: Vec<SocketAddr>,
    /// Agents sharing the plan.
    pub agents: u64,
    /// Connects per second of the whole plan, if capped.
    pub rate: Option<u64>,
    /// Pings per second of the whole plan.
    pub ping_rate: u64,
    /// Seconds every agent holds.
    pub hold_seconds: f64,
    /// The common start (`--start-at`), ms since the Unix epoch.
    pub start_at_unix_ms: Option<u64>,
}

/// This agent's part of the whole plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Share {
    /// Connections of this agent.
    pub count: u64,
    /// Its first connection in the whole plan's numbering.
    pub first: u64,
    /// Its connects per second, if capped.
    pub rate: Option<u64>,
    /// Its pings per second.
    pub ping_rate: u64,
}

/// The `agent` section of a load report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// This agent's index, 0 to `whole.agents - 1`.
    pub index: u64,
    /// Where the index came from: `--agent-index`, `JOB_COMPLETION_INDEX`,
    /// or `single` for a run without `--agents`.
    pub index_from: String,
    /// This agent's share.
    pub share: Share,
    /// The whole plan.
    pub whole: WholePlan,
    /// Wall-clock start of this agent's ramp (right before its first
    /// connect), ms since the Unix epoch; 0 until the ramp starts.
    pub ramp_start_unix_ms: u64,
}

impl AgentInfo {
    /// A run without `--agents`: agent 0 of 1, its whole plan is itself.
    pub fn single(args: &Spec) -> AgentInfo {
        let ping_rate = args.ping_rate.of(args.count);
        AgentInfo {
            index: 0,
            index_from: "single".into(),
            share: Share { count: args.count, first: 0, rate: args.rate, ping_rate },
            whole: whole_plan(args, 1, None),
            ramp_start_unix_ms: 0,
        }
    }

    /// Lines for people: which agent, its share of the whole.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let (w, sh) = (&self.whole, &self.share);
        let last = (sh.first + sh.count).saturating_sub(1);
        let _ = writeln!(
            s,
            "agent {} of {} (index from {}): {} of {} connections (the plan's connections {} to {})",
            self.index,
            w.agents,
            self.index_from,
            group(sh.count),
            group(w.count),
            group(sh.first),
            group(last)
        );
        if let (Some(mine), Some(all)) = (sh.rate, w.rate) {
            let _ = writeln!(s, "  rate {} of {} connects/s", group(mine), group(all));
        }
        if w.ping_rate > 0 {
            let _ = writeln!(s, "  pings {} of {} per second", group(sh.ping_rate), group(w.ping_rate));
        }
        s
    }
}

fn whole_plan(args: &Spec, agents: u64, start_at: Option<SystemTime>) -> WholePlan {
    let mut targets: Vec<SocketAddr> = Vec::new();
    for t in args.targets.iter().flat_map(|t| t.addrs.iter()) {
        if !targets.contains(t) {
            targets.push(*t);
        }
    }
    WholePlan {
        version: env!("CARGO_PKG_VERSION").to_string(),
        count: args.count,
        targets,
        agents,
        rate: args.rate,
        ping_rate: args.ping_rate.of(args.count),
        hold_seconds: args.hold.as_secs_f64(),
        start_at_unix_ms: start_at.map(unix_ms),
    }
}

/// Agent options checked against the whole plan: the load this agent runs
/// and what its report says about it.
#[derive(Debug)]
pub struct Resolved {
    /// The load this agent runs: its share of the whole.
    pub spec: Spec,
    /// The report's `agent` section.
    pub info: AgentInfo,
    /// Where the agent's automatic loopback sources are (agents on one host).
    pub sources: Option<(IpAddr, IpAddr)>,
}

impl AgentArgs {
    /// Checks the agent options and cuts `args` (the whole plan) to this
    /// agent's share. `env_index` is `JOB_COMPLETION_INDEX` as read from the
    /// environment; `now` the wall clock.
    pub fn resolve(&self, args: Spec, env_index: Option<OsString>, now: SystemTime) -> crate::Result<Resolved> {
        if let Some(at) = self.start_at {
            check_start(at, now)?;
        }
        let Some(n) = self.agents else {
            let mut info = AgentInfo::single(&args);
            info.whole.start_at_unix_ms = self.start_at.map(unix_ms);
            return Ok(Resolved { spec: args, info, sources: None });
        };
        if n == 0 {
            return Err(Error::Input("--agents must be at least 1".into()));
        }
        let (index, from) = match self.agent_index {
            Some(i) => (i, "--agent-index"),
            None => (env_index_of(env_index, n)?, INDEX_ENV),
        };
        if index >= n {
            return Err(Error::Input(format!(
                "agent index {index} (from {from}) is out of range for --agents {n}: indexes run 0 to {}",
                n - 1
            )));
        }
        if args.count < n {
            return Err(Error::Input(format!(
                "-c {} over --agents {n} leaves some agents no connection; give at least -c {n} or fewer agents",
                group(args.count)
            )));
        }
        if let Some(rate) = args.rate.filter(|&r| r < n) {
            return Err(Error::Input(format!(
                "--rate {rate} over --agents {n} leaves some agents no connect per second; give at least --rate {n}"
            )));
        }
        let whole = whole_plan(&args, n, self.start_at);
        let share = Share {
            count: agents::share(whole.count, n, index),
            first: agents::offset(whole.count, n, index),
            rate: whole.rate.map(|r| agents::share(r, n, index)),
            ping_rate: agents::share(whole.ping_rate, n, index),
        };
        let mut sources = None;
        let mut mine = Spec {
            targets: agents::rotate(&whole.targets, share.first).into_iter().map(Target::from).collect(),
            count: share.count,
            rate: share.rate,
            ping_rate: crate::units::CountOrPercent::Count(share.ping_rate),
            ..args
        };
        if mine.sources.is_empty() {
            let usable = plan::usable_local_ports(&ProcFs::default()).unwrap_or(28_232);
            let need = |c: u64| plan::auto_loopback4_count(c, &whole.targets, usable, mine.pair_budget);
            if need(share.count) > 0 {
                let first = agents::first_source(whole.count, n, index, need);
                let (lo, hi) = agents::loopback_range(first, need(share.count))?;
                let (lo, hi) = (IpAddr::V4(lo), IpAddr::V4(hi));
                mine.sources.push(SourceSpec::Range(lo, hi));
                if whole.targets.iter().any(SocketAddr::is_ipv6) {
                    mine.sources.push(SourceSpec::One(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)));
                }
                sources = Some((lo, hi));
            }
        }
        let info = AgentInfo { index, index_from: from.into(), share, whole, ramp_start_unix_ms: 0 };
        Ok(Resolved { spec: mine, info, sources })
    }
}

fn env_index_of(value: Option<OsString>, n: u64) -> crate::Result<u64> {
    let fix =
        format!("give --agent-index I (0 to {}) or run as a Kubernetes Indexed Job, which sets {INDEX_ENV}", n - 1);
    let Some(value) = value else {
        return Err(Error::Input(format!("--agents {n} needs this agent's index and {INDEX_ENV} is not set: {fix}")));
    };
    let text = value.to_string_lossy();
    text.trim().parse().map_err(|_| {
        Error::Input(format!("{INDEX_ENV}={text:?} is not an agent index (a number 0 to {}): {fix}", n - 1))
    })
}

/// Refuses a start more than [`START_GRACE`] in the past or more than
/// [`START_HORIZON`] ahead.
pub fn check_start(at: SystemTime, now: SystemTime) -> crate::Result<()> {
    let stamp = humantime::format_rfc3339_millis(at);
    if let Ok(late) = now.duration_since(at)
        && late > START_GRACE
    {
        return Err(Error::Input(format!(
            "--start-at {stamp} passed {:.1} s ago: an agent that starts late would not ramp with the others; give a time in the future, e.g. --start-at $(date -u -d '+30 sec' +%FT%TZ), the same for every agent",
            late.as_secs_f64()
        )));
    }
    if let Ok(ahead) = at.duration_since(now)
        && ahead > START_HORIZON
    {
        return Err(Error::Input(format!(
            "--start-at {stamp} is {:.0} hours away (more than 24): was it given in milliseconds? Unix time is in seconds",
            ahead.as_secs_f64() / 3600.0
        )));
    }
    Ok(())
}

/// How a wait for the start ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// The start instant came.
    Started,
    /// A blocked signal (SIGINT, SIGTERM) came first: its number.
    Signal(i32),
}

/// Waits for the wall-clock instant `at`, or the first SIGINT or SIGTERM
/// ([`interrupt`](crate::interrupt)). The clock is read again after every
/// wake-up (at least once a second), so a clock step during the wait moves
/// the start with it.
pub fn wait_until(at: SystemTime) -> Waited {
    loop {
        let left = match at.duration_since(SystemTime::now()) {
            Ok(d) if !d.is_zero() => d,
            _ => return Waited::Started,
        };
        if let Some(sig) = crate::interrupt::wait(left.min(std::time::Duration::from_secs(1))) {
            return Waited::Signal(sig);
        }
    }
}

#[cfg(test)]
#[path = "agent_tests.rs"]
mod tests;
