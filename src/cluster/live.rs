//! What the rehearsal watches once a second: each backend's status line
//! (held, refusals, memory against its budget, the agent's state), the
//! client's progress line, HAProxy's own view through each process's stats
//! socket, and the kernel's accept-queue counters per namespace. Parsers
//! are pure; the readers are thin.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::serve::agent::State;

/// One status line of `tcpmax serve`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendLine {
    /// Connections held.
    pub conns: u64,
    /// Refused (max-conns + memory).
    pub refused: u64,
    /// Memory in use by the basis's rule, bytes (0.1-unit precision).
    pub mem_used: u64,
    /// Its limit, bytes.
    pub mem_limit: u64,
    /// The agent's state.
    pub agent: Option<State>,
}

fn number(s: &str) -> Option<u64> {
    s.trim().replace(',', "").parse().ok()
}

/// `500.0 KiB` -> bytes.
pub fn human_to_bytes(s: &str) -> Option<u64> {
    let mut it = s.split_whitespace();
    let v: f64 = it.next()?.parse().ok()?;
    let mult = match it.next()? {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((v * mult).round() as u64)
}

/// Parses a serve status line (`conns N | ... | refused A max-conns, B
/// memory | ... | mem X / Y basis (P%) | agent STATE | errors: ...`).
pub fn parse_backend(line: &str) -> Option<BackendLine> {
    let mut out = BackendLine::default();
    let mut seen = false;
    for part in line.split(" | ") {
        let part = part.trim();
        let part = part.split_once("] ").map_or(part, |(_, rest)| rest);
        if let Some(n) = part.strip_prefix("conns ") {
            out.conns = number(n)?;
            seen = true;
        } else if let Some(r) = part.strip_prefix("refused ") {
            let (a, b) = r.split_once(" max-conns, ")?;
            out.refused = number(a)? + number(b.trim_end_matches(" memory"))?;
        } else if let Some(m) = part.strip_prefix("mem ") {
            let (used, rest) = m.split_once(" / ")?;
            out.mem_used = human_to_bytes(used)?;
            let mut w = rest.split_whitespace();
            out.mem_limit = human_to_bytes(&format!("{} {}", w.next()?, w.next()?))?;
        } else if let Some(a) = part.strip_prefix("agent ") {
            let a = a.split(" (").next()?;
            out.agent = if a == "drain" {
                Some(State::Drain)
            } else {
                let w = a.strip_prefix("up ")?.strip_suffix('%')?;
                Some(State::Up { weight: w.parse().ok()? })
            };
        }
    }
    seen.then_some(out)
}

/// One progress line of `tcpmax load`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientLine {
    /// Connections established now.
    pub established: u64,
    /// Connects per second over the last second.
    pub rate: u64,
    /// Connects in progress.
    pub connecting: u64,
    /// Failed connect attempts so far.
    pub failed: u64,
    /// Closed by the server so far.
    pub closed: u64,
}

/// Parses `[ 3s] established 1,000 / 2,000 | 1,000/s | connecting 0 |
/// failed 0 | closed by server 0 | errors: none`.
pub fn parse_client(line: &str) -> Option<ClientLine> {
    let mut out = ClientLine::default();
    let mut parts = line.split(" | ");
    let first = parts.next()?;
    let est = first.split("established ").nth(1)?;
    out.established = number(est.split(" / ").next()?)?;
    for part in parts {
        let part = part.trim();
        if let Some(r) = part.strip_suffix("/s") {
            out.rate = number(r)?;
        } else if let Some(n) = part.strip_prefix("connecting ") {
            out.connecting = number(n)?;
        } else if let Some(n) = part.strip_prefix("failed ") {
            out.failed = number(n)?;
        } else if let Some(n) = part.strip_prefix("closed by server ") {
            out.closed = number(n)?;
        }
    }
    Some(out)
}

/// One server line of HAProxy's `show stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStat {
    /// The server's name (`b1`, or `b1-s2` with several sources).
    pub name: String,
    /// Connections now.
    pub scur: u64,
    /// `UP`, `DOWN`, `DRAIN`, `MAINT`, `no check`, ...
    pub status: String,
    /// The weight in effect.
    pub weight: u64,
}

/// One process's view.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LbStat {
    /// The frontend's connections now.
    pub frontend: u64,
    /// Its servers.
    pub servers: Vec<ServerStat>,
}

/// Parses the CSV of `show stat` by its header names.
pub fn parse_stat(csv: &str) -> Option<LbStat> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (sv, scur, status, weight) = (col("svname")?, col("scur")?, col("status")?, col("weight")?);
    let mut out = LbStat::default();
    for l in lines.filter(|l| !l.is_empty()) {
        let f: Vec<&str> = l.split(',').collect();
        let get = |i: usize| f.get(i).copied().unwrap_or("");
        let cur = get(scur).parse().unwrap_or(0);
        match get(sv) {
            "FRONTEND" => out.frontend += cur,
            "BACKEND" => {}
            name => out.servers.push(ServerStat {
                name: name.to_string(),
                scur: cur,
                status: get(status).to_string(),
                weight: get(weight).parse().unwrap_or(0),
            }),
        }
    }
    Some(out)
}

/// Asks one HAProxy process for `show stat` on its stats socket.
pub fn query_stat(sock: &Path) -> Option<LbStat> {
    let mut s = UnixStream::connect(sock).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.set_write_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(b"show stat\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    parse_stat(&text)
}

/// A counter of `/proc/net/netstat` (`TcpExt`, `ListenOverflows`).
pub fn netstat_value(text: &str, group: &str, name: &str) -> Option<u64> {
    let prefix = format!("{group}:");
    let mut rows = text.lines().filter(|l| l.starts_with(&prefix));
    let names = rows.next()?;
    let values = rows.next()?;
    let i = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// Accept-queue counters of a namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Overflows {
    /// `ListenOverflows`: a full accept queue turned a connection away.
    pub listen_overflows: u64,
    /// `ListenDrops`: SYNs dropped at a listener, overflows included.
    pub listen_drops: u64,
}

impl Overflows {
    /// Parses the text of `/proc/net/netstat`.
    pub fn parse(text: &str) -> Overflows {
        Overflows {
            listen_overflows: netstat_value(text, "TcpExt", "ListenOverflows").unwrap_or(0),
            listen_drops: netstat_value(text, "TcpExt", "ListenDrops").unwrap_or(0),
        }
    }

    /// The growth since `before`.
    pub fn since(self, before: Overflows) -> Overflows {
        Overflows {
            listen_overflows: self.listen_overflows.saturating_sub(before.listen_overflows),
            listen_drops: self.listen_drops.saturating_sub(before.listen_drops),
        }
    }
}

/// Reads a namespace's accept-queue counters: through `pid`, a process
/// living in it (`/proc/PID/net` shows its namespace), else with `ip netns
/// exec NS cat`.
pub fn read_overflows(netns: &str, pid: Option<u32>) -> Overflows {
    if let Some(text) = pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/net/netstat")).ok()) {
        return Overflows::parse(&text);
    }
    let out = std::process::Command::new("ip").args(["netns", "exec", netns, "cat", "/proc/net/netstat"]).output();
    out.ok()
        .filter(|o| o.status.success())
        .map(|o| Overflows::parse(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_default()
}

/// Descriptors open in process `pid`.
pub fn descriptors(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_lines() {
        let l = "[   12s] conns 12,003 | accepted 1,200/s | closed 4 | refused 1 max-conns, 2 memory | backpressured 0 | mem 51.2 MiB / 64.0 MiB budget (80%) | agent drain | errors: none";
        let b = parse_backend(l).unwrap();
        assert_eq!(b.conns, 12_003);
        assert_eq!(b.refused, 3);
        assert_eq!(b.mem_used, (51.2f64 * 1048576.0).round() as u64);
        assert_eq!(b.mem_limit, 64 << 20);
        assert_eq!(b.agent, Some(State::Drain));
        let l = "[    1s] conns 0 | accepted 0/s | closed 0 | refused 0 max-conns, 0 memory | backpressured 0 | mem 500.0 KiB / 2.0 GiB budget (0%) | agent up 55% (descriptors 60%) | errors: none";
        let b = parse_backend(l).unwrap();
        assert_eq!(b.agent, Some(State::Up { weight: 55 }));
        assert_eq!(b.mem_used, 512_000);
        assert_eq!(b.mem_limit, 2 << 30);
        assert!(parse_backend("listening 10.0.0.1:9000 tcp").is_none());
        assert!(parse_backend("[ 1s] conns x |").is_none());
    }

    #[test]
    fn load_lines() {
        let l = "[   3s] established 31,204 / 50,000 | 9,000/s | connecting 412 | failed 2 | closed by server 7 | errors: ECONNRESET 2";
        assert_eq!(
            parse_client(l),
            Some(ClientLine { established: 31_204, rate: 9_000, connecting: 412, failed: 2, closed: 7 })
        );
        assert!(parse_client("plan: 5 pairs").is_none());
    }

    #[test]
    fn haproxy_stats() {
        let csv = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act\n\
                   tcpmax,FRONTEND,,,8300,8400,9964,9000,0,0,0,0,0,,,,,OPEN,,\n\
                   backends,b1,0,0,2000,2100,,3000,0,0,,0,,0,0,0,0,DRAIN,0,1\n\
                   backends,b2,0,0,6300,6300,,6400,0,0,,0,,0,0,0,0,UP,55,1\n\
                   backends,BACKEND,0,0,8300,8400,996,9400,0,0,0,0,,0,0,0,0,UP,55,1\n";
        let s = parse_stat(csv).unwrap();
        assert_eq!(s.frontend, 8_300);
        assert_eq!(s.servers.len(), 2);
        assert_eq!(s.servers[0], ServerStat { name: "b1".into(), scur: 2_000, status: "DRAIN".into(), weight: 0 });
        assert_eq!(s.servers[1].weight, 55);
        assert!(parse_stat("").is_none());
    }

    #[test]
    fn netstat_counters() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 17 19\nIpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(Overflows::parse(text), Overflows { listen_overflows: 17, listen_drops: 19 });
        let before = Overflows { listen_overflows: 7, listen_drops: 9 };
        assert_eq!(Overflows::parse(text).since(before), Overflows { listen_overflows: 10, listen_drops: 10 });
        assert_eq!(Overflows::parse(""), Overflows::default());
        assert_eq!(human_to_bytes("1.5 KiB"), Some(1536));
        assert_eq!(human_to_bytes("12 B"), Some(12));
        assert_eq!(human_to_bytes("12 XB"), None);
    }
}
