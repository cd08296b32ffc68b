//! `tcpmax report` and `bench --report` driven as a binary: a real run's
//! JSON drawn as a page, checked as XML (one SVG per plot, axes labelled,
//! series drawn, nothing fetched), several runs overlaid, and bad inputs
//! refused with the file named.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{tcpmax, validate};
use serde_json::Value;

/// A directory of its own, removed at the end.
struct Tmp(PathBuf);

impl Tmp {
    fn new(name: &str) -> Tmp {
        let dir = std::env::temp_dir().join(format!("tcpmax-report-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Tmp(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const PALETTE: [&str; 2] = ["#4E79A7", "#F28E2B"];

/// The axis descriptions each plot must carry.
const AXES: [(&str, &[&str]); 7] = [
    ("held", &["seconds since the start", "connections"]),
    ("rate", &["seconds since the start", "connections per second"]),
    ("memory", &["connections held", "kernel bytes per connection", "user bytes per connection"]),
    ("rtt-spectrum", &["percentile", "round trip"]),
    ("rtt-time", &["seconds since the start", "round trip"]),
    ("failures", &["seconds since the start", "failures per second"]),
    ("connect-spectrum", &["percentile", "connect latency"]),
];

fn texts(n: roxmltree::Node<'_, '_>) -> Vec<String> {
    n.descendants().filter(|d| d.has_tag_name("text")).filter_map(|d| d.text()).map(|t| t.trim().to_string()).collect()
}

/// Polylines of `color` with at least two points.
fn lines_of(n: roxmltree::Node<'_, '_>, color: &str) -> usize {
    n.descendants()
        .filter(|d| d.has_tag_name("polyline") && d.attribute("stroke") == Some(color))
        .filter(|d| d.attribute("points").is_some_and(|p| p.split_whitespace().count() >= 2))
        .count()
}

/// Parses the page as XML and checks its structure: each plot of [`AXES`]
/// is a figure with its axes, or, when it has nothing to draw, one line
/// (`absent`, the rest); returns the legend and tick texts of each figure
/// drawn by id.
fn check_page(path: &Path, runs: &[&str], absent: &[&str]) -> Vec<(String, Vec<String>)> {
    let html = std::fs::read_to_string(path).unwrap();
    let opts = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
    let doc =
        roxmltree::Document::parse_with_options(&html, opts).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Self-contained: no scripts, nothing linked or fetched.
    for n in doc.descendants() {
        assert!(!n.has_tag_name("script") && !n.has_tag_name("link"), "{:?}", n.tag_name());
        assert!(n.attribute("src").is_none() && n.attribute("href").is_none(), "{:?} fetches", n.tag_name());
    }
    let header: Vec<String> = doc.descendants().filter(|n| n.has_tag_name("th")).flat_map(texts_or_own).collect();
    for run in runs {
        assert!(header.iter().any(|h| h == run), "run {run} in the tables: {header:?}");
    }
    let figures: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("figure")).collect();
    let svgs = doc.descendants().filter(|n| n.has_tag_name("svg")).count();
    let drawn: Vec<_> = AXES.iter().filter(|(id, _)| !absent.contains(id)).collect();
    assert_eq!(figures.len(), drawn.len(), "figures");
    assert_eq!(svgs, figures.len(), "one <svg> per plot");
    for id in absent {
        let line = doc
            .descendants()
            .find(|n| n.has_tag_name("p") && n.attribute("id") == Some(*id))
            .unwrap_or_else(|| panic!("{id}: one line instead of a chart"));
        assert_eq!(line.attribute("class"), Some("absent"));
        assert!(!line.descendants().any(|n| n.has_tag_name("svg")));
    }
    let mut out = Vec::new();
    for (f, (id, axes)) in figures.iter().zip(drawn) {
        assert_eq!(f.attribute("id"), Some(*id));
        assert_eq!(f.descendants().filter(|n| n.has_tag_name("svg")).count(), 1, "{id}");
        let t = texts(*f);
        for axis in *axes {
            assert!(t.iter().any(|x| x == axis), "{id}: axis {axis:?} not in {t:?}");
        }
        out.push((id.to_string(), t));
    }
    out
}

fn texts_or_own(n: roxmltree::Node<'_, '_>) -> Vec<String> {
    n.descendants().filter_map(|d| d.text()).map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect()
}

fn figure<'a>(doc: &'a roxmltree::Document<'a>, id: &str) -> roxmltree::Node<'a, 'a> {
    doc.descendants().find(|n| n.has_tag_name("figure") && n.attribute("id") == Some(id)).unwrap()
}

fn parse(html: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse_with_options(html, roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() })
        .unwrap()
}

#[test]
fn a_real_run_is_drawn_with_every_plot() {
    let dir = Tmp::new("run");
    let (json, bench_html) = (dir.path("run.json"), dir.path("bench.html"));
    let out = tcpmax(&["bench", "-c", "2k", "--hold", "1s", "--json", s(&json), "--report", s(&bench_html)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    validate("bench", &r);
    // The timeline's new fields, from a real run.
    let first = &r["timeline"][0];
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let unix_ms = first["unix_ms"].as_u64().unwrap();
    assert!(unix_ms <= now_ms && now_ms - unix_ms < 600_000, "unix_ms {unix_ms}, now {now_ms}");
    assert!(first["failures"].is_object() && first["user_bytes"].as_u64().unwrap() > 0);
    assert_eq!(first["shards"]["server"], r["shards"]["server"]);
    assert!(r["predicted_bytes_per_connection"].as_u64().unwrap() > 1000);

    // bench --report wrote the page of the same run.
    check_page(&bench_html, &["bench -c 2k"], &["failures"]);

    // tcpmax report draws it from the JSON.
    let page = dir.path("page.html");
    let out = tcpmax(&["report", s(&json), "-o", s(&page)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("6 plots"), "no chart of no failures");
    check_page(&page, &["run"], &["failures"]);
    let html = std::fs::read_to_string(&page).unwrap();
    let doc = parse(&html);
    // Series are drawn: the held line, the spectrum's points, the memory bands.
    assert!(lines_of(figure(&doc, "held"), PALETTE[0]) >= 1, "held line");
    assert!(lines_of(figure(&doc, "rate"), PALETTE[0]) >= 1, "rate line");
    // Both spectra come from the report's whole histograms: many points
    // on a line, no marks, no note that only four percentiles were known.
    assert!(r["histograms"]["rtt_us"].is_string() && r["histograms"]["connect_us"].is_string());
    for id in ["connect-spectrum", "rtt-spectrum"] {
        let f = figure(&doc, id);
        let most = f
            .descendants()
            .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some(PALETTE[0]))
            .filter_map(|n| n.attribute("points"))
            .map(|p| p.split_whitespace().count())
            .max()
            .unwrap_or(0);
        assert!(most > 8, "{id}: a spectrum of the whole histogram, {most} points");
        assert!(!f.descendants().any(|n| n.has_tag_name("circle")), "{id}: no four-point marks");
        assert!(!texts_or_own(f).iter().any(|t| t.contains("p50, p99, p99.9 and max only")), "{id}");
    }
    let memory = figure(&doc, "memory");
    assert!(
        memory.descendants().any(|n| n.has_tag_name("polygon") || n.has_tag_name("circle")),
        "memory drawn: {:?}",
        texts(memory)
    );
    assert!(texts(memory).iter().any(|t| t.starts_with("doctor: kernel")), "the doctor's prediction");
    // User memory on its own scale, beside the kernel's.
    assert!(lines_of(memory, PALETTE[1]) >= 1 || memory.descendants().any(|n| n.has_tag_name("circle")));
    assert!(texts(memory).iter().any(|t| t.starts_with("user (RSS")), "{:?}", texts(memory));
    // Captions describe what is drawn: the first limit only when marked.
    let held = figure(&doc, "held");
    let limit_drawn = held.descendants().any(|n| n.attribute("stroke") == Some("#D62728"));
    let caption = texts_or_own(held).join(" ");
    assert_eq!(caption.contains("Red: the first limit"), limit_drawn, "{caption}");
    assert_eq!(
        caption.contains("Dashed: the doctor's predicted ceiling"),
        texts(held).iter().any(|t| t.starts_with("doctor's ceiling")),
        "{caption}"
    );

    // Two runs overlaid: one colour each, both in the legend.
    let other = dir.path("other.json");
    std::fs::copy(&json, &other).unwrap();
    let two = dir.path("two.html");
    let out = tcpmax(&["report", s(&json), s(&other), "-o", s(&two)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    check_page(&two, &["run", "other"], &["failures"]);
    let html = std::fs::read_to_string(&two).unwrap();
    let doc = parse(&html);
    let held = figure(&doc, "held");
    assert!(lines_of(held, PALETTE[0]) >= 1 && lines_of(held, PALETTE[1]) >= 1, "one colour per run");
    let legend = texts(held);
    assert!(legend.iter().any(|t| t == "run") && legend.iter().any(|t| t == "other"), "{legend:?}");

    // The same report claiming a newer layout is refused, named.
    let mut newer = r.clone();
    newer["report_version"] = 3.into();
    let newer_path = dir.path("newer.json");
    std::fs::write(&newer_path, newer.to_string()).unwrap();
    let out = tcpmax(&["report", s(&json), s(&newer_path), "-o", s(&dir.path("x.html"))]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(s(&newer_path)) && err.contains("version 3"), "{err}");
    assert!(!dir.path("x.html").exists());
}

#[test]
fn bad_inputs_exit_2_naming_the_file() {
    let dir = Tmp::new("bad");
    let doctor = tcpmax(&["doctor", "--json", "-"]);
    assert!(doctor.status.success());
    let good = r#"{"report_version": 2, "target": 10, "held": 10, "timeline": []}"#;
    let cases: [(&str, &[u8], &str); 5] = [
        ("not-json.json", b"held: 10\n", "is not JSON"),
        ("truncated.json", &good.as_bytes()[..40], "is truncated"),
        ("empty.json", b"", "is empty"),
        ("doctor.json", &doctor.stdout, "not the report of a run"),
        ("newer.json", br#"{"report_version": 7, "target": 10, "held": 10}"#, "version 7"),
    ];
    let good_path = dir.path("good.json");
    std::fs::write(&good_path, good).unwrap();
    let html = dir.path("out.html");
    for (name, content, why) in cases {
        let path = dir.path(name);
        std::fs::write(&path, content).unwrap();
        let out = tcpmax(&["report", s(&good_path), s(&path), "-o", s(&html)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(s(&path)) && err.contains(why), "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(!html.exists(), "{name}: nothing written");
    }
    let missing = dir.path("missing.json");
    let out = tcpmax(&["report", s(&missing), "-o", s(&html)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(s(&missing)));
    // The good one alone is drawn.
    let out = tcpmax(&["report", s(&good_path), "-o", s(&html)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    check_page(&html, &["good"], &["memory", "rtt-spectrum", "rtt-time", "failures", "connect-spectrum"]);
}

#[test]
fn an_unwritable_report_path_is_refused_before_the_run() {
    let out = tcpmax(&["bench", "-c", "1k", "--report", "/nonexistent-dir/r.html"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot write /nonexistent-dir/r.html"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("bench:"), "no run started");
    let out = tcpmax(&["report", "x.json", "-o", "/nonexistent-dir/r.html"]);
    assert_eq!(out.status.code(), Some(2));
}

/// The time units of a figure's tick labels.
fn time_units(f: roxmltree::Node<'_, '_>) -> std::collections::BTreeSet<String> {
    texts(f)
        .iter()
        .filter_map(|t| t.split_once(' '))
        .filter(|(v, u)| v.parse::<f64>().is_ok() && ["us", "ms", "s"].contains(u))
        .map(|(_, u)| u.to_string())
        .collect()
}

#[test]
fn failures_without_a_limit_name_their_cause_and_empty_plots_are_one_line() {
    let dir = Tmp::new("causes");
    // A load run that failed 55,924 connects on ETIMEDOUT and named no
    // limit, with no heartbeats (ping rate 0), connects of up to 5.2 ms.
    let load = r#"{"report_version": 2, "targets": ["127.0.0.1:8080"], "count": 80000,
        "peak_established": 24076, "failed": 55924, "stopped_by": null,
        "ping_rtt_us": {"count": 0}, "rss_anon_bytes_per_connection": 120.0,
        "connect_latency_us": {"count": 80000, "p50": 300, "p99": 4000, "p999": 5000, "max": 5200},
        "timeline": [
          {"t": 1, "established": 10000, "opened_per_s": 10000, "failures": {"ETIMEDOUT": 20000, "ECONNREFUSED": 3}},
          {"t": 2, "established": 24076, "opened_per_s": 14076, "failures": {"ETIMEDOUT": 35921}}]}"#;
    let json = dir.path("load.json");
    std::fs::write(&json, load).unwrap();
    let page = dir.path("page.html");
    let out = tcpmax(&["report", s(&json), "-o", s(&page)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    check_page(&page, &["load"], &["memory", "rtt-spectrum", "rtt-time"]);
    let html = std::fs::read_to_string(&page).unwrap();
    let doc = parse(&html);
    let limit = doc
        .descendants()
        .find(|n| n.has_tag_name("tr") && texts_or_own(*n).first().map(String::as_str) == Some("first limit"))
        .map(texts_or_own)
        .unwrap();
    let want = "none reported; 55,924 connects failed, mostly ETIMEDOUT (55,921)";
    assert!(limit.iter().any(|t| t == want), "{limit:?}");
    for id in ["rtt-spectrum", "rtt-time"] {
        let line = doc.descendants().find(|n| n.attribute("id") == Some(id)).unwrap();
        assert!(texts_or_own(line).join(" ").contains("ping rate 0"), "{id}: {:?}", texts_or_own(line));
    }
    // One unit on the latency axis: "0 ms" under "5 ms", never "0 us".
    let units = time_units(figure(&doc, "connect-spectrum"));
    assert_eq!(units.into_iter().collect::<Vec<_>>(), ["ms"], "{:?}", texts(figure(&doc, "connect-spectrum")));
    // The failures are drawn; the held plot marks no limit, and says so.
    let held = texts_or_own(figure(&doc, "held")).join(" ");
    assert!(!held.contains("Red:") && !held.contains("Dashed:"), "{held}");
}
