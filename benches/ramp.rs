//! The ramp side by side: the kernel's own connect+accept rate, measured by
//! a minimal C epoll program (`benches/c/kernel_hold.c`, built here with
//! `cc`) twice, accepting only and also watching every accepted socket in
//! epoll as a server must, then `tcpmax load` against `tcpmax serve`, all to
//! the same count on loopback in the same run. tcpmax is compared with the
//! watching baseline. Writes JSON with both, their ratio, the user
//! memory per connection of each tcpmax side, and the machine.
//!
//! `cargo bench --bench ramp -- --count 1M --json docs/bench/ramp_1m.json`

#[path = "common/mod.rs"]
mod common;

use common::{kernel_baseline, tcpmax_run};
use serde_json::json;
use tcpmax::machine::Machine;

fn main() -> Result<(), String> {
    let count = common::arg("--count").map_or(Ok(1_000_000), |c| tcpmax::units::parse_count(&c))?;
    let hold = common::arg("--hold").unwrap_or_else(|| "5s".into());
    let out = common::arg("--json").unwrap_or_else(|| "ramp.json".into());

    // The bare baseline only accepts; the watching one also registers every
    // accepted socket in epoll, as any server (tcpmax serve included) must.
    let bare = kernel_baseline(count, false)?;
    let kernel = kernel_baseline(count, true)?;
    let ours = tcpmax_run(count, &hold)?;
    let l = &ours["load"];
    let bare_rate = bare["rate_per_s"].as_f64().unwrap_or(0.0);
    let kernel_rate = kernel["rate_per_s"].as_f64().unwrap_or(0.0);
    let our_rate = l["connect_rate_per_s"].as_f64().unwrap_or(0.0);
    let client_per_conn = l["rss_anon_bytes_per_connection"].as_f64().unwrap_or(0.0);
    let server_per_conn = ours["server_rss_anon_bytes_per_connection"].as_f64().unwrap_or(0.0);
    let summary = json!({
        "count": count,
        "kernel_accept_only_rate_per_s": bare_rate,
        "kernel_rate_per_s": kernel_rate,
        "kernel_ramp_seconds": kernel["ramp_seconds"],
        "tcpmax_rate_per_s": our_rate,
        "tcpmax_ramp_seconds": l["ramp_seconds"],
        "tcpmax_rate_vs_kernel": if kernel_rate > 0.0 { our_rate / kernel_rate } else { 0.0 },
        "tcpmax_rate_vs_kernel_accept_only": if bare_rate > 0.0 { our_rate / bare_rate } else { 0.0 },
        "tcpmax_held": l["peak_established"],
        "tcpmax_failed": l["failed"],
        "client_rss_anon_bytes_per_connection": client_per_conn,
        "server_rss_anon_bytes_per_connection": server_per_conn,
        "user_bytes_per_connection_both_ends": client_per_conn + server_per_conn,
        "ping_rtt_us": l["ping_rtt_us"],
        "connect_latency_us": l["connect_latency_us"],
        "tcpmax_teardown_seconds": l["teardown_seconds"],
        "kernel_teardown_seconds": kernel["teardown_seconds"],
    });
    let report = json!({
        "benchmark": "ramp",
        "summary": summary,
        "kernel_baseline": kernel,
        "kernel_baseline_accept_only": bare,
        "tcpmax": ours,
        "machine": Machine::read(),
    });
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&out, text + "\n").map_err(|e| format!("writing {out}: {e}"))?;
    println!("{}", serde_json::to_string_pretty(&report["summary"]).unwrap_or_default());
    Ok(())
}
