//! Heartbeat scheduling without per-connection timers: a round-robin cursor
//! over the connection table with a token budget.
//!
//! Each tick earns `rate x elapsed` tokens; the cursor then visits that many
//! open connections from where it stopped last time. Touching a fraction of
//! all connections per second costs work proportional to the fraction, not
//! to the number of idle connections.

use std::time::Duration;

/// A round-robin cursor with a rate budget.
#[derive(Debug, Clone)]
pub struct RoundRobin {
    rate_per_s: f64,
    tokens: f64,
    cursor: usize,
}

/// The most backlog a late shard makes up at once.
pub const BACKLOG: Duration = Duration::from_millis(100);

impl RoundRobin {
    /// Visits `rate_per_s` connections per second in total.
    pub fn new(rate_per_s: f64) -> RoundRobin {
        RoundRobin { rate_per_s: rate_per_s.max(0.0), tokens: 0.0, cursor: 0 }
    }

    /// Changes the rate (a shard's share follows the connections it holds).
    /// A rate that starts (from zero) earns from now on: the time it was
    /// zero is no backlog. Returns true when the rate starts, so that the
    /// caller counts the time to its next [`earn`](Self::earn) from now.
    pub fn set_rate(&mut self, rate_per_s: f64) -> bool {
        let starts = self.rate_per_s <= 0.0 && rate_per_s > 0.0;
        if starts {
            self.tokens = 0.0;
        }
        self.rate_per_s = rate_per_s.max(0.0);
        starts
    }

    /// How long until at least one visit is due, or None at a zero rate.
    pub fn until_due(&self) -> Option<Duration> {
        if self.rate_per_s <= 0.0 {
            return None;
        }
        Some(Duration::from_secs_f64(((1.0 - self.tokens) / self.rate_per_s).max(0.0)))
    }

    /// Adds the budget earned over `elapsed` and returns how many visits are
    /// due now. The budget carries over at most [`BACKLOG`] of visits: a
    /// shard that was late sends a few more, not a burst that would queue
    /// behind itself and measure its own queue as round-trip time.
    pub fn earn(&mut self, elapsed: Duration) -> usize {
        let cap = (self.rate_per_s * BACKLOG.as_secs_f64()).max(1.0);
        self.tokens = (self.tokens + self.rate_per_s * elapsed.as_secs_f64()).min(cap);
        let due = self.tokens.floor();
        self.tokens -= due;
        due as usize
    }

    /// Calls `visit(slot)` for the next `due` slots accepted by `is_open`,
    /// wrapping around a table of `len` slots. Returns the visits made. Stops
    /// after one full lap, so an almost empty table costs at most `len`.
    pub fn visit(
        &mut self,
        due: usize,
        len: usize,
        mut is_open: impl FnMut(usize) -> bool,
        mut visit: impl FnMut(usize),
    ) -> usize {
        if len == 0 || due == 0 {
            return 0;
        }
        let mut made = 0;
        let mut stepped = 0;
        while made < due && stepped < len {
            if self.cursor >= len {
                self.cursor = 0;
            }
            let i = self.cursor;
            self.cursor += 1;
            stepped += 1;
            if is_open(i) {
                visit(i);
                made += 1;
            }
        }
        made
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_and_cursor() {
        let mut rr = RoundRobin::new(100.0);
        assert_eq!(rr.earn(Duration::from_millis(25)), 2);
        assert_eq!(rr.earn(Duration::from_millis(25)), 3); // 0.5 carried
        let open = [true, false, true, true];
        let mut seen = vec![];
        assert_eq!(rr.visit(2, 4, |i| open[i], |i| seen.push(i)), 2);
        assert_eq!(rr.visit(2, 4, |i| open[i], |i| seen.push(i)), 2);
        assert_eq!(seen, vec![0, 2, 3, 0]);
        // An empty table: one lap, no visit.
        assert_eq!(rr.visit(5, 4, |_| false, |_| ()), 0);
        // The backlog is capped at 100 ms of visits.
        assert_eq!(rr.earn(Duration::from_secs(100)), 10);
        // The next visit is due when one token has been earned.
        assert_eq!(rr.until_due(), Some(Duration::from_millis(10)));
        assert!(!rr.set_rate(0.0));
        assert_eq!(rr.until_due(), None);
    }

    #[test]
    fn a_rate_that_starts_has_no_backlog() {
        // Regression: heartbeats starting after a long ramp sent a second's
        // worth at once, and the first second's round trips measured that
        // burst's own queue (p50 117 ms against 0.1 ms after).
        let mut rr = RoundRobin::new(0.0);
        assert_eq!(rr.earn(Duration::from_secs(30)), 0);
        assert!(rr.set_rate(10_000.0), "the rate starts");
        assert!(!rr.set_rate(10_000.0), "and then runs");
        assert_eq!(rr.earn(Duration::from_millis(20)), 200);
        let mut late = RoundRobin::new(10_000.0);
        assert_eq!(late.earn(Duration::from_secs(30)), 1_000, "at most 100 ms of backlog");
    }
}
