//! The budget of incomplete input a `serve --mode ws|mqtt` holds: header
//! blocks, frames and packets split over reads, across every connection of
//! every shard (#17: 4,000 connections each holding most of a 64 KiB frame
//! pinned 257 MB).

use std::sync::atomic::{AtomicU64, Ordering};

/// The bytes of incomplete units (header blocks, frames, packets) that all
/// connections of all shards may hold at once. A connection whose input
/// would go past it is closed ([`crate::proto::Fault::PartialBudget`]); the others keep
/// what they hold. Counted by buffer capacity, what the allocator gave.
#[derive(Debug)]
pub struct InputBudget {
    used: AtomicU64,
    limit: AtomicU64,
    /// Bytes given back, ever: the supervisor trims the heap after it grew.
    released: AtomicU64,
}

impl InputBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> InputBudget {
        InputBudget { used: AtomicU64::new(0), limit: AtomicU64::new(limit), released: AtomicU64::new(0) }
    }

    /// Sets the limit (what is held stays held).
    pub fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Bytes given back since the start.
    pub fn released(&self) -> u64 {
        self.released.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes; false, taking nothing, when that passes the limit.
    pub(crate) fn take(&self, n: u64) -> bool {
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.limit() {
            self.used.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub(crate) fn give(&self, n: u64) {
        if n > 0 {
            self.used.fetch_sub(n, Ordering::Relaxed);
            self.released.fetch_add(n, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_past_the_limit_is_refused_and_the_rest_keep_theirs() {
        let b = InputBudget::new(100);
        assert!(b.take(60));
        assert!(!b.take(41), "past the limit: refused, nothing taken");
        assert_eq!(b.used(), 60);
        assert!(b.take(40));
        b.give(60);
        assert_eq!((b.used(), b.released()), (40, 60));
        b.set_limit(30);
        assert_eq!(b.used(), 40, "what is held stays held");
        assert!(!b.take(1));
    }
}
