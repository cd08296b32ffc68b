//! Load from many hosts, rehearsed on one machine: N agent hosts (network
//! namespaces on a bridge) each run `tcpmax load --agents N` with
//! JOB_COMPLETION_INDEX set and a common --start-at against one
//! `tcpmax serve` on another host; `tcpmax merge` sums their reports. Writes
//! JSON: held, the merged percentiles (checked against the agents'
//! histograms added here), the per-agent rows, how far each ramp started
//! from the common instant, the merged report and the machine. Needs root
//! (namespaces) and `ip`.
//!
//! `cargo bench --bench rehearsal -- --agents 4 --count 400k --hold 10s --json docs/bench/rehearsal_400k.json`

#[path = "common/mod.rs"]
mod util;

#[path = "../tests/netns/mod.rs"]
mod netns;

use std::time::Duration;

use serde_json::{Value, json};
use tcpmax::load::hist;
use tcpmax::load::report::Percentiles;
use tcpmax::machine::Machine;

fn main() -> Result<(), String> {
    let agents: usize = util::arg("--agents").map_or(Ok(4), |a| a.parse().map_err(|e| format!("--agents: {e}")))?;
    let count = util::arg("--count").map_or(Ok(400_000), |c| tcpmax::units::parse_count(&c))?;
    let hold = util::arg("--hold").unwrap_or_else(|| "10s".into());
    let ports: u16 = util::arg("--ports").map_or(Ok(8), |p| p.parse().map_err(|e| format!("--ports: {e}")))?;
    let out = util::arg("--json").unwrap_or_else(|| "rehearsal.json".into());
    let dir = std::env::temp_dir().join(format!("tcpmax-rehearsal-bench-{}", std::process::id()));
    let plan = netns::Plan { agents, count, hold: hold.clone(), ports, start_in: Duration::from_secs(5), dir };
    eprintln!("rehearsal: {agents} agent hosts, {count} connections in total, {ports} server ports, hold {hold}");
    let o = match netns::rehearse(&plan) {
        Ok(o) => o,
        Err(netns::Setup::Skip(why)) => return Err(format!("cannot rehearse here: {why}")),
        Err(netns::Setup::Fail(why)) => return Err(why),
    };
    let _ = std::fs::remove_dir_all(&plan.dir);
    eprint!("{}", o.merge_text);
    let left = netns::leftovers();
    if !left.is_empty() {
        return Err(format!("left behind: {left:?}"));
    }

    // The merged percentiles against the agents' histograms added here.
    let mut all = hdrhistogram::Histogram::<u64>::new_with_bounds(1, tcpmax::engine::samples::HIST_MAX_US, 3)
        .map_err(|e| format!("{e:?}"))?;
    for r in &o.reports {
        let h = hist::decode(r["histograms"]["connect_us"].as_str().unwrap_or(""))?;
        all.add(&h).map_err(|e| format!("{e:?}"))?;
    }
    let added = Percentiles::of(&all);
    let m = &o.merged;
    let merged: Percentiles = serde_json::from_value(m["connect_latency_us"].clone()).map_err(|e| e.to_string())?;
    let rows: Vec<Value> = m["agents"]
        .as_array()
        .ok_or("no agent rows")?
        .iter()
        .map(|a| {
            let start = a["ramp_start_unix_ms"].as_u64().unwrap_or(0);
            json!({
                "index": a["index"],
                "share": a["share"],
                "held_at_end": a["held_at_end"],
                "failed": a["failed"],
                "ramp_seconds": a["ramp_seconds"],
                "start_skew_ms": a["start_skew_ms"],
                "late_ms": start as i64 - o.start_at_unix_ms as i64,
                "connect_p99_us": a["connect_p99_us"],
            })
        })
        .collect();
    let report = json!({
        "benchmark": "rehearsal",
        "agents": agents,
        "count": count,
        "hold": hold,
        "server_ports": ports,
        "held_at_end": m["held_at_end"],
        "peak_established": m["peak_established"],
        "server_peak": o.server_peak,
        "failed": m["failed"],
        "connect_latency_us": m["connect_latency_us"],
        "percentiles_equal_added_histograms": merged == added,
        "start_skew_ms": m["start_skew_ms"],
        "agent_rows": rows,
        "merged": o.merged,
        "machine": Machine::read(),
    });
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&out, text + "\n").map_err(|e| format!("writing {out}: {e}"))?;
    eprintln!("wrote {out}");
    Ok(())
}
