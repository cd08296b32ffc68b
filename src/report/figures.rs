//! What each figure of the page shows, from the runs: connections held
//! with the doctor's ceiling and the first limit, connect rate, memory per
//! connection against connections held, the RTT percentile spectrum and
//! its p50/p99 over time, failures by cause, the connect latency spectrum.
//!
//! Several runs are overlaid in one colour each. Within a run, series that
//! differ (causes, percentiles) differ by stroke; with a single run they
//! get colours of their own.

use hdrhistogram::Histogram;

use super::input::{Kind, PartSample, Pct, Run, SampleIn};
use super::plots::{self, Axis, Band, Chart, Dash, Line, PALETTE};
use crate::bounded;
use crate::units::group;

/// One figure of the page: a chart, or one line saying why there is none
/// (no failures, no heartbeats).
#[derive(Debug, Clone)]
pub struct Figure {
    /// Its anchor on the page.
    pub id: &'static str,
    /// Its heading.
    pub title: &'static str,
    /// What it shows, in words; without a chart, why there is none.
    pub caption: String,
    /// Remarks on these runs' data (what is missing or approximate).
    pub notes: Vec<String>,
    /// The chart, or None when there is nothing to draw.
    pub svg: Option<String>,
}

/// Every figure, in page order.
pub fn all(runs: &[Run]) -> anyhow::Result<Vec<Figure>> {
    let fig = |id, title, chart: Chart| -> anyhow::Result<Figure> {
        if let Some(why) = chart.placeholder {
            return Ok(Figure { id, title, caption: why, notes: chart.notes, svg: None });
        }
        let svg = plots::render(&chart)?;
        Ok(Figure { id, title, caption: chart.caption, notes: chart.notes, svg: Some(svg) })
    };
    Ok(vec![
        fig("held", "Connections held", held(runs))?,
        fig("rate", "Connect rate", rate(runs))?,
        fig("memory", "Memory per connection against connections held", memory(runs))?,
        fig("rtt-spectrum", "Heartbeat round trip: percentile spectrum", spectrum(runs, Which::Rtt))?,
        fig("rtt-time", "Heartbeat round trip over time", rtt_over_time(runs))?,
        fig("failures", "Failures by cause", failures(runs))?,
        fig("connect-spectrum", "Connect latency: percentile spectrum", spectrum(runs, Which::Connect))?,
    ])
}

/// Colour and stroke of series `j` of run `i` out of `n` runs.
fn style(i: usize, j: usize, n: usize) -> (plots::RGBColor, Dash) {
    if n == 1 { (PALETTE[j % PALETTE.len()], Dash::Solid) } else { (PALETTE[i % PALETTE.len()], Dash::nth(j)) }
}

/// "run: what" with several runs, "what" with one.
fn name(run: &Run, n: usize, what: &str) -> String {
    if n == 1 { what.to_string() } else { format!("{}: {what}", run.label) }
}

/// A count in a legend: whole with one run, short with several.
fn count(n: usize, v: f64) -> String {
    if n == 1 { group(v as u64) } else { si(v) }
}

/// The most agents' or backends' lines drawn for one run; the others are
/// named in a note (a report may list thousands).
pub const MAX_PART_LINES: usize = 32;

/// The most causes drawn for one run: the most frequent, the others summed
/// in one line (a report may list thousands).
pub const MAX_CAUSES: usize = 8;

fn last_t(runs: &[Run]) -> f64 {
    let parts = runs.iter().flat_map(|r| r.parts.iter().filter_map(|p| p.timeline.last()).map(|s| s.t));
    runs.iter().filter_map(|r| r.f.timeline.last()).map(|s| s.t).chain(parts).fold(1.0, f64::max)
}

/// Agents' or backends' lines of a run, up to [`MAX_PART_LINES`], labelled
/// up to eight of them.
fn part_lines(run: &Run, i: usize, n: usize, y: fn(&PartSample) -> f64) -> Vec<Line> {
    let color = PALETTE[i % PALETTE.len()];
    run.parts
        .iter()
        .take(MAX_PART_LINES)
        .enumerate()
        .map(|(k, p)| {
            let label = (k < 8).then(|| name(run, n, &p.label));
            let pts = p.timeline.iter().map(|s| (s.t, y(s))).collect();
            Line { width: 1, ..Line::new(label, color, pts).dash(Dash::nth(k + 1)) }
        })
        .collect()
}

/// The note of the parts not drawn, if some are not.
fn parts_note(runs: &[Run]) -> Vec<String> {
    runs.iter()
        .filter(|r| r.parts.len() > MAX_PART_LINES)
        .map(|r| format!("{}: the first {MAX_PART_LINES} of {} agents or backends are drawn.", r.label, r.parts.len()))
        .collect()
}

/// When and what the first limit was, if one stopped the ramp.
fn first_limit(run: &Run) -> Option<(String, f64)> {
    let f = &run.f;
    let (name, errno) = match (&f.first_limit, &f.stopped_by) {
        (Some(l), _) => (l.name.clone(), (l.kind == "errno").then_some(l.name.as_str())),
        (None, Some(why)) => (why.split(':').next().unwrap_or(why).to_string(), None),
        (None, None) => return None,
    };
    let t = errno
        .and_then(|e| f.timeline.iter().find(|s| s.failures.as_ref().is_some_and(|m| m.get(e).is_some_and(|&n| n > 0))))
        .or_else(|| errno.and_then(|_| f.timeline.windows(2).find(|w| w[1].errors > w[0].errors).map(|w| &w[1])))
        .map(|s| s.t)
        .or(f.ramp_seconds)?;
    Some((name, t))
}

fn limit_lines(runs: &[Run], y_hi: f64) -> Vec<Line> {
    runs.iter()
        .filter_map(|r| first_limit(r).map(|lim| (r, lim)))
        .map(|(r, (what, t))| {
            let label = name(r, runs.len(), &format!("first limit: {what} at {t:.0} s"));
            Line::new(label, plots::LIMIT, vec![(t, 0.0), (t, y_hi)]).dash(Dash::Dashed)
        })
        .collect()
}

fn held(runs: &[Run]) -> Chart {
    let n = runs.len();
    let x_hi = last_t(runs);
    let peak = runs.iter().map(|r| r.peak()).max().unwrap_or(0).max(1) as f64;
    let mut lines = Vec::new();
    let mut refs = Vec::new();
    let mut notes = Vec::new();
    let mut y_hi = peak;
    for (i, r) in runs.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let label = if n == 1 { "established".to_string() } else { r.label.clone() };
        let from_zero = std::iter::once((0.0, 0.0));
        lines.push(Line::new(
            label,
            color,
            from_zero.chain(r.f.timeline.iter().map(|s| (s.t, s.established as f64))).collect(),
        ));
        lines.extend(part_lines(r, i, n, |s| s.established as f64));
        let ref_color = if n == 1 { plots::REFERENCE } else { color };
        if let Some(c) = r.f.predicted {
            let c = c as f64;
            if c <= 4.0 * peak {
                y_hi = y_hi.max(c);
                let label = name(r, n, &format!("doctor's ceiling {}", count(n, c)));
                refs.push(Line::new(label, ref_color, vec![(0.0, c), (x_hi, c)]).dash(Dash::Dashed));
            } else {
                notes.push(format!(
                    "{} {} is {:.0}\u{d7} the peak, above the chart.",
                    name(r, n, "doctor's ceiling"),
                    group(c as u64),
                    c / r.peak().max(1) as f64
                ));
            }
        }
        if let Some(t) = r.target().filter(|&t| t > r.peak() && t as f64 <= 4.0 * peak) {
            y_hi = y_hi.max(t as f64);
            let label = name(r, n, &format!("target {}", count(n, t as f64)));
            refs.push(Line::new(label, ref_color, vec![(0.0, t as f64), (x_hi, t as f64)]).dash(Dash::Dotted));
        }
    }
    let y_hi = y_hi * 1.08;
    let mut caption = "Connections established, sampled once a second.".to_string();
    if refs.iter().any(|l| l.dash == Dash::Dashed) {
        caption.push_str(" Dashed: the doctor's predicted ceiling for the machine.");
    }
    if refs.iter().any(|l| l.dash == Dash::Dotted) {
        caption.push_str(" Dotted: the target.");
    }
    lines.extend(refs);
    let limits = limit_lines(runs, y_hi);
    if !limits.is_empty() {
        caption.push_str(" Red: the first limit, where it stopped the ramp.");
    }
    lines.extend(limits);
    let mut c = Chart::new(
        Axis::linear("seconds since the start", (0.0, x_hi), secs),
        Axis::linear("connections", (0.0, y_hi), si),
    );
    notes.extend(parts_note(runs));
    c.lines = lines;
    c.notes = notes;
    c.caption = caption;
    c
}

fn rate(runs: &[Run]) -> Chart {
    let n = runs.len();
    let y_hi = runs
        .iter()
        .flat_map(|r| {
            let parts = r.parts.iter().take(MAX_PART_LINES).flat_map(|p| p.timeline.iter().map(|s| s.opened_per_s));
            r.f.timeline.iter().map(|s| s.opened_per_s).chain(parts)
        })
        .fold(1.0, f64::max)
        * 1.1;
    let mut c = Chart::new(
        Axis::linear("seconds since the start", (0.0, last_t(runs)), secs),
        Axis::linear("connections per second", (0.0, y_hi), si),
    );
    for (i, r) in runs.iter().enumerate() {
        let label = if n == 1 { "connects per second".to_string() } else { r.label.clone() };
        c.lines.push(Line::new(
            label,
            PALETTE[i % PALETTE.len()],
            r.f.timeline.iter().map(|s| (s.t, s.opened_per_s)).collect(),
        ));
        c.lines.extend(part_lines(r, i, n, |s| s.opened_per_s));
    }
    let limits = limit_lines(runs, y_hi);
    c.caption = "Connections established per second.".into();
    if !limits.is_empty() {
        c.caption.push_str(" Red: the first limit, where it stopped the ramp.");
    }
    c.lines.extend(limits);
    c.notes.extend(parts_note(runs));
    c
}

/// Held, kernel bytes per connection, user bytes per connection.
type MemPoint = (f64, f64, f64);

/// (held, kernel per connection, user per connection), by held, from the
/// samples past a tenth of the peak; the report's peak figures otherwise
/// (then true).
fn memory_points(r: &Run) -> (Vec<MemPoint>, bool) {
    let floor = (r.peak() / 10).max(1);
    let mut pts: Vec<(f64, f64, f64)> =
        r.f.timeline
            .iter()
            .filter(|s| s.established >= floor)
            .filter_map(|s| {
                let held = s.established as f64;
                Some((held, s.kernel_bytes? as f64 / held, s.user_bytes? as f64 / held))
            })
            .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    // One point per x: the last (steady) one.
    pts.reverse();
    pts.dedup_by(|later, earlier| later.0 == earlier.0);
    pts.reverse();
    if !pts.is_empty() {
        return (pts, false);
    }
    let user = r.f.user_bytes_per_connection.or(r.f.rss_anon_bytes_per_connection);
    match (r.f.kernel_slab_bytes_per_connection, user) {
        (Some(k), Some(u)) if r.peak() > 0 => (vec![(r.peak() as f64, k, u)], true),
        _ => (Vec::new(), false),
    }
}

fn memory(runs: &[Run]) -> Chart {
    let n = runs.len();
    let (all, from_summary): (Vec<Vec<MemPoint>>, Vec<bool>) = runs.iter().map(memory_points).unzip();
    let xs = all.iter().flatten().map(|p| p.0);
    let (x_lo, x_hi) = (0.0, xs.fold(1.0, f64::max) * 1.04);
    let predicted: Vec<f64> = runs.iter().filter_map(|r| r.f.predicted_bytes_per_connection).collect();
    let top = all.iter().flatten().map(|p| p.1).chain(predicted.iter().copied()).fold(1.0, f64::max) * 1.15;
    let user_top = all.iter().flatten().map(|p| p.2).fold(1.0, f64::max) * 1.15;
    let mut c = Chart::new(
        Axis::linear("connections held", (x_lo, x_hi), si),
        Axis::linear("kernel bytes per connection", (0.0, top), si),
    );
    c.y2 = Some(Axis::linear("user bytes per connection", (0.0, user_top), si));
    let mut drawn = false;
    for (i, (r, pts)) in runs.iter().zip(&all).enumerate() {
        let (kc, uc) = if n == 1 { (PALETTE[0], PALETTE[1]) } else { (PALETTE[i % 10], PALETTE[i % 10]) };
        let kernel: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, p.1)).collect();
        let user: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, p.2)).collect();
        let who = if r.kind == Kind::Load { "user (load process, right)" } else { "user (RSS, right)" };
        if from_summary[i] {
            c.notes.push(format!("{}: no memory in the timeline; the report's figures at the peak instead.", r.label));
        }
        if pts.len() == 1 {
            drawn = true;
            c.lines.push(Line::new(name(r, n, "kernel (slab)"), kc, kernel).marks());
            c.lines.push(Line::new(name(r, n, who), uc, user).marks().right().dash(Dash::Dashed));
        } else if !pts.is_empty() {
            drawn = true;
            c.bands.push(Band {
                label: name(r, n, "kernel (slab)"),
                color: kc,
                opacity: if n == 1 { 0.5 } else { 0.35 },
                points: kernel,
                lower: Vec::new(),
            });
            c.lines.push(Line::new(name(r, n, who), uc, user).right().dash(Dash::Dashed));
        } else {
            c.notes.push(format!("{}: no memory readings in this report.", r.label));
        }
        if let Some(p) = r.f.predicted_bytes_per_connection {
            let color = if n == 1 { plots::REFERENCE } else { PALETTE[i % 10] };
            let label = name(r, n, &format!("doctor: kernel {p:.0} B"));
            c.lines.push(Line::new(label, color, vec![(x_lo, p), (x_hi, p)]).dash(Dash::Dotted));
        }
    }
    let mut caption = String::new();
    if drawn {
        caption.push_str(
            "Kernel (left axis): growth of the slab caches since the start, divided by the connections held. \
             User (right axis, its own scale): anonymous RSS of the tcpmax processes (bench: both ends), \
             divided by the same. Samples under a tenth of the peak are left out: fixed costs dominate there.",
        );
    }
    if !predicted.is_empty() {
        caption.push_str(" Dotted: the doctor's kernel bytes per connection.");
    }
    if !drawn && predicted.is_empty() {
        c.placeholder = Some("No memory readings in these reports.".into());
    }
    c.caption = caption.trim_start().to_string();
    c
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Which {
    Rtt,
    Connect,
}

impl Which {
    fn axis(self) -> &'static str {
        match self {
            Which::Rtt => "round trip",
            Which::Connect => "connect latency",
        }
    }
}

/// (1/(1-q), value) points of a histogram, the max last at 1/(1/count).
fn hist_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = h
        .iter_quantiles(4)
        .map(|v| (v.quantile_iterated_to(), v.value_iterated_to() as f64))
        .filter(|&(q, _)| q < 1.0)
        .map(|(q, v)| (1.0 / (1.0 - q), v))
        .take_while(|&(x, _)| x < h.len() as f64)
        .collect();
    if !h.is_empty() {
        pts.push(((h.len() as f64).max(1.0), h.max() as f64));
    }
    pts
}

/// The same from four percentiles: p50, p99, p99.9 where fewer than count,
/// and the max at 1 - 1/count.
fn pct_points(p: &Pct) -> Vec<(f64, f64)> {
    if p.count == 0 {
        return Vec::new();
    }
    let count = p.count as f64;
    let mut pts: Vec<(f64, f64)> = [(2.0, p.p50), (100.0, p.p99), (1000.0, p.p999)]
        .into_iter()
        .filter(|&(x, _)| x < count)
        .map(|(x, v)| (x, v as f64))
        .collect();
    pts.push((count, p.max as f64));
    pts
}

fn spectrum(runs: &[Run], which: Which) -> Chart {
    let n = runs.len();
    let mut lines = Vec::new();
    let mut notes = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let (hist, pct) = match which {
            Which::Rtt => (&r.rtt_hist, r.f.ping_rtt_us),
            Which::Connect => (&r.connect_hist, r.f.connect_latency_us),
        };
        let pts = match (hist, pct) {
            (Some(h), _) => hist_points(h),
            (None, Some(p)) => {
                if p.count > 0 {
                    notes.push(format!(
                        "{}: drawn from p50, p99, p99.9 and max only (no histogram in the report).",
                        r.label
                    ));
                }
                pct_points(&p)
            }
            (None, None) => Vec::new(),
        };
        if pts.is_empty() {
            notes.push(format!(
                "{}: no {}.",
                r.label,
                if which == Which::Rtt { "heartbeat round trips (ping rate 0 or no replies)" } else { "connects" }
            ));
            continue;
        }
        let label = if n == 1 { "latency".to_string() } else { r.label.clone() };
        let line = Line::new(label, PALETTE[i % PALETTE.len()], pts);
        lines.push(if hist.is_none() { line.marks() } else { line });
    }
    let x_max = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)).fold(100.0, f64::max);
    let x_hi = 10f64.powf(x_max.log10().ceil());
    let y_hi = lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)).fold(10.0, f64::max) * 1.1;
    let mut c = Chart::new(
        Axis::log("percentile", (1.0, x_hi), percentile),
        Axis::linear(which.axis(), (0.0, y_hi), time_unit(y_hi)),
    );
    c.caption = match which {
        Which::Rtt => "Round trip at each percentile of all heartbeats; the percentile axis is logarithmic in \
                       1/(1-p), as HdrHistogram's plotter draws it."
            .into(),
        Which::Connect => "Time from connect() to established at each percentile of all connects; the percentile \
                           axis is logarithmic in 1/(1-p)."
            .into(),
    };
    if lines.is_empty() {
        c.placeholder = Some(match which {
            Which::Rtt => {
                "No heartbeat round trips in this report: none were sent (ping rate 0) or none came back.".into()
            }
            Which::Connect => "No connects in this report.".into(),
        });
        notes.clear();
    }
    c.lines = lines;
    c.notes = notes;
    c
}

/// A field of a sample that may be missing.
type Field = fn(&SampleIn) -> Option<u64>;

/// Splits a series with gaps (None) into lines.
fn segments(samples: &[SampleIn], y: Field) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for s in samples {
        match (y(s), out.last_mut()) {
            (Some(v), Some(seg)) => seg.push((s.t, v as f64)),
            (None, Some(seg)) if !seg.is_empty() => out.push(Vec::new()),
            _ => {}
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

fn rtt_over_time(runs: &[Run]) -> Chart {
    let n = runs.len();
    let mut lines = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let series: [(&str, Field); 2] = [("p50", |s| s.rtt_p50_us), ("p99", |s| s.rtt_p99_us)];
        for (j, (what, y)) in series.into_iter().enumerate() {
            let (color, _) = style(i, j, n);
            let dash = if j == 0 { Dash::Solid } else { Dash::Dashed };
            for (k, seg) in segments(&r.f.timeline, y).into_iter().enumerate() {
                let label = (k == 0).then(|| name(r, n, what));
                lines.push(Line::new(label, color, seg).dash(dash));
            }
        }
    }
    let y_hi = lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)).fold(10.0, f64::max) * 1.1;
    let mut c = Chart::new(
        Axis::linear("seconds since the start", (0.0, last_t(runs)), secs),
        Axis::linear("round trip", (0.0, y_hi), time_unit(y_hi)),
    );
    c.caption = "p50 (solid) and p99 (dashed) of each second's heartbeats.".into();
    let any_rtt = runs
        .iter()
        .any(|r| r.rtt_hist.as_ref().is_some_and(|h| !h.is_empty()) || r.f.ping_rtt_us.is_some_and(|p| p.count > 0));
    if lines.is_empty() && any_rtt {
        c.placeholder = Some(
            "No per-second round trips in this report: it carries the heartbeats' percentiles of the whole run \
             only (see the spectrum)."
                .into(),
        );
    } else if lines.is_empty() {
        c.placeholder =
            Some("No heartbeat round trips in this report: none were sent (ping rate 0) or none came back.".into());
    }
    c.lines = lines;
    c
}

/// (cause, per-second points) of a run; from the running error total when
/// the samples have no causes (version 1 reports). The [`MAX_CAUSES`] most
/// frequent causes have a line each, in name order; the others share one,
/// "N other causes".
fn causes(r: &Run) -> Vec<(String, Vec<(f64, f64)>)> {
    let tl = &r.f.timeline;
    let per = |s: &SampleIn, v: u64| v as f64 / s.interval_s.unwrap_or(1.0).max(1e-9);
    if tl.iter().any(|s| s.failures.is_some()) {
        let mut totals: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
        for (e, &v) in tl.iter().filter_map(|s| s.failures.as_ref()).flatten() {
            let t = totals.entry(e).or_insert(0);
            *t = t.saturating_add(v);
        }
        let mut ranked: Vec<(&str, u64)> = totals.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let others: Vec<&str> = ranked.iter().skip(MAX_CAUSES).map(|c| c.0).collect();
        let mut shown: Vec<&str> = ranked.iter().take(MAX_CAUSES).map(|c| c.0).collect();
        shown.sort_unstable();
        let at = |s: &SampleIn, e: &str| s.failures.as_ref().and_then(|m| m.get(e)).copied().unwrap_or(0);
        let mut out: Vec<(String, Vec<(f64, f64)>)> = shown
            .into_iter()
            .map(|e| (bounded::printable(e), tl.iter().map(|s| (s.t, per(s, at(s, e)))).collect()))
            .collect();
        if !others.is_empty() {
            let pts = tl
                .iter()
                .map(|s| {
                    let sum = s.failures.iter().flatten().filter(|(e, _)| !shown_has(&out, e)).map(|(_, &v)| v);
                    (s.t, per(s, sum.fold(0u64, u64::saturating_add)))
                })
                .collect();
            out.push((format!("{} other causes", others.len()), pts));
        }
        return out;
    }
    if tl.windows(2).all(|w| w[1].errors == w[0].errors) && tl.first().is_none_or(|s| s.errors == 0) {
        return Vec::new();
    }
    let mut prev = 0;
    let pts = tl
        .iter()
        .map(|s| {
            let d = s.errors.saturating_sub(prev);
            prev = s.errors;
            (s.t, per(s, d))
        })
        .collect();
    vec![("all causes".to_string(), pts)]
}

/// The most frequent failure cause of a run's timeline and its count, if
/// the samples name causes.
pub fn main_cause(r: &Run) -> Option<(String, u64)> {
    let mut totals: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for (e, &v) in r.f.timeline.iter().filter_map(|s| s.failures.as_ref()).flatten() {
        let t = totals.entry(e).or_insert(0);
        *t = t.saturating_add(v);
    }
    let top = totals.into_iter().filter(|c| c.1 > 0).max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))?;
    Some((bounded::printable(top.0), top.1))
}

/// True when cause `e` has a line of its own among `out`.
fn shown_has(out: &[(String, Vec<(f64, f64)>)], e: &str) -> bool {
    out.iter().any(|(name, _)| *name == bounded::printable(e))
}

fn failures(runs: &[Run]) -> Chart {
    let n = runs.len();
    let mut lines = Vec::new();
    let mut none = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let causes = causes(r);
        if causes.is_empty() {
            none.push(r.label.clone());
            let (color, _) = style(i, 0, n);
            let pts = r.f.timeline.iter().map(|s| (s.t, 0.0)).collect();
            lines.push(Line::new(name(r, n, "none"), color, pts));
        }
        for (j, (cause, pts)) in causes.into_iter().enumerate() {
            let (color, dash) = style(i, j, n);
            lines.push(Line::new(name(r, n, &cause), color, pts).dash(dash));
        }
    }
    let y_hi = lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)).fold(1.0, f64::max) * 1.1;
    let mut c = Chart::new(
        Axis::linear("seconds since the start", (0.0, last_t(runs)), secs),
        Axis::linear("failures per second", (0.0, y_hi), si),
    );
    c.caption = "Failures per second, by errno.".into();
    if none.len() == n {
        c.placeholder = Some(if n == 1 { "No failures in this run.".into() } else { "No failures in any run.".into() });
    } else if !none.is_empty() {
        c.notes.push(format!("No failures in {}.", none.join(", ")));
    }
    c.lines = lines;
    c
}

/// 0, 950, 1.2k, 200k, 1.5M, 2.66G.
pub fn si(v: f64) -> String {
    let a = v.abs();
    let (x, suffix) = match a {
        _ if a >= 1e9 => (v / 1e9, "G"),
        _ if a >= 1e6 => (v / 1e6, "M"),
        _ if a >= 1e3 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    let s = if x.abs() >= 100.0 || x.fract() == 0.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    };
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    format!("{s}{suffix}")
}

fn secs(v: f64) -> String {
    if v.fract() == 0.0 { format!("{v:.0} s") } else { format!("{v:.1} s") }
}

/// The tick format of a time axis in microseconds reaching `hi`: one unit
/// for every tick (never "0 us" under "1 ms").
fn time_unit(hi: f64) -> fn(f64) -> String {
    if hi >= 2e6 {
        in_s
    } else if hi >= 2e3 {
        in_ms
    } else {
        in_us
    }
}

/// A tick: up to three decimals, trailing zeros dropped.
fn tick(v: f64, unit: &str) -> String {
    let s = format!("{:.3}", v.max(0.0));
    format!("{} {unit}", s.trim_end_matches('0').trim_end_matches('.'))
}

fn in_us(v: f64) -> String {
    tick(v.round(), "us")
}

fn in_ms(v: f64) -> String {
    tick(v / 1e3, "ms")
}

fn in_s(v: f64) -> String {
    tick(v / 1e6, "s")
}

/// The percentile at x = 1/(1-p): 1 is 0%, 10 is 90%, 1000 is 99.9%.
pub fn percentile(x: f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x.max(1.0));
    let s = format!("{p:.4}");
    format!("{}%", s.trim_end_matches('0').trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_read_well() {
        assert_eq!(si(0.0), "0");
        assert_eq!(si(950.0), "950");
        assert_eq!(si(1_200.0), "1.2k");
        assert_eq!(si(200_000.0), "200k");
        assert_eq!(si(2_659_912.0), "2.66M");
        assert_eq!(si(0.5), "0.5");
        assert_eq!(percentile(1.0), "0%");
        assert_eq!(percentile(10.0), "90%");
        assert_eq!(percentile(1_000.0), "99.9%");
        assert_eq!(percentile(100_000.0), "99.999%");
        assert_eq!(secs(2.0), "2 s");
        assert_eq!((in_ms(500_000.0), in_ms(2_500.0), in_s(3e6)), ("500 ms".into(), "2.5 ms".into(), "3 s".into()));
        // One unit per axis: the zero of a millisecond axis reads "0 ms".
        let f = time_unit(5_000.0);
        assert_eq!((f(0.0), f(500.0), f(1_000.0)), ("0 ms".into(), "0.5 ms".into(), "1 ms".into()));
        assert_eq!(time_unit(900.0)(0.0), "0 us");
        assert_eq!(time_unit(3e6)(250_000.0), "0.25 s");
    }

    #[test]
    fn four_percentiles_make_a_spectrum() {
        let p = Pct { count: 2_000, p50: 70, p99: 800, p999: 1_000, max: 1_100 };
        assert_eq!(pct_points(&p), vec![(2.0, 70.0), (100.0, 800.0), (1000.0, 1000.0), (2000.0, 1100.0)]);
        // Fewer samples than 1/(1-p): that percentile is the max itself.
        let few = Pct { count: 500, ..p };
        assert_eq!(pct_points(&few).last(), Some(&(500.0, 1100.0)));
        assert_eq!(pct_points(&few).len(), 3);
        assert!(pct_points(&Pct::default()).is_empty());
    }

    #[test]
    fn a_histogram_spectrum_rises_to_its_max() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
        (1..=10_000u64).for_each(|v| h.record(v).expect("in range"));
        let pts = hist_points(&h);
        assert!(pts.len() > 10);
        assert!(pts.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{pts:?}");
        assert_eq!(pts.last().map(|p| p.0), Some(10_000.0));
        assert!((pts[0].1 - 1.0).abs() < 2.0 || pts[0].0 >= 1.0);
    }

    fn run(json: &str) -> Run {
        super::super::input::parse("t.json", "t".into(), json.as_bytes()).expect("read")
    }

    #[test]
    fn the_first_limit_is_marked_where_it_bit() {
        let errno = run(r#"{"target": 100, "held": 50, "ramp_seconds": 9.0,
            "first_limit": {"kind": "errno", "name": "EMFILE", "explanation": "x"},
            "timeline": [{"t": 1, "failures": {}}, {"t": 2, "failures": {"ECONNRESET": 1}}, {"t": 3, "failures": {"EMFILE": 4}}]}"#);
        assert_eq!(first_limit(&errno), Some(("EMFILE".to_string(), 3.0)));
        let guard = run(r#"{"target": 100, "held": 50, "ramp_seconds": 4.5,
            "first_limit": {"kind": "guard", "name": "memory", "explanation": "x"}, "timeline": []}"#);
        assert_eq!(first_limit(&guard), Some(("memory".to_string(), 4.5)));
        let none = run(r#"{"target": 100, "held": 100, "ramp_seconds": 4.5, "timeline": []}"#);
        assert_eq!(first_limit(&none), None);
        let chart = held(&[errno]);
        assert!(chart.lines.iter().any(|l| l.color == plots::LIMIT && l.points[0].0 == 3.0));
    }

    #[test]
    fn the_ceiling_is_a_line_when_near_and_a_note_when_far() {
        let near = held(&[run(
            r#"{"target": 100, "held": 100, "predicted": 150, "timeline": [{"t": 1, "established": 100}]}"#,
        )]);
        assert!(near.lines.iter().any(|l| l.label.as_deref() == Some("doctor's ceiling 150")));
        assert!(near.y.range.1 >= 150.0 && near.notes.is_empty());
        let far = held(&[run(
            r#"{"target": 100, "held": 100, "predicted": 10000, "timeline": [{"t": 1, "established": 100}]}"#,
        )]);
        assert!(far.lines.iter().all(|l| !l.label.as_deref().unwrap_or("").contains("ceiling")));
        assert!(far.notes[0].contains("10,000 is 100\u{d7} the peak, above the chart"), "{:?}", far.notes);
        assert!(far.y.range.1 < 200.0);
    }

    #[test]
    fn gaps_split_lines() {
        let s = |t: f64, v: Option<u64>| SampleIn { t, rtt_p50_us: v, ..Default::default() };
        let tl = [s(1.0, Some(1)), s(2.0, None), s(3.0, Some(3)), s(4.0, Some(4)), s(5.0, None)];
        let segs = segments(&tl, |s| s.rtt_p50_us);
        assert_eq!(segs, vec![vec![(1.0, 1.0)], vec![(3.0, 3.0), (4.0, 4.0)]]);
    }
}
