//! A connection table indexed by file descriptor.
//!
//! The kernel hands out the lowest free descriptor, so a shard's fds are
//! dense in `0..RLIMIT_NOFILE` and a `Vec` indexed by fd is the most compact
//! map there is. The vector grows on demand, so pages are touched only for
//! descriptors actually used.

use std::os::fd::RawFd;

/// Records of type `T` indexed by fd; `T::default()` means "no connection".
#[derive(Debug)]
pub struct ConnTable<T> {
    slots: Vec<T>,
    open: usize,
    /// Slots never grow past this (the fd table's limit).
    limit: usize,
}

/// A per-connection record: `is_open` tells a live slot from a free one.
pub trait Record: Copy + Default {
    /// True when the slot holds a connection.
    fn is_open(&self) -> bool;
}

impl<T: Record> ConnTable<T> {
    /// An empty table.
    pub fn new() -> Self {
        ConnTable::with_limit(usize::MAX)
    }

    /// An empty table that never allocates more than `limit` slots (the fd
    /// limit: no descriptor can be higher), unless a higher fd shows up.
    pub fn with_limit(limit: usize) -> Self {
        ConnTable { slots: Vec::new(), open: 0, limit }
    }

    /// Number of open connections.
    pub fn len(&self) -> usize {
        self.open
    }

    /// True when no connection is open.
    pub fn is_empty(&self) -> bool {
        self.open == 0
    }

    /// Number of slots (highest fd seen + 1).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Inserts a record for `fd` (which must be free).
    pub fn insert(&mut self, fd: RawFd, rec: T) {
        let i = fd as usize;
        if i >= self.slots.len() {
            let grown = (self.slots.len() * 2).max(64).min(self.limit).max(i + 1);
            self.slots.resize(grown, T::default());
        }
        debug_assert!(!self.slots[i].is_open(), "fd {fd} inserted twice");
        if !self.slots[i].is_open() && rec.is_open() {
            self.open += 1;
        }
        self.slots[i] = rec;
    }

    /// The record of `fd`, if open.
    #[inline]
    pub fn get(&self, fd: RawFd) -> Option<&T> {
        self.slots.get(fd as usize).filter(|r| r.is_open())
    }

    /// The record of `fd`, if open, mutably.
    #[inline]
    pub fn get_mut(&mut self, fd: RawFd) -> Option<&mut T> {
        self.slots.get_mut(fd as usize).filter(|r| r.is_open())
    }

    /// Frees the slot of `fd`; returns the record it held.
    pub fn remove(&mut self, fd: RawFd) -> Option<T> {
        let slot = self.slots.get_mut(fd as usize)?;
        if !slot.is_open() {
            return None;
        }
        let rec = std::mem::take(slot);
        self.open -= 1;
        Some(rec)
    }

    /// The record at slot index `i` (for round-robin cursors), if open.
    pub fn at(&self, i: usize) -> Option<(RawFd, &T)> {
        self.slots.get(i).filter(|r| r.is_open()).map(|r| (i as RawFd, r))
    }

    /// All open descriptors (used once, at shutdown).
    pub fn open_fds(&self) -> Vec<RawFd> {
        self.slots.iter().enumerate().filter(|(_, r)| r.is_open()).map(|(i, _)| i as RawFd).collect()
    }
}

impl<T: Record> Default for ConnTable<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Default, Debug, PartialEq)]
    struct R(u8);
    impl Record for R {
        fn is_open(&self) -> bool {
            self.0 != 0
        }
    }

    #[test]
    fn insert_get_remove() {
        let mut t = ConnTable::<R>::new();
        t.insert(5, R(1));
        t.insert(700, R(2));
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(5), Some(&R(1)));
        assert_eq!(t.get(6), None);
        assert_eq!(t.get(100_000), None);
        assert_eq!(t.remove(5), Some(R(1)));
        assert_eq!(t.remove(5), None);
        assert_eq!(t.len(), 1);
        assert_eq!(t.open_fds(), vec![700]);
        assert!(t.capacity() >= 701);
    }

    #[test]
    fn growth_stops_at_the_limit() {
        let mut t = ConnTable::<R>::with_limit(100);
        t.insert(70, R(1));
        assert_eq!(t.capacity(), 71);
        t.insert(80, R(1));
        assert_eq!(t.capacity(), 100);
        t.insert(150, R(1));
        assert_eq!(t.capacity(), 151);
    }
}
