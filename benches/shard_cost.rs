//! What one shard costs in user memory: a thread with its own fd table
//! (tcpmax's design) against a worker process (re-executing the binary), both
//! idle and listening. Writes JSON.
//!
//! `cargo bench --bench shard_cost -- --shards 32 --json docs/bench/shard_cost.json`

#[path = "common/mod.rs"]
mod util;

use serde_json::json;
use std::time::Duration;
use tcpmax::machine::{self, Machine};
use util::ServeChild;

fn idle_rss(shards: usize) -> Result<u64, String> {
    let s = ServeChild::start(&["--shards", &shards.to_string(), "--mode", "silent"])?;
    // Two status lines: every shard is up and has reported.
    s.next_conns(Duration::from_secs(10)).ok_or("no status")?;
    s.next_conns(Duration::from_secs(10)).ok_or("no status")?;
    let rss = machine::rss_anon(s.pid()).ok_or("no RssAnon")?;
    s.stop()?;
    Ok(rss)
}

fn main() -> Result<(), String> {
    let n: usize = util::arg("--shards").map_or(Ok(32), |v| v.parse().map_err(|e| format!("--shards: {e}")))?;
    let out = util::arg("--json").unwrap_or_else(|| "shard_cost.json".into());

    // Threads: one process with 1 shard, then with n; the difference is n-1 shards.
    let one = idle_rss(1)?;
    let many = idle_rss(n)?;
    let per_thread = many.saturating_sub(one) as f64 / (n - 1).max(1) as f64;

    // Processes: n processes of one shard each, all alive at once.
    let mut procs = Vec::new();
    for _ in 0..n {
        let s = ServeChild::start(&["--shards", "1", "--mode", "silent"])?;
        s.next_conns(Duration::from_secs(10)).ok_or("no status")?;
        procs.push(s);
    }
    let total: u64 = procs.iter().filter_map(|p| machine::rss_anon(p.pid())).sum();
    let per_process = total as f64 / n as f64;
    for p in procs {
        p.stop()?;
    }

    let report = json!({
        "benchmark": "shard_cost",
        "shards": n,
        "thread_shard": { "rss_anon_one_shard_bytes": one, "rss_anon_n_shards_bytes": many, "rss_anon_bytes_per_shard": per_thread },
        "process_shard": { "rss_anon_total_bytes": total, "rss_anon_bytes_per_shard": per_process },
        "machine": Machine::read(),
    });
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&out, text.clone() + "\n").map_err(|e| format!("writing {out}: {e}"))?;
    println!("{text}");
    Ok(())
}
