//! Reading reports: a JSON file written by `tcpmax bench --json` or
//! `tcpmax load --json` (or a merged or cluster report with per-agent
//! timelines), recognised by its fields and read tolerantly: a field an
//! older version did not write is simply absent. Anything else is an input
//! error naming the file: not JSON, a truncated file, JSON that is not a
//! tcpmax report, a report version newer than this build reads.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::Value;

use crate::error::Error;
use crate::load::report::Percentiles;
use crate::machine::Machine;
use crate::output::REPORT_VERSION;

/// Which command wrote a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `tcpmax bench`.
    Bench,
    /// `tcpmax load`.
    Load,
    /// A report made of several (agents, backends), with timelines.
    Merged,
}

impl Kind {
    /// The command's name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Bench => "bench",
            Kind::Load => "load",
            Kind::Merged => "merged",
        }
    }
}

/// Latency percentiles as a report writes them (microseconds).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default)]
pub struct Pct {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

impl Pct {
    /// "p50 .., p99 .., p99.9 .., max .." or "no samples".
    pub fn summary(&self) -> String {
        Percentiles { count: self.count, p50: self.p50, p99: self.p99, p999: self.p999, max: self.max }.summary()
    }
}

/// One sample of a timeline; every field but `t` may be missing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SampleIn {
    /// Seconds since the start.
    pub t: f64,
    /// Seconds the sample covers (1 when absent).
    pub interval_s: Option<f64>,
    /// Wall clock, ms since the epoch.
    pub unix_ms: Option<u64>,
    /// Connections established.
    pub established: u64,
    /// Connections established per second.
    pub opened_per_s: f64,
    /// Failures of all kinds so far.
    pub errors: u64,
    /// Failures during the interval by errno.
    pub failures: Option<BTreeMap<String, u64>>,
    /// Median RTT of the interval.
    pub rtt_p50_us: Option<u64>,
    /// 99th percentile RTT of the interval.
    pub rtt_p99_us: Option<u64>,
    /// Anonymous RSS.
    pub user_bytes: Option<u64>,
    /// Slab growth since the start.
    pub kernel_bytes: Option<u64>,
}

/// What stopped the ramp.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Limit {
    /// `guard` or `errno`.
    pub kind: String,
    /// The guard or errno name.
    pub name: String,
    /// What it means.
    pub explanation: String,
}

/// The fields of a bench or load report the page shows, all optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Fields {
    /// Bench: connections asked for.
    pub target: Option<u64>,
    /// Load: connections asked for.
    pub count: Option<u64>,
    /// Bench: held at the peak.
    pub held: Option<u64>,
    /// Load: most established at once.
    pub peak_established: Option<u64>,
    /// The doctor's ceiling.
    pub predicted: Option<u64>,
    /// The limit the doctor says binds.
    pub predicted_binding: Option<String>,
    /// The doctor's kernel bytes per connection.
    pub predicted_bytes_per_connection: Option<f64>,
    /// Seconds of ramp.
    pub ramp_seconds: Option<f64>,
    /// Connections per second over the ramp.
    pub connect_rate_per_s: Option<f64>,
    /// Seconds held.
    pub hold_seconds: Option<f64>,
    /// Bench: fall of free memory per connection.
    pub kernel_bytes_per_connection: Option<f64>,
    /// Bench: slab growth per connection.
    pub kernel_slab_bytes_per_connection: Option<f64>,
    /// Bench: anonymous RSS per connection.
    pub user_bytes_per_connection: Option<f64>,
    /// Load: anonymous RSS per connection.
    pub rss_anon_bytes_per_connection: Option<f64>,
    /// Heartbeat round trip.
    pub ping_rtt_us: Option<Pct>,
    /// Connect latency.
    pub connect_latency_us: Option<Pct>,
    /// Connect failures.
    pub failed: Option<u64>,
    /// Bench: what stopped the ramp.
    pub first_limit: Option<Limit>,
    /// Load: the guard that stopped the ramp.
    pub stopped_by: Option<String>,
    /// Stopped by Ctrl-C.
    pub interrupted: Option<bool>,
    /// One sample a second.
    pub timeline: Vec<SampleIn>,
    /// Where it ran.
    pub machine: Option<MachineIn>,
}

/// The machine a report ran on.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct MachineIn {
    /// `uname -r`.
    pub kernel: String,
    /// CPU model.
    pub cpu_model: String,
    /// CPUs.
    pub cpus: u64,
    /// MemTotal.
    pub mem_total_bytes: u64,
    /// RLIMIT_NOFILE soft.
    pub nofile_soft: u64,
    /// RLIMIT_NOFILE hard.
    pub nofile_hard: u64,
    /// Local port range, (low, high).
    #[serde(deserialize_with = "port_range")]
    pub port_range: Option<(u64, u64)>,
    /// Commit built from.
    pub commit: String,
    /// When.
    pub date: String,
}

/// A port range as reports have written it: `{"low": .., "high": ..}` since
/// version 2, a `[low, high]` pair before.
fn port_range<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<(u64, u64)>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Range {
        Object { low: u64, high: u64 },
        Pair(u64, u64),
    }
    Ok(Option::<Range>::deserialize(d)?.map(|r| match r {
        Range::Object { low, high } | Range::Pair(low, high) => (low, high),
    }))
}

impl From<Machine> for MachineIn {
    fn from(m: Machine) -> MachineIn {
        MachineIn {
            kernel: m.kernel,
            cpu_model: m.cpu_model,
            cpus: m.cpus as u64,
            mem_total_bytes: m.mem_total_bytes,
            nofile_soft: m.nofile_soft,
            nofile_hard: m.nofile_hard,
            port_range: m.port_range.map(|r| (r.low, r.high)),
            commit: m.commit,
            date: m.date,
        }
    }
}

/// One agent or backend of a merged report, with its own timeline.
#[derive(Debug, Clone)]
pub struct Part {
    /// Its name in the report (or its position).
    pub label: String,
    /// Its samples.
    pub timeline: Vec<SampleIn>,
}

/// One report, read and recognised.
#[derive(Debug, Clone)]
pub struct Run {
    /// Its name on the page (the file name without `.json`).
    pub label: String,
    /// Where it was read from.
    pub source: String,
    /// Which command wrote it.
    pub kind: Kind,
    /// Its `report_version` (1 when absent).
    pub version: u32,
    /// What it says.
    pub f: Fields,
    /// Bench: server and client shards; load: client shards.
    pub shards: (Option<u64>, Option<u64>),
    /// The serialized RTT histogram, when the report carries one.
    pub rtt_hist: Option<Histogram<u64>>,
    /// The serialized connect-latency histogram, when the report carries one.
    pub connect_hist: Option<Histogram<u64>>,
    /// Agents or backends with their own timelines.
    pub parts: Vec<Part>,
}

impl Run {
    /// Connections held at the peak.
    pub fn peak(&self) -> u64 {
        let from_timeline = self.f.timeline.iter().map(|s| s.established).max().unwrap_or(0);
        self.f.held.or(self.f.peak_established).unwrap_or(from_timeline)
    }

    /// Connections asked for.
    pub fn target(&self) -> Option<u64> {
        self.f.target.or(self.f.count)
    }
}

/// Reads the report at `path`; every failure is an input error naming it.
pub fn read(path: &Path) -> crate::Result<Run> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| Error::Input(format!("cannot read {name}: {e}")))?;
    let label = path.file_stem().map_or_else(|| name.clone(), |s| s.to_string_lossy().into_owned());
    parse(&name, label, &text)
}

/// Reads a report from its text; `name` is how errors call it.
pub fn parse(name: &str, label: String, text: &str) -> crate::Result<Run> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        let fix = "give a report written by `tcpmax bench --json FILE` or `tcpmax load --json FILE`";
        Error::Input(if text.trim().is_empty() {
            format!("{name} is empty, not a tcpmax report: {fix}")
        } else if e.is_eof() {
            format!(
                "{name} is truncated: the JSON ends early (line {}, column {}); was the run stopped while writing it? {fix}",
                e.line(),
                e.column()
            )
        } else {
            format!("{name} is not JSON ({e}): {fix}")
        })
    })?;
    from_value(name, label, value)
}

/// Recognises and reads a report already parsed as JSON.
pub fn from_value(name: &str, label: String, value: Value) -> crate::Result<Run> {
    let has = |k: &str| value.get(k).is_some();
    let kind = if has("target") && has("held") {
        Kind::Bench
    } else if has("targets") && has("peak_established") {
        Kind::Load
    } else if has("agents") || has("backends") || (has("timeline") && has("report_version")) {
        Kind::Merged
    } else {
        return Err(Error::Input(format!(
            "{name} is JSON but not the report of a run (no `held` or `peak_established` field): \
             give a report written by `tcpmax bench --json FILE` or `tcpmax load --json FILE`"
        )));
    };
    let version = version(name, &value)?;
    let f = Fields::deserialize(&value)
        .map_err(|e| Error::Input(format!("{name} looks like a {} report, but {e}", kind.name())))?;
    let shards = match value.get("shards") {
        Some(Value::Object(o)) => (o.get("server").and_then(Value::as_u64), o.get("client").and_then(Value::as_u64)),
        Some(v) => (None, v.as_u64()),
        None => (None, None),
    };
    let hist = |key: &str| histogram(name, &value, key);
    Ok(Run {
        label,
        source: name.to_string(),
        kind,
        version,
        shards,
        rtt_hist: hist("rtt_us")?,
        connect_hist: hist("connect_us")?,
        parts: parts(&value),
        f,
    })
}

fn version(name: &str, value: &Value) -> crate::Result<u32> {
    let Some(v) = value.get("report_version") else { return Ok(1) };
    match v.as_u64() {
        Some(n @ 1..) if n <= u64::from(REPORT_VERSION) => Ok(n as u32),
        Some(n @ 1..) => Err(Error::Input(format!(
            "{name} is a version {n} report; this tcpmax reads versions 1 to {REPORT_VERSION}: \
             draw it with the newer tcpmax that wrote it"
        ))),
        _ => Err(Error::Input(format!("{name} has report_version {v}, not a version tcpmax writes (1, 2, ...)"))),
    }
}

/// Decodes `histograms.KEY`: base64 of a V2 HdrHistogram.
fn histogram(name: &str, value: &Value, key: &str) -> crate::Result<Option<Histogram<u64>>> {
    let Some(b64) = value.get("histograms").and_then(|h| h.get(key)).and_then(Value::as_str) else {
        return Ok(None);
    };
    let bad = |why: String| Error::Input(format!("{name}: histograms.{key} is not a base64 V2 HdrHistogram ({why})"));
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|e| bad(e.to_string()))?;
    let h = hdrhistogram::serialization::Deserializer::new()
        .deserialize::<u64, _>(&mut bytes.as_slice())
        .map_err(|e| bad(format!("{e:?}")))?;
    Ok(Some(h))
}

/// The agents' or backends' timelines of a merged report; entries without
/// a readable timeline are skipped.
fn parts(value: &Value) -> Vec<Part> {
    let mut out = Vec::new();
    for key in ["agents", "backends"] {
        let Some(list) = value.get(key).and_then(Value::as_array) else { continue };
        for (i, item) in list.iter().enumerate() {
            let Some(timeline) = item.get("timeline").and_then(|t| Vec::<SampleIn>::deserialize(t).ok()) else {
                continue;
            };
            let label = ["name", "agent", "backend", "id", "addr", "address"]
                .iter()
                .find_map(|k| match item.get(*k) {
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(v @ Value::Number(_)) => Some(v.to_string()),
                    _ => None,
                })
                .unwrap_or_else(|| format!("{} {}", key.trim_end_matches('s'), i + 1));
            out.push(Part { label, timeline });
        }
    }
    if out.is_empty() {
        out = cluster_parts(value);
    }
    out
}

/// A cluster report keeps one timeline whose samples hold each backend's
/// count in order (`timeline[].backends[i]`): one line per backend.
fn cluster_parts(value: &Value) -> Vec<Part> {
    let (Some(backends), Some(samples)) =
        (value.get("backends").and_then(Value::as_array), value.get("timeline").and_then(Value::as_array))
    else {
        return Vec::new();
    };
    backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let label =
                b.get("name").and_then(Value::as_str).map_or_else(|| format!("backend {}", i + 1), String::from);
            let timeline = samples
                .iter()
                .filter_map(|s| {
                    let t = s.get("t")?.as_f64()?;
                    let held = s.get("backends")?.as_array()?.get(i)?.as_u64()?;
                    Some(SampleIn { t, established: held, ..SampleIn::default() })
                })
                .collect();
            Part { label, timeline }
        })
        .filter(|p| !p.timeline.is_empty())
        .collect()
}

/// Gives runs with the same label (`a/run.json`, `b/run.json`) their file
/// path as label instead.
pub fn unique_labels(runs: &mut [Run]) {
    for i in 0..runs.len() {
        if runs.iter().filter(|r| r.label == runs[i].label).count() > 1 {
            let dup = runs[i].label.clone();
            for r in runs.iter_mut().filter(|r| r.label == dup) {
                r.label = r.source.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match parse("r.json", "r".into(), text) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{text} was read"),
        }
    }

    #[test]
    fn bad_inputs_name_the_file_and_the_cause() {
        assert!(err("").contains("r.json is empty"));
        assert!(err("hello").contains("r.json is not JSON"));
        assert!(err("{\"target\": 10, \"held\": ").contains("r.json is truncated"));
        assert!(err("{\"name\": \"x\"}").contains("r.json is JSON but not the report of a run"));
        assert!(err("[1, 2]").contains("not the report of a run"));
        let newer = err("{\"report_version\": 99, \"target\": 1, \"held\": 1}");
        assert!(newer.contains("r.json is a version 99 report") && newer.contains("versions 1 to 2"), "{newer}");
        assert!(err("{\"report_version\": \"x\", \"target\": 1, \"held\": 1}").contains("not a version"));
        assert!(err("{\"target\": 1, \"held\": \"many\"}").contains("looks like a bench report, but"));
        let hist = err("{\"targets\": [], \"peak_established\": 1, \"histograms\": {\"rtt_us\": \"!!\"}}");
        assert!(hist.contains("histograms.rtt_us is not a base64 V2 HdrHistogram"), "{hist}");
    }

    #[test]
    fn a_version_1_bench_report_is_read() {
        let text = r#"{"target": 10, "held": 10, "predicted": 99, "shards": {"server": 2, "client": 3},
            "timeline": [{"t": 1.0, "established": 10, "opened_per_s": 10.0, "errors": 0}]}"#;
        let r = parse("old.json", "old".into(), text).expect("read");
        assert_eq!((r.kind, r.version, r.peak(), r.target()), (Kind::Bench, 1, 10, Some(10)));
        assert_eq!(r.shards, (Some(2), Some(3)));
        assert_eq!(r.f.timeline[0].failures, None);
    }

    #[test]
    fn cluster_reports_give_one_timeline_per_backend() {
        let v: Value = serde_json::from_str(
            r#"{"backends": [{"name": "b1"}, {"name": "b2"}],
                "timeline": [{"t": 1.0, "client": 3, "lb": 3, "backends": [1, 2]},
                             {"t": 2.0, "client": 5, "lb": 5, "backends": [2, 3]}]}"#,
        )
        .unwrap();
        let p = parts(&v);
        assert_eq!(p.iter().map(|p| p.label.as_str()).collect::<Vec<_>>(), vec!["b1", "b2"]);
        assert_eq!(p[1].timeline.iter().map(|s| s.established).collect::<Vec<_>>(), vec![2, 3]);
    }

    #[test]
    fn merged_reports_give_one_timeline_per_agent() {
        let text = r#"{"report_version": 2, "timeline": [], "agents": [
            {"name": "a", "timeline": [{"t": 1, "established": 5}]},
            {"timeline": [{"t": 1, "established": 6}]},
            {"name": "no timeline"}]}"#;
        let r = parse("m.json", "m".into(), text).expect("read");
        assert_eq!(r.kind, Kind::Merged);
        let labels: Vec<_> = r.parts.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["a", "agent 2"]);
    }

    #[test]
    fn serialized_histograms_are_decoded() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
        (1..=100u64).for_each(|v| h.record(v).expect("in range"));
        let mut bytes = Vec::new();
        hdrhistogram::serialization::Serializer::serialize(
            &mut hdrhistogram::serialization::V2Serializer::new(),
            &h,
            &mut bytes,
        )
        .expect("serialize");
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        let text =
            format!(r#"{{"targets": ["127.0.0.1:1"], "peak_established": 1, "histograms": {{"rtt_us": "{b64}"}}}}"#);
        let r = parse("h.json", "h".into(), &text).expect("read");
        assert_eq!(r.rtt_hist.map(|h| h.len()), Some(100));
        assert!(r.connect_hist.is_none());
    }

    #[test]
    fn same_names_become_paths() {
        let one = |src: &str| {
            let mut r = parse(src, "run".into(), r#"{"target": 1, "held": 1}"#).expect("read");
            r.source = src.into();
            r
        };
        let mut runs = vec![one("a/run.json"), one("b/run.json")];
        unique_labels(&mut runs);
        assert_eq!(runs[0].label, "a/run.json");
        assert_eq!(runs[1].label, "b/run.json");
    }
}
