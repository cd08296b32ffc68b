//! Unit tests of the merge: exact percentiles, plan identity, the timeline
//! by wall-clock second, and the files a merge refuses.

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use super::*;
use crate::engine::samples::new_hist;
use crate::merge::input::parse;

const T0: u64 = 1_893_553_445_000;

/// A minimal report of agent `index` of `agents`, as `tcpmax load` writes
/// it, with the given histogram and timeline.
fn report(index: u64, agents: u64, connect: &Histogram<u32>, timeline: Value) -> Value {
    let share = crate::load::plan::agents::share(400, agents, index);
    json!({
        "count": share, "peak_established": share, "held_at_end": share - 1, "opened": share,
        "failed": 1, "closed_by_peer": 0, "reconnects": 0, "ramp_seconds": 0.5, "interrupted": false,
        "connect_latency_us": Percentiles::of(connect),
        "pings_sent": 10, "pongs": 9,
        "errors": [{"errno": "ECONNREFUSED", "count": 1, "meaning": "m", "fix": "f"}],
        "timeline": timeline,
        "histograms": {"connect_us": hist::encode(connect).unwrap(), "rtt_us": hist::encode(&new_hist()).unwrap()},
        "agent": {
            "index": index, "index_from": "JOB_COMPLETION_INDEX",
            "share": {"count": share, "first": 0, "rate": null, "ping_rate": 0},
            "whole": {"version": "0.1.0", "count": 400, "targets": ["10.0.0.1:9000"], "agents": agents,
                      "rate": null, "ping_rate": 0, "hold_seconds": 5.0, "start_at_unix_ms": T0},
            "ramp_start_unix_ms": T0 + 3 * index
        },
        "machine": {"commit": "abc", "kernel": "6.1"}
    })
}

fn sample(unix_ms: u64, established: u64) -> Value {
    json!({"t": 1.0, "unix_ms": unix_ms, "interval_s": 1.0, "established": established, "connecting": 0,
           "opened_per_s": 10.0, "failed": 0, "closed": 0, "pongs_per_s": 0.0, "errors": 0, "failures": {},
           "rtt_p50_us": null, "rtt_p99_us": null, "user_bytes": 0, "kernel_bytes": 0,
           "shards": {"client": 1, "server": null}})
}

fn part(v: &Value, file: &str) -> Part {
    parse(file, v.to_string().as_bytes()).unwrap()
}

fn input_error<T: std::fmt::Debug>(r: crate::Result<T>) -> String {
    match r {
        Err(Error::Input(why)) => why,
        other => panic!("expected an input error, got {other:?}"),
    }
}

/// The done-when of the merge: percentiles of the merged histograms equal
/// those of one histogram fed every sample, at every quantile, while the
/// average of the agents' own percentiles does not.
#[test]
fn merged_percentiles_equal_one_histogram_fed_all_samples() {
    let mut next = crate::testing::xorshift(0xfeed);
    let mut all = new_hist();
    let mut parts = Vec::new();
    for index in 0..4u64 {
        let mut h = new_hist();
        // Each agent its own distribution: agent 3 is far slower.
        let scale = [200, 500, 1_000, 50_000][index as usize];
        for _ in 0..10_000 + index * 1_000 {
            let v = 1 + next() % scale;
            h.saturating_record(v);
            all.saturating_record(v);
        }
        parts.push(part(&report(index, 4, &h, json!([])), &format!("agent-{index}.json")));
    }
    let averaged_p99 = parts.iter().map(|p| p.report.connect_latency_us.p99).sum::<u64>() / 4;
    let m = merge(parts).unwrap();
    assert_eq!(m.connect_latency_us, Percentiles::of(&all));
    assert_ne!(m.connect_latency_us.p99, averaged_p99, "an average of percentiles is not a percentile");
    let merged = hist::decode(&m.histograms.connect_us).unwrap();
    assert_eq!(merged.len(), all.len());
    for q in [0.0, 0.1, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999, 1.0] {
        assert_eq!(merged.value_at_quantile(q), all.value_at_quantile(q), "q {q}");
    }
}

#[test]
fn sums_rows_and_skew() {
    let h = new_hist();
    let parts: Vec<Part> =
        (0..4).map(|i| part(&report(i, 4, &h, json!([sample(T0 + 900, 100)])), &format!("a{i}.json"))).collect();
    let m = merge(parts.into_iter().rev().collect()).unwrap();
    assert!(m.complete && m.missing_agents.is_empty());
    assert_eq!((m.count, m.held_at_end, m.opened, m.failed, m.pongs), (400, 396, 400, 4, 36));
    assert_eq!(m.errors.len(), 1);
    assert_eq!((m.errors[0].errno.as_str(), m.errors[0].count), ("ECONNREFUSED", 4));
    assert!(m.errors[0].fix.contains("somaxconn"), "meaning and fix come from the table");
    let rows: Vec<(u64, u64, u64)> = m.agents.iter().map(|a| (a.index, a.share, a.start_skew_ms)).collect();
    assert_eq!(rows, [(0, 100, 0), (1, 100, 3), (2, 100, 6), (3, 100, 9)]);
    assert_eq!(m.start_skew_ms, 9);
    assert_eq!(m.peak_established, 400);
    let text = m.render();
    assert!(text.contains("4 of 4 agents of one plan: 400 connections"), "{text}");
    assert!(text.contains("start skew          9 ms"), "{text}");
}

#[test]
fn missing_agents_are_named() {
    let h = new_hist();
    let m = merge(vec![part(&report(2, 4, &h, json!([])), "a2.json")]).unwrap();
    assert!(!m.complete);
    assert_eq!(m.missing_agents, [0, 1, 3]);
    assert!(m.render().contains("missing agents      0-1, 3"));
}

#[test]
fn reports_of_other_plans_or_versions_are_refused() {
    let h = new_hist();
    let a = report(0, 4, &h, json!([]));
    let mut b = report(1, 4, &h, json!([]));
    b["agent"]["whole"]["count"] = json!(800);
    b["agent"]["whole"]["start_at_unix_ms"] = json!(T0 + 60_000);
    let why = input_error(merge(vec![part(&a, "a.json"), part(&b, "b.json")]));
    assert!(why.contains("a.json and b.json are reports of different plans"), "{why}");
    assert!(why.contains("-c 400 vs 800") && why.contains("--start-at 2030-01-02T03:04:05.000Z vs"), "{why}");
    let mut c = report(1, 4, &h, json!([]));
    c["agent"]["whole"]["version"] = json!("9.9.9");
    let why = input_error(merge(vec![part(&a, "a.json"), part(&c, "c.json")]));
    assert!(why.contains("c.json by tcpmax 9.9.9"), "{why}");
    let why = input_error(merge(vec![part(&a, "a.json"), part(&a, "again.json")]));
    assert!(why.contains("a.json and again.json are both agent 0"), "{why}");
    assert!(input_error(merge(Vec::new())).contains("no report"));
}

#[test]
fn bad_files_are_named_with_what_is_wrong() {
    let good = report(0, 2, &new_hist(), json!([])).to_string();
    let why = input_error(parse("cut.json", &good.as_bytes()[..good.len() / 2]));
    assert!(why.starts_with("cut.json is truncated"), "{why}");
    let why = input_error(parse("empty.json", b" \n"));
    assert!(why.starts_with("empty.json is empty"), "{why}");
    let why = input_error(parse("log.txt", b"agent 0 of 4\n{}"));
    assert!(why.starts_with("log.txt is not a tcpmax load report"), "{why}");
    let why = input_error(parse("old.json", br#"{"count": 1}"#));
    assert!(why.contains("old.json is not a tcpmax load report") && why.contains("missing field"), "{why}");
    let mut v: Value = serde_json::from_str(&good).unwrap();
    v["histograms"]["connect_us"] = json!("bm90IGEgaGlzdG9ncmFt");
    let why = input_error(parse("hist.json", v.to_string().as_bytes()));
    assert!(why.starts_with("hist.json is damaged: histograms.connect_us"), "{why}");
    v = serde_json::from_str(&good).unwrap();
    v["agent"]["index"] = json!(2);
    assert!(input_error(parse("idx.json", v.to_string().as_bytes())).contains("agent 2 of 2"));
    // Random cuts and byte flips never panic.
    let mut next = crate::testing::xorshift(99);
    for _ in 0..300 {
        let mut b = good.clone().into_bytes();
        let i = (next() % b.len() as u64) as usize;
        b[i] = b"{}[]\",:0aZ"[(next() % 10) as usize];
        let _ = parse("x.json", &b[..(next() % b.len() as u64) as usize]);
    }
}

/// Agent 0 samples every second; agent 1 skips second 2 (its samples drift
/// over the second boundary): it counts with its latest figures there, and
/// an agent contributes nothing outside its first and last second.
#[test]
fn timeline_sums_by_wall_clock_second() {
    let h = new_hist();
    let a = report(0, 2, &h, json!([sample(T0 + 500, 10), sample(T0 + 1_500, 20), sample(T0 + 2_500, 30)]));
    let b = report(1, 2, &h, json!([sample(T0 + 1_900, 5), sample(T0 + 3_050, 7)]));
    let m = merge(vec![part(&a, "a"), part(&b, "b")]).unwrap();
    let rows: Vec<(u64, u64, u64)> =
        m.timeline.iter().map(|s| ((s.unix_ms - T0) / 1000, s.agents, s.established)).collect();
    assert_eq!(rows, [(0, 1, 10), (1, 2, 25), (2, 2, 35), (3, 1, 7)]);
    assert_eq!(m.peak_established, 35);
    assert_eq!(m.timeline[0].t, 1.0);
    assert!((m.timeline[1].opened_per_s - 20.0).abs() < 1e-9);
}

/// #17: a 4 KB report claiming 2^64-1 (or 50,000,000) agents grew `merge`
/// to gigabytes listing the missing ones; it is refused on reading.
#[test]
fn absurd_agent_counts_are_refused() {
    for agents in [u64::MAX, 50_000_000, 100_001] {
        let v = report(0, 4, &new_hist(), json!([]));
        let mut v = v;
        v["agent"]["whole"]["agents"] = json!(agents);
        let why = input_error(parse("many.json", v.to_string().as_bytes()));
        assert!(why.contains(&format!("many.json is damaged: it says agent 0 of {agents}")), "{why}");
        assert!(why.contains("1 to 100,000 agents"), "{why}");
    }
    // The most a plan may have is merged, its missing agents shown as runs.
    let v = report(5, 100_000, &new_hist(), json!([]));
    let m = merge(vec![part(&v, "a5.json")]).unwrap();
    assert_eq!(m.missing_agents.len(), 99_999);
    assert!(m.render().contains("missing agents      0-4, 6-99999 (no report"), "{}", m.render());
}

/// #17: versions this build does not know, times and counts no run can
/// have are refused, naming the field and the file.
#[test]
fn absurd_values_and_unknown_versions_are_refused() {
    let good = report(0, 2, &new_hist(), json!([sample(T0, 5)]));
    let why = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        input_error(parse("x.json", v.to_string().as_bytes()))
    };
    let w = why(&|v| v["report_version"] = json!(99));
    assert!(w.contains("x.json is a version 99 report; this tcpmax merges versions 1 to 2"), "{w}");
    assert!(why(&|v| v["report_version"] = json!(0)).contains("version 0 report"));
    let w = why(&|v| v["timeline"][0]["t"] = json!(1e308));
    assert!(w.contains("x.json is damaged: timeline[0].t is 1e308, not a time a run can have"), "{w}");
    let w = why(&|v| v["ramp_seconds"] = json!(-1.0));
    assert!(w.contains("ramp_seconds is -1"), "{w}");
    let w = why(&|v| v["pongs"] = json!(u64::MAX));
    assert!(w.contains("pongs is 18446744073709551615, more than any run can count"), "{w}");
    let w = why(&|v| v["timeline"][0]["failures"] = json!({"EMFILE": u64::MAX}));
    assert!(w.contains("timeline[0].failures.EMFILE is"), "{w}");
    let w = why(&|v| v["timeline"][0]["unix_ms"] = json!(u64::MAX));
    assert!(w.contains("timeline[0].unix_ms is"), "{w}");
    // A timeline years from its ramp would make times `report` refuses.
    let w = why(&|v| v["timeline"][0]["unix_ms"] = json!(T0 + 400 * 86_400_000));
    assert!(w.contains("timeline[0].unix_ms is 1928113445000, more than a year from agent.ramp_start_unix_ms"), "{w}");
    let mut far = report(1, 2, &new_hist(), json!([]));
    far["agent"]["ramp_start_unix_ms"] = json!(T0 + 40 * 86_400_000);
    let m = merge(vec![part(&good, "a.json"), part(&far, "b.json")]);
    assert!(input_error(m).contains("the reports' ramps start 40 days apart"));
    // Sums are checked: past 2^64 is refused, never wrapped.
    assert!(add(u64::MAX, 1, "pongs").unwrap_err().to_string().contains("pongs summed over the reports passes 2^64"));
    assert_eq!(add(2, 3, "x").unwrap(), 5);
}

/// #17: an errno name carrying escape sequences is shown escaped on the
/// terminal, never sent raw.
#[test]
fn text_from_reports_is_printed_escaped() {
    let mut v = report(0, 1, &new_hist(), json!([]));
    v["errors"] = json!([{"errno": "E\u{1b}]0;pwned\u{7}\u{1b}[2J", "count": 3}]);
    v["agent"]["whole"]["version"] = json!("0.1\u{1b}[31m");
    let m = merge(vec![part(&v, "a.json")]).unwrap();
    let text = m.render();
    assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'), "{text:?}");
    assert!(text.contains("E\\u{1b}]0;pwned\\u{7}\\u{1b}[2J"), "{text}");
    // 5,000 causes: the table shows the first twenty and says how many more.
    let errors: Vec<Value> = (0..5_000).map(|i| json!({"errno": format!("E{i}"), "count": 1})).collect();
    v["errors"] = json!(errors);
    let text = merge(vec![part(&v, "a.json")]).unwrap().render();
    assert!(text.contains("and 4980 more errnos (in the JSON report)"), "{text}");
    assert!(text.lines().count() < 60, "{} lines", text.lines().count());
}

/// A merged timeline longer than MAX_ROWS seconds is summed by steps, so
/// two reports days apart do not make millions of rows.
#[test]
fn a_long_span_is_summed_by_steps() {
    let h = new_hist();
    let days = 20 * 86_400_000;
    let a = report(0, 2, &h, json!([sample(T0, 10), sample(T0 + days, 20)]));
    let b = report(1, 2, &h, json!([sample(T0 + 500, 5), sample(T0 + days, 7)]));
    let m = merge(vec![part(&a, "a"), part(&b, "b")]).unwrap();
    assert!(m.timeline.len() as u64 <= MAX_ROWS, "{} rows", m.timeline.len());
    assert_eq!(m.timeline[0].interval_s, 241.0);
    assert_eq!((m.timeline[0].established, m.timeline.last().unwrap().established), (15, 27));
}
