//! The refusal of a plan that does not fit: the arithmetic, and how many
//! more source IPs or destination ports would make it fit. Each added source
//! brings one pair per destination of its family, each added destination
//! port one pair per source; with the kernel picking the source, `--source`
//! replaces that one address, so it is counted among those to give. On IPv4
//! loopback the fix names a concrete range of 127.0.0.0/8.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Pair, PairBudget, Shape, budget_phrase, plural, sources_phrase};
use crate::error::Error;
use crate::units::group;

/// The refusal of a count above `pairs × per_pair`.
pub(super) fn refusal(
    count: u64,
    shape: &Shape,
    pairs: &[Pair],
    per_pair: u64,
    usable: u64,
    budget: PairBudget,
) -> Error {
    let n = pairs.len() as u64;
    let reason = format!(
        "-c {} to {} from {} needs {} ports of each (source, destination) pair; the range gives {} per pair and tcpmax uses at most {} to keep connect fast",
        group(count),
        plural(shape.destinations as u64, "destination"),
        sources_phrase(shape.sources),
        group(count.div_ceil(n)),
        group(usable),
        budget_phrase(budget, per_pair),
    );
    if per_pair == 0 {
        let fix = "widen the local port range: sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"";
        return Error::Refused { reason, fix: fix.into() };
    }
    let missing = count.div_ceil(per_pair) - n;
    let dests = shape.destinations as u64;
    let more_sources = missing.div_ceil(dests.max(1));
    let more_dests = missing.div_ceil((shape.sources as u64).max(1));
    let fix = format!(
        "{} or {}",
        add_sources(pairs, shape.sources, more_sources),
        plural(more_dests, "more destination port")
    );
    Error::Refused { reason, fix }
}

/// The source half of a refusal's fix: a concrete loopback range when the
/// sources are IPv4 loopback, else how many addresses to add.
fn add_sources(pairs: &[Pair], sources: usize, more: u64) -> String {
    let what = if sources == 0 { "source IPs" } else { "more source IPs" };
    // With the kernel picking, --source replaces its one address: count it too.
    let total = if sources == 0 { more + 1 } else { more };
    if let Some(first) = next_loopback4(pairs) {
        let last = u64::from(first) + total - 1;
        if last <= u64::from(LOOPBACK4_LAST) {
            let (a, b) = (Ipv4Addr::from(first), Ipv4Addr::from(last as u32));
            return format!("add --source {a}-{b} ({} {what})", group(total));
        }
    }
    if pairs.iter().all(|(_, d)| d.ip() == IpAddr::V6(Ipv6Addr::LOCALHOST)) {
        return "use IPv4 loopback destinations (::1 is the only IPv6 loopback address)".into();
    }
    format!("add {} {what} of this machine with --source (a range or CIDR)", group(total))
}

/// The last usable address of 127.0.0.0/8 (127.255.255.255 is broadcast).
const LOOPBACK4_LAST: u32 = 0x7fff_fffe;

/// When every pair's source is IPv4 loopback (the kernel's pick being
/// 127.0.0.1 for a loopback destination), the first address to add: one past
/// the highest source, or 127.0.0.1 when the kernel picks.
fn next_loopback4(pairs: &[Pair]) -> Option<u32> {
    let mut highest = None;
    for (source, dest) in pairs {
        match source.unwrap_or(dest.ip()) {
            IpAddr::V4(v4) if v4.is_loopback() => {
                highest = highest.max(source.map(|_| u32::from(v4)));
            }
            _ => return None,
        }
    }
    Some(highest.map_or(0x7f00_0001, |h| h + 1))
}
