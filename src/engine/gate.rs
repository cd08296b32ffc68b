//! Admission control shared by the shards of one server, as production
//! services do it: a cap on connections and a memory watermark.
//!
//! The connection count is one atomic, touched once per accept and once per
//! close (never per event on an idle connection), which keeps `--max-conns`
//! exact across shards. The memory flag is written by the supervisor a few
//! times a second and only read by shards.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The admission decision for one accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Keep it.
    Yes,
    /// Refused: `--max-conns` reached.
    OverMaxConns,
    /// Refused: memory above the high watermark.
    OverMemory,
}

/// The shared admission state.
#[derive(Debug)]
pub struct Gate {
    max: u64,
    held: AtomicU64,
    memory_ok: AtomicBool,
}

impl Gate {
    /// A gate admitting at most `max` connections (`u64::MAX`: no cap).
    pub fn new(max: u64) -> Gate {
        Gate { max, held: AtomicU64::new(0), memory_ok: AtomicBool::new(true) }
    }

    /// Decides for one new connection and counts it when admitted.
    pub fn admit(&self) -> Admit {
        if !self.memory_ok.load(Ordering::Relaxed) {
            return Admit::OverMemory;
        }
        let prev = self.held.fetch_add(1, Ordering::Relaxed);
        if prev >= self.max {
            self.held.fetch_sub(1, Ordering::Relaxed);
            return Admit::OverMaxConns;
        }
        Admit::Yes
    }

    /// One admitted connection closed.
    pub fn release(&self) {
        self.held.fetch_sub(1, Ordering::Relaxed);
    }

    /// Connections currently admitted.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Opens or closes the gate for memory.
    pub fn set_memory_ok(&self, ok: bool) {
        self.memory_ok.store(ok, Ordering::Relaxed);
    }

    /// True while memory is below the watermark.
    pub fn memory_ok(&self) -> bool {
        self.memory_ok.load(Ordering::Relaxed)
    }
}

/// Hysteresis on memory in use: refuse above `high`, resume below `low`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    /// Bytes in use above which new connections are refused.
    pub high: u64,
    /// Bytes in use below which they are admitted again.
    pub low: u64,
}

impl Watermark {
    /// `high`, and a low mark 5% of total memory below it, so the gate does
    /// not flap on every small change.
    pub fn new(high: u64, total: u64) -> Watermark {
        Watermark { high, low: high.saturating_sub(total / 20) }
    }

    /// The new state of the gate given the current one and memory in use.
    pub fn next(&self, currently_ok: bool, in_use: u64) -> bool {
        if currently_ok { in_use < self.high } else { in_use < self.low }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_conns_is_exact() {
        let g = Gate::new(2);
        assert_eq!(g.admit(), Admit::Yes);
        assert_eq!(g.admit(), Admit::Yes);
        assert_eq!(g.admit(), Admit::OverMaxConns);
        assert_eq!(g.held(), 2);
        g.release();
        assert_eq!(g.admit(), Admit::Yes);
        g.set_memory_ok(false);
        assert_eq!(g.admit(), Admit::OverMemory);
    }

    #[test]
    fn watermark_hysteresis() {
        let w = Watermark::new(900, 1000);
        assert_eq!(w.low, 850);
        assert!(w.next(true, 899));
        assert!(!w.next(true, 900));
        assert!(!w.next(false, 860));
        assert!(w.next(false, 849));
    }
}
