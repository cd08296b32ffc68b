//! Reading the agents' reports: each file is one `tcpmax load --json`
//! report. A file that cannot be read, is empty, is cut short or is not a
//! load report is named with what is wrong and what to do (exit code 2).
//!
//! Files come from outside: they are read within [`crate::bounded`]'s
//! bounds (size, string length, memory), and every count and time is
//! checked against what a run can have before it is summed or drawn
//! (`check`): a file claiming 2^64 agents, a time of 1e308 s or a
//! version this build does not know is refused, naming the field.

use std::path::Path;

use hdrhistogram::Histogram;
use serde::Deserialize;

use crate::bounded::{self, ReadError, count, seconds, wall_clock};
use crate::error::Error;
use crate::load::agent::AgentInfo;
use crate::load::hist::{self, Histograms};
use crate::load::report::{Percentiles, Sample};
use crate::output::REPORT_VERSION;

/// The most agents a plan may have: a Kubernetes Indexed Job's limit on
/// completions. A report claiming more is damaged.
pub const MAX_AGENTS: u64 = 100_000;

/// One errno row of a report (the meaning and fix are looked up again).
#[derive(Debug, Clone, Deserialize)]
pub struct ErrnoCount {
    /// Symbolic name.
    #[serde(deserialize_with = "bounded::string")]
    pub errno: String,
    /// Times seen.
    pub count: u64,
}

/// The machine section, as far as a merge uses it.
#[derive(Debug, Clone, Deserialize)]
pub struct MachineIn {
    /// The commit tcpmax was built from.
    pub commit: String,
}

/// What a merge reads from one agent's report; other fields are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct AgentReport {
    /// The report's layout version (absent before version 2).
    #[serde(default)]
    pub report_version: Option<u64>,
    /// Connections this agent was asked for (its share).
    pub count: u64,
    /// Its peak.
    pub peak_established: u64,
    /// Held when its hold ended.
    pub held_at_end: u64,
    /// Connections established, ever.
    pub opened: u64,
    /// Connects that failed.
    pub failed: u64,
    /// Connections the server closed.
    pub closed_by_peer: u64,
    /// Connections opened again.
    pub reconnects: u64,
    /// Its ramp, seconds.
    pub ramp_seconds: f64,
    /// True when it was stopped early.
    pub interrupted: bool,
    /// Its connect latency percentiles.
    pub connect_latency_us: Percentiles,
    /// Pings sent.
    pub pings_sent: u64,
    /// Replies.
    pub pongs: u64,
    /// Errors by errno.
    #[serde(deserialize_with = "bounded::vec")]
    pub errors: Vec<ErrnoCount>,
    /// One sample a second.
    #[serde(deserialize_with = "bounded::vec")]
    pub timeline: Vec<Sample>,
    /// The histograms whole.
    pub histograms: Histograms,
    /// Which agent of which plan.
    pub agent: AgentInfo,
    /// Where it ran.
    pub machine: MachineIn,
}

/// One agent's report, read and checked.
#[derive(Debug, Clone)]
pub struct Part {
    /// The file it came from, as given.
    pub file: String,
    /// The report.
    pub report: AgentReport,
    /// Its connect latency histogram.
    pub connect_us: Histogram<u64>,
    /// Its round-trip histogram.
    pub rtt_us: Histogram<u64>,
}

/// Reads and checks one report file.
pub fn read(path: &Path) -> crate::Result<Part> {
    let file = path.display().to_string();
    let report = bounded::read(path).map_err(|e| refused(&file, e))?;
    check(&file, report)
}

/// Checks the bytes of one report; `file` names it in errors. The entry
/// point for bytes (tests and fuzzing): no input makes it panic or
/// allocate beyond [`crate::bounded`]'s budget.
pub fn parse(file: &str, bytes: &[u8]) -> crate::Result<Part> {
    let report = bounded::parse(bytes).map_err(|e| refused(file, e))?;
    check(file, report)
}

/// The one line that says why a file is not read.
fn refused(file: &str, e: ReadError) -> Error {
    Error::Input(match e {
        ReadError::Io(e) => format!("cannot read {file}: {e}; give the JSON reports the agents wrote"),
        ReadError::TooBig(_) | ReadError::Shape(_) => {
            format!("{file} is not a tcpmax load report: {e}; give the files that `tcpmax load --json` wrote")
        }
        ReadError::Empty => format!(
            "{file} is empty: the agent wrote no report; its log says why (kubectl logs, or the agent's stderr)"
        ),
        ReadError::Json(e) if e.is_eof() => format!(
            "{file} is truncated: its JSON ends early (line {}, column {}); the agent was stopped while writing or its log was cut: collect the report again",
            e.line(),
            e.column()
        ),
        ReadError::Json(e) => format!(
            "{file} is not a tcpmax load report ({}); give the files that `tcpmax load --json` wrote, from a tcpmax with `merge`",
            bounded::printable(&e.to_string())
        ),
    })
}

/// Checks what a report says against what a run can have, then decodes
/// its histograms.
fn check(file: &str, report: AgentReport) -> crate::Result<Part> {
    let damaged = |what: String| Error::Input(format!("{file} is damaged: {what}; give the report the agent wrote"));
    match report.report_version {
        None => {}
        Some(v) if (1..=u64::from(REPORT_VERSION)).contains(&v) => {}
        Some(v) => {
            return Err(Error::Input(format!(
                "{file} is a version {v} report; this tcpmax merges versions 1 to {REPORT_VERSION}: merge with the tcpmax that wrote it"
            )));
        }
    }
    let (index, agents) = (report.agent.index, report.agent.whole.agents);
    if agents == 0 || agents > MAX_AGENTS || index >= agents {
        return Err(damaged(format!(
            "it says agent {index} of {agents} (a plan has 1 to {} agents)",
            crate::units::group(MAX_AGENTS)
        )));
    }
    let r = &report;
    let counts = [
        ("count", r.count),
        ("peak_established", r.peak_established),
        ("held_at_end", r.held_at_end),
        ("opened", r.opened),
        ("failed", r.failed),
        ("closed_by_peer", r.closed_by_peer),
        ("reconnects", r.reconnects),
        ("pings_sent", r.pings_sent),
        ("pongs", r.pongs),
        ("agent.whole.count", r.agent.whole.count),
    ];
    for (name, v) in counts {
        count(name, v).map_err(&damaged)?;
    }
    for (i, e) in r.errors.iter().enumerate() {
        count(&format!("errors[{i}].count"), e.count).map_err(&damaged)?;
    }
    seconds("ramp_seconds", r.ramp_seconds).map_err(&damaged)?;
    seconds("agent.whole.hold_seconds", r.agent.whole.hold_seconds).map_err(&damaged)?;
    wall_clock("agent.ramp_start_unix_ms", r.agent.ramp_start_unix_ms).map_err(&damaged)?;
    if let Some(at) = r.agent.whole.start_at_unix_ms {
        wall_clock("agent.whole.start_at_unix_ms", at).map_err(&damaged)?;
    }
    for (i, s) in r.timeline.iter().enumerate() {
        sample(s).map_err(|what| damaged(format!("timeline[{i}].{what}")))?;
    }
    // The timeline follows the ramp's start: a year apart is not one run.
    let start = r.agent.ramp_start_unix_ms;
    let far = |s: &&Sample| start > 0 && s.unix_ms.abs_diff(start) as f64 > bounded::MAX_SECONDS * 1000.0;
    if let Some((i, s)) = r.timeline.iter().enumerate().find(|(_, s)| far(s)) {
        return Err(damaged(format!(
            "timeline[{i}].unix_ms is {}, more than a year from agent.ramp_start_unix_ms {start}",
            s.unix_ms
        )));
    }
    let decode = |name: &str, text: &str| {
        hist::decode(text).map_err(|why| Error::Input(format!("{file} is damaged: histograms.{name} is {why}")))
    };
    let connect_us = decode("connect_us", &report.histograms.connect_us)?;
    let rtt_us = decode("rtt_us", &report.histograms.rtt_us)?;
    Ok(Part { file: file.to_string(), report, connect_us, rtt_us })
}

/// One sample's times and counts; the error names the field.
fn sample(s: &Sample) -> Result<(), String> {
    seconds("t", s.t)?;
    seconds("interval_s", s.interval_s)?;
    wall_clock("unix_ms", s.unix_ms)?;
    for (name, v) in [("opened_per_s", s.opened_per_s), ("pongs_per_s", s.pongs_per_s)] {
        bounded::rate(name, v)?;
    }
    let counts = [
        ("established", s.established),
        ("connecting", s.connecting),
        ("failed", s.failed),
        ("closed", s.closed),
        ("errors", s.errors),
    ];
    for (name, v) in counts {
        count(name, v)?;
    }
    for (errno, &v) in &s.failures {
        count(&format!("failures.{}", bounded::printable(errno)), v)?;
    }
    Ok(())
}
