//! How many shards: derived from the target and the fd limit, never fixed.

/// Descriptors kept free in every shard for its own epoll instance, doorbell,
/// listeners and stdio.
pub const HEADROOM_FDS: u64 = 64;

/// The shard layout for a target number of sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ShardPlan {
    /// Number of shards.
    pub shards: usize,
    /// Sockets one shard may hold (its fd limit minus headroom).
    pub per_shard: u64,
}

/// Shards needed to hold `sockets` sockets when one fd table allows
/// `nofile` descriptors: enough tables to fit them with headroom, and at least
/// one per core so every core runs an event loop.
pub fn plan(sockets: u64, nofile: u64, cores: usize) -> ShardPlan {
    let per_shard = nofile.saturating_sub(HEADROOM_FDS).max(1);
    let needed = sockets.div_ceil(per_shard);
    let shards = (needed.min(usize::MAX as u64) as usize).max(cores.max(1));
    ShardPlan { shards, per_shard }
}

/// Shards for a server, where SO_REUSEPORT spreads connections by a hash of
/// the four-tuple rather than evenly: the busiest shard of many gets several
/// standard deviations above the mean (at 1M over 51 shards, 19,865 against
/// a mean of 19,608, a few dozen under the limit). Planning each shard to 90%
/// of its descriptors keeps the busiest one clear of EMFILE.
pub fn plan_hashed(sockets: u64, nofile: u64, cores: usize) -> ShardPlan {
    let per_shard = nofile.saturating_sub(HEADROOM_FDS).max(1);
    let fill = (per_shard * 9 / 10).max(1);
    let shards = (sockets.div_ceil(fill).min(usize::MAX as u64) as usize).max(cores.max(1));
    ShardPlan { shards, per_shard }
}

/// Most shards worth running for `connections` with `nofile` descriptors
/// per table: enough tables for every connection with room to spare, never
/// more than one per connection, and never past a fixed cap that keeps the
/// thread count sane on any machine.
pub fn max_shards(connections: u64, nofile: u64) -> usize {
    let per_shard = nofile.saturating_sub(HEADROOM_FDS).max(1);
    let needed = connections.div_ceil(per_shard).saturating_mul(2).max(cores() as u64 * 2);
    needed.min(connections.max(1)).min(MAX_SHARDS as u64) as usize
}

/// The most shards one process runs, whatever is asked: 4,096 threads of
/// fd tables of 20,000 hold 80 million sockets, past any machine's memory.
pub const MAX_SHARDS: usize = 4096;

/// The number of cores this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_from_target_and_limit() {
        // 20,000 fds per table: 19,936 usable.
        assert_eq!(plan(50_000, 20_000, 2), ShardPlan { shards: 3, per_shard: 19_936 });
        assert_eq!(plan(500_000, 20_000, 2).shards, 26);
        // A tuned machine: one per core.
        assert_eq!(plan(500_000, 1_048_576, 2).shards, 2);
        assert_eq!(plan(0, 20_000, 2).shards, 2);
        // Hashed spread: 90% fill.
        assert_eq!(plan_hashed(1_000_000, 20_000, 2).shards, 56);
        assert_eq!(plan_hashed(500_000, 20_000, 2).shards, 28);
        // A silly limit never divides by zero.
        assert_eq!(plan(10, 3, 1), ShardPlan { shards: 10, per_shard: 1 });
    }
}
