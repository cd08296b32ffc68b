//! `tcpmax merge` and `tcpmax report` fed hostile report files (#17): a
//! file a few KB long that claims 2^64 agents, a 40-byte histogram that
//! claims 4 GiB (plain and zlib), a 3 GB file, 5,000 failure causes, a time
//! of 1e308 s, a version from the future, escape sequences in an errno
//! name, a file cut short. Each is refused with one line naming the file
//! and the cause (exit 2), or drawn within bounds.
//!
//! Every run here has its address space capped at [`CAP_KIB`]: a reader
//! that believed the file would fail to allocate and crash, instead of
//! taking the machine's memory, and the test would fail on its exit code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// The address space each run may have, KiB: 256 MiB, code and stacks
/// included (a report run needs about 100 MiB of it).
const CAP_KIB: u64 = 256 << 10;

/// A directory of its own, removed at the end.
struct Tmp(PathBuf);

impl Tmp {
    fn new(name: &str) -> Tmp {
        let dir = std::env::temp_dir().join(format!("tcpmax-hostile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Tmp(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    /// Writes `v` as `file`; returns its path.
    fn json(&self, file: &str, v: &Value) -> PathBuf {
        let p = self.path(file);
        std::fs::write(&p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
        p
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

/// Runs the binary with its address space capped at [`CAP_KIB`].
fn capped(args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {CAP_KIB} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_tcpmax"))
        .args(args)
        .output()
        .unwrap()
}

/// Asserts a refusal: exit 2, one line naming `file` and saying `why`.
fn refused(out: &Output, file: &Path, why: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}: {err}", file.display());
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(s(file)) && err.contains(why), "{why:?} not in: {err}");
    for debug in ["IoError", "Error {", "kind:", "\u{1b}"] {
        assert!(!err.contains(debug), "{debug:?} in: {err}");
    }
}

/// A real agent's report: `tcpmax load` against a port where nothing
/// listens (its connects are refused), agent 0 of 1, with one sample added
/// to its timeline.
fn agent_report(dir: &Tmp) -> Value {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let file = dir.path("agent.json");
    let args = ["load", &port, "-c", "10", "--hold", "0s", "--agents", "1", "--agent-index", "0", "--json", s(&file)];
    let out = common::tcpmax(&args);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let mut v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    v["timeline"] = json!([sample(&v, 1.0, json!({"ECONNREFUSED": 10}))]);
    v
}

/// A sample `t` seconds into the ramp of report `v`.
fn sample(v: &Value, t: f64, failures: Value) -> Value {
    let start = v["agent"]["ramp_start_unix_ms"].as_u64().unwrap();
    json!({"t": t, "unix_ms": start + (t * 1000.0) as u64, "interval_s": 1.0, "established": 0,
           "connecting": 0, "opened_per_s": 0.0, "failed": 10, "closed": 0, "pongs_per_s": 0.0, "errors": 10,
           "failures": failures, "rtt_p50_us": null, "rtt_p99_us": null, "user_bytes": 1, "kernel_bytes": 1,
           "shards": {"client": 1, "server": null}})
}

/// A V2 histogram header (40 bytes) claiming a payload of `payload` bytes.
fn header(payload: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(0x1c84_9313u32.to_be_bytes());
    b.extend(payload.to_be_bytes());
    b.extend(0u32.to_be_bytes());
    b.extend(3u32.to_be_bytes());
    b.extend(1u64.to_be_bytes());
    b.extend(100_000_000u64.to_be_bytes());
    b.extend(1f64.to_be_bytes());
    b
}

/// The same header claiming 4 GiB, zlib-compressed (cookie 0x1c849314).
fn compressed_header() -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&header(u32::MAX)).unwrap();
    let inner = z.finish().unwrap();
    let mut b = 0x1c84_9314u32.to_be_bytes().to_vec();
    b.extend((inner.len() as u32).to_be_bytes());
    b.extend(inner);
    b
}

/// A file of `len` bytes that takes no disk (`truncate -s`).
fn sparse(dir: &Tmp, file: &str, len: u64) -> PathBuf {
    let p = dir.path(file);
    std::fs::File::create(&p).unwrap().set_len(len).unwrap();
    p
}

#[test]
fn merge_refuses_hostile_reports_in_bounded_memory() {
    let dir = Tmp::new("merge");
    let base = agent_report(&dir);
    let with = |file: &str, f: &dyn Fn(&mut Value)| {
        let mut v = base.clone();
        f(&mut v);
        dir.json(file, &v)
    };
    let good = with("good.json", &|_| {});
    let out = capped(&["merge", s(&good)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let cases: Vec<(PathBuf, &str)> = vec![
        (
            with("agents-max.json", &|v| v["agent"]["whole"]["agents"] = json!(u64::MAX)),
            "agent 0 of 18446744073709551615",
        ),
        (with("agents-50m.json", &|v| v["agent"]["whole"]["agents"] = json!(50_000_000)), "agent 0 of 50000000"),
        (
            with("hist-plain.json", &|v| v["histograms"]["rtt_us"] = json!(STANDARD.encode(header(u32::MAX)))),
            "histograms.rtt_us is not a V2 HDR histogram (its header claims a payload of 4294967295 bytes",
        ),
        (
            with("hist-zlib.json", &|v| v["histograms"]["rtt_us"] = json!(STANDARD.encode(compressed_header()))),
            "histograms.rtt_us is not a V2 HDR histogram (its header claims a payload of 4294967295 bytes",
        ),
        (sparse(&dir, "huge.json", 3 << 30), "is 3072 MiB, larger than the 64 MiB of any report tcpmax reads"),
        (with("t.json", &|v| v["timeline"][0]["t"] = json!(1e308)), "timeline[0].t is 1e308"),
        (with("v99.json", &|v| v["report_version"] = json!(99)), "is a version 99 report"),
        (with("pongs.json", &|v| v["pongs"] = json!(u64::MAX)), "pongs is 18446744073709551615"),
    ];
    for (file, why) in &cases {
        refused(&capped(&["merge", s(file)]), file, why);
    }

    // Escape sequences in an errno name reach the terminal escaped, and
    // 5,000 of them make twenty rows and a count.
    let esc = with("esc.json", &|v| v["errors"] = json!([{"errno": "E\u{1b}]0;owned\u{7}\u{1b}[2J", "count": 1}]));
    let out = capped(&["merge", s(&esc)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains('\u{1b}') && !text.contains('\u{7}') && text.contains("E\\u{1b}]0;owned"), "{text}");
    let many = with("many.json", &|v| {
        v["errors"] = (0..5_000).map(|i| json!({"errno": format!("E{i}"), "count": 1})).collect();
    });
    let merged = dir.path("merged.json");
    let out = capped(&["merge", s(&good), "--json", s(&merged)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = dir.path("merged.html");
    let out = capped(&["report", s(&merged), "-o", s(&html)]);
    assert!(out.status.success(), "a merged report is drawn: {}", String::from_utf8_lossy(&out.stderr));
    let out = capped(&["merge", s(&many), "--json", s(&merged)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().count() < 80 && text.contains("and 4980 more errnos"), "{text}");
    common::validate("merge", &serde_json::from_slice(&std::fs::read(&merged).unwrap()).unwrap());
}

#[test]
fn report_refuses_hostile_reports_in_bounded_memory() {
    let dir = Tmp::new("report");
    let base = agent_report(&dir);
    let with = |file: &str, f: &dyn Fn(&mut Value)| {
        let mut v = base.clone();
        f(&mut v);
        dir.json(file, &v)
    };
    let html = dir.path("page.html");
    let good = with("good.json", &|_| {});
    let out = capped(&["report", s(&good), "-o", s(&html)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let text = serde_json::to_string(&base).unwrap();
    let cut = dir.path("cut.json");
    std::fs::write(&cut, &text[..text.len() / 2]).unwrap();
    let mut good_hist = base["histograms"]["rtt_us"].as_str().unwrap().to_string();
    good_hist.truncate(good_hist.len() / 2 / 4 * 4);
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            with("hist-plain.json", &|v| v["histograms"]["rtt_us"] = json!(STANDARD.encode(header(u32::MAX)))),
            "histograms.rtt_us is not a V2 HDR histogram (its header claims a payload of 4294967295 bytes",
        ),
        (
            with("hist-zlib.json", &|v| v["histograms"]["rtt_us"] = json!(STANDARD.encode(compressed_header()))),
            "histograms.rtt_us is not a V2 HDR histogram (its header claims a payload of 4294967295 bytes",
        ),
        (with("hist-cut.json", &|v| v["histograms"]["rtt_us"] = json!(good_hist)), "the header is cut short"),
        (sparse(&dir, "huge.json", 3 << 30), "is 3072 MiB, larger than the 64 MiB of any report tcpmax reads"),
        (with("t.json", &|v| v["timeline"][0]["t"] = json!(1e308)), "timeline[0].t is 1e308"),
        (with("neg.json", &|v| v["timeline"][0]["t"] = json!(-5)), "timeline[0].t is -5"),
        (with("v99.json", &|v| v["report_version"] = json!(99)), "is a version 99 report"),
        (cut.clone(), "is truncated"),
    ];
    for (file, why) in &cases {
        refused(&capped(&["report", s(file), "-o", s(&html)]), file, why);
    }

    // 5,000 causes over 5,000 seconds: eight lines and one for the others,
    // a page of a few hundred KB; an escape sequence in a cause is shown
    // escaped and the page stays well-formed XML.
    let many = with("many.json", &|v| {
        let timeline: Value =
            (0..5_000).map(|t| sample(v, t as f64, json!({format!("E{t}"): 1, "E\u{1b}[2J<b>": 1_000}))).collect();
        v["timeline"] = timeline;
    });
    let out = capped(&["report", s(&many), "-o", s(&html)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.len() < 2 << 20, "the page is {} bytes", page.len());
    assert!(!page.contains('\u{1b}') && page.contains("4993 other causes"), "causes: bounded and named");
    let opts = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
    let doc = roxmltree::Document::parse_with_options(&page, opts).unwrap();
    let failures = doc.descendants().find(|n| n.attribute("id") == Some("failures")).unwrap();
    let legend: Vec<&str> =
        failures.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).map(str::trim).collect();
    let causes = legend.iter().filter(|t| t.starts_with('E')).count();
    assert!(causes == 8 && legend.contains(&"4993 other causes"), "{legend:?}");
}
