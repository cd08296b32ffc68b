//! The memory guard of `tcpmax bench`: stop opening connections before the
//! machine is in danger.
//!
//! The rule: stop the ramp once **really free** memory falls below the
//! doctor's safety margin, `max(10% of MemTotal, 256 MiB)`. Really free is
//! `MemFree + Buffers + Cached - Shmem` ([`Meminfo::really_free`]): it counts
//! every slab byte as used. `MemAvailable` is not used because it counts half
//! of the "reclaimable" slab as free, and while sockets are open their
//! inodes and dentries (`sock_inode_cache`, `dentry`) are pinned and cannot
//! be reclaimed, so it over-states what is left more and more as connections
//! grow. The guard and the doctor's prediction share the margin, so a target
//! the doctor admits should not trip it.

use crate::doctor::margin;
use crate::procfs::Meminfo;
use crate::units::human_bytes;

/// The guard's floor for a machine with `total` bytes of memory.
pub fn floor(total: u64) -> u64 {
    margin(total)
}

/// Why the guard trips for this reading, or `None` while there is room.
pub fn check(m: &Meminfo) -> Option<String> {
    let floor = floor(m.total);
    let free = m.really_free();
    (free < floor).then(|| {
        format!(
            "memory guard: really free memory {} fell below the floor {} (max(10% of MemTotal, 256 MiB))",
            human_bytes(free),
            human_bytes(floor)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(total_gib: u64, free_gib: u64) -> Meminfo {
        Meminfo { total: total_gib << 30, free: free_gib << 30, available: free_gib << 30, ..Default::default() }
    }

    #[test]
    fn trips_below_the_margin_only() {
        assert_eq!(check(&mem(20, 10)), None);
        assert_eq!(check(&mem(20, 2)), None); // exactly 10%
        let why = check(&mem(20, 1)).expect("trips");
        assert!(why.contains("memory guard") && why.contains("2.0 GiB"), "{why}");
        // A small machine keeps at least 256 MiB.
        assert_eq!(floor(1 << 30), 256 << 20);
    }

    #[test]
    fn pinned_slab_counts_as_used() {
        // MemAvailable would say 6 GiB; really free is 1 GiB + 0 cache.
        let m = Meminfo {
            total: 20 << 30,
            free: 1 << 30,
            available: 6 << 30,
            slab_reclaimable: 10 << 30,
            ..Default::default()
        };
        assert!(check(&m).is_some());
    }
}
