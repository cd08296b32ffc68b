//! Starting, stopping and hearing from shards.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};

use hdrhistogram::Histogram;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::stats::ShardStats;
use crate::sys::epoll::EventFd;
use crate::sys::process;

/// Stack size of a shard thread. The loop keeps its buffers on the heap; only
/// the stack pages actually touched count in RSS.
pub const STACK_BYTES: usize = 256 * 1024;

/// How often a shard sends a snapshot of its counters.
pub const REPORT_EVERY: Duration = Duration::from_millis(200);

/// Control block shared by the supervisor and one shard: a stop flag and the
/// doorbell that wakes the shard's epoll.
#[derive(Debug)]
pub struct ShardCtl {
    stop: AtomicBool,
    bell: EventFd,
}

impl ShardCtl {
    /// A control block with a fresh doorbell.
    pub fn new() -> io::Result<Arc<ShardCtl>> {
        Ok(Arc::new(ShardCtl { stop: AtomicBool::new(false), bell: EventFd::new()? }))
    }

    /// Asks the shard to stop and wakes it.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.bell.notify();
    }

    /// True once a stop was requested.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// The doorbell's descriptor (the same number in the shard's table).
    pub fn bell_fd(&self) -> RawFd {
        self.bell.raw()
    }

    /// Resets the doorbell after a wake-up.
    pub fn drain_bell(&self) {
        self.bell.drain();
    }
}

/// What shards tell the supervisor.
#[derive(Debug)]
pub enum ShardMsg {
    /// The shard finished setting up (listeners bound, or an error).
    Ready {
        /// Shard index.
        shard: usize,
        /// Set-up error, already formatted with the address and errno.
        result: Result<(), String>,
    },
    /// Cumulative counters.
    Stats {
        /// Shard index.
        shard: usize,
        /// The snapshot.
        stats: ShardStats,
        /// True for the last snapshot, after the shard closed everything.
        last: bool,
    },
    /// A client shard's latency histograms, sent once before its last stats.
    Hists {
        /// Shard index.
        shard: usize,
        /// The histograms.
        hists: Box<Hists>,
    },
}

/// Sends a snapshot every [`REPORT_EVERY`]; the shard calls `due` in its loop.
#[derive(Debug)]
pub struct Reporter {
    shard: usize,
    tx: Sender<ShardMsg>,
    next: Instant,
}

impl Reporter {
    /// A reporter for shard `shard`.
    pub fn new(shard: usize, tx: Sender<ShardMsg>) -> Reporter {
        Reporter { shard, tx, next: Instant::now() }
    }

    /// Milliseconds until the next report is due (an epoll timeout).
    pub fn timeout_ms(&self, now: Instant) -> i32 {
        self.next.saturating_duration_since(now).as_millis().min(i32::MAX as u128) as i32
    }

    /// Sends a snapshot if one is due.
    pub fn maybe_send(&mut self, now: Instant, stats: &ShardStats) {
        if now >= self.next {
            self.next = now + REPORT_EVERY;
            let _ = self.tx.send(ShardMsg::Stats { shard: self.shard, stats: stats.clone(), last: false });
        }
    }

    /// Sends a snapshot now (a milestone the supervisor should see at once).
    pub fn send_now(&mut self, now: Instant, stats: &ShardStats) {
        self.next = now;
        self.maybe_send(now, stats);
    }

    /// Tells the supervisor set-up finished.
    pub fn ready(&self, result: Result<(), String>) {
        let _ = self.tx.send(ShardMsg::Ready { shard: self.shard, result });
    }

    /// Sends a client shard's histograms (before `last`).
    pub fn hists(&self, hists: Hists) {
        let _ = self.tx.send(ShardMsg::Hists { shard: self.shard, hists: Box::new(hists) });
    }

    /// Sends the final snapshot.
    pub fn last(&self, stats: &ShardStats) {
        let _ = self.tx.send(ShardMsg::Stats { shard: self.shard, stats: stats.clone(), last: true });
    }
}

/// Final latency histograms of a client shard, in microseconds.
#[derive(Debug, Clone)]
pub struct Hists {
    /// Connect latency (SYN sent to established).
    pub connect_us: Histogram<u32>,
    /// Ping round-trip time.
    pub rtt_us: Histogram<u32>,
}

impl Hists {
    /// Empty histograms, 1 us to 1 h, 3 significant figures.
    pub fn new() -> Hists {
        Hists { connect_us: new_hist(), rtt_us: new_hist() }
    }

    /// Adds another shard's histograms.
    pub fn merge(&mut self, o: &Hists) {
        let _ = self.connect_us.add(&o.connect_us);
        let _ = self.rtt_us.add(&o.rtt_us);
    }
}

impl Default for Hists {
    fn default() -> Self {
        Hists::new()
    }
}

/// Longest latency a histogram tells apart (100 s); longer ones count as this.
pub const HIST_MAX_US: u64 = 100_000_000;

/// A histogram of microseconds from 1 us to 100 s with 3 significant
/// figures and 32-bit counts: about 72 KiB, kept once per client shard.
#[allow(clippy::expect_used)] // The bounds are constants that satisfy new_with_bounds.
pub fn new_hist() -> Histogram<u32> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("constant bounds are valid")
}

/// A set of shards of one kind, seen from the supervisor: control blocks,
/// threads, and the latest counters of each.
#[derive(Debug)]
pub struct Pool {
    ctls: Vec<Arc<ShardCtl>>,
    threads: Vec<JoinHandle<()>>,
    rx: Receiver<ShardMsg>,
    latest: Vec<ShardStats>,
    hists: Hists,
}

impl Pool {
    /// Spawns `n` shards named `name-<id>`, each with a private fd table
    /// holding only its doorbell, running `body(id, ctl, reporter)`; returns
    /// once every shard has called `reporter.ready(..)`, or the first set-up
    /// error. When a shard thread ends, its table is freed and every socket
    /// it still held is closed by the kernel.
    pub fn start<F>(name: &str, n: usize, body: F) -> Result<Pool, String>
    where
        F: Fn(usize, Arc<ShardCtl>, Reporter) + Send + Sync + 'static,
    {
        let body = Arc::new(body);
        let (tx, rx) = mpsc::channel();
        let mut pool = Pool {
            ctls: Vec::new(),
            threads: Vec::new(),
            rx,
            latest: vec![ShardStats::default(); n],
            hists: Hists::new(),
        };
        for id in 0..n {
            let ctl = ShardCtl::new().map_err(|e| format!("creating a shard doorbell: {e}"))?;
            let (ctl2, body, reporter) = (ctl.clone(), body.clone(), Reporter::new(id, tx.clone()));
            let spawned =
                std::thread::Builder::new().name(format!("{name}-{id}")).stack_size(STACK_BYTES).spawn(move || {
                    match process::private_fd_table(&[ctl2.bell_fd()]) {
                        Ok(()) => body(id, ctl2, reporter),
                        Err(e) => reporter.ready(Err(format!("private fd table (unshare CLONE_FILES): {e}"))),
                    }
                });
            match spawned {
                Ok(t) => {
                    pool.ctls.push(ctl);
                    pool.threads.push(t);
                }
                Err(e) => {
                    pool.stop();
                    return Err(format!("spawning shard {id}: {e}"));
                }
            }
        }
        drop(tx);
        if let Err(e) = await_ready(&pool.rx, n, Duration::from_secs(60)) {
            pool.stop();
            return Err(e);
        }
        Ok(pool)
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.ctls.len()
    }

    /// True when the pool has no shard.
    pub fn is_empty(&self) -> bool {
        self.ctls.is_empty()
    }

    /// Drains reports without blocking; returns the merged counters.
    pub fn poll(&mut self) -> ShardStats {
        while let Ok(msg) = self.rx.try_recv() {
            self.absorb(msg);
        }
        self.totals()
    }

    /// Waits up to `limit` for one report, then drains the rest.
    pub fn poll_wait(&mut self, limit: Duration) -> ShardStats {
        if let Ok(msg) = self.rx.recv_timeout(limit) {
            self.absorb(msg);
        }
        self.poll()
    }

    fn absorb(&mut self, msg: ShardMsg) {
        match msg {
            ShardMsg::Stats { shard, stats, .. } => {
                if let Some(slot) = self.latest.get_mut(shard) {
                    *slot = stats;
                }
            }
            ShardMsg::Hists { hists, .. } => self.hists.merge(&hists),
            ShardMsg::Ready { .. } => {}
        }
    }

    /// The merged counters as last reported.
    pub fn totals(&self) -> ShardStats {
        ShardStats::sum(&self.latest)
    }

    /// Histograms merged from the shards that have stopped.
    pub fn hists(&self) -> &Hists {
        &self.hists
    }

    /// Asks every shard to stop, joins them, and absorbs their last reports.
    pub fn stop(&mut self) -> ShardStats {
        for c in &self.ctls {
            c.request_stop();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.poll()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Collects the `Ready` messages of `n` shards, in any order, with a time
/// limit. Returns the first set-up error.
pub fn await_ready(rx: &Receiver<ShardMsg>, n: usize, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut ready = 0;
    let mut first_err = None;
    while ready < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ShardMsg::Ready { result, .. }) => {
                ready += 1;
                if let Err(e) = result {
                    first_err.get_or_insert(e);
                }
            }
            Ok(_) => {}
            Err(_) => {
                return Err(format!("only {ready} of {n} shards started within {limit:?}"));
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}
