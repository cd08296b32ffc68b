//! Latency samples and the histograms they end in.
//!
//! A shard does not keep histograms: a 3-significant-figure histogram from
//! 1 us to 100 s is 72 KiB, and with one connect and one round-trip
//! histogram in each of 60 client shards that was 9 MiB, a third of the
//! user memory of a million connections. A shard hands its raw samples (4
//! bytes each) to its control block after each batch, and the supervisor
//! moves them into the pool's one set of histograms when it reads them
//! (at least once a second while it samples the timeline). Should the
//! supervisor not read for long, [`Pending`] folds its samples into
//! histograms of its own rather than grow without bound: nothing measured
//! is lost either way.

use hdrhistogram::Histogram;

/// Longest latency a histogram tells apart (100 s); longer ones count as this.
pub const HIST_MAX_US: u64 = 100_000_000;

/// A histogram of microseconds from 1 us to 100 s with 3 significant
/// figures and 32-bit counts: about 72 KiB.
#[allow(clippy::expect_used)] // The bounds are constants that satisfy new_with_bounds.
pub fn new_hist() -> Histogram<u32> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("constant bounds are valid")
}

/// Latency histograms of a client, in microseconds.
#[derive(Debug, Clone)]
pub struct Hists {
    /// Connect latency (SYN sent to established).
    pub connect_us: Histogram<u32>,
    /// Ping round-trip time.
    pub rtt_us: Histogram<u32>,
    /// Protocol handshake (TCP connected to the handshake done); made on
    /// the first sample, so a bare TCP run pays nothing for it.
    pub handshake_us: Option<Histogram<u32>>,
}

impl Hists {
    /// Empty histograms, 1 us to 100 s, 3 significant figures.
    pub fn new() -> Hists {
        Hists { connect_us: new_hist(), rtt_us: new_hist(), handshake_us: None }
    }

    /// Adds another set of histograms.
    pub fn merge(&mut self, o: &Hists) {
        let _ = self.connect_us.add(&o.connect_us);
        let _ = self.rtt_us.add(&o.rtt_us);
        if let Some(o) = &o.handshake_us {
            let _ = self.handshake_us.get_or_insert_with(new_hist).add(o);
        }
    }

    /// Records a batch of samples.
    pub fn record(&mut self, b: &Batch) {
        for &v in &b.connect {
            self.connect_us.saturating_record(u64::from(v));
        }
        for &v in &b.rtt {
            self.rtt_us.saturating_record(u64::from(v));
        }
        if !b.handshake.is_empty() {
            let h = self.handshake_us.get_or_insert_with(new_hist);
            for &v in &b.handshake {
                h.saturating_record(u64::from(v));
            }
        }
    }
}

impl Default for Hists {
    fn default() -> Self {
        Hists::new()
    }
}

/// Samples in microseconds, not yet in a histogram.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Connect latencies.
    pub connect: Vec<u32>,
    /// Round trips.
    pub rtt: Vec<u32>,
    /// Protocol handshakes.
    pub handshake: Vec<u32>,
}

impl Batch {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.connect.len() + self.rtt.len() + self.handshake.len()
    }

    /// True when there is no sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves `o`'s samples to the end of these (`o` keeps its capacity).
    pub fn append(&mut self, o: &mut Batch) {
        self.connect.append(&mut o.connect);
        self.rtt.append(&mut o.rtt);
        self.handshake.append(&mut o.handshake);
    }
}

/// Samples waiting in a control block past this many are folded into
/// histograms there (256 KiB of samples; the supervisor takes them at
/// least once a second, so this happens only if it stalls).
pub const PENDING_MAX: usize = 64 * 1024;

/// What a shard handed over and the supervisor has not taken yet.
#[derive(Debug, Default)]
pub struct Pending {
    samples: Batch,
    /// Made only if the supervisor let more than [`PENDING_MAX`] wait.
    folded: Option<Box<Hists>>,
}

impl Pending {
    /// Takes a shard's batch (leaving it empty, with its capacity).
    pub fn put(&mut self, b: &mut Batch) {
        self.samples.append(b);
        if self.samples.len() > PENDING_MAX {
            self.folded.get_or_insert_with(Default::default).record(&self.samples);
            self.samples = Batch::default();
        }
    }

    /// Moves everything into `into`, keeping no memory.
    pub fn drain_into(&mut self, into: &mut Hists) {
        into.record(&self.samples);
        self.samples = Batch::default();
        if let Some(f) = self.folded.take() {
            into.merge(&f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: u32) -> Batch {
        Batch { connect: (1..=n).collect(), rtt: vec![7; n as usize], handshake: vec![] }
    }

    #[test]
    fn every_sample_reaches_the_histograms_once() {
        let mut p = Pending::default();
        let mut b = batch(100);
        p.put(&mut b);
        assert!(b.is_empty() && b.connect.capacity() >= 100, "the shard keeps its buffer");
        let mut h = Hists::new();
        p.drain_into(&mut h);
        p.drain_into(&mut h);
        assert_eq!(h.connect_us.len(), 100);
        assert_eq!(h.rtt_us.len(), 100);
        assert_eq!(h.rtt_us.max(), 7);
        assert!(h.handshake_us.is_none(), "no handshake sample, no histogram");
    }

    #[test]
    fn a_stalled_supervisor_costs_histograms_not_unbounded_samples() {
        let mut p = Pending::default();
        for _ in 0..10 {
            p.put(&mut batch(20_000));
        }
        assert!(p.samples.len() <= PENDING_MAX);
        assert!(p.folded.is_some());
        let mut h = Hists::new();
        p.drain_into(&mut h);
        assert_eq!(h.connect_us.len(), 200_000);
        assert_eq!(h.rtt_us.len(), 200_000);
        assert!(p.samples.is_empty() && p.folded.is_none());
    }

    #[test]
    fn handshakes_make_their_histogram_on_the_first_sample() {
        let mut h = Hists::new();
        h.record(&Batch { handshake: vec![5, 9], ..Batch::default() });
        assert_eq!(h.handshake_us.as_ref().map(|x| x.len()), Some(2));
    }
}
