//! Many agents' reports into one: checks that they belong to one plan,
//! sums the counters, adds the histograms, sums the timelines by
//! wall-clock second and measures the start skew.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::input::Part;
use super::report::{AgentRow, ErrnoTotal, MergeReport, MergedSample};
use crate::engine::samples::HIST_MAX_US;
use crate::error::Error;
use crate::load::agent::WholePlan;
use crate::load::explain::explain;
use crate::load::hist::{self, Histograms};
use crate::load::report::{Percentiles, Sample};
use crate::units::group;

/// The longest timeline a merge sums, in seconds (31 days): reports further
/// apart than that are not one run.
pub const MAX_TIMELINE_SECONDS: u64 = 31 * 86_400;

/// The most rows of the merged timeline: a longer span is summed by steps
/// of several seconds (`interval_s`), as each agent's own timeline is
/// decimated, so the merged report stays the size of its inputs.
pub const MAX_ROWS: u64 = crate::load::timeline::MAX_SAMPLES as u64;

/// `a + b`, or an input error naming what overflowed: reports whose sums
/// pass 2^64 are damaged (each count is at most 2^48, checked on reading).
fn add(a: u64, b: u64, what: &str) -> crate::Result<u64> {
    a.checked_add(b)
        .ok_or_else(|| Error::Input(format!("{what} summed over the reports passes 2^64: the reports are damaged")))
}

/// The sum of `f` over the parts, checked.
fn total(parts: &[Part], what: &str, f: fn(&Part) -> u64) -> crate::Result<u64> {
    parts.iter().try_fold(0, |acc, p| add(acc, f(p), what))
}

/// Merges the agents' reports. Reports of different plans or versions, or
/// one agent given twice, are refused ([`Error::Input`]).
pub fn merge(mut parts: Vec<Part>) -> crate::Result<MergeReport> {
    let Some(first) = parts.first() else {
        return Err(Error::Input("no report to merge: give the agents' JSON reports".into()));
    };
    let plan = first.report.agent.whole.clone();
    for p in &parts[1..] {
        same_plan(first, p)?;
    }
    parts.sort_by_key(|p| p.report.agent.index);
    for w in parts.windows(2) {
        if w[0].report.agent.index == w[1].report.agent.index {
            return Err(Error::Input(format!(
                "{} and {} are both agent {} of the plan: give each agent's report once",
                w[0].file, w[1].file, w[0].report.agent.index
            )));
        }
    }
    let present: Vec<u64> = parts.iter().map(|p| p.report.agent.index).collect();
    let missing_agents: Vec<u64> = (0..plan.agents).filter(|i| !present.contains(i)).collect();

    let (mut connect, mut rtt) = (empty_hist()?, empty_hist()?);
    for p in &parts {
        let add = |into: &mut Histogram<u64>, h: &Histogram<u64>, name: &str| {
            into.add(h).map_err(|e| Error::Input(format!("{}: histograms.{name} cannot be added ({e:?})", p.file)))
        };
        add(&mut connect, &p.connect_us, "connect_us")?;
        add(&mut rtt, &p.rtt_us, "rtt_us")?;
    }

    let starts: Vec<u64> = parts.iter().map(ramp_start).collect();
    let earliest = starts.iter().copied().min().unwrap_or(0);
    let latest = starts.iter().copied().max().unwrap_or(0);
    if latest - earliest > MAX_TIMELINE_SECONDS * 1000 {
        return Err(Error::Input(format!(
            "the reports' ramps start {} days apart: they are not one run; merge the agents of one run",
            (latest - earliest) / 86_400_000
        )));
    }
    let agents = parts
        .iter()
        .zip(&starts)
        .map(|(p, &start)| {
            let r = &p.report;
            Ok(AgentRow {
                index: r.agent.index,
                file: p.file.clone(),
                share: r.count,
                held_at_end: r.held_at_end,
                peak_established: r.peak_established,
                failed: r.failed,
                errors: r.errors.iter().try_fold(0, |acc, e| add(acc, e.count, "errors"))?,
                ramp_seconds: r.ramp_seconds,
                ramp_start_unix_ms: start,
                start_skew_ms: start - earliest,
                connect_p99_us: r.connect_latency_us.p99,
                interrupted: r.interrupted,
                commit: r.machine.commit.clone(),
                timeline: r.timeline.clone(),
            })
        })
        .collect::<crate::Result<Vec<_>>>()?;
    let timeline = timeline(&parts, earliest)?;
    let sum = |what: &str, f: fn(&Part) -> u64| total(&parts, what, f);
    let missing = !missing_agents.is_empty();
    Ok(MergeReport {
        agents_merged: parts.len() as u64,
        complete: !missing,
        missing_agents,
        count: sum("count", |p| p.report.count)?,
        held_at_end: sum("held_at_end", |p| p.report.held_at_end)?,
        peak_established: timeline.iter().map(|s| s.established).max().unwrap_or(0),
        sum_of_peaks: sum("peak_established", |p| p.report.peak_established)?,
        opened: sum("opened", |p| p.report.opened)?,
        failed: sum("failed", |p| p.report.failed)?,
        closed_by_peer: sum("closed_by_peer", |p| p.report.closed_by_peer)?,
        reconnects: sum("reconnects", |p| p.report.reconnects)?,
        pings_sent: sum("pings_sent", |p| p.report.pings_sent)?,
        pongs: sum("pongs", |p| p.report.pongs)?,
        connect_latency_us: Percentiles::of(&connect),
        ping_rtt_us: Percentiles::of(&rtt),
        histograms: Histograms { connect_us: hist::encode(&connect)?, rtt_us: hist::encode(&rtt)? },
        errors: errors(&parts)?,
        start_skew_ms: agents.iter().map(|a| a.start_skew_ms).max().unwrap_or(0),
        interrupted_agents: agents.iter().filter(|a| a.interrupted).map(|a| a.index).collect(),
        agents,
        timeline,
        plan,
    })
}

/// An empty histogram of the engine's bounds, with 64-bit counts.
fn empty_hist() -> crate::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3)
        .map_err(|e| Error::os("creating a histogram", std::io::Error::other(format!("{e:?}"))))
}

/// Refuses `b` unless it is a report of `a`'s plan, made by the same version.
fn same_plan(a: &Part, b: &Part) -> crate::Result<()> {
    let (x, y) = (&a.report.agent.whole, &b.report.agent.whole);
    if x.version != y.version {
        return Err(Error::Input(format!(
            "{} was written by tcpmax {} and {} by tcpmax {}: merge the reports of one run, made by one build",
            a.file,
            crate::bounded::printable(&x.version),
            b.file,
            crate::bounded::printable(&y.version)
        )));
    }
    let diff = differences(x, y);
    if !diff.is_empty() {
        return Err(Error::Input(format!(
            "{} and {} are reports of different plans ({}): merge only the agents of one run",
            a.file,
            b.file,
            diff.join("; ")
        )));
    }
    Ok(())
}

/// What differs between two whole plans, in command-line terms.
pub fn differences(x: &WholePlan, y: &WholePlan) -> Vec<String> {
    let mut d = Vec::new();
    let opt = |v: Option<u64>| v.map_or("none".to_string(), group);
    if x.count != y.count {
        d.push(format!("-c {} vs {}", group(x.count), group(y.count)));
    }
    if x.targets != y.targets {
        let t = |p: &WholePlan| p.targets.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(",");
        d.push(format!("targets {} vs {}", t(x), t(y)));
    }
    if x.agents != y.agents {
        d.push(format!("--agents {} vs {}", x.agents, y.agents));
    }
    if x.rate != y.rate {
        d.push(format!("--rate {} vs {}", opt(x.rate), opt(y.rate)));
    }
    if x.ping_rate != y.ping_rate {
        d.push(format!("pings per second {} vs {}", group(x.ping_rate), group(y.ping_rate)));
    }
    if x.hold_seconds.to_bits() != y.hold_seconds.to_bits() {
        d.push(format!("--hold {} s vs {} s", x.hold_seconds, y.hold_seconds));
    }
    if x.start_at_unix_ms != y.start_at_unix_ms {
        let at = |v: Option<u64>| {
            v.map_or("none".to_string(), |ms| {
                humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
                    .to_string()
            })
        };
        d.push(format!("--start-at {} vs {}", at(x.start_at_unix_ms), at(y.start_at_unix_ms)));
    }
    d
}

/// The wall-clock start of an agent's ramp: recorded by the agent, or
/// estimated from its first sample for a report without one.
fn ramp_start(p: &Part) -> u64 {
    let recorded = p.report.agent.ramp_start_unix_ms;
    if recorded > 0 {
        return recorded;
    }
    p.report.timeline.first().map_or(0, |s| s.unix_ms.saturating_sub((s.t * 1000.0) as u64))
}

/// Every errno summed over the agents, most frequent first.
fn errors(parts: &[Part]) -> crate::Result<Vec<ErrnoTotal>> {
    let mut sums: BTreeMap<&str, u64> = BTreeMap::new();
    for e in parts.iter().flat_map(|p| &p.report.errors) {
        let sum = sums.entry(&e.errno).or_insert(0);
        *sum = add(*sum, e.count, "an errno's count")?;
    }
    let mut rows: Vec<ErrnoTotal> = sums
        .into_iter()
        .map(|(errno, count)| {
            let x = explain(errno);
            ErrnoTotal { errno: errno.to_string(), count, meaning: x.meaning, fix: x.fix }
        })
        .collect();
    rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.errno.cmp(&b.errno)));
    Ok(rows)
}

/// The timelines summed by wall-clock second. For each second, an agent
/// contributes its last sample taken in or before that second, from the
/// second of its first sample to the second of its last: an agent whose
/// sampling skipped a second (samples are about a second apart, each on its
/// own clock phase) still counts with its latest figures. A span longer
/// than [`MAX_ROWS`] seconds is summed by steps of several seconds, each
/// row the agents' latest figures at the end of its step. Sums are
/// checked.
pub fn timeline(parts: &[Part], earliest_ms: u64) -> crate::Result<Vec<MergedSample>> {
    let lines: Vec<&[Sample]> = parts.iter().map(|p| &p.report.timeline[..]).filter(|t| !t.is_empty()).collect();
    let sec = |s: &Sample| s.unix_ms / 1000;
    let (Some(lo), Some(hi)) =
        (lines.iter().filter_map(|t| t.first()).map(sec).min(), lines.iter().filter_map(|t| t.last()).map(sec).max())
    else {
        return Ok(Vec::new());
    };
    let span = hi.saturating_sub(lo);
    if span > MAX_TIMELINE_SECONDS {
        return Err(Error::Input(format!(
            "the reports' timelines span {} days: they are not one run; merge the agents of one run",
            span / 86_400
        )));
    }
    let step = (span + 1).div_ceil(MAX_ROWS).max(1);
    let mut next = vec![0usize; lines.len()];
    let mut out = Vec::with_capacity((span / step + 1) as usize);
    let mut start = lo;
    while start <= hi {
        let end = (start + step - 1).min(hi);
        let mut row = MergedSample {
            unix_ms: start * 1000,
            t: ((end + 1) * 1000).saturating_sub(earliest_ms) as f64 / 1000.0,
            interval_s: (end + 1 - start) as f64,
            agents: 0,
            established: 0,
            connecting: 0,
            opened_per_s: 0.0,
            failed: 0,
            closed: 0,
            pongs_per_s: 0.0,
            errors: 0,
        };
        for (line, at) in lines.iter().zip(next.iter_mut()) {
            // Advance to the last sample in or before this step's end.
            while *at + 1 < line.len() && sec(&line[*at + 1]) <= end {
                *at += 1;
            }
            let s = &line[*at];
            let last = line.last().map_or(0, sec);
            if sec(s) > end || start > last {
                continue;
            }
            row.agents += 1;
            row.established = add(row.established, s.established, "timeline.established")?;
            row.connecting = add(row.connecting, s.connecting, "timeline.connecting")?;
            row.opened_per_s += s.opened_per_s;
            row.failed = add(row.failed, s.failed, "timeline.failed")?;
            row.closed = add(row.closed, s.closed, "timeline.closed")?;
            row.pongs_per_s += s.pongs_per_s;
            row.errors = add(row.errors, s.errors, "timeline.errors")?;
        }
        out.push(row);
        start = end + 1;
    }
    Ok(out)
}

#[cfg(test)]
#[path = "combine_tests.rs"]
mod tests;
