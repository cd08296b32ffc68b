//! The hosts of a rehearsal and their addresses, pure.
//!
//! Every host is a network namespace named `tcpmax-<pid>-<role>` (the pid of
//! the `tcpmax cluster` run that made it, so a later run can tell a leftover
//! from a live run). The hosts are joined by a bridge `tcpmax-br` that lives
//! in a namespace of its own (`tcpmax-<pid>-sw`), so the machine's own
//! network stack gets no interface, no route and no bridge-netfilter path.
//! All addresses come from one private /24 (10.213.x.0/24) that nothing on
//! the machine uses; it is never routed anywhere.

use std::net::Ipv4Addr;

use serde::Serialize;

use crate::error::{Error, Result};

/// The prefix of every namespace and interface a run creates.
pub const PREFIX: &str = "tcpmax-";
/// The bridge, inside the switch namespace.
pub const BRIDGE: &str = "tcpmax-br";
/// The first two octets of the candidate subnets.
pub const NET: [u8; 2] = [10, 213];
/// The port serve listens on in every backend host.
pub const SERVE_PORT: u16 = 9000;
/// The agent-check port of every backend.
pub const AGENT_PORT: u16 = 9999;
/// The load balancer's frontend port.
pub const FRONTEND_PORT: u16 = 8000;

/// What a host is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs `tcpmax serve --agent`.
    Backend,
    /// Runs the HAProxy processes.
    Lb,
    /// Runs `tcpmax load`.
    Client,
}

/// One host: a namespace, its interface and its addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Host {
    /// Short name: `b1`, `lb`, `client`.
    pub name: String,
    /// What it runs.
    pub role: Role,
    /// The namespace.
    pub netns: String,
    /// The bridge port of its link, in the switch namespace.
    pub port: String,
    /// Its addresses, the first one primary.
    pub addrs: Vec<Ipv4Addr>,
}

/// The whole rehearsal network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Topology {
    /// The run's pid, in every name.
    pub run: u32,
    /// The switch namespace holding the bridge.
    pub switch: String,
    /// The subnet, `10.213.x.0/24`.
    pub subnet: [u8; 3],
    /// Backends, then the load balancer, then the client.
    pub hosts: Vec<Host>,
}

/// The prefix of the names of run `pid`: `tcpmax-<pid>-`.
pub fn run_prefix(pid: u32) -> String {
    format!("{PREFIX}{pid}-")
}

/// The run pid in a namespace name made by [`Topology`], if it is one.
pub fn run_of(netns: &str) -> Option<u32> {
    let rest = netns.strip_prefix(PREFIX)?;
    let (pid, role) = rest.split_once('-')?;
    if role.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// The most hosts plus extra addresses a /24 holds (.1 to .254).
pub const MAX_ADDRS: usize = 254;

impl Topology {
    /// Names and addresses for `backends` backends, a load balancer with
    /// `lb_extra` source addresses besides its frontend address, and a client
    /// with `client_addrs` addresses, in subnet `10.213.x.0/24`.
    pub fn plan(run: u32, x: u8, backends: usize, lb_extra: usize, client_addrs: usize) -> Result<Topology> {
        let needed = backends + 1 + lb_extra + client_addrs.max(1);
        if backends == 0 || needed > MAX_ADDRS {
            return Err(Error::Input(format!(
                "{backends} backends + 1 frontend + {lb_extra} load balancer sources + {client_addrs} client addresses = {needed} addresses; one /24 holds {MAX_ADDRS} (fewer backends, or a smaller -c)"
            )));
        }
        let prefix = run_prefix(run);
        let mut next = 1u8;
        let mut take = |n: usize| -> Vec<Ipv4Addr> {
            (0..n)
                .map(|_| {
                    let a = Ipv4Addr::new(NET[0], NET[1], x, next);
                    next = next.wrapping_add(1);
                    a
                })
                .collect()
        };
        let lb_addrs = take(1 + lb_extra);
        let mut hosts: Vec<Host> = (1..=backends)
            .map(|i| {
                let name = format!("b{i}");
                Host {
                    netns: format!("{prefix}{name}"),
                    port: format!("p-{name}"),
                    name,
                    role: Role::Backend,
                    addrs: take(1),
                }
            })
            .collect();
        hosts.push(Host {
            name: "lb".into(),
            role: Role::Lb,
            netns: format!("{prefix}lb"),
            port: "p-lb".into(),
            addrs: lb_addrs,
        });
        let client = take(client_addrs.max(1));
        hosts.push(Host {
            name: "client".into(),
            role: Role::Client,
            netns: format!("{prefix}client"),
            port: "p-client".into(),
            addrs: client,
        });
        Ok(Topology { run, switch: format!("{prefix}sw"), subnet: [NET[0], NET[1], x], hosts })
    }

    /// The subnet as `10.213.x.0/24`.
    pub fn cidr(&self) -> String {
        format!("{}.{}.{}.0/24", self.subnet[0], self.subnet[1], self.subnet[2])
    }

    /// Every namespace, the switch first.
    pub fn namespaces(&self) -> Vec<String> {
        std::iter::once(self.switch.clone()).chain(self.hosts.iter().map(|h| h.netns.clone())).collect()
    }

    /// The backends, in order.
    pub fn backends(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| h.role == Role::Backend)
    }

    /// The host of `role` (the first one).
    pub fn host(&self, role: Role) -> Option<&Host> {
        self.hosts.iter().find(|h| h.role == role)
    }

    /// The load balancer's frontend address.
    pub fn frontend(&self) -> Option<Ipv4Addr> {
        self.host(Role::Lb).map(|h| h.addrs[0])
    }

    /// The load balancer's source addresses toward the backends.
    pub fn lb_sources(&self) -> &[Ipv4Addr] {
        self.host(Role::Lb).map_or(&[], |h| &h.addrs[1..])
    }

    /// The host that owns `addr` in this run; an error for any address this
    /// run did not give one of its namespaces, so nothing is ever aimed at
    /// an address outside the rehearsal.
    pub fn owner(&self, addr: Ipv4Addr) -> Result<&Host> {
        self.hosts.iter().find(|h| h.addrs.contains(&addr)).ok_or_else(|| {
            Error::Input(format!("{addr} belongs to no namespace of this run ({}); refusing to target it", self.cidr()))
        })
    }
}

/// True when `10.213.x.0/24` overlaps none of `cidrs` (`a.b.c.d/n`, as
/// `ip -o addr` and `ip route` print them; `default` counts as no overlap,
/// since it routes, it does not claim, the subnet).
pub fn subnet_free(x: u8, cidrs: &[String]) -> bool {
    let ours = (u32::from(Ipv4Addr::new(NET[0], NET[1], x, 0)), 24u32);
    !cidrs.iter().filter_map(|c| parse_cidr(c)).any(|theirs| overlaps(ours, theirs))
}

fn parse_cidr(s: &str) -> Option<(u32, u32)> {
    let (a, n) = match s.split_once('/') {
        Some((a, n)) => (a, n.parse().ok()?),
        None => (s, 32),
    };
    let ip: Ipv4Addr = a.parse().ok()?;
    (n <= 32).then_some((u32::from(ip), n))
}

fn overlaps(a: (u32, u32), b: (u32, u32)) -> bool {
    let n = a.1.min(b.1);
    let mask = if n == 0 { 0 } else { u32::MAX << (32 - n) };
    a.0 & mask == b.0 & mask
}

/// Every IPv4 CIDR in the text of `ip -o -4 addr show` and `ip -4 route show`.
pub fn cidrs_in(text: &str) -> Vec<String> {
    text.split_whitespace()
        .filter(|w| w.contains('.') && w.split('/').next().is_some_and(|a| a.parse::<Ipv4Addr>().is_ok()))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses() {
        let t = Topology::plan(4242, 7, 2, 3, 2).unwrap();
        assert_eq!(t.switch, "tcpmax-4242-sw");
        assert_eq!(t.cidr(), "10.213.7.0/24");
        let names: Vec<&str> = t.hosts.iter().map(|h| h.netns.as_str()).collect();
        assert_eq!(names, ["tcpmax-4242-b1", "tcpmax-4242-b2", "tcpmax-4242-lb", "tcpmax-4242-client"]);
        assert_eq!(t.frontend(), Some(Ipv4Addr::new(10, 213, 7, 1)));
        assert_eq!(t.lb_sources(), [2, 3, 4].map(|i| Ipv4Addr::new(10, 213, 7, i)));
        let b: Vec<Ipv4Addr> = t.backends().map(|h| h.addrs[0]).collect();
        assert_eq!(b, [Ipv4Addr::new(10, 213, 7, 5), Ipv4Addr::new(10, 213, 7, 6)]);
        assert_eq!(t.host(Role::Client).unwrap().addrs.len(), 2);
        assert_eq!(t.namespaces().len(), 5);
        for h in &t.hosts {
            assert!(h.port.len() <= 15, "interface names fit IFNAMSIZ");
            assert_eq!(run_of(&h.netns), Some(4242));
        }
        // Every address is distinct.
        let mut all: Vec<Ipv4Addr> = t.hosts.iter().flat_map(|h| h.addrs.clone()).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 2 + 4 + 2);
    }

    #[test]
    fn only_our_addresses_are_targets() {
        let t = Topology::plan(1, 0, 1, 0, 1).unwrap();
        assert_eq!(t.owner(Ipv4Addr::new(10, 213, 0, 2)).unwrap().name, "b1");
        assert!(t.owner(Ipv4Addr::new(10, 213, 0, 99)).is_err());
        assert!(t.owner(Ipv4Addr::new(8, 8, 8, 8)).is_err());
    }

    #[test]
    fn too_many_addresses_refused() {
        assert!(Topology::plan(1, 0, 200, 50, 10).is_err());
        assert!(Topology::plan(1, 0, 0, 1, 1).is_err());
        assert!(Topology::plan(1, 0, 100, 100, 53).is_ok());
    }

    #[test]
    fn leftover_names() {
        assert_eq!(run_of("tcpmax-123-b4"), Some(123));
        assert_eq!(run_of("tcpmax-123-sw"), Some(123));
        assert_eq!(run_of("tcpmax-12x-b4"), None);
        assert_eq!(run_of("tcpmax-123"), None);
        assert_eq!(run_of("other-123-b4"), None);
    }

    #[test]
    fn subnet_checks() {
        let text = "2: eth0    inet 10.0.0.5/8 brd 10.255.255.255 scope global eth0\n\
                    default via 172.17.0.1 dev eth0\n172.17.0.0/16 dev eth0 proto kernel\n";
        let cidrs = cidrs_in(text);
        assert!(cidrs.contains(&"10.0.0.5/8".to_string()));
        assert!(cidrs.contains(&"172.17.0.1".to_string()));
        // 10.0.0.0/8 covers every 10.213.x.0/24.
        assert!(!subnet_free(3, &cidrs));
        let cidrs = cidrs_in("inet 10.213.3.9/32 scope global lo\n10.213.4.0/24 dev x\n");
        assert!(!subnet_free(3, &cidrs));
        assert!(!subnet_free(4, &cidrs));
        assert!(subnet_free(5, &cidrs));
        assert!(subnet_free(5, &[]));
    }
}
