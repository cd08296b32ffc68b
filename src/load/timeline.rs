//! The timeline of a run: one [`Sample`] a second, built from two
//! cumulative snapshots of the shards' counters, the wall clock and the
//! memory readings, and kept bounded however long the run is.
//!
//! # Decimation
//!
//! A timeline never holds more than [`MAX_SAMPLES`] (7,200) samples. When it
//! reaches that many, neighbouring pairs are merged into one (7,200 samples
//! of one second become 3,600 of two) and from then on each kept sample
//! covers twice as many seconds as before: 2, then 4, 8, ... So a run
//! shorter than two hours keeps every second, and a longer one keeps
//! between 3,600 and 7,200 samples, evenly spaced. `interval_s` says how
//! many seconds a sample covers.
//!
//! Merging an earlier sample `a` into a later one `b`: gauges (established,
//! connecting, memory, shards) and running totals (failed, closed, errors)
//! are `b`'s, `t` and `unix_ms` are `b`'s (a sample describes the interval
//! ending at `t`), rates are the time-weighted mean, failures by cause add
//! up, RTT p50 is the mean weighted by replies and RTT p99 the larger of the
//! two (an upper bound: percentiles of two intervals cannot be merged exactly
//! without their histograms).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::engine::stats::ShardStats;
use crate::machine;

/// The most samples a timeline holds; see the module docs.
pub const MAX_SAMPLES: usize = 7_200;

/// Shards (fd tables) at the time of a sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleShards {
    /// Client shards.
    pub client: usize,
    /// Server shards, where this process runs the server too (`bench`).
    pub server: Option<usize>,
}

/// One second of the run (more on a decimated long run: `interval_s`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the start, at the end of the interval.
    pub t: f64,
    /// Wall-clock time at the end of the interval, ms since the Unix epoch.
    pub unix_ms: u64,
    /// Seconds this sample covers (1 unless a long run was decimated).
    pub interval_s: f64,
    /// Connections established now.
    pub established: u64,
    /// Connects in flight now.
    pub connecting: u64,
    /// Connections established per second over the interval.
    pub opened_per_s: f64,
    /// Connect failures so far.
    pub failed: u64,
    /// Connections the server closed so far.
    pub closed: u64,
    /// Ping replies per second over the interval.
    pub pongs_per_s: f64,
    /// Failures of all kinds so far.
    pub errors: u64,
    /// Failures during the interval by errno name (only those seen).
    #[serde(deserialize_with = "crate::bounded::map")]
    pub failures: BTreeMap<String, u64>,
    /// Median heartbeat round trip of the interval; null when no reply came
    /// back or the engine does not report it per interval.
    pub rtt_p50_us: Option<u64>,
    /// 99th percentile of the same.
    pub rtt_p99_us: Option<u64>,
    /// Anonymous RSS of this process now, in bytes.
    pub user_bytes: u64,
    /// Growth of the kernel's slab caches since the start, in bytes.
    pub kernel_bytes: u64,
    /// Shards now.
    pub shards: SampleShards,
}

/// The readings taken at the end of an interval, beside the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reading {
    /// Seconds since the start.
    pub secs: f64,
    /// Wall clock, ms since the Unix epoch.
    pub unix_ms: u64,
    /// Anonymous RSS of this process.
    pub user_bytes: u64,
    /// Slab growth since the start.
    pub kernel_bytes: u64,
    /// Shards now.
    pub shards: SampleShards,
}

impl Sample {
    /// The sample of the interval from `prev` (read at `prev_secs`) to `now`.
    pub fn between(prev: &ShardStats, prev_secs: f64, now: &ShardStats, r: &Reading) -> Sample {
        let dt = (r.secs - prev_secs).max(1e-9);
        let failures = now
            .errors
            .ranked()
            .into_iter()
            .filter_map(|(name, n)| {
                let d = n.saturating_sub(prev.errors.get(name));
                (d > 0).then(|| (name.to_string(), d))
            })
            .collect();
        Sample {
            t: (r.secs * 10.0).round() / 10.0,
            unix_ms: r.unix_ms,
            interval_s: (dt * 1000.0).round() / 1000.0,
            established: now.open,
            connecting: now.connecting,
            opened_per_s: now.opened.saturating_sub(prev.opened) as f64 / dt,
            failed: now.failed,
            closed: now.closed,
            pongs_per_s: now.pongs.saturating_sub(prev.pongs) as f64 / dt,
            errors: now.errors.total(),
            failures,
            rtt_p50_us: None,
            rtt_p99_us: None,
            user_bytes: r.user_bytes,
            kernel_bytes: r.kernel_bytes,
            shards: r.shards,
        }
    }

    /// The same sample, with the server's shards known (`bench`).
    pub fn with_server_shards(&self, server: usize) -> Sample {
        Sample { shards: SampleShards { server: Some(server), ..self.shards }, ..self.clone() }
    }

    /// `earlier` and `self` as one sample; the rule is in the module docs.
    fn absorb(&mut self, earlier: Sample) {
        let (wa, wb) = (earlier.interval_s, self.interval_s);
        let total = (wa + wb).max(1e-9);
        let (pa, pb) = (earlier.pongs_per_s * wa, self.pongs_per_s * wb);
        self.rtt_p50_us = match (earlier.rtt_p50_us, self.rtt_p50_us) {
            (Some(a), Some(b)) if pa + pb > 0.0 => Some(((a as f64 * pa + b as f64 * pb) / (pa + pb)).round() as u64),
            (a, b) => b.or(a),
        };
        self.rtt_p99_us = match (earlier.rtt_p99_us, self.rtt_p99_us) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => b.or(a),
        };
        self.opened_per_s = (earlier.opened_per_s * wa + self.opened_per_s * wb) / total;
        self.pongs_per_s = (pa + pb) / total;
        for (k, v) in earlier.failures {
            *self.failures.entry(k).or_insert(0) += v;
        }
        self.interval_s = ((wa + wb) * 1000.0).round() / 1000.0;
    }
}

/// A bounded list of samples: every one kept until [`MAX_SAMPLES`], then
/// decimated as the module docs say.
#[derive(Debug, Clone)]
pub struct Timeline {
    samples: Vec<Sample>,
    cap: usize,
    /// Seconds' samples merged into one kept sample.
    stride: usize,
    /// The sample being filled and how many it holds.
    pending: Option<(Sample, usize)>,
}

impl Default for Timeline {
    fn default() -> Timeline {
        Timeline::with_cap(MAX_SAMPLES)
    }
}

impl Timeline {
    /// A timeline holding fewer than `cap` samples (at least 2).
    pub fn with_cap(cap: usize) -> Timeline {
        Timeline { samples: Vec::new(), cap: cap.max(2), stride: 1, pending: None }
    }

    /// Adds the next sample.
    pub fn push(&mut self, s: Sample) {
        let (merged, n) = match self.pending.take() {
            None => (s, 1),
            Some((earlier, n)) => {
                let mut s = s;
                s.absorb(earlier);
                (s, n + 1)
            }
        };
        if n < self.stride {
            self.pending = Some((merged, n));
            return;
        }
        self.samples.push(merged);
        if self.samples.len() >= self.cap {
            self.halve();
        }
    }

    fn halve(&mut self) {
        let old = std::mem::take(&mut self.samples);
        let mut it = old.into_iter();
        while let Some(a) = it.next() {
            match it.next() {
                Some(mut b) => {
                    b.absorb(a);
                    self.samples.push(b);
                }
                None => self.pending = Some((a, self.stride)),
            }
        }
        self.stride *= 2;
    }

    /// The samples kept so far, the one being filled included.
    pub fn finish(mut self) -> Vec<Sample> {
        if let Some((s, _)) = self.pending.take() {
            self.samples.push(s);
        }
        self.samples
    }
}

/// Takes one sample a second during a run: the counters' snapshots come
/// from the caller, the wall clock and memory are read here.
#[derive(Debug)]
pub struct Recorder {
    started: Instant,
    last: (f64, ShardStats),
    slab0: u64,
    shards: SampleShards,
    timeline: Timeline,
    /// The round-trip histogram as it was at the last sample (cumulative).
    rtt: Option<Histogram<u32>>,
}

impl Recorder {
    /// Starts the clock of a run whose engine started at `started`.
    pub fn start(started: Instant, client_shards: usize) -> Recorder {
        Recorder {
            started,
            last: (0.0, ShardStats::default()),
            slab0: machine::kernel_memory().map_or(0, |(slab, _)| slab),
            shards: SampleShards { client: client_shards, server: None },
            timeline: Timeline::default(),
            rtt: None,
        }
    }

    /// The sample of the second that just ended, kept in the timeline, once
    /// a second has passed since the last one; `None` before. `client_shards`
    /// is the pool's size now; `rtt` gives the cumulative round-trip
    /// histogram, asked for only when a sample is taken: the second's
    /// percentiles come from its difference with the previous one.
    pub fn tick(
        &mut self,
        now: Instant,
        t: &ShardStats,
        client_shards: usize,
        rtt: impl FnOnce() -> Histogram<u32>,
    ) -> Option<Sample> {
        let secs = now.duration_since(self.started).as_secs_f64();
        if secs - self.last.0 < 1.0 {
            return None;
        }
        self.shards.client = client_shards;
        let reading = Reading {
            secs,
            unix_ms: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
            user_bytes: machine::rss_anon(std::process::id()).unwrap_or(0),
            kernel_bytes: machine::kernel_memory().map_or(0, |(slab, _)| slab.saturating_sub(self.slab0)),
            shards: self.shards,
        };
        let mut s = Sample::between(&self.last.1, self.last.0, t, &reading);
        let cumulative = rtt();
        let mut second = cumulative.clone();
        if let Some(prev) = &self.rtt {
            // Never fails: the cumulative histogram only grows.
            let _ = second.subtract(prev);
        }
        if !second.is_empty() {
            s.rtt_p50_us = Some(second.value_at_quantile(0.50));
            s.rtt_p99_us = Some(second.value_at_quantile(0.99));
        }
        self.rtt = Some(cumulative);
        self.timeline.push(s.clone());
        self.last = (secs, t.clone());
        Some(s)
    }

    /// The sample of a server's second (`serve`): no client, no round
    /// trips, `server_shards` running.
    pub fn tick_server(&mut self, now: Instant, t: &ShardStats, server_shards: usize) -> Option<Sample> {
        self.shards.server = Some(server_shards);
        self.tick(now, t, 0, crate::engine::samples::new_hist)
    }

    /// The timeline of the run.
    pub fn finish(self) -> Vec<Sample> {
        self.timeline.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(i: u64) -> Sample {
        let mut failures = BTreeMap::new();
        if i % 3 == 0 {
            failures.insert("EMFILE".to_string(), 2);
        }
        Sample {
            t: i as f64,
            unix_ms: 1_000 * i,
            interval_s: 1.0,
            established: i * 10,
            connecting: 1,
            opened_per_s: 10.0,
            failed: 0,
            closed: 0,
            pongs_per_s: if i % 2 == 0 { 4.0 } else { 0.0 },
            errors: 0,
            failures,
            rtt_p50_us: (i % 2 == 0).then_some(100 + i),
            rtt_p99_us: (i % 2 == 0).then_some(1_000 + i),
            user_bytes: i,
            kernel_bytes: 2 * i,
            shards: SampleShards { client: 2, server: None },
        }
    }

    #[test]
    fn a_sample_is_the_difference_of_two_snapshots() {
        let mut prev = ShardStats { open: 5, opened: 5, pongs: 10, ..Default::default() };
        prev.errors.add(libc::ECONNREFUSED);
        let mut now = ShardStats { open: 25, opened: 25, pongs: 30, connecting: 3, ..Default::default() };
        now.errors.add(libc::ECONNREFUSED);
        now.errors.add(libc::ECONNREFUSED);
        now.errors.add(libc::EMFILE);
        let r = Reading { secs: 3.0, unix_ms: 42, user_bytes: 7, kernel_bytes: 9, shards: SampleShards::default() };
        let s = Sample::between(&prev, 1.0, &now, &r);
        assert_eq!((s.t, s.interval_s, s.unix_ms), (3.0, 2.0, 42));
        assert_eq!((s.established, s.connecting, s.errors), (25, 3, 3));
        assert_eq!((s.opened_per_s, s.pongs_per_s), (10.0, 10.0));
        assert_eq!(s.failures.get("ECONNREFUSED"), Some(&1));
        assert_eq!(s.failures.get("EMFILE"), Some(&1));
        assert_eq!((s.user_bytes, s.kernel_bytes), (7, 9));
        assert_eq!((s.rtt_p50_us, s.rtt_p99_us), (None, None));
    }

    #[test]
    fn a_short_run_keeps_every_second() {
        let mut tl = Timeline::with_cap(100);
        (1..=99).for_each(|i| tl.push(second(i)));
        let v = tl.finish();
        assert_eq!(v.len(), 99);
        assert!(v.iter().all(|s| s.interval_s == 1.0));
    }

    #[test]
    fn a_long_run_is_decimated_and_loses_no_failure() {
        for n in [8u64, 9, 15, 16, 17, 100, 1_000, 10_001] {
            let mut tl = Timeline::with_cap(8);
            (1..=n).for_each(|i| tl.push(second(i)));
            let v = tl.finish();
            assert!(v.len() <= 8, "{n}: {} samples", v.len());
            if n >= 16 {
                assert!(v.len() >= 4, "{n}: {} samples", v.len());
            }
            // Every second is covered once, the last one ends the timeline.
            let covered: f64 = v.iter().map(|s| s.interval_s).sum();
            assert_eq!(covered, n as f64, "{n}");
            assert_eq!(v.last().map(|s| s.t), Some(n as f64));
            assert!(v.windows(2).all(|w| w[0].t < w[1].t));
            // Failures add up, gauges are the later sample's.
            let emfile: u64 = v.iter().filter_map(|s| s.failures.get("EMFILE")).sum();
            assert_eq!(emfile, 2 * (n / 3), "{n}");
            assert!(v.iter().all(|s| s.established == 10 * s.t as u64 && s.opened_per_s == 10.0));
        }
    }

    #[test]
    fn the_cap_is_7200_and_two_hours_fit() {
        let mut tl = Timeline::default();
        (1..=7_199).for_each(|i| tl.push(second(i)));
        assert_eq!(tl.clone().finish().len(), 7_199);
        tl.push(second(7_200));
        let v = tl.finish();
        assert_eq!(v.len(), 3_600);
        assert!(v.iter().all(|s| s.interval_s == 2.0));
    }

    #[test]
    fn merged_percentiles_are_weighted_and_bounded() {
        let (mut a, mut b) = (second(2), second(6));
        a.pongs_per_s = 1.0;
        b.pongs_per_s = 3.0;
        b.absorb(a);
        assert_eq!(b.rtt_p50_us, Some(105)); // (102 * 1 + 106 * 3) / 4
        assert_eq!(b.rtt_p99_us, Some(1_006));
        assert_eq!(b.pongs_per_s, 2.0);
        let mut c = second(5);
        c.absorb(second(4));
        assert_eq!((c.rtt_p50_us, c.rtt_p99_us), (Some(104), Some(1_004)), "a second without replies keeps the other");
    }
}
