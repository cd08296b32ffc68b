//! The load balancer tier, pure: how many HAProxy processes, which source
//! addresses toward the backends, and the configuration they share.
//!
//! # The arithmetic
//!
//! - **Processes.** HAProxy holds two descriptors per connection (client
//!   side and server side), and one process is one fd table: with a hard
//!   `RLIMIT_NOFILE` of `F` inside the load balancer's namespace, one
//!   process is given `ulimit-n F` and `maxconn M = (F - R) / 2`, where `R`
//!   reserves descriptors for listeners, health and agent checks (two per
//!   server line), the stats socket and stdio. SO_REUSEPORT spreads new
//!   connections over the processes by a hash, not evenly, so each is
//!   planned to 90% of `M`: `K = ceil(target / (0.9 × M))` unless given.
//! - **Four-tuples toward a backend.** HAProxy connects to a backend from
//!   its own address; with `source ADDR` it sets IP_BIND_ADDRESS_NO_PORT, so
//!   the kernel picks the port per (source, destination) pair, as `calc`
//!   counts it. One pair carries at most `P` connections, 40% of the usable
//!   local port range (as `load`'s pair budget: `connect` slows down sharply
//!   past half of a pair's range). In the worst case one backend takes all
//!   of a process's `M` connections (every other backend drained or dead),
//!   so each process needs `S = ceil(M / P)` source addresses, one `server`
//!   line per source for each backend, and the load balancer host `K × S`
//!   addresses. Each process reads its own sources from the environment
//!   (`"${TCPMAX_SOURCE_1}"`), so all processes share one file.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::load::plan::PairBudget;
use crate::units::group;

/// Descriptors reserved in each HAProxy process besides the connections'.
pub const BASE_RESERVE: u64 = 64;
/// The fill each process is planned to (SO_REUSEPORT hashes, so some get more).
pub const FILL: f64 = 0.9;
/// How often HAProxy asks each agent, milliseconds.
pub const AGENT_INTER_MS: u64 = 500;

/// The load balancer tier's sizing, with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tier {
    /// HAProxy processes.
    pub processes: usize,
    /// `ulimit -n` inside the load balancer's namespace (hard limit).
    pub nofile: u64,
    /// Descriptors reserved per process.
    pub reserve: u64,
    /// `maxconn` per process: (nofile - reserve) / 2.
    pub maxconn: u64,
    /// Usable local ports in the load balancer's namespace.
    pub usable_ports: u64,
    /// Connections one (source, backend) pair may carry.
    pub per_pair: u64,
    /// Source addresses each process uses toward the backends.
    pub sources_per_process: usize,
    /// True when `processes` was derived from the target.
    pub derived: bool,
}

impl Tier {
    /// Sizes the tier for `target` connections over `backends` backends.
    pub fn plan(
        target: u64,
        backends: usize,
        nofile: u64,
        usable_ports: u64,
        processes: Option<usize>,
    ) -> Result<Tier> {
        let reserve = BASE_RESERVE;
        // Sources are not known yet; the server lines they add are reserved below.
        let mut sources = 1usize;
        let per_pair = PairBudget::default().per_pair(usable_ports);
        if per_pair == 0 {
            return Err(Error::Input("the load balancer's namespace has no usable local port".into()));
        }
        // Two rounds: the reserve depends on the server lines, which depend on M.
        let mut maxconn = 0;
        for _ in 0..2 {
            let checks = 2 * (backends as u64) * sources as u64;
            let usable = nofile.min(1 << 40).saturating_sub(reserve + checks);
            maxconn = usable / 2;
            sources = maxconn.div_ceil(per_pair).max(1) as usize;
        }
        let reserve = reserve + 2 * (backends as u64) * sources as u64;
        if maxconn == 0 {
            return Err(Error::Refused {
                reason: format!("RLIMIT_NOFILE {nofile} inside the load balancer leaves no room for a connection"),
                fix: "raise the hard RLIMIT_NOFILE (LimitNOFILE=, `ulimit -Hn`)".into(),
            });
        }
        let planned = ((maxconn as f64 * FILL) as u64).max(1);
        let needed = target.div_ceil(planned).max(1) as usize;
        let (processes, derived) = match processes {
            None => (needed, true),
            Some(0) => return Err(Error::Input("--lb-processes must be at least 1".into())),
            Some(k) if (k as u64).saturating_mul(maxconn) < target => {
                return Err(Error::Refused {
                    reason: format!(
                        "{k} HAProxy processes x maxconn {} = {} < -c {}",
                        group(maxconn),
                        group(k as u64 * maxconn),
                        group(target)
                    ),
                    fix: format!("--lb-processes {needed} or more (or leave it out: it is derived from -c)"),
                });
            }
            Some(k) => (k, false),
        };
        Ok(Tier { processes, nofile, reserve, maxconn, usable_ports, per_pair, sources_per_process: sources, derived })
    }

    /// Source addresses the load balancer host needs.
    pub fn sources(&self) -> usize {
        self.processes * self.sources_per_process
    }

    /// The arithmetic, one line each, as the report shows it.
    pub fn arithmetic(&self, target: u64) -> Vec<String> {
        let k = if self.derived {
            format!(
                "processes: ceil({} / ({} x {})) = {} (SO_REUSEPORT hashes: each planned to 90%)",
                group(target),
                FILL,
                group(self.maxconn),
                self.processes
            )
        } else {
            format!(
                "processes: {} as given; {} x {} = {} >= {}",
                self.processes,
                self.processes,
                group(self.maxconn),
                group(self.processes as u64 * self.maxconn),
                group(target)
            )
        };
        vec![
            format!(
                "one HAProxy process is one fd table: ulimit-n {} (hard limit inside), 2 descriptors per connection, {} reserved (listeners, checks, stats) -> maxconn ({} - {}) / 2 = {}",
                group(self.nofile),
                self.reserve,
                group(self.nofile),
                self.reserve,
                group(self.maxconn)
            ),
            k,
            format!(
                "toward one backend port: {} usable local ports per (source, backend) pair, {} at the 40% pair budget (connect slows past half)",
                group(self.usable_ports),
                group(self.per_pair)
            ),
            format!(
                "worst case one backend takes a whole process's {}: ceil({} / {}) = {} source address(es) per process, {} x {} = {} on the load balancer host",
                group(self.maxconn),
                group(self.maxconn),
                group(self.per_pair),
                self.sources_per_process,
                self.processes,
                self.sources_per_process,
                self.sources()
            ),
        ]
    }
}

/// A backend as the configuration names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// `b1`.
    pub name: String,
    /// Where serve listens.
    pub addr: SocketAddrV4,
    /// Its agent port.
    pub agent_port: u16,
}

/// The environment variable holding a process's `j`-th source (1-based).
pub fn source_var(j: usize) -> String {
    format!("TCPMAX_SOURCE_{j}")
}

/// The environment variable holding a process's stats socket path.
pub const STATS_VAR: &str = "TCPMAX_STATS";

/// The configuration every process of the tier loads.
pub fn config(tier: &Tier, target: u64, frontend: SocketAddrV4, servers: &[Server]) -> String {
    let mut c = String::new();
    let _ = writeln!(c, "# Generated by `tcpmax cluster`. {} HAProxy processes load this file, each", tier.processes);
    let _ = writeln!(c, "# with its own stats socket and source addresses in the environment:");
    let _ = writeln!(c, "#   {STATS_VAR}=/path/lb-K.sock {}=ADDR ... haproxy -db -f THIS_FILE", source_var(1));
    let _ = writeln!(c, "# They share the frontend address with SO_REUSEPORT (HAProxy's default).");
    let _ = writeln!(c, "#");
    for line in tier.arithmetic(target) {
        let _ = writeln!(c, "# {line}");
    }
    let _ = writeln!(c);
    let _ = writeln!(c, "global");
    let _ = writeln!(c, "    maxconn {}", tier.maxconn);
    let _ = writeln!(c, "    ulimit-n {}", tier.nofile);
    let _ = writeln!(c, "    nbthread 1");
    let _ = writeln!(c, "    stats socket \"${{{STATS_VAR}}}\" mode 600 level admin");
    let _ = writeln!(c);
    let _ = writeln!(c, "defaults");
    let _ = writeln!(c, "    mode tcp");
    let _ = writeln!(c, "    balance leastconn");
    let _ = writeln!(c, "    # A failed connect is retried on another server at once (no 1 s turn-around).");
    let _ = writeln!(c, "    option redispatch 1");
    let _ = writeln!(c, "    retries 3");
    let _ = writeln!(c, "    timeout connect 5s");
    let _ = writeln!(c, "    timeout client 1h");
    let _ = writeln!(c, "    timeout server 1h");
    let _ = writeln!(c, "    timeout queue 10s");
    let _ = writeln!(c, "    timeout check 1s");
    let _ = writeln!(c);
    let _ = writeln!(c, "frontend tcpmax");
    let _ = writeln!(c, "    bind {frontend}");
    let _ = writeln!(c, "    maxconn {}", tier.maxconn);
    let _ = writeln!(c, "    default_backend backends");
    let _ = writeln!(c);
    let _ = writeln!(c, "backend backends");
    let _ = writeln!(c, "    # Health: a check a second, and real connect errors mark a dead server down at once.");
    let _ = writeln!(c, "    # Weight, drain and maxconn: the backend's own agent (tcpmax serve --agent).");
    let _ = writeln!(
        c,
        "    default-server check inter 1s fall 2 rise 2 observe layer4 error-limit 10 on-error mark-down weight 100 agent-check agent-inter {AGENT_INTER_MS}ms"
    );
    for s in servers {
        for j in 1..=tier.sources_per_process {
            let name = if tier.sources_per_process == 1 { s.name.clone() } else { format!("{}-s{j}", s.name) };
            let _ = writeln!(
                c,
                "    server {name} {} agent-port {} source \"${{{}}}\"",
                s.addr,
                s.agent_port,
                source_var(j)
            );
        }
    }
    c
}

/// The (name, value) environment of process `k` (0-based): its stats socket
/// and its `sources_per_process` source addresses out of `all`.
pub fn process_env(tier: &Tier, k: usize, stats: &str, all: &[Ipv4Addr]) -> Vec<(String, String)> {
    let mut env = vec![(STATS_VAR.to_string(), stats.to_string())];
    let s = tier.sources_per_process;
    for j in 0..s {
        if let Some(a) = all.get(k * s + j) {
            env.push((source_var(j + 1), a.to_string()));
        }
    }
    env
}

/// The backend name of a server line (`b1-s2` -> `b1`).
pub fn backend_of(server: &str) -> &str {
    server.split_once("-s").map_or(server, |(b, _)| b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(n: usize) -> Vec<Server> {
        (1..=n)
            .map(|i| Server {
                name: format!("b{i}"),
                addr: SocketAddrV4::new(Ipv4Addr::new(10, 213, 0, 1 + i as u8), 9000),
                agent_port: 9999,
            })
            .collect()
    }

    #[test]
    fn twenty_thousand_descriptors_give_six_processes_for_50k() {
        let t = Tier::plan(50_000, 4, 20_000, 28_232, None).unwrap();
        // (20,000 - 64 - 2 x 4 x 1) / 2.
        assert_eq!(t.maxconn, 9_964);
        assert_eq!(t.reserve, 72);
        assert_eq!(t.per_pair, 11_292);
        assert_eq!(t.sources_per_process, 1);
        // ceil(50,000 / 8,967).
        assert_eq!(t.processes, 6);
        assert_eq!(t.sources(), 6);
        assert!(t.processes as u64 * t.maxconn >= 50_000);
        let text = t.arithmetic(50_000).join("\n");
        assert!(text.contains("maxconn (20,000 - 72) / 2 = 9,964"), "{text}");
        assert!(text.contains("ceil(9,964 / 11,292) = 1"), "{text}");
    }

    #[test]
    fn a_big_fd_table_needs_several_sources_per_process() {
        let t = Tier::plan(100_000, 2, 1_048_576, 28_232, None).unwrap();
        assert_eq!(t.processes, 1);
        assert_eq!(t.sources_per_process, 47);
        assert!(t.maxconn <= 47 * t.per_pair);
        let c = config(&t, 50_000, SocketAddrV4::new(Ipv4Addr::new(10, 213, 0, 1), 8000), &servers(2));
        assert_eq!(c.matches("    server b1-s").count(), 47);
        assert!(c.contains("server b2-s47 10.213.0.3:9000 agent-port 9999 source \"${TCPMAX_SOURCE_47}\""));
        assert_eq!(backend_of("b2-s47"), "b2");
        assert_eq!(backend_of("b12"), "b12");
    }

    #[test]
    fn given_processes_are_checked() {
        assert!(Tier::plan(50_000, 4, 20_000, 28_232, Some(6)).is_ok());
        let e = Tier::plan(50_000, 4, 20_000, 28_232, Some(5)).unwrap_err();
        assert!(e.to_string().contains("--lb-processes 6"), "{e}");
        assert!(Tier::plan(50_000, 4, 20_000, 28_232, Some(0)).is_err());
        assert!(Tier::plan(10, 1, 50, 28_232, None).is_err());
        assert!(Tier::plan(10, 1, 20_000, 0, None).is_err());
    }

    #[test]
    fn config_has_agent_checks_on_every_server() {
        let t = Tier::plan(2_000, 2, 20_000, 28_232, None).unwrap();
        assert_eq!(t.processes, 1);
        let c = config(&t, 50_000, SocketAddrV4::new(Ipv4Addr::new(10, 213, 0, 1), 8000), &servers(2));
        for needle in [
            "    maxconn 9966\n",
            "    ulimit-n 20000\n",
            "    mode tcp\n",
            "    balance leastconn\n",
            "    bind 10.213.0.1:8000\n",
            "stats socket \"${TCPMAX_STATS}\"",
            "default-server check inter 1s fall 2 rise 2 observe layer4 error-limit 10 on-error mark-down weight 100 agent-check agent-inter 500ms\n",
            "    option redispatch 1\n",
            "    server b1 10.213.0.2:9000 agent-port 9999 source \"${TCPMAX_SOURCE_1}\"\n",
            "    server b2 10.213.0.3:9000 agent-port 9999 source \"${TCPMAX_SOURCE_1}\"\n",
        ] {
            assert!(c.contains(needle), "{needle:?} missing from\n{c}");
        }
        assert!(!c.contains("daemon"), "tcpmax supervises the processes itself");
        let all = [Ipv4Addr::new(10, 213, 0, 9), Ipv4Addr::new(10, 213, 0, 10)];
        let env = process_env(&t, 1, "/tmp/x.sock", &all);
        assert_eq!(env[1], ("TCPMAX_SOURCE_1".to_string(), "10.213.0.10".to_string()));
        assert_eq!(env[0].0, STATS_VAR);
    }
}
