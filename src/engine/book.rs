//! The client's connection bookkeeping, without sockets or a clock: which
//! connection to open next and to which pair, when the rate allows it, what
//! the reconnect budget still allows, and which connects have timed out.
//! Time comes in as an argument, so every rule is unit-tested.
//!
//! The work is shared by every client shard ([`Work`]): a shard claims one
//! connection at a time, so an elastic pool of any size opens exactly the
//! target, connection `i` goes to pair `i mod pairs`, and the rate is one
//! budget for the whole client, not a share per shard.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a shard may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Open connection number `index` (pair `index mod pairs`).
    Open {
        /// The connection's number; reconnects are numbered past the target.
        index: u64,
        /// True when this replaces a lost connection.
        reconnect: bool,
    },
    /// The rate allows the next one at this instant.
    NotBefore(Instant),
    /// Nothing left to open.
    Done,
}

/// The shared state behind [`Work`].
#[derive(Debug, Clone)]
pub struct WorkState {
    count: u64,
    rate: Option<f64>,
    start: Instant,
    next: u64,
    /// Reconnects claimed so far.
    reconnected: u64,
    /// Lost connections still to open again.
    owed: u64,
    /// Reconnects the budget still allows.
    budget: u64,
    halted: bool,
}

impl WorkState {
    /// `count` connections, at most `rate` per second over the whole client,
    /// and with `reconnect`, at most `count` reopenings.
    pub fn new(count: u64, rate: Option<f64>, reconnect: bool, start: Instant) -> WorkState {
        let rate = rate.filter(|r| *r > 0.0 && r.is_finite());
        WorkState {
            count,
            rate,
            start,
            next: 0,
            reconnected: 0,
            owed: 0,
            budget: if reconnect { count } else { 0 },
            halted: false,
        }
    }

    /// Claims the next connection to open at `now`.
    pub fn claim(&mut self, now: Instant) -> Claim {
        if self.halted || (self.next >= self.count && self.owed == 0) {
            return Claim::Done;
        }
        if let Some(rate) = self.rate {
            // The n-th claim (from 0) is allowed from start + n / rate.
            let n = self.next + self.reconnected;
            let at = self.start + Duration::from_secs_f64(n as f64 / rate);
            if now < at {
                return Claim::NotBefore(at);
            }
        }
        if self.next < self.count {
            self.next += 1;
            return Claim::Open { index: self.next - 1, reconnect: false };
        }
        self.owed -= 1;
        self.reconnected += 1;
        Claim::Open { index: self.count + self.reconnected - 1, reconnect: true }
    }

    /// A connection was lost (closed by the server, or its connect failed):
    /// owe a new one while the reconnect budget lasts.
    pub fn lost(&mut self) {
        if self.budget > 0 && !self.halted {
            self.budget -= 1;
            self.owed += 1;
        }
    }

    /// Stops all further claims (a guard tripped, or the run ends).
    pub fn halt(&mut self) {
        self.halted = true;
        self.owed = 0;
    }

    /// True while connections may still be claimed.
    pub fn more(&self) -> bool {
        !self.halted && (self.next < self.count || self.owed > 0)
    }

    /// Connections claimed for the first time so far.
    pub fn claimed(&self) -> u64 {
        self.next
    }
}

/// [`WorkState`] shared by the shards of one client.
#[derive(Debug)]
pub struct Work(Mutex<WorkState>);

impl Work {
    /// Shared work.
    pub fn new(state: WorkState) -> Work {
        Work(Mutex::new(state))
    }

    /// Runs `f` on the state (a poisoned lock is taken as is: the state is
    /// plain counters).
    pub fn with<R>(&self, f: impl FnOnce(&mut WorkState) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Connects in flight, oldest first: one deadline order, no timers.
#[derive(Debug, Default)]
pub struct InFlight {
    queue: VecDeque<(RawFd, u32)>,
}

impl InFlight {
    /// A connect on `fd` started at `started_us` (shard clock, wrapping).
    pub fn push(&mut self, fd: RawFd, started_us: u32) {
        self.queue.push_back((fd, started_us));
    }

    /// Pops the connects that timed out by `now_us`, skipping entries that
    /// are no longer live (`live(fd, started)` false: established or failed
    /// since, the descriptor perhaps reused).
    pub fn expired(&mut self, now_us: u32, limit_us: u32, live: impl Fn(RawFd, u32) -> bool) -> Vec<RawFd> {
        let mut out = Vec::new();
        while let Some(&(fd, started)) = self.queue.front() {
            if !live(fd, started) {
                self.queue.pop_front();
            } else if now_us.wrapping_sub(started) >= limit_us {
                self.queue.pop_front();
                out.push(fd);
            } else {
                break;
            }
        }
        out
    }

    /// Microseconds from `now_us` until the oldest live connect times out.
    pub fn next_deadline_us(&self, now_us: u32, limit_us: u32) -> Option<u32> {
        self.queue.front().map(|&(_, started)| limit_us.saturating_sub(now_us.wrapping_sub(started)))
    }

    /// Forgets everything (teardown).
    pub fn clear(&mut self) {
        self.queue.clear();
    }

    /// Gives the queue's memory back once nothing is in flight (the ramp is
    /// over): a shard that ramped 16k connects keeps no 128 KiB for them.
    pub fn release_if_empty(&mut self) {
        if self.queue.is_empty() && self.queue.capacity() > 0 {
            self.queue = VecDeque::new();
        }
    }

    /// Bytes the queue holds.
    pub fn capacity_bytes(&self) -> usize {
        self.queue.capacity() * std::mem::size_of::<(RawFd, u32)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(c: Claim) -> (u64, bool) {
        match c {
            Claim::Open { index, reconnect } => (index, reconnect),
            other => panic!("expected an open, got {other:?}"),
        }
    }

    #[test]
    fn claims_exactly_the_target() {
        let t0 = Instant::now();
        let mut w = WorkState::new(3, None, false, t0);
        assert_eq!((0..3).map(|_| opened(w.claim(t0)).0).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(w.claim(t0), Claim::Done);
        w.lost();
        assert_eq!(w.claim(t0), Claim::Done, "no reconnect without --reconnect");
        assert!(!w.more());
    }

    #[test]
    fn the_rate_is_one_budget_in_time() {
        let t0 = Instant::now();
        let mut w = WorkState::new(100, Some(10.0), false, t0);
        assert_eq!(opened(w.claim(t0)).0, 0);
        assert_eq!(w.claim(t0), Claim::NotBefore(t0 + Duration::from_millis(100)));
        assert_eq!(opened(w.claim(t0 + Duration::from_millis(100))).0, 1);
        // After a second, ten in all were allowed.
        let t1 = t0 + Duration::from_secs(1);
        let mut n = 2;
        while let Claim::Open { .. } = w.claim(t1) {
            n += 1;
        }
        assert_eq!(n, 11);
    }

    #[test]
    fn reconnects_spread_over_pairs_within_the_budget() {
        let t0 = Instant::now();
        let mut w = WorkState::new(4, None, true, t0);
        for _ in 0..4 {
            w.claim(t0);
        }
        for _ in 0..10 {
            w.lost();
        }
        let pairs = 3;
        let again: Vec<u64> = std::iter::from_fn(|| match w.claim(t0) {
            Claim::Open { index, reconnect: true } => Some(index % pairs),
            _ => None,
        })
        .collect();
        assert_eq!(again, vec![1, 2, 0, 1], "numbered past the target, so pairs rotate; 4 = the budget");
        assert_eq!(w.claim(t0), Claim::Done);
    }

    #[test]
    fn halt_stops_claims_and_debts() {
        let t0 = Instant::now();
        let mut w = WorkState::new(10, None, true, t0);
        w.claim(t0);
        w.lost();
        w.halt();
        assert_eq!(w.claim(t0), Claim::Done);
        assert!(!w.more());
    }

    #[test]
    fn in_flight_expiry() {
        let mut f = InFlight::default();
        f.push(5, 100);
        f.push(6, 200);
        f.push(7, 300);
        assert_eq!(f.next_deadline_us(150, 1000), Some(950));
        // fd 5 established meanwhile: skipped; 6 timed out; 7 not yet.
        assert_eq!(f.expired(1250, 1000, |fd, _| fd != 5), vec![6]);
        assert_eq!(f.next_deadline_us(1250, 1000), Some(50));
        // Wrapping clock.
        let mut f = InFlight::default();
        f.push(9, u32::MAX - 10);
        assert_eq!(f.expired(989, 1000, |_, _| true), vec![9]);
    }

    #[test]
    fn in_flight_gives_its_memory_back_after_the_ramp() {
        let mut f = InFlight::default();
        for fd in 0..16_000 {
            f.push(fd, 0);
        }
        f.release_if_empty();
        assert!(f.capacity_bytes() >= 128_000, "still in flight: kept");
        assert!(f.expired(1, 1000, |_, _| false).is_empty());
        f.release_if_empty();
        assert_eq!(f.capacity_bytes(), 0);
    }
}
