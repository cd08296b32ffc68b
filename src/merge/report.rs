//! The merged report: the whole plan, the sums, the exact percentiles of
//! the merged histograms, a row per agent and the timeline summed by
//! wall-clock second. Serialised as JSON (`schemas/merge.schema.json`) and
//! rendered as a table.

use std::fmt::Write as _;

use serde::Serialize;

use crate::bounded::printable;
use crate::load::agent::WholePlan;
use crate::load::hist::Histograms;
use crate::load::report::{Percentiles, micros};
use crate::units::group;

/// Errno rows shown in the human table (all are in the JSON).
pub const ERRNO_ROWS: usize = 20;

/// One errno summed over the agents, with what it means.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrnoTotal {
    /// Symbolic name.
    pub errno: String,
    /// Times seen, all agents.
    pub count: u64,
    /// What it means in a load run.
    pub meaning: &'static str,
    /// What to do.
    pub fix: &'static str,
}

/// One agent's row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentRow {
    /// Its index.
    pub index: u64,
    /// The report file.
    pub file: String,
    /// Its share of the connections.
    pub share: u64,
    /// Held when its hold ended.
    pub held_at_end: u64,
    /// Its peak.
    pub peak_established: u64,
    /// Connects that failed.
    pub failed: u64,
    /// Errors of all kinds.
    pub errors: u64,
    /// Its ramp, seconds.
    pub ramp_seconds: f64,
    /// Wall-clock start of its ramp, ms since the Unix epoch.
    pub ramp_start_unix_ms: u64,
    /// Its ramp start minus the earliest agent's, ms.
    pub start_skew_ms: u64,
    /// Its own connect latency p99 (the merged percentiles are exact; this
    /// is for comparing agents).
    pub connect_p99_us: u64,
    /// True when it was stopped early.
    pub interrupted: bool,
    /// The commit its tcpmax was built from.
    pub commit: String,
    /// Its own timeline, as it reported it (for one line per agent in
    /// `tcpmax report`).
    pub timeline: Vec<crate::load::timeline::Sample>,
}

/// One wall-clock second (or step of seconds, on a long run), summed over
/// the agents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MergedSample {
    /// Start of the second, ms since the Unix epoch.
    pub unix_ms: u64,
    /// Seconds from the earliest ramp start to the end of this second.
    pub t: f64,
    /// Seconds this row covers: 1, more on a timeline longer than
    /// [`super::combine::MAX_ROWS`] seconds.
    pub interval_s: f64,
    /// Agents with a sample for this second.
    pub agents: u64,
    /// Connections established.
    pub established: u64,
    /// Connects in flight.
    pub connecting: u64,
    /// Connections established per second.
    pub opened_per_s: f64,
    /// Connect failures so far.
    pub failed: u64,
    /// Connections the server closed so far.
    pub closed: u64,
    /// Ping replies per second.
    pub pongs_per_s: f64,
    /// Failures of all kinds so far.
    pub errors: u64,
}

/// The report of `tcpmax merge`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MergeReport {
    /// The plan every report belongs to.
    pub plan: WholePlan,
    /// Agents merged.
    pub agents_merged: u64,
    /// Agents of the plan whose report was not given.
    pub missing_agents: Vec<u64>,
    /// True when every agent of the plan is in.
    pub complete: bool,
    /// Connections the merged agents were asked for.
    pub count: u64,
    /// Held when the agents' holds ended, summed.
    pub held_at_end: u64,
    /// Most connections established at once, from the summed timeline.
    pub peak_established: u64,
    /// The agents' own peaks, summed (an upper bound of the above).
    pub sum_of_peaks: u64,
    /// Connections established, ever.
    pub opened: u64,
    /// Connects that failed.
    pub failed: u64,
    /// Connections the server closed.
    pub closed_by_peer: u64,
    /// Connections opened again.
    pub reconnects: u64,
    /// Pings sent.
    pub pings_sent: u64,
    /// Replies.
    pub pongs: u64,
    /// Connect latency of every connect of every agent (merged histogram).
    pub connect_latency_us: Percentiles,
    /// Round-trip time of every ping of every agent (merged histogram).
    pub ping_rtt_us: Percentiles,
    /// The merged histograms (HDR V2, base64).
    pub histograms: Histograms,
    /// Every errno, summed, most frequent first.
    pub errors: Vec<ErrnoTotal>,
    /// Latest ramp start minus the earliest, ms.
    pub start_skew_ms: u64,
    /// Agents stopped early.
    pub interrupted_agents: Vec<u64>,
    /// A row per agent, by index.
    pub agents: Vec<AgentRow>,
    /// Summed by wall-clock second.
    pub timeline: Vec<MergedSample>,
}

impl MergeReport {
    /// The human table.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let w = &mut s;
        let p = &self.plan;
        let _ = writeln!(
            w,
            "merge: {} of {} agents of one plan: {} connections to {} (tcpmax {})",
            self.agents_merged,
            p.agents,
            group(p.count),
            targets(p),
            printable(&p.version)
        );
        if !self.complete {
            let _ = writeln!(
                w,
                "  missing agents      {} (no report given: the figures cover {} of {} connections)",
                list(&self.missing_agents),
                group(self.count),
                group(p.count)
            );
        }
        if !self.interrupted_agents.is_empty() {
            let _ = writeln!(w, "  interrupted agents  {}", list(&self.interrupted_agents));
        }
        let _ = writeln!(w, "  held at end         {} of {}", group(self.held_at_end), group(self.count));
        let _ = writeln!(
            w,
            "  peak established    {} at once (timeline summed by wall-clock second; agents' peaks sum to {})",
            group(self.peak_established),
            group(self.sum_of_peaks)
        );
        let _ = writeln!(w, "  opened / failed     {} / {}", group(self.opened), group(self.failed));
        let _ = writeln!(w, "  closed by server    {}", group(self.closed_by_peer));
        let _ = writeln!(
            w,
            "  connect latency     {} ({} connects, merged histograms)",
            self.connect_latency_us.summary(),
            group(self.connect_latency_us.count)
        );
        if self.pings_sent > 0 {
            let _ = writeln!(
                w,
                "  ping rtt            {} ({} sent, {} back)",
                self.ping_rtt_us.summary(),
                group(self.pings_sent),
                group(self.pongs)
            );
        }
        let _ = writeln!(w, "  start skew          {} ms (latest ramp start minus the earliest)", self.start_skew_ms);
        if self.errors.is_empty() {
            let _ = writeln!(w, "  errors              none");
        } else {
            let _ = writeln!(w, "  errors:");
            for e in self.errors.iter().take(ERRNO_ROWS) {
                let _ = writeln!(w, "    {:<14} {:>10}  {}", printable(&e.errno), group(e.count), e.meaning);
                let _ = writeln!(w, "    {:<14} {:>10}  fix: {}", "", "", e.fix);
            }
            if self.errors.len() > ERRNO_ROWS {
                let _ = writeln!(w, "    and {} more errnos (in the JSON report)", self.errors.len() - ERRNO_ROWS);
            }
        }
        let _ = writeln!(
            w,
            "  {:>5}  {:>11}  {:>11}  {:>8}  {:>8}  {:>7}  {:>10}  {:>11}",
            "agent", "share", "held at end", "failed", "errors", "ramp", "start skew", "connect p99"
        );
        for a in &self.agents {
            let _ = writeln!(
                w,
                "  {:>5}  {:>11}  {:>11}  {:>8}  {:>8}  {:>5.1} s  {:>7} ms  {:>11}",
                a.index,
                group(a.share),
                group(a.held_at_end),
                group(a.failed),
                group(a.errors),
                a.ramp_seconds,
                format!("+{}", a.start_skew_ms),
                micros(a.connect_p99_us)
            );
        }
        s
    }
}

fn targets(p: &WholePlan) -> String {
    match &p.targets[..] {
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} and {} more", rest.len()),
        [] => "nothing".into(),
    }
}

/// Indices as runs: "0, 2-5, 9" (a plan may miss thousands of agents).
fn list(v: &[u64]) -> String {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &i in v {
        match runs.last_mut() {
            Some((_, hi)) if hi.checked_add(1) == Some(i) => *hi = i,
            _ => runs.push((i, i)),
        }
    }
    let shown: Vec<String> =
        runs.iter().take(20).map(|&(lo, hi)| if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") }).collect();
    let more = runs.len().saturating_sub(20);
    if more > 0 { format!("{} and {more} more ranges", shown.join(", ")) } else { shown.join(", ") }
}
