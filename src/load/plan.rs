//! The address plan of `tcpmax load`: which (source IP, destination) pairs
//! carry how many connections, computed before any socket opens.
//!
//! # Rules
//!
//! - **Pairs.** A connection is its four-tuple, so the local ports run out
//!   per (source IP, destination), not per machine. The pairs are every
//!   source combined with every destination of the same family (an IPv4
//!   source never pairs with an IPv6 destination); with no source at all the
//!   kernel picks it, and each destination is one pair.
//! - **Per-pair budget.** A pair carries at most [`PairBudget`] connections:
//!   40% of the usable local port range by default (`ip_local_port_range`
//!   minus `ip_local_reserved_ports`; 28,232 ports for 32768-60999, so
//!   11,292), or a percentage or count the user gives. Why under half: on
//!   Linux 6.x `connect` slows down sharply once about half of a pair's
//!   ephemeral range is in use, because the kernel scans for a free port of
//!   the preferred parity. Measured with one source IP to one destination:
//!   10k connections in 0.28 s, 17k in 14 s, 19k in 46 s. Keeping every pair
//!   well under half keeps connect fast. A count above the usable range is
//!   cut to the range.
//! - **No per-source cap.** Sources are bound with IP_BIND_ADDRESS_NO_PORT,
//!   so the kernel picks the local port at connect time and one source IP
//!   reuses its ports across destinations: a single source may carry more
//!   than 65,535 connections spread over several destination ports
//!   (1 source × 4 destinations × 20,000 = 80,000).
//! - **Spread.** The count is spread over the pairs as evenly as possible:
//!   the first `count mod pairs` pairs carry one more than the rest. If
//!   `count > pairs × budget` the plan is refused with the arithmetic and
//!   how many more source IPs, or destinations, would make it fit.
//! - **Order.** Connection `i` goes to pair `i mod pairs` ([`Plan::pair_of`]),
//!   so consecutive connections go to different pairs and each pair gets
//!   exactly its count.
//! - **Loopback.** Every address of 127.0.0.0/8 is local on Linux with no
//!   setup, so a run against IPv4 loopback destinations without `--source`
//!   uses 127.0.0.1, 127.0.0.2, ... as many as the plan needs
//!   ([`auto_loopback_sources`]). IPv6 has a single loopback address, `::1`.

pub mod agents;
mod refuse;
mod source;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use serde::Serialize;

pub use source::{MAX_SOURCES, SourceSpec, expand_sources};

use crate::doctor::probe::parse_port_list;
use crate::doctor::usable_ports;
use crate::error::Error;
use crate::procfs::{ProcFs, ReadError};
use crate::units::{group, parse_count};

/// The default per-pair budget, percent of the usable local port range.
pub const DEFAULT_PAIR_PERCENT: f64 = 40.0;

/// A (source, destination) pair; no source: the kernel picks it.
type Pair = (Option<IpAddr>, SocketAddr);

/// Pairs listed by [`render`] before "... N more".
const RENDER_PAIRS: usize = 5;

/// How many connections one (source, destination) pair may carry.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PairBudget {
    /// Percent of the usable local port range, in (0, 100].
    Percent(f64),
    /// An absolute count (cut to the usable range).
    Count(u64),
}

impl Default for PairBudget {
    fn default() -> PairBudget {
        PairBudget::Percent(DEFAULT_PAIR_PERCENT)
    }
}

impl PairBudget {
    /// Connections per pair with `usable_ports` usable local ports.
    pub fn per_pair(self, usable_ports: u64) -> u64 {
        let n = match self {
            PairBudget::Percent(p) => (usable_ports as f64 * p / 100.0).floor() as u64,
            PairBudget::Count(c) => c,
        };
        n.min(usable_ports)
    }
}

impl FromStr for PairBudget {
    type Err = String;

    /// `40%` or a count (`15000`, `15k`).
    fn from_str(s: &str) -> Result<PairBudget, String> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            let v: f64 =
                p.trim().parse().map_err(|_| format!("`{s}` is not a percentage of the port range (example: 40%)"))?;
            if !(v > 0.0 && v <= 100.0) {
                return Err(format!("`{s}`: a percentage must be in (0, 100]"));
            }
            return Ok(PairBudget::Percent(v));
        }
        match parse_count(t)? {
            0 => Err(format!("`{s}`: a pair must carry at least 1 connection")),
            c => Ok(PairBudget::Count(c)),
        }
    }
}

impl fmt::Display for PairBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PairBudget::Percent(p) => write!(f, "{p}%"),
            PairBudget::Count(c) => write!(f, "{}", group(*c)),
        }
    }
}

/// The connections of one (source, destination) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PairLoad {
    /// The source IP to bind; None: the kernel picks it.
    pub source: Option<IpAddr>,
    /// The destination.
    pub dest: SocketAddr,
    /// Connections of this pair.
    pub count: u64,
}

/// Which pairs carry how many connections.
///
/// Invariant kept by [`plan`]: the pair counts differ by at most one, the
/// larger ones first, and sum to `count`; [`Plan::pair_of`] relies on it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Every pair, in connection order.
    pub pairs: Vec<PairLoad>,
    /// Connections in total.
    pub count: u64,
    /// The most connections one pair may carry.
    pub per_pair_budget: u64,
    /// The budget as given.
    pub budget: PairBudget,
    /// Usable local ports per pair.
    pub usable_ports: u64,
    /// Distinct source IPs in the pairs (0: the kernel picks).
    pub sources: usize,
    /// Distinct destinations in the pairs.
    pub destinations: usize,
}

impl Plan {
    /// The pair of connection `i` (0..count): pair `i mod pairs`. None when
    /// `i` is out of range. O(1), nothing materialised.
    pub fn pair_of(&self, i: u64) -> Option<(Option<IpAddr>, SocketAddr)> {
        if i >= self.count || self.pairs.is_empty() {
            return None;
        }
        let p = self.pairs.get((i % self.pairs.len() as u64) as usize)?;
        Some((p.source, p.dest))
    }

    /// The most connections any pair carries.
    pub fn max_per_pair(&self) -> u64 {
        self.pairs.iter().map(|p| p.count).max().unwrap_or(0)
    }
}

/// Spreads `count` connections over every (source, destination) pair of the
/// same family, each pair at most `budget` of `usable_ports`.
///
/// Duplicate targets and sources count once. No pair left (no target, or no
/// source of a target's family) is [`Error::Input`]; a count that does not
/// fit is [`Error::Refused`] with the arithmetic and the fix.
pub fn plan(
    count: u64,
    targets: &[SocketAddr],
    sources: &[IpAddr],
    usable_ports: u64,
    budget: PairBudget,
) -> Result<Plan, Error> {
    let (targets, sources) = (distinct(targets), distinct(sources));
    let pairs = pair_up(&sources, &targets)?;
    let shape = Shape::of(&pairs);
    let per_pair = budget.per_pair(usable_ports);
    let n = pairs.len() as u64;
    if u128::from(count) > u128::from(per_pair) * u128::from(n) {
        return Err(refuse::refusal(count, &shape, &pairs, per_pair, usable_ports, budget));
    }
    let (base, extra) = (count / n, count % n);
    let pairs = pairs
        .into_iter()
        .zip(0u64..)
        .map(|((source, dest), k)| PairLoad { source, dest, count: base + u64::from(k < extra) })
        .collect();
    Ok(Plan {
        pairs,
        count,
        per_pair_budget: per_pair,
        budget,
        usable_ports,
        sources: shape.sources,
        destinations: shape.destinations,
    })
}

/// Source IPs for a run against loopback destinations without `--source`:
/// 127.0.0.1, 127.0.0.2, ... enough for `count` to fit the IPv4 loopback
/// targets, plus `::1` when a target is IPv6 loopback. Empty when a target
/// is not loopback (the kernel then picks the source).
pub fn auto_loopback_sources(count: u64, targets: &[SocketAddr], usable_ports: u64, budget: PairBudget) -> Vec<IpAddr> {
    let targets = distinct(targets);
    if targets.is_empty() || !targets.iter().all(|t| t.ip().is_loopback()) {
        return Vec::new();
    }
    let n = auto_loopback4_count(count, &targets, usable_ports, budget) as u32;
    let mut out: Vec<IpAddr> = (0..n).map(|k| IpAddr::V4(Ipv4Addr::from(agents::LOOPBACK_FIRST + k))).collect();
    if targets.iter().any(SocketAddr::is_ipv6) {
        out.push(IpAddr::V6(Ipv6Addr::LOCALHOST));
    }
    out
}

/// How many IPv4 loopback sources [`auto_loopback_sources`] takes for
/// `count`: 0 when a target is not loopback or none is IPv4, else at least 1
/// and at most [`MAX_SOURCES`].
pub fn auto_loopback4_count(count: u64, targets: &[SocketAddr], usable_ports: u64, budget: PairBudget) -> u64 {
    let targets = distinct(targets);
    if targets.is_empty() || !targets.iter().all(|t| t.ip().is_loopback()) {
        return 0;
    }
    let d4 = targets.iter().filter(|t| t.is_ipv4()).count() as u64;
    if d4 == 0 {
        return 0;
    }
    let d6 = targets.len() as u64 - d4;
    let pairs_needed = count.div_ceil(budget.per_pair(usable_ports).max(1));
    pairs_needed.saturating_sub(d6).div_ceil(d4).clamp(1, MAX_SOURCES)
}

/// Usable local ports per pair on this machine: `ip_local_port_range`
/// minus the `ip_local_reserved_ports` inside it (none when that file is
/// missing).
pub fn usable_local_ports(fs: &ProcFs) -> Result<u64, ReadError> {
    const RANGE: &str = "net.ipv4.ip_local_port_range";
    const RESERVED: &str = "net.ipv4.ip_local_reserved_ports";
    let malformed = |name: &str, what: String| ReadError::Malformed { path: fs.path(&ProcFs::sysctl_rel(name)), what };
    let (lo, hi) = match fs.sysctl_values(RANGE)?[..] {
        [lo, hi] if lo <= hi => (lo, hi),
        ref v => return Err(malformed(RANGE, format!("expected `lo hi`, found {v:?}"))),
    };
    let reserved = match fs.read(&ProcFs::sysctl_rel(RESERVED)) {
        Ok(text) => parse_port_list(&text).map_err(|why| malformed(RESERVED, why))?,
        Err(ReadError::Missing(_)) => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok(usable_ports(lo, hi, &reserved))
}

/// A few lines for humans: totals, the per-pair maximum, the budget and
/// why, the first pairs.
pub fn render(plan: &Plan) -> String {
    let mut out = format!(
        "{} connections over {} (source, destination) pairs: {} × {}\n",
        group(plan.count),
        group(plan.pairs.len() as u64),
        sources_phrase(plan.sources),
        plural(plan.destinations as u64, "destination"),
    );
    out += &format!(
        "at most {} per pair; budget {} of {} usable local ports: connect slows down sharply past half of a pair's ports\n",
        group(plan.max_per_pair()),
        budget_phrase(plan.budget, plan.per_pair_budget),
        group(plan.usable_ports),
    );
    for p in plan.pairs.iter().take(RENDER_PAIRS) {
        let src = p.source.map_or("(kernel)".to_string(), |s| s.to_string());
        out += &format!("  {src} -> {}  {}\n", p.dest, group(p.count));
    }
    if plan.pairs.len() > RENDER_PAIRS {
        out += &format!("  ... {} more\n", group((plan.pairs.len() - RENDER_PAIRS) as u64));
    }
    out
}

/// Distinct sources and destinations among the pairs.
struct Shape {
    sources: usize,
    destinations: usize,
}

impl Shape {
    fn of(pairs: &[Pair]) -> Shape {
        let sources: HashSet<_> = pairs.iter().filter_map(|p| p.0).collect();
        let destinations: HashSet<_> = pairs.iter().map(|p| p.1).collect();
        Shape { sources: sources.len(), destinations: destinations.len() }
    }
}

/// The pairs in connection order: destinations outer, sources inner.
fn pair_up(sources: &[IpAddr], targets: &[SocketAddr]) -> Result<Vec<Pair>, Error> {
    if targets.is_empty() {
        return Err(Error::Input("no destination to connect to".into()));
    }
    if sources.is_empty() {
        return Ok(targets.iter().map(|t| (None, *t)).collect());
    }
    let pairs: Vec<_> = targets
        .iter()
        .flat_map(|t| {
            let same = sources.iter().filter(|s| s.is_ipv4() == t.is_ipv4());
            same.map(|s| (Some(*s), *t))
        })
        .collect();
    if pairs.is_empty() {
        return Err(Error::Input(
            "no --source has the family of a destination: IPv4 sources connect to IPv4 destinations, IPv6 to IPv6"
                .into(),
        ));
    }
    Ok(pairs)
}

fn distinct<T: Copy + Eq + Hash>(items: &[T]) -> Vec<T> {
    let mut seen = HashSet::new();
    items.iter().copied().filter(|x| seen.insert(*x)).collect()
}

/// `40% (11,292)`, `20,000`, or `28,232 (50,000 asked)` when a count is
/// cut to the range.
fn budget_phrase(budget: PairBudget, per_pair: u64) -> String {
    match budget {
        PairBudget::Percent(p) => format!("{p}% ({})", group(per_pair)),
        PairBudget::Count(c) if c > per_pair => {
            format!("{} ({} asked)", group(per_pair), group(c))
        }
        PairBudget::Count(_) => group(per_pair),
    }
}

fn sources_phrase(sources: usize) -> String {
    match sources {
        0 => "1 source (picked by the kernel)".into(),
        n => plural(n as u64, "source"),
    }
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 { format!("1 {word}") } else { format!("{} {word}s", group(n)) }
}
