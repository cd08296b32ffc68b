//! How many shards: derived from the target and the fd limit, never fixed,
//! and never more than the connections need or the machine can run
//! ([`max_shards`]).

use crate::procfs::ProcFs;
use crate::units::{group, human_bytes};

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

/// Memory one shard thread is counted at when bounding shards by memory:
/// its stack as far as it is touched, its epoll instance and its tables.
pub const SHARD_THREAD_BYTES: u64 = 64 * 1024;

/// The most shards tcpmax runs, whatever the machine allows: 4,096 tables of
/// even 1,024 descriptors hold four million sockets, and more threads than
/// that only add scheduling cost.
pub const MAX_SHARDS: usize = 4096;

/// Threads kept for everything else in the process (supervisor, metrics,
/// the other side of a bench).
pub const THREAD_HEADROOM: u64 = 16;

/// What limits the number of threads this process can start; `None` where
/// unknown or unlimited (it then bounds nothing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadLimits {
    /// RLIMIT_NPROC soft: tasks of this user.
    pub nproc: Option<u64>,
    /// kernel.threads-max: tasks on the machine.
    pub threads_max: Option<u64>,
    /// kernel.pid_max: every thread takes a pid.
    pub pid_max: Option<u64>,
    /// Memory really free for new threads, in bytes.
    pub memory: Option<u64>,
}

impl ThreadLimits {
    /// Reads the limits of this process and machine.
    pub fn read(fs: &ProcFs) -> ThreadLimits {
        let nproc = crate::sys::process::getrlimit(crate::sys::process::Resource::NProc)
            .ok()
            .map(|l| l.soft)
            .filter(|&v| v != u64::MAX);
        ThreadLimits {
            nproc,
            threads_max: fs.sysctl_u64("kernel.threads-max").ok(),
            pid_max: fs.sysctl_u64("kernel.pid_max").ok(),
            memory: fs.meminfo().ok().map(|m| m.really_free()),
        }
    }
}

/// The most shards a run may use, and which limit sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardBound {
    /// The most shards (at least 1).
    pub max: usize,
    /// Why: the limit that sets `max`, in words.
    pub why: String,
}

/// The most shards for `connections` sockets: never more shards than
/// connections (a shard without one is an idle thread), never more threads
/// than RLIMIT_NPROC, kernel.threads-max or kernel.pid_max allow (less
/// [`THREAD_HEADROOM`]), nor than free memory at [`SHARD_THREAD_BYTES`] a
/// thread, and never more than [`MAX_SHARDS`]. The smallest wins; the first
/// listed wins a tie.
pub fn max_shards(connections: u64, limits: &ThreadLimits) -> ShardBound {
    let threads = |what: &str, v: u64| {
        let n = v.saturating_sub(THREAD_HEADROOM);
        (n, format!("{what} allows {} threads, {} kept for the rest of the process", group(v), THREAD_HEADROOM))
    };
    let mut candidates: Vec<(u64, String)> = vec![(
        connections,
        format!("no more shards than the {} connections: a shard without one is an idle thread", group(connections)),
    )];
    if let Some(v) = limits.nproc {
        candidates.push(threads("RLIMIT_NPROC", v));
    }
    if let Some(v) = limits.threads_max {
        candidates.push(threads("kernel.threads-max", v));
    }
    if let Some(v) = limits.pid_max {
        candidates.push(threads("kernel.pid_max", v));
    }
    if let Some(m) = limits.memory {
        candidates.push((
            m / SHARD_THREAD_BYTES,
            format!("{} of memory free at {} per shard thread", human_bytes(m), human_bytes(SHARD_THREAD_BYTES)),
        ));
    }
    candidates.push((MAX_SHARDS as u64, format!("tcpmax runs at most {} shards", group(MAX_SHARDS as u64))));
    let mut best = (u64::MAX, String::new());
    for c in candidates {
        if c.0 < best.0 {
            best = c;
        }
    }
    // At most MAX_SHARDS here, so the cast cannot truncate.
    ShardBound { max: best.0.clamp(1, MAX_SHARDS as u64) as usize, why: best.1 }
}

impl ShardBound {
    /// Checks a `--shards N` given on the command line against the bound.
    pub fn check(&self, n: usize) -> crate::Result<usize> {
        if n == 0 {
            return Err(crate::Error::Input("--shards must be at least 1".into()));
        }
        if n > self.max {
            return Err(crate::Error::Refused {
                reason: format!(
                    "--shards {} is more than this run can use: at most {} ({})",
                    group(n as u64),
                    group(self.max as u64),
                    self.why
                ),
                fix: format!("--shards {} or fewer, or leave --shards out to derive it", group(self.max as u64)),
            });
        }
        Ok(n)
    }
}

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

    const ROOMY: ThreadLimits =
        ThreadLimits { nproc: Some(96_365), threads_max: Some(192_730), pid_max: Some(32_768), memory: Some(24 << 30) };

    #[test]
    fn bound_by_connections() {
        let b = max_shards(100, &ROOMY);
        assert_eq!(b.max, 100);
        assert!(b.why.contains("100 connections"), "{}", b.why);
        // Zero connections still allow one shard.
        assert_eq!(max_shards(0, &ROOMY).max, 1);
    }

    #[test]
    fn bound_by_the_absolute_cap() {
        let b = max_shards(5_000_000, &ROOMY);
        assert_eq!(b.max, MAX_SHARDS);
        assert!(b.why.contains("at most 4,096"), "{}", b.why);
        // Nothing known: still the cap.
        assert_eq!(max_shards(u64::MAX, &ThreadLimits::default()).max, MAX_SHARDS);
    }

    #[test]
    fn bound_by_threads_and_memory() {
        let nproc = ThreadLimits { nproc: Some(1_000), ..ROOMY };
        let b = max_shards(1_000_000, &nproc);
        assert_eq!(b.max, 1_000 - THREAD_HEADROOM as usize);
        assert!(b.why.starts_with("RLIMIT_NPROC allows 1,000 threads"), "{}", b.why);

        let threads = ThreadLimits { threads_max: Some(500), ..ROOMY };
        assert!(max_shards(1_000_000, &threads).why.starts_with("kernel.threads-max"));

        let pids = ThreadLimits { pid_max: Some(300), ..ROOMY };
        assert_eq!(max_shards(1_000_000, &pids).max, 284);

        // 64 MiB free: 1,024 threads of 64 KiB.
        let memory = ThreadLimits { memory: Some(64 << 20), ..ROOMY };
        let b = max_shards(1_000_000, &memory);
        assert_eq!(b.max, 1_024);
        assert!(b.why.contains("64.0 MiB of memory"), "{}", b.why);

        // A limit below the headroom still leaves one shard.
        let tiny = ThreadLimits { nproc: Some(3), ..ROOMY };
        assert_eq!(max_shards(1_000_000, &tiny).max, 1);
    }
}
