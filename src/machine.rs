//! The facts about this machine that every report and benchmark records
//! beside its figures: kernel, CPUs, memory, descriptor limits, commit, date.

use serde::Serialize;

use crate::procfs::ProcFs;
use crate::sys::process::{self, Resource};

/// An inclusive range of port numbers, as `{"low": 32768, "high": 60999}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PortRange {
    /// The first port.
    pub low: u64,
    /// The last port.
    pub high: u64,
}

/// Where a measurement ran.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `uname -r`.
    pub kernel: String,
    /// CPU model name.
    pub cpu_model: String,
    /// CPUs this process may use.
    pub cpus: usize,
    /// MemTotal in bytes.
    pub mem_total_bytes: u64,
    /// RLIMIT_NOFILE soft limit (after raising it to the hard one).
    pub nofile_soft: u64,
    /// RLIMIT_NOFILE hard limit.
    pub nofile_hard: u64,
    /// net.ipv4.ip_local_port_range; `None` when unreadable.
    pub port_range: Option<PortRange>,
    /// The git commit tcpmax was built from.
    pub commit: String,
    /// UTC time of the measurement, RFC 3339.
    pub date: String,
}

impl Machine {
    /// Reads the facts of the machine this process runs on.
    pub fn read() -> Machine {
        let fs = ProcFs::default();
        let kernel = fs.read("proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default();
        let cpu_model = fs
            .read("proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let nofile = process::getrlimit(Resource::NoFile).ok();
        let port_range = fs.sysctl_values("net.ipv4.ip_local_port_range").ok().and_then(|v| match v[..] {
            [low, high] => Some(PortRange { low, high }),
            _ => None,
        });
        Machine {
            kernel,
            cpu_model,
            cpus: crate::engine::sizing::cores(),
            mem_total_bytes: fs.meminfo().map(|m| m.total).unwrap_or(0),
            nofile_soft: nofile.map_or(0, |l| l.soft),
            nofile_hard: nofile.map_or(0, |l| l.hard),
            port_range,
            commit: env!("TCPMAX_COMMIT").to_string(),
            date: utc_now(),
        }
    }
}

/// The current UTC time, RFC 3339 to the second: `2026-11-18T11:06:40Z`.
pub fn utc_now() -> String {
    format_utc(std::time::SystemTime::now())
}

fn format_utc(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Anonymous resident memory of process `pid` (`RssAnon`), in bytes.
pub use crate::sys::process::Rlimit;

/// Raises the soft `RLIMIT_NOFILE` to the hard one (no privilege needed)
/// and returns what the kernel kept: descriptors per fd table.
pub fn raise_nofile() -> std::io::Result<Rlimit> {
    process::raise_nofile()
}

/// Lowers this process's soft `RLIMIT_NOFILE` to `soft` (tests and
/// experiments that prove a claim on a limit of their own).
pub fn lower_nofile(soft: u64) -> std::io::Result<Rlimit> {
    let l = process::getrlimit(Resource::NoFile)?;
    process::setrlimit(Resource::NoFile, Rlimit { soft: soft.min(l.soft), hard: l.hard })?;
    process::getrlimit(Resource::NoFile)
}

/// Anonymous resident memory of process `pid`, in bytes.
pub fn rss_anon(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("RssAnon:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes held by the slab caches (SReclaimable + SUnreclaim) and free
/// memory, for before/after deltas of kernel memory.
pub fn kernel_memory() -> Option<(u64, u64)> {
    let m = ProcFs::default().meminfo().ok()?;
    Some((m.slab_reclaimable + m.slab_unreclaimable, m.really_free()))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64) -> String {
        super::format_utc(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn utc_format() {
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        // Sub-second parts are dropped, not rounded.
        assert_eq!(super::format_utc(UNIX_EPOCH + Duration::from_millis(59_999)), "1970-01-01T00:00:59Z");
    }

    #[test]
    fn port_range_is_an_object() {
        let r = super::PortRange { low: 32_768, high: 60_999 };
        assert_eq!(serde_json::to_value(r).unwrap(), serde_json::json!({ "low": 32_768, "high": 60_999 }));
    }
}
