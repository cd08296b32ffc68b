//! The kernel's counters of connections it dropped before they were
//! established, read before and after a run so that a connect timeout can be
//! put down to the limit that dropped the SYNs:
//!
//! - the SYN queue and the accept backlog: `TcpExt` `ListenOverflows`,
//!   `ListenDrops`, `TCPReqQFullDrop`, `TCPReqQFullDoCookies` of
//!   `/proc/net/netstat`;
//! - the conntrack table: `nf_conntrack_count` against `nf_conntrack_max`
//!   and the `drop`, `early_drop` and `insert_failed` columns of
//!   `/proc/net/stat/nf_conntrack` (one line per CPU, in hex, summed here).
//!
//! All are counters of this network namespace. Each is `None` when it could
//! not be read (no conntrack module, a kernel without the field).

use super::ProcFs;

/// The most lines of `/proc/net/stat/nf_conntrack` taken in: one per CPU.
const MAX_CPU_LINES: usize = 8192;

/// The drop counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Drops {
    /// `TcpExt: ListenOverflows`: a full accept backlog dropped a
    /// connection's last ACK (or its SYN).
    pub listen_overflows: Option<u64>,
    /// `TcpExt: ListenDrops`: everything a listener dropped, overflows
    /// included.
    pub listen_drops: Option<u64>,
    /// `TcpExt: TCPReqQFullDrop`: a full SYN queue dropped a SYN (no
    /// syncookies).
    pub reqq_full_drop: Option<u64>,
    /// `TcpExt: TCPReqQFullDoCookies`: a full SYN queue answered with a
    /// syncookie instead.
    pub reqq_full_do_cookies: Option<u64>,
    /// `net.netfilter.nf_conntrack_count`: entries now.
    pub conntrack_count: Option<u64>,
    /// `net.netfilter.nf_conntrack_max`.
    pub conntrack_max: Option<u64>,
    /// `drop` summed over CPUs: packets dropped because no entry could be
    /// made (the table full).
    pub conntrack_drop: Option<u64>,
    /// `early_drop` summed over CPUs: entries not yet assured evicted to
    /// make room.
    pub conntrack_early_drop: Option<u64>,
    /// `insert_failed` summed over CPUs.
    pub conntrack_insert_failed: Option<u64>,
}

impl Drops {
    /// Reads every counter under the root of `fs`; what cannot be read is
    /// `None`.
    pub fn read(fs: &ProcFs) -> Drops {
        let tcp = fs.read("proc/net/netstat").ok().map(|t| netstat(&t)).unwrap_or_default();
        let get = |name: &str| tcp.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        let ct = fs.read("proc/net/stat/nf_conntrack").ok().and_then(|t| conntrack_stat(&t).ok()).unwrap_or_default();
        let col = |name: &str| ct.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        Drops {
            listen_overflows: get("ListenOverflows"),
            listen_drops: get("ListenDrops"),
            reqq_full_drop: get("TCPReqQFullDrop"),
            reqq_full_do_cookies: get("TCPReqQFullDoCookies"),
            conntrack_count: fs.sysctl_u64("net.netfilter.nf_conntrack_count").ok(),
            conntrack_max: fs.sysctl_u64("net.netfilter.nf_conntrack_max").ok(),
            conntrack_drop: col("drop"),
            conntrack_early_drop: col("early_drop"),
            conntrack_insert_failed: col("insert_failed"),
        }
    }

    /// True when nothing at all could be read.
    pub fn is_empty(&self) -> bool {
        *self == Drops::default()
    }
}

/// The `TcpExt` counters of the text of `/proc/net/netstat`: a line of
/// names then a line of values, both starting `TcpExt:`. Names without a
/// value (a short line) are left out.
pub fn netstat(text: &str) -> Vec<(String, u64)> {
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return Vec::new();
    };
    names
        .split_whitespace()
        .skip(1)
        .zip(values.split_whitespace().skip(1))
        .filter_map(|(n, v)| v.parse().ok().map(|v| (n.to_string(), v)))
        .collect()
}

/// The columns of the text of `/proc/net/stat/nf_conntrack` summed over
/// its CPU lines (hex values under a header of names). `entries` is the
/// table's count repeated on every line, so it is taken once, not summed.
pub fn conntrack_stat(text: &str) -> Result<Vec<(String, u64)>, String> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().ok_or("empty file")?.split_whitespace().collect();
    let mut sums = vec![0u64; header.len()];
    for (i, line) in lines.filter(|l| !l.trim().is_empty()).enumerate() {
        if i >= MAX_CPU_LINES {
            return Err(format!("more than {MAX_CPU_LINES} CPU lines"));
        }
        let values: Vec<&str> = line.split_whitespace().collect();
        if values.len() != header.len() {
            return Err(format!("line {} has {} values under {} names", i + 2, values.len(), header.len()));
        }
        for ((sum, v), name) in sums.iter_mut().zip(values).zip(&header) {
            let v = u64::from_str_radix(v, 16).map_err(|_| format!("bad hex value {v:?}"))?;
            *sum = if *name == "entries" { v } else { sum.saturating_add(v) };
        }
    }
    Ok(header.into_iter().map(String::from).zip(sums).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcpext_counters_by_name() {
        let t = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPReqQFullDrop\n\
                 TcpExt: 1 2 3 4\nIpExt: InNoRoutes\nIpExt: 9\n";
        let v = netstat(t);
        assert_eq!(v.len(), 4);
        assert!(v.contains(&("ListenDrops".to_string(), 3)));
        assert!(netstat("IpExt: A\nIpExt: 1\n").is_empty());
        assert!(netstat("TcpExt: A B\n").is_empty());
    }

    #[test]
    fn conntrack_columns_are_summed_over_cpus() {
        let t = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop\n\
                 00000064  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000001 000002bf 00000000\n\
                 00000064  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000300 00000002\n";
        let v = conntrack_stat(t).unwrap();
        let get = |n: &str| v.iter().find(|(k, _)| k == n).unwrap().1;
        assert_eq!(get("entries"), 100);
        assert_eq!(get("drop"), 0x2bf + 0x300);
        assert_eq!(get("early_drop"), 2);
        assert_eq!(get("insert_failed"), 1);
        assert!(conntrack_stat("").is_err());
        assert!(conntrack_stat("drop\nzz\n").is_err());
        assert!(conntrack_stat("drop early_drop\n1\n").is_err());
    }
}
