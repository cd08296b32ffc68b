//! One plan split over N agents: the pure arithmetic behind
//! `tcpmax load --agents N --agent-index I`.
//!
//! # Rules
//!
//! - **Shares.** A whole of `total` items (connections, connects per second,
//!   pings per second) splits into `total / N` per agent, and the first
//!   `total mod N` agents carry one more ([`share`]). The N shares add up to
//!   the whole exactly and differ by at most one.
//! - **Order.** Agent `I` carries the whole plan's connections
//!   `offset(I) .. offset(I) + share(I)`, where [`offset`] is the sum of the
//!   shares before it: the agents cut the whole plan's connection numbering
//!   into consecutive blocks.
//! - **Destinations.** The whole plan sends connection `j` to destination
//!   `j mod D`. Agent `I` rotates its destination list by its offset
//!   ([`rotate`]), so its own connection `k` goes where the whole plan's
//!   connection `offset + k` goes: when each agent has one source address
//!   (a pod, a host), the connections per destination summed over the
//!   agents are exactly those of the whole plan.
//! - **Loopback sources.** Agents on one host against loopback destinations
//!   take disjoint ranges of 127.0.0.0/8: agent `I`'s automatic sources start
//!   right after agent `I-1`'s ([`first_source`]), so their port ranges never
//!   meet. On separate hosts each agent uses its own host's addresses.

use std::net::Ipv4Addr;

use crate::error::Error;
use crate::units::group;

/// The first automatic loopback source of a single run, 127.0.0.1.
pub const LOOPBACK_FIRST: u32 = 0x7f00_0001;

/// The last usable address of 127.0.0.0/8 (127.255.255.255 is broadcast).
pub const LOOPBACK_LAST: u32 = 0x7fff_fffe;

/// Agent `index`'s share of `total` over `agents`: `total / agents`, one
/// more for the first `total mod agents` agents. Zero when `agents` is zero
/// or `index` is out of range.
pub fn share(total: u64, agents: u64, index: u64) -> u64 {
    if agents == 0 || index >= agents {
        return 0;
    }
    total / agents + u64::from(index < total % agents)
}

/// Where agent `index`'s share starts in the whole: the sum of the shares
/// of agents `0 .. index`.
pub fn offset(total: u64, agents: u64, index: u64) -> u64 {
    if agents == 0 {
        return 0;
    }
    let index = index.min(agents);
    index * (total / agents) + index.min(total % agents)
}

/// `items` rotated left by `by`: element `k` of the result is element
/// `(k + by) mod len` of `items`.
pub fn rotate<T: Clone>(items: &[T], by: u64) -> Vec<T> {
    if items.is_empty() {
        return Vec::new();
    }
    let by = (by % items.len() as u64) as usize;
    items[by..].iter().chain(&items[..by]).cloned().collect()
}

/// The first automatic loopback source of agent `index` (as an integer):
/// 127.0.0.1 plus the sources of every agent before it, where
/// `sources_for(share)` says how many sources a share needs.
pub fn first_source(total: u64, agents: u64, index: u64, sources_for: impl Fn(u64) -> u64) -> u64 {
    let before: u64 = (0..index.min(agents)).map(|j| sources_for(share(total, agents, j))).sum();
    u64::from(LOOPBACK_FIRST) + before
}

/// The inclusive loopback range of `n` sources from `first`, refused when
/// it runs past 127.255.255.254.
pub fn loopback_range(first: u64, n: u64) -> Result<(Ipv4Addr, Ipv4Addr), Error> {
    let last = first + n.max(1) - 1;
    if last > u64::from(LOOPBACK_LAST) {
        return Err(Error::Input(format!(
            "the agents on this host need {} loopback source addresses, more than 127.0.0.0/8 has; use fewer agents per host or give each its own --source",
            group(last - u64::from(LOOPBACK_FIRST) + 1)
        )));
    }
    Ok((Ipv4Addr::from(first as u32), Ipv4Addr::from(last as u32)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_exactly_and_differ_by_at_most_one() {
        for total in [0u64, 1, 3, 4, 5, 7, 100, 400_000, 400_003, 1_000_001] {
            for agents in 1..=9u64 {
                let shares: Vec<u64> = (0..agents).map(|i| share(total, agents, i)).collect();
                assert_eq!(shares.iter().sum::<u64>(), total, "{total} over {agents}");
                let (lo, hi) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
                assert!(hi - lo <= 1, "{total} over {agents}: {shares:?}");
                // The larger shares come first.
                assert!(shares.windows(2).all(|w| w[0] >= w[1]), "{shares:?}");
                // Offsets are the running sums; the last block ends at the total.
                let mut sum = 0;
                for (i, s) in shares.iter().enumerate() {
                    assert_eq!(offset(total, agents, i as u64), sum);
                    sum += s;
                }
                assert_eq!(offset(total, agents, agents), total);
            }
        }
        assert_eq!([0, 1, 2, 3].map(|i| share(10, 4, i)), [3, 3, 2, 2]);
        assert_eq!([0, 1, 2, 3].map(|i| share(400_000, 4, i)), [100_000; 4]);
        assert_eq!((share(10, 0, 0), share(10, 4, 4), offset(10, 0, 3)), (0, 0, 0));
    }

    #[test]
    fn rotation() {
        assert_eq!(rotate(&[1, 2, 3], 0), [1, 2, 3]);
        assert_eq!(rotate(&[1, 2, 3], 1), [2, 3, 1]);
        assert_eq!(rotate(&[1, 2, 3], 5), [3, 1, 2]);
        assert!(rotate::<u8>(&[], 3).is_empty());
    }

    /// With one source per agent, the connections per destination summed
    /// over the agents are those of the whole plan: connection `j` of the
    /// whole goes to destination `j mod D`, and each agent's local
    /// connection `k` to its rotated list's `k mod D`.
    #[test]
    fn rotated_destinations_add_up_to_the_whole_plan() {
        for (total, agents, dests) in [(10u64, 3u64, 4usize), (400_003, 4, 8), (7, 7, 3), (5, 2, 1), (1_001, 6, 7)] {
            let targets: Vec<usize> = (0..dests).collect();
            let mut whole = vec![0u64; dests];
            for j in 0..total {
                whole[(j % dests as u64) as usize] += 1;
            }
            let mut summed = vec![0u64; dests];
            for i in 0..agents {
                let mine = rotate(&targets, offset(total, agents, i));
                let n = share(total, agents, i);
                // The plan spreads a share evenly, the first pairs one more.
                for (k, d) in mine.iter().enumerate() {
                    summed[*d] += n / dests as u64 + u64::from((k as u64) < n % dests as u64);
                }
            }
            assert_eq!(summed, whole, "{total} over {agents} agents to {dests} destinations");
        }
    }

    #[test]
    fn loopback_sources_are_disjoint_per_agent() {
        // Each share of 100,000 needs 9 sources at 11,292 per pair.
        let need = |share: u64| share.div_ceil(11_292);
        let starts: Vec<u64> = (0..4).map(|i| first_source(400_000, 4, i, need)).collect();
        assert_eq!(starts, [0x7f00_0001, 0x7f00_000a, 0x7f00_0013, 0x7f00_001c]);
        let ranges: Vec<_> = (0..4).map(|i| loopback_range(starts[i], need(100_000)).unwrap()).collect();
        assert_eq!(ranges[0], (Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 9)));
        assert_eq!(ranges[1], (Ipv4Addr::new(127, 0, 0, 10), Ipv4Addr::new(127, 0, 0, 18)));
        for w in ranges.windows(2) {
            assert!(w[0].1 < w[1].0, "{w:?}");
        }
        assert!(loopback_range(u64::from(LOOPBACK_LAST), 1).is_ok());
        assert!(matches!(loopback_range(u64::from(LOOPBACK_LAST), 2), Err(Error::Input(_))));
    }
}
