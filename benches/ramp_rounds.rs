//! The ramp, repeated: rounds that alternate the C baseline (accepting and
//! watching every accepted socket in epoll, as a server must) and
//! `tcpmax load` against `tcpmax serve`, to the same count. A single run on a
//! shared machine moves by 15-30%; alternating rounds and comparing medians
//! tells a real difference from that noise. Writes JSON with every round,
//! the medians, their ratio, and the machine.
//!
//! `cargo bench --bench ramp_rounds -- --count 1M --rounds 3 --json docs/bench/ramp_rounds_1m.json`

#[path = "common/mod.rs"]
mod common;

use common::{kernel_baseline, tcpmax_run};
use serde_json::json;
use tcpmax::machine::Machine;

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn main() -> Result<(), String> {
    let count = common::arg("--count").map_or(Ok(1_000_000), |c| tcpmax::units::parse_count(&c))?;
    let rounds: usize = common::arg("--rounds").map_or(Ok(3), |r| r.parse().map_err(|e| format!("--rounds: {e}")))?;
    let out = common::arg("--json").unwrap_or_else(|| "ramp_rounds.json".into());
    let (mut kernel, mut ours, mut rows) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds.max(1) {
        let k = kernel_baseline(count, true)?;
        let t = tcpmax_run(count, "1s")?;
        let kr = k["rate_per_s"].as_f64().unwrap_or(0.0);
        let tr = t["load"]["connect_rate_per_s"].as_f64().unwrap_or(0.0);
        eprintln!("round {}: kernel {kr:.0}/s, tcpmax {tr:.0}/s", round + 1);
        kernel.push(kr);
        ours.push(tr);
        rows.push(json!({
            "round": round + 1,
            "kernel_rate_per_s": kr,
            "tcpmax_rate_per_s": tr,
            "ratio": if kr > 0.0 { tr / kr } else { 0.0 },
            "tcpmax_held": t["load"]["peak_established"],
            "tcpmax_failed": t["load"]["failed"],
            "kernel_established": k["established"],
        }));
    }
    let (km, tm) = (median(&kernel), median(&ours));
    let report = json!({
        "benchmark": "ramp_rounds",
        "count": count,
        "rounds": rows,
        "kernel_median_rate_per_s": km,
        "tcpmax_median_rate_per_s": tm,
        "tcpmax_vs_kernel_medians": if km > 0.0 { tm / km } else { 0.0 },
        "machine": Machine::read(),
    });
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&out, text.clone() + "\n").map_err(|e| format!("writing {out}: {e}"))?;
    println!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn medians() {
        assert_eq!(super::median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(super::median(&[]), 0.0);
    }
}
