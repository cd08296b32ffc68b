//! Reading reports: a JSON file written by `tcpmax bench --json` or
//! `tcpmax load --json` (or a merged or cluster report with per-agent
//! timelines), recognised by its fields and read tolerantly: a field an
//! older version did not write is simply absent. Anything else is an input
//! error naming the file: not JSON, a truncated file, JSON that is not a
//! tcpmax report, a report version newer than this build reads.
//!
//! Files come from outside: they are read within [`crate::bounded`]'s
//! bounds (size, string length, memory) straight into typed fields, never
//! into a generic JSON tree, and every time and count is checked against
//! what a run can have before it is drawn (`check`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::bounded::{self, ReadError};
use crate::error::Error;
use crate::load::hist;
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
    #[serde(deserialize_with = "bounded::opt_map")]
    pub failures: Option<BTreeMap<String, u64>>,
    /// Median RTT of the interval.
    pub rtt_p50_us: Option<u64>,
    /// 99th percentile RTT of the interval.
    pub rtt_p99_us: Option<u64>,
    /// Anonymous RSS.
    pub user_bytes: Option<u64>,
    /// Slab growth since the start.
    pub kernel_bytes: Option<u64>,
    /// Cluster: connections held by each backend, in order.
    #[serde(deserialize_with = "bounded::opt_vec")]
    pub backends: Option<Vec<u64>>,
}

/// One sample of an agent's or backend's own timeline: what its line needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct PartSample {
    /// Seconds since the start.
    pub t: f64,
    /// Connections established.
    pub established: u64,
    /// Connections established per second.
    pub opened_per_s: f64,
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
    #[serde(deserialize_with = "bounded::vec")]
    pub timeline: Vec<SampleIn>,
    /// Where it ran.
    pub machine: Option<MachineIn>,
    /// The layout version, as written.
    pub report_version: Version,
    /// Load: where it connected (only its presence is kept).
    pub targets: Option<IgnoredAny>,
    /// Merged: the agents, with their own timelines.
    #[serde(deserialize_with = "parts_list")]
    pub agents: Option<Vec<PartIn>>,
    /// Cluster: the backends, maybe with their own timelines.
    #[serde(deserialize_with = "parts_list")]
    pub backends: Option<Vec<PartIn>>,
    /// Shards, as written.
    pub shards: Shards,
    /// The serialized histograms.
    pub histograms: Option<HistsIn>,
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
fn port_range<'de, D: Deserializer<'de>>(d: D) -> Result<Option<(u64, u64)>, D::Error> {
    struct Range;
    impl<'de> Visitor<'de> for Range {
        type Value = Option<(u64, u64)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("{\"low\": .., \"high\": ..} or [low, high]")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let (mut low, mut high) = (None, None);
            while let Some(key) = map.next_key::<std::borrow::Cow<'_, str>>()? {
                match &*key {
                    "low" => low = Some(map.next_value::<u64>()?),
                    "high" => high = Some(map.next_value::<u64>()?),
                    _ => drop(map.next_value::<IgnoredAny>()?),
                }
            }
            match (low, high) {
                (Some(l), Some(h)) => Ok(Some((l, h))),
                _ => Err(de::Error::custom("a port range without low and high")),
            }
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let (Some(l), Some(h)) = (seq.next_element::<u64>()?, seq.next_element::<u64>()?) else {
                return Err(de::Error::custom("a port range pair of fewer than two numbers"));
            };
            if seq.next_element::<IgnoredAny>()?.is_some() {
                return Err(de::Error::custom("a port range pair of more than two numbers"));
            }
            Ok(Some((l, h)))
        }
    }
    d.deserialize_any(Range)
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
    pub timeline: Vec<PartSample>,
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

/// The serialized histograms.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct HistsIn {
    /// Round trips.
    #[serde(deserialize_with = "bounded::opt_string")]
    pub rtt_us: Option<String>,
    /// Connect latency.
    #[serde(deserialize_with = "bounded::opt_string")]
    pub connect_us: Option<String>,
}

/// One entry of `agents` or `backends`: a name and maybe a timeline.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PartIn {
    /// Names it may have, the first present is used.
    #[serde(deserialize_with = "label")]
    pub name: Option<String>,
    /// The same.
    #[serde(deserialize_with = "label")]
    pub agent: Option<String>,
    /// The same.
    #[serde(deserialize_with = "label")]
    pub backend: Option<String>,
    /// The same.
    #[serde(deserialize_with = "label")]
    pub id: Option<String>,
    /// The same.
    #[serde(deserialize_with = "label")]
    pub addr: Option<String>,
    /// The same.
    #[serde(deserialize_with = "label")]
    pub address: Option<String>,
    /// Its own timeline.
    #[serde(deserialize_with = "bounded::opt_vec")]
    pub timeline: Option<Vec<PartSample>>,
}

/// `report_version` as written: absent, a number, or something else.
#[derive(Debug, Default, Clone, PartialEq)]
pub enum Version {
    /// Not written (version 1).
    #[default]
    Absent,
    /// A number.
    Number(u64),
    /// Anything else, shown as written.
    Other(String),
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Version, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Version;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a version number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Version, E> {
                Ok(Version::Number(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Version, E> {
                Ok(Version::Other(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Version, E> {
                Ok(Version::Other(bounded::number(v)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Version, E> {
                Ok(Version::Other(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Version, E> {
                Ok(Version::Other(format!("{:?}", v.chars().take(20).collect::<String>())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Version, E> {
                Ok(Version::Other("null".into()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `shards`: `{"server": .., "client": ..}` (bench) or a number (load).
#[derive(Debug, Default, Clone, Copy)]
pub struct Shards(pub Option<u64>, pub Option<u64>);

impl<'de> Deserialize<'de> for Shards {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Shards, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Shards;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("shards")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Shards, E> {
                Ok(Shards(None, Some(v)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shards, A::Error> {
                let mut out = Shards(None, None);
                while let Some(key) = map.next_key::<std::borrow::Cow<'_, str>>()? {
                    let v = map.next_value::<Option<u64>>()?;
                    match &*key {
                        "server" => out.0 = v,
                        "client" => out.1 = v,
                        _ => {}
                    }
                }
                Ok(out)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Shards, E> {
                Ok(Shards(None, None))
            }
        }
        d.deserialize_any(V)
    }
}

/// A label: a string or a number; anything else is skipped.
fn label<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a name")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            // A label is drawn in a legend: the first 60 characters do.
            let label = bounded::printable(&v.chars().take(60).collect::<String>());
            bounded::charge::<E>(label.len())?;
            Ok(Some(label))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(bounded::number(v)))
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// `agents` or `backends`: a list of entries (a count or anything else is
/// not a list of parts and is skipped).
fn parts_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<PartIn>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Vec<PartIn>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of agents or backends")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element::<PartEntry>()? {
                if let PartEntry(Some(p)) = item {
                    bounded::charge::<A::Error>(size_of::<PartIn>())?;
                    out.push(p);
                }
            }
            Ok(Some(out))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// An entry of a parts list: an object, or anything else (skipped).
struct PartEntry(Option<PartIn>);

impl<'de> Deserialize<'de> for PartEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PartEntry, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PartEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an agent or backend")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PartEntry, A::Error> {
                PartIn::deserialize(de::value::MapAccessDeserializer::new(map)).map(|p| PartEntry(Some(p)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PartEntry, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(PartEntry(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<PartEntry, E> {
                Ok(PartEntry(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<PartEntry, E> {
                Ok(PartEntry(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<PartEntry, E> {
                Ok(PartEntry(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<PartEntry, E> {
                Ok(PartEntry(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<PartEntry, E> {
                Ok(PartEntry(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<PartEntry, E> {
                Ok(PartEntry(None))
            }
        }
        d.deserialize_any(V)
    }
}

const FIX: &str = "give a report written by `tcpmax bench --json FILE` or `tcpmax load --json FILE`";

/// Reads the report at `path`; every failure is an input error naming it.
pub fn read(path: &Path) -> crate::Result<Run> {
    let name = path.display().to_string();
    let label = path.file_stem().map_or_else(|| name.clone(), |s| bounded::printable(&s.to_string_lossy()));
    let doc = bounded::read::<Fields>(path).map_err(|e| refused(&name, e))?;
    from_doc(&name, label, doc)
}

/// Reads a report from its bytes; `name` is how errors call it. The entry
/// point for bytes (tests and fuzzing): no input makes it panic or
/// allocate beyond [`crate::bounded`]'s budget.
pub fn parse(name: &str, label: String, bytes: &[u8]) -> crate::Result<Run> {
    let doc = bounded::parse::<Fields>(bytes).map_err(|e| refused(name, e))?;
    from_doc(name, label, doc)
}

/// The one line that says why a file is not read.
fn refused(name: &str, e: ReadError) -> Error {
    use serde_json::error::Category;
    Error::Input(match e {
        ReadError::Io(e) => format!("cannot read {name}: {e}"),
        ReadError::Empty => format!("{name} is empty, not a tcpmax report: {FIX}"),
        ReadError::TooBig(_) | ReadError::Shape(_) => format!("{name} is not a tcpmax report: {e}; {FIX}"),
        ReadError::Json(e) => {
            let why = bounded::printable(&e.to_string());
            match e.classify() {
                Category::Eof => format!(
                    "{name} is truncated: the JSON ends early (line {}, column {}); was the run stopped while writing it? {FIX}",
                    e.line(),
                    e.column()
                ),
                Category::Data => format!("{name} is JSON but not the report of a run ({why}): {FIX}"),
                Category::Syntax | Category::Io => format!("{name} is not JSON ({why}): {FIX}"),
            }
        }
    })
}

/// Reads a report already parsed as JSON (`bench --report`).
pub fn from_value(name: &str, label: String, value: serde_json::Value) -> crate::Result<Run> {
    let bytes = serde_json::to_vec(&value).map_err(|e| Error::Input(format!("{name}: {e}")))?;
    parse(name, label, &bytes)
}

/// Recognises a report and checks what it says.
fn from_doc(name: &str, label: String, mut f: Fields) -> crate::Result<Run> {
    let (agents, backends, histograms) = (f.agents.take(), f.backends.take(), f.histograms.take());
    let kind = if f.target.is_some() && f.held.is_some() {
        Kind::Bench
    } else if f.targets.is_some() && f.peak_established.is_some() {
        Kind::Load
    } else if agents.is_some() || backends.is_some() || (!f.timeline.is_empty() && f.report_version != Version::Absent)
    {
        Kind::Merged
    } else {
        return Err(Error::Input(format!(
            "{name} is JSON but not the report of a run (no `held` or `peak_established` field): {FIX}"
        )));
    };
    let version = version(name, &f.report_version)?;
    check(&f).map_err(|what| Error::Input(format!("{name} is damaged: {what}; {FIX}")))?;
    let hist = |key: &str, text: &Option<String>| -> crate::Result<Option<Histogram<u64>>> {
        text.as_deref()
            .map(|t| hist::decode(t).map_err(|why| Error::Input(format!("{name}: histograms.{key} is {why}"))))
            .transpose()
    };
    let h = histograms.unwrap_or_default();
    let mut parts = parts(agents, "agent");
    parts.extend(parts_of(backends.as_deref(), &f.timeline));
    for p in &parts {
        check_part(p).map_err(|what| Error::Input(format!("{name} is damaged: {what}; {FIX}")))?;
    }
    Ok(Run {
        label,
        source: name.to_string(),
        kind,
        version,
        shards: (f.shards.0, f.shards.1),
        rtt_hist: hist("rtt_us", &h.rtt_us)?,
        connect_hist: hist("connect_us", &h.connect_us)?,
        parts,
        f,
    })
}

fn version(name: &str, v: &Version) -> crate::Result<u32> {
    match v {
        Version::Absent => Ok(1),
        Version::Number(n @ 1..) if *n <= u64::from(REPORT_VERSION) => Ok(*n as u32),
        Version::Number(n @ 1..) => Err(Error::Input(format!(
            "{name} is a version {n} report; this tcpmax reads versions 1 to {REPORT_VERSION}: \
             draw it with the newer tcpmax that wrote it"
        ))),
        Version::Number(n) => {
            Err(Error::Input(format!("{name} has report_version {n}, not a version tcpmax writes (1, 2, ...)")))
        }
        Version::Other(v) => {
            Err(Error::Input(format!("{name} has report_version {v}, not a version tcpmax writes (1, 2, ...)")))
        }
    }
}

/// Checks every time and count of a report against what a run can have;
/// the error names the field.
fn check(f: &Fields) -> Result<(), String> {
    use bounded::{count, rate, seconds};
    let counts = [("target", f.target), ("count", f.count), ("held", f.held), ("peak_established", f.peak_established)];
    for (name, v) in counts.into_iter().chain([("predicted", f.predicted), ("failed", f.failed)]) {
        v.map_or(Ok(()), |v| count(name, v))?;
    }
    for (name, v) in [("ramp_seconds", f.ramp_seconds), ("hold_seconds", f.hold_seconds)] {
        v.map_or(Ok(()), |v| seconds(name, v))?;
    }
    let per_connection = [
        ("connect_rate_per_s", f.connect_rate_per_s),
        ("predicted_bytes_per_connection", f.predicted_bytes_per_connection),
        ("kernel_bytes_per_connection", f.kernel_bytes_per_connection),
        ("kernel_slab_bytes_per_connection", f.kernel_slab_bytes_per_connection),
        ("user_bytes_per_connection", f.user_bytes_per_connection),
        ("rss_anon_bytes_per_connection", f.rss_anon_bytes_per_connection),
    ];
    for (name, v) in per_connection {
        v.map_or(Ok(()), |v| rate(name, v))?;
    }
    for (name, p) in [("ping_rtt_us", f.ping_rtt_us), ("connect_latency_us", f.connect_latency_us)] {
        if let Some(p) = p {
            for (what, v) in [("count", p.count), ("p50", p.p50), ("p99", p.p99), ("p999", p.p999), ("max", p.max)] {
                count(&format!("{name}.{what}"), v)?;
            }
        }
    }
    for (i, s) in f.timeline.iter().enumerate() {
        let at = |what: &str| format!("timeline[{i}].{what}");
        seconds(&at("t"), s.t)?;
        if let Some(v) = s.interval_s {
            seconds(&at("interval_s"), v)?;
        }
        if let Some(v) = s.unix_ms {
            bounded::wall_clock(&at("unix_ms"), v)?;
        }
        rate(&at("opened_per_s"), s.opened_per_s)?;
        count(&at("established"), s.established)?;
        count(&at("errors"), s.errors)?;
        let more = [s.rtt_p50_us, s.rtt_p99_us, s.user_bytes, s.kernel_bytes];
        for (what, v) in ["rtt_p50_us", "rtt_p99_us", "user_bytes", "kernel_bytes"].into_iter().zip(more) {
            v.map_or(Ok(()), |v| count(&at(what), v))?;
        }
        for (errno, &v) in s.failures.iter().flatten() {
            count(&at(&format!("failures.{}", bounded::printable(errno))), v)?;
        }
        for (k, &v) in s.backends.iter().flatten().enumerate() {
            count(&at(&format!("backends[{k}]")), v)?;
        }
    }
    Ok(())
}

/// The same for an agent's or backend's own timeline.
fn check_part(p: &Part) -> Result<(), String> {
    for (i, s) in p.timeline.iter().enumerate() {
        let at = |what: &str| format!("the timeline of {}, sample {i}: {what}", p.label);
        bounded::seconds(&at("t"), s.t)?;
        bounded::count(&at("established"), s.established)?;
        bounded::rate(&at("opened_per_s"), s.opened_per_s)?;
    }
    Ok(())
}

/// The agents' or backends' own timelines; entries without a timeline
/// are skipped.
fn parts(list: Option<Vec<PartIn>>, kind: &str) -> Vec<Part> {
    list.into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, item)| {
            let timeline = item.timeline?;
            let label = [item.name, item.agent, item.backend, item.id, item.addr, item.address]
                .into_iter()
                .flatten()
                .next()
                .unwrap_or_else(|| format!("{kind} {}", i + 1));
            Some(Part { label, timeline })
        })
        .collect()
}

/// Backends: with their own timelines, or, in a cluster report, one
/// timeline whose samples hold each backend's count in order
/// (`timeline[].backends[i]`): one line per backend.
fn parts_of(backends: Option<&[PartIn]>, timeline: &[SampleIn]) -> Vec<Part> {
    let Some(backends) = backends else { return Vec::new() };
    if backends.iter().any(|b| b.timeline.is_some()) {
        return parts(Some(backends.to_vec()), "backend");
    }
    backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let label = b.name.clone().unwrap_or_else(|| format!("backend {}", i + 1));
            let timeline = timeline
                .iter()
                .filter_map(|s| {
                    let held = *s.backends.as_ref()?.get(i)?;
                    Some(PartSample { t: s.t, established: held, opened_per_s: 0.0 })
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
#[path = "input_tests.rs"]
mod tests;
