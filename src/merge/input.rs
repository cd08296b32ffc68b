//! Reading the agents' reports: each file is one `tcpmax load --json`
//! report. A file that cannot be read, is empty, is cut short or is not a
//! load report is named with what is wrong and what to do (exit code 2).

use std::path::Path;

use hdrhistogram::Histogram;
use serde::Deserialize;

use crate::error::Error;
use crate::load::agent::AgentInfo;
use crate::load::hist::{self, Histograms};
use crate::load::report::{Percentiles, Sample};

/// One errno row of a report (the meaning and fix are looked up again).
#[derive(Debug, Clone, Deserialize)]
pub struct ErrnoCount {
    /// Symbolic name.
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
    pub errors: Vec<ErrnoCount>,
    /// One sample a second.
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
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Input(format!("cannot read {file}: {e}; give the JSON reports the agents wrote")))?;
    parse(&file, &text)
}

/// Checks the text of one report; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> crate::Result<Part> {
    if text.trim().is_empty() {
        return Err(Error::Input(format!(
            "{file} is empty: the agent wrote no report; its log says why (kubectl logs, or the agent's stderr)"
        )));
    }
    let report: AgentReport = serde_json::from_str(text).map_err(|e| {
        if e.is_eof() {
            Error::Input(format!(
                "{file} is truncated: its JSON ends early (line {}, column {}); the agent was stopped while writing or its log was cut: collect the report again",
                e.line(),
                e.column()
            ))
        } else {
            Error::Input(format!(
                "{file} is not a tcpmax load report ({e}); give the files that `tcpmax load --json` wrote, from a tcpmax with `merge`"
            ))
        }
    })?;
    let (index, agents) = (report.agent.index, report.agent.whole.agents);
    if agents == 0 || index >= agents {
        return Err(Error::Input(format!("{file} is damaged: it says agent {index} of {agents}")));
    }
    let decode = |name: &str, text: &str| {
        hist::decode(text).map_err(|why| Error::Input(format!("{file} is damaged: histograms.{name} is {why}")))
    };
    let connect_us = decode("connect_us", &report.histograms.connect_us)?;
    let rtt_us = decode("rtt_us", &report.histograms.rtt_us)?;
    Ok(Part { file: file.to_string(), report, connect_us, rtt_us })
}
