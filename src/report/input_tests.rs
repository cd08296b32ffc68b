//! Unit tests of reading reports: bad inputs named, old layouts read,
//! parts found, hostile inputs refused within the budget.

use super::*;

fn err(text: &str) -> String {
    match parse("r.json", "r".into(), text.as_bytes()) {
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
    let many = err("{\"target\": 1, \"held\": \"many\"}");
    assert!(many.contains("r.json is JSON but not the report of a run (invalid type: string"), "{many}");
    let hist = err("{\"targets\": [], \"peak_established\": 1, \"histograms\": {\"rtt_us\": \"!!\"}}");
    assert!(hist.contains("r.json: histograms.rtt_us is not base64"), "{hist}");
}

/// #17: every list and map a report holds is charged to the budget:
/// five million causes in one sample are refused, not drawn.
#[test]
fn many_causes_are_refused_at_the_budget() {
    let causes: Vec<String> = (0..2_000_000).map(|i| format!("\"{i}\":1")).collect();
    let text = format!(r#"{{"target": 1, "held": 1, "timeline": [{{"t": 1, "failures": {{{}}}}}]}}"#, causes.join(","));
    let why = err(&text);
    assert!(why.contains("holds more samples, causes or names than a report can"), "{why}");
    // 100,000 parts take 17 MB; their six labels of 60 bytes, 36 more.
    let n = "n".repeat(60);
    let part = format!(r#"{{"name":"{n}","agent":"{n}","backend":"{n}","id":"{n}","addr":"{n}","address":"{n}"}}"#);
    let parts = vec![part; 100_000];
    let text = format!(r#"{{"report_version": 2, "agents": [{}]}}"#, parts.join(","));
    assert!(err(&text).contains("holds more samples"), "labels are charged");
}

#[test]
fn cut_or_flipped_reports_are_errors_not_panics() {
    let good = br#"{"report_version": 2, "target": 10, "held": 10, "shards": {"server": 1, "client": 2},
        "timeline": [{"t": 1, "established": 5, "failures": {"EMFILE": 1}, "backends": [1, 2]}],
        "agents": [{"name": "a", "timeline": [{"t": 1, "established": 5}]}, 3, "x"],
        "machine": {"port_range": [1, 2]}, "histograms": {"rtt_us": "HISTEwAAAAEAAAAAAAAAAwAAAAAAAAABAAAAAAX14QA/8AAAAAAAAAA="}}"#;
    let r = parse("g.json", "g".into(), good).expect("read");
    assert_eq!(
        (r.parts.len(), r.shards, r.f.machine.and_then(|m| m.port_range)),
        (1, (Some(1), Some(2)), Some((1, 2)))
    );
    let mut next = crate::testing::xorshift(17);
    for _ in 0..3_000 {
        let mut b = good.to_vec();
        let i = (next() % b.len() as u64) as usize;
        b[i] = b"{}[]\",:0-9eE.aZ \\"[(next() % 17) as usize];
        let cut = (next() % b.len() as u64) as usize + 1;
        let _ = parse("x.json", "x".into(), &b[..cut]);
    }
}

#[test]
fn a_version_1_bench_report_is_read() {
    let text = r#"{"target": 10, "held": 10, "predicted": 99, "shards": {"server": 2, "client": 3},
        "timeline": [{"t": 1.0, "established": 10, "opened_per_s": 10.0, "errors": 0}]}"#;
    let r = parse("old.json", "old".into(), text.as_bytes()).expect("read");
    assert_eq!((r.kind, r.version, r.peak(), r.target()), (Kind::Bench, 1, 10, Some(10)));
    assert_eq!(r.shards, (Some(2), Some(3)));
    assert_eq!(r.f.timeline[0].failures, None);
}

#[test]
fn cluster_reports_give_one_timeline_per_backend() {
    let text = br#"{"backends": [{"name": "b1"}, {"name": "b2"}],
            "timeline": [{"t": 1.0, "client": 3, "lb": 3, "backends": [1, 2]},
                         {"t": 2.0, "client": 5, "lb": 5, "backends": [2, 3]}]}"#;
    let p = parse("c.json", "c".into(), text).expect("read").parts;
    assert_eq!(p.iter().map(|p| p.label.as_str()).collect::<Vec<_>>(), vec!["b1", "b2"]);
    assert_eq!(p[1].timeline.iter().map(|s| s.established).collect::<Vec<_>>(), vec![2, 3]);
}

#[test]
fn merged_reports_give_one_timeline_per_agent() {
    let text = r#"{"report_version": 2, "timeline": [], "agents": [
        {"name": "a", "timeline": [{"t": 1, "established": 5}]},
        {"timeline": [{"t": 1, "established": 6}]},
        {"name": "no timeline"}]}"#;
    let r = parse("m.json", "m".into(), text.as_bytes()).expect("read");
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
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
    let text = format!(r#"{{"targets": ["127.0.0.1:1"], "peak_established": 1, "histograms": {{"rtt_us": "{b64}"}}}}"#);
    let r = parse("h.json", "h".into(), text.as_bytes()).expect("read");
    assert_eq!(r.rtt_hist.map(|h| h.len()), Some(100));
    assert!(r.connect_hist.is_none());
}

#[test]
fn same_names_become_paths() {
    let one = |src: &str| {
        let mut r = parse(src, "run".into(), br#"{"target": 1, "held": 1}"#).expect("read");
        r.source = src.into();
        r
    };
    let mut runs = vec![one("a/run.json"), one("b/run.json")];
    unique_labels(&mut runs);
    assert_eq!(runs[0].label, "a/run.json");
    assert_eq!(runs[1].label, "b/run.json");
}
