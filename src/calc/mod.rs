//! `tcpmax calc`: four-tuple arithmetic for a topology, instant and pure.
//!
//! A TCP connection is its four-tuple (client IP, client port, server IP,
//! server port). With `R` usable ports in the client's ephemeral range
//! (`hi - lo + 1`):
//!
//! - per (client IP -> server IP:port): `R`;
//! - per client host: `client_ips × server_ips × server_ports × R` (the
//!   kernel reuses a local port toward different destinations when the
//!   client does not bind, or binds with `IP_BIND_ADDRESS_NO_PORT`; binding
//!   to `(ip, 0)` without it caps a client IP at `R` over all destinations);
//! - per server listening socket: `client_ips × R` from these clients, in
//!   theory `2^32 × 2^16 = 2^48` for IPv4 and `2^128 × 2^16 = 2^144` for IPv6;
//! - total for the topology: `client_ips × server_ips × server_ports × R`.
//!
//! All products use checked `u128` arithmetic: input too large for it is an
//! [`Error::Input`], never an overflow.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::load::plan::PairBudget;
use crate::procfs::ProcFs;
use crate::units::group;

/// The Linux default `net.ipv4.ip_local_port_range`.
pub const DEFAULT_PORT_RANGE: PortRange = PortRange { lo: 32_768, hi: 60_999 };

/// 2^48: connections one IPv4 listening socket can tell apart, as the
/// human text shows it.
pub const THEORETICAL_IPV4: &str = "2^48 = 281,474,976,710,656";
/// 2^144: connections one IPv6 listening socket can tell apart, as the
/// human text shows it.
pub const THEORETICAL_IPV6: &str = "2^144 (about 2.2e43)";
/// 2^32 client IPs × 2^16 client ports.
pub const IPV4_EXPONENT: u32 = 48;
/// 2^128 client IPs × 2^16 client ports.
pub const IPV6_EXPONENT: u32 = 144;

/// Arguments of `tcpmax calc`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Client IP addresses (source addresses).
    #[arg(long, default_value = "1", value_parser = crate::units::parse_count)]
    pub client_ips: u64,
    /// Server IP addresses.
    #[arg(long, default_value = "1", value_parser = crate::units::parse_count)]
    pub server_ips: u64,
    /// Listening ports on each server IP.
    #[arg(long, default_value = "1", value_parser = crate::units::parse_count)]
    pub server_ports: u64,
    /// The client's ephemeral port range (default: this machine's
    /// net.ipv4.ip_local_port_range, else 32768-60999); `LO HI` as sysctl
    /// prints it works too.
    #[arg(long, value_name = "LO-HI")]
    pub port_range: Option<String>,
    /// Explain the 65,535 myth after the figures.
    #[arg(long)]
    pub explain: bool,
    /// Read the default port range under this root.
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Write the result as JSON to FILE (`-` for stdout, then no text).
    #[arg(long, value_name = "FILE|-")]
    pub json: Option<PathBuf>,
}

/// An inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PortRange {
    /// The first port.
    pub lo: u16,
    /// The last port.
    pub hi: u16,
}

impl PortRange {
    /// A range of ports in 1..=65535 with `lo <= hi`.
    pub fn new(lo: u64, hi: u64) -> Result<PortRange> {
        let port = |p: u64| {
            u16::try_from(p)
                .ok()
                .filter(|&p| p >= 1)
                .ok_or_else(|| Error::Input(format!("port {p} is out of 1..65535")))
        };
        let (lo, hi) = (port(lo)?, port(hi)?);
        if lo > hi {
            return Err(Error::Input(format!(
                "port range {lo}-{hi} is reversed: LO must not be above HI (example: 32768-60999)"
            )));
        }
        Ok(PortRange { lo, hi })
    }

    /// The number of ports in the range.
    pub fn size(self) -> u64 {
        u64::from(self.hi) - u64::from(self.lo) + 1
    }
}

/// Parses `LO-HI` (`32768-60999`) or `LO HI` separated by spaces or a tab,
/// as `sysctl net.ipv4.ip_local_port_range` and its /proc file print it.
pub fn parse_port_range(s: &str) -> Result<PortRange> {
    const FORMS: &str = "LO-HI or `LO HI` as sysctl prints it (examples: 32768-60999, \"32768 60999\")";
    let t = s.trim();
    if t.is_empty() {
        return Err(Error::Input(format!("the port range is empty: give {FORMS}")));
    }
    let bad = || Error::Input(format!("`{}` is not a port range: give {FORMS}", s.escape_debug()));
    let (lo, hi) = match t.split_once('-') {
        Some(pair) => pair,
        None => match t.split_whitespace().collect::<Vec<_>>()[..] {
            [lo, hi] => (lo, hi),
            _ => return Err(bad()),
        },
    };
    let lo: u64 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u64 = hi.trim().parse().map_err(|_| bad())?;
    PortRange::new(lo, hi)
}

/// A topology of clients and servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Topology {
    /// Client IP addresses.
    pub client_ips: u64,
    /// Server IP addresses.
    pub server_ips: u64,
    /// Listening ports per server IP.
    pub server_ports: u64,
    /// The clients' ephemeral port range.
    #[serde(skip)]
    pub port_range: PortRange,
}

/// A count of connections and the formula behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quantity {
    /// Connections.
    pub connections: u128,
    /// How it is computed, over the result's own fields
    /// (`inputs.client_ips × port_range.size`); the numbers are in those
    /// fields, the human text writes them out.
    pub formula: &'static str,
}

/// A power of two too large to write out in most JSON readers: 2^144 is
/// above `u128`, so `connections` is a JSON number that is an integer when
/// it fits in 64 bits and a float (exact for a power of two) otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Power {
    /// `base^exponent` connections.
    #[serde(serialize_with = "whole_number")]
    pub connections: f64,
    /// 2.
    pub base: u32,
    /// The exponent.
    pub exponent: u32,
}

impl Power {
    /// `2^exponent`.
    pub fn of_two(exponent: u32) -> Power {
        Power { connections: 2f64.powi(exponent as i32), base: 2, exponent }
    }
}

/// Writes `v` as a JSON integer when it is a whole number below 2^64.
fn whole_number<S: serde::Serializer>(v: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && *v >= 0.0 && *v < 18_446_744_073_709_551_616.0 {
        s.serialize_u64(*v as u64)
    } else {
        s.serialize_f64(*v)
    }
}

/// The port range used and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RangeInfo {
    /// The first port.
    pub low: u16,
    /// The last port.
    pub high: u16,
    /// Ports in the range: `high - low + 1`.
    pub size: u64,
    /// Where it came from (`--port-range`, the sysctl file, or the default).
    pub source: String,
}

/// The result of `tcpmax calc`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calc {
    /// The port range used.
    pub port_range: RangeInfo,
    /// The topology.
    pub inputs: Topology,
    /// Per (client IP -> server IP:port): the ports the kernel can use.
    pub per_pair: Quantity,
    /// Per pair as `tcpmax load` plans it by default: its per-pair budget
    /// (a percentage of the range, see [`PairBudget`]), well under half of
    /// the range because connect slows down sharply past half.
    pub load_per_pair: Quantity,
    /// `tcpmax load`'s default per-pair budget (`{"percent": 40.0}`).
    pub load_pair_budget: PairBudget,
    /// Per client host holding all client IPs.
    pub per_client_host: Quantity,
    /// Per server listening socket, from these clients.
    pub per_server_socket: Quantity,
    /// For the whole topology.
    pub total: Quantity,
    /// What one IPv4 listening socket can tell apart: 2^48.
    pub theoretical_server_max_ipv4: Power,
    /// What one IPv6 listening socket can tell apart: 2^144.
    pub theoretical_server_max_ipv6: Power,
    /// Remarks.
    pub notes: Vec<String>,
}

/// Does the four-tuple arithmetic for `t`. `source` says where the port
/// range came from.
pub fn calc(t: &Topology, source: &str) -> Result<Calc> {
    for (what, n) in
        [("--client-ips", t.client_ips), ("--server-ips", t.server_ips), ("--server-ports", t.server_ports)]
    {
        if n == 0 {
            return Err(Error::Input(format!("{what} must be at least 1")));
        }
    }
    if t.server_ports > 65_535 {
        return Err(Error::Input(format!("--server-ports {}: an IP has at most 65,535 ports", t.server_ports)));
    }
    let r = t.port_range;
    let range = u128::from(r.size());
    let (c, s, p) = (u128::from(t.client_ips), u128::from(t.server_ips), u128::from(t.server_ports));
    let too_large = || Error::Input("the topology is too large to count in 128 bits".into());
    let all =
        c.checked_mul(s).and_then(|v| v.checked_mul(p)).and_then(|v| v.checked_mul(range)).ok_or_else(too_large)?;
    let per_socket = c.checked_mul(range).ok_or_else(too_large)?;
    let budget = PairBudget::default();
    let load_formula = match budget {
        PairBudget::Percent(_) => "floor(port_range.size × load_pair_budget.percent / 100)",
        PairBudget::Count(_) => "min(load_pair_budget.count, port_range.size)",
    };
    Ok(Calc {
        port_range: RangeInfo { low: r.lo, high: r.hi, size: r.size(), source: source.into() },
        inputs: *t,
        per_pair: Quantity { connections: range, formula: "port_range.high - port_range.low + 1" },
        load_per_pair: Quantity { connections: u128::from(budget.per_pair(r.size())), formula: load_formula },
        load_pair_budget: budget,
        per_client_host: Quantity { connections: all, formula: PRODUCT },
        per_server_socket: Quantity { connections: per_socket, formula: "inputs.client_ips × port_range.size" },
        total: Quantity { connections: all, formula: PRODUCT },
        theoretical_server_max_ipv4: Power::of_two(IPV4_EXPONENT),
        theoretical_server_max_ipv6: Power::of_two(IPV6_EXPONENT),
        notes: notes(),
    })
}

/// The formula of the whole topology.
const PRODUCT: &str = "inputs.client_ips × inputs.server_ips × inputs.server_ports × port_range.size";

fn notes() -> Vec<String> {
    vec![
        "per client host assumes the client does not bind, or binds with IP_BIND_ADDRESS_NO_PORT: the kernel then reuses a local port toward different destinations; binding to (ip, 0) without it caps each client IP at the range size over all destinations".into(),
        "per server socket in theory: 2^32 client IPs × 2^16 ports = 2^48 for IPv4, 2^128 × 2^16 = 2^144 for IPv6".into(),
    ]
}

/// The 65,535 myth, in a few lines.
pub const MYTH: &str = "The 65,535 myth: a port is 16 bits, but a connection is the four-tuple
(client IP, client port, server IP, server port). 65,535 (really the
ephemeral range, 28,232 by default) caps connections per (client IP ->
server IP:port) only. A server on one port accepts from every client IP
and port, and a client reuses its ports toward other destinations. What
caps a machine is descriptors, memory and conntrack: see `tcpmax doctor`.";

fn plural(n: u64, what: &str) -> String {
    let s = if n == 1 { "" } else { "s" };
    format!("{} {what}{s}", group(u128::from(n)))
}

/// The port range from `--port-range`, else the sysctl under `fs`, else the
/// Linux default; with where it came from.
pub fn resolve_range(arg: Option<&str>, fs: &ProcFs) -> Result<(PortRange, String)> {
    if let Some(s) = arg {
        return Ok((parse_port_range(s)?, "--port-range".into()));
    }
    const NAME: &str = "net.ipv4.ip_local_port_range";
    let read = fs.sysctl_values(NAME).map_err(|e| e.to_string());
    match read.and_then(|v| match v[..] {
        [lo, hi] => PortRange::new(lo, hi).map_err(|e| e.to_string()),
        _ => Err(format!("expected two ports, found {v:?}")),
    }) {
        Ok(r) => Ok((r, NAME.into())),
        Err(why) => Ok((DEFAULT_PORT_RANGE, format!("Linux default (this machine's range is unknown: {why})"))),
    }
}

/// The human text of a result: the formulas written out with the numbers.
pub fn render(c: &Calc, explain: bool) -> String {
    let r = &c.port_range;
    let t = &c.inputs;
    let ports = format!("{} ports", group(u128::from(r.size)));
    let product = format!(
        "{} × {} × {} × {ports}",
        plural(t.client_ips, "client IP"),
        plural(t.server_ips, "server IP"),
        plural(t.server_ports, "server port")
    );
    let mut out = String::new();
    let _ = writeln!(out, "Port range {}-{}: {ports} ({})", r.low, r.high, r.source);
    let rows = [
        (
            "per (client IP -> server IP:port)",
            &c.per_pair,
            format!("{} - {} + 1 = {ports}: what the kernel allows", r.high, r.low),
        ),
        (
            "per pair as `load` plans it",
            &c.load_per_pair,
            format!(
                "{} of {ports}: load's default --pair-budget, as connect slows down sharply past half",
                c.load_pair_budget
            ),
        ),
        ("per client host", &c.per_client_host, format!("{product} = {}", group(c.per_client_host.connections))),
        (
            "per server listening socket",
            &c.per_server_socket,
            format!(
                "{} × {ports} = {} from these clients",
                plural(t.client_ips, "client IP"),
                group(c.per_server_socket.connections)
            ),
        ),
        ("total for the topology", &c.total, format!("{product} = {}", group(c.total.connections))),
    ];
    let width = rows.iter().map(|(_, q, _)| group(q.connections).len()).max().unwrap_or(0);
    out.push('\n');
    for (label, q, formula) in rows {
        let n = group(q.connections);
        let _ = writeln!(out, "  {label:<34} {n:>width$}  = {formula}");
    }
    let _ = writeln!(out, "  {:<34} {THEORETICAL_IPV4}; IPv6 {THEORETICAL_IPV6}", "one listening socket, in theory");
    out.push_str("\nNotes\n");
    for note in &c.notes {
        let _ = writeln!(out, "  {note}");
    }
    if explain {
        let _ = writeln!(out, "\n{MYTH}");
    } else {
        let _ = writeln!(out, "\nWhy 65,535 is not the limit: tcpmax calc --explain");
    }
    out
}

/// Runs `tcpmax calc`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let fs = ProcFs::new(&args.root);
    let (port_range, source) = resolve_range(args.port_range.as_deref(), &fs)?;
    let topology = Topology {
        client_ips: args.client_ips,
        server_ips: args.server_ips,
        server_ports: args.server_ports,
        port_range,
    };
    let result = calc(&topology, &source)?;
    crate::output::emit(args.json.as_deref(), &result, &render(&result, args.explain))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests;
