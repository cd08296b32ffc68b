//! The facts about this machine that every report and benchmark records
//! beside its figures: kernel, CPUs, memory, descriptor limits, commit, date.

use serde::Serialize;

use crate::procfs::ProcFs;
use crate::sys::process::{self, Resource};

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
    /// net.ipv4.ip_local_port_range.
    pub port_range: Option<(u64, u64)>,
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
        let port_range =
            fs.sysctl_values("net.ipv4.ip_local_port_range").ok().and_then(|v| (v.len() == 2).then(|| (v[0], v[1])));
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

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, no
/// time-zone database needed for UTC).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format_utc(secs)
}

fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Anonymous resident memory of process `pid` (`RssAnon`), in bytes.
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
    #[test]
    fn utc_format() {
        assert_eq!(super::format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::format_utc(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(super::format_utc(951_782_400), "2000-02-29T00:00:00Z");
    }
}
