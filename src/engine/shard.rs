//! Starting, stopping and hearing from shards.
//!
//! A [`Pool`] is a set of shards of one kind. Each shard publishes its
//! counters into its [`ShardCtl`] after every batch of events; the
//! supervisor reads them whenever it likes ([`Pool::totals`]) or waits for the
//! next publication ([`Pool::wait_change`]), so no shard is ever woken just to
//! report. Shards can be added while the pool runs (elastic growth) and
//! retired one by one.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::reactor::{self, Handler};
use super::samples::{Batch, Hists, Pending};
use super::stats::ShardStats;
use crate::error::{Error, Result};
use crate::sys::epoll::{self, Epoll, EventFd};
use crate::sys::net::BpfInsn;
use crate::sys::process;

use super::token::Token;

/// Stack size of a shard thread. The loop keeps its buffers on the heap; only
/// the stack pages actually touched count in RSS.
pub const STACK_BYTES: usize = 256 * 1024;

/// What the supervisor asks of a running shard, besides stopping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mail {
    /// Attach this steering program to the shard's listeners (server).
    Steer(Vec<BpfInsn>),
    /// Take no new work; the supervisor retires the shard once it is empty.
    Retire,
    /// The whole ramp is over: heartbeats may start (client).
    Heartbeats,
    /// Stop opening connections; hold what is held (client).
    Halt,
}

/// Wakes a supervisor waiting for the next publication, only while one
/// waits: a shard pays one relaxed load per batch otherwise.
#[derive(Debug, Default)]
struct Notify {
    waiting: AtomicBool,
    seq: Mutex<u64>,
    cv: Condvar,
}

impl Notify {
    fn poke(&self) {
        if self.waiting.load(Ordering::Relaxed) {
            *lock(&self.seq) += 1;
            self.cv.notify_all();
        }
    }

    fn wait(&self, limit: Duration) {
        let guard = lock(&self.seq);
        let seen = *guard;
        self.waiting.store(true, Ordering::Relaxed);
        let _ = self.cv.wait_timeout_while(guard, limit, |s| *s == seen);
        self.waiting.store(false, Ordering::Relaxed);
    }
}

/// Locks a mutex whose holder cannot leave it inconsistent (plain copies):
/// a poisoned lock is taken as is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

const NOT_CLOSING: u64 = u64::MAX;

/// How often a stopping pool looks whether its shards are done.
const STOP_LOOK: Duration = Duration::from_millis(20);

/// Control block shared by the supervisor and one shard: stop flag, doorbell,
/// mailbox, and what the shard last published.
#[derive(Debug)]
pub struct ShardCtl {
    stop: AtomicBool,
    stopped: AtomicBool,
    bell: EventFd,
    mail: Mutex<Vec<Mail>>,
    stats: Mutex<ShardStats>,
    /// Latency samples handed over and not yet taken (see
    /// [`samples`](super::samples)).
    pending: Mutex<Pending>,
    /// Connections left to close once the stop began (`NOT_CLOSING` before).
    closing: AtomicU64,
    /// An errno that ended the loop (0: none).
    failed: AtomicI32,
    notify: Arc<Notify>,
}

impl ShardCtl {
    fn new(notify: Arc<Notify>) -> io::Result<ShardCtl> {
        Ok(ShardCtl {
            stop: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            bell: EventFd::new()?,
            mail: Mutex::new(Vec::new()),
            stats: Mutex::new(ShardStats::default()),
            pending: Mutex::new(Pending::default()),
            closing: AtomicU64::new(NOT_CLOSING),
            failed: AtomicI32::new(0),
            notify,
        })
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

    /// Sends the shard a request and wakes it.
    pub fn send(&self, mail: Mail) {
        lock(&self.mail).push(mail);
        let _ = self.bell.notify();
    }

    pub(crate) fn take_mail(&self) -> Vec<Mail> {
        std::mem::take(&mut *lock(&self.mail))
    }

    pub(crate) fn bell_fd(&self) -> RawFd {
        self.bell.raw()
    }

    pub(crate) fn drain_bell(&self) {
        self.bell.drain();
    }

    /// Publishes the shard's counters (a copy; the error table only when it
    /// changed, so a batch without errors allocates nothing).
    pub(crate) fn publish(&self, s: &ShardStats) {
        {
            let mut p = lock(&self.stats);
            if p.errors != s.errors {
                *p = s.clone();
            } else {
                p.set_counters(s);
            }
        }
        self.notify.poke();
    }

    /// Hands over a batch of latency samples (leaving `b` empty).
    pub fn put_samples(&self, b: &mut Batch) {
        if !b.is_empty() {
            lock(&self.pending).put(b);
        }
    }

    fn drain_samples(&self, into: &mut Hists) {
        lock(&self.pending).drain_into(into);
    }

    /// The counters last published.
    pub fn stats(&self) -> ShardStats {
        lock(&self.stats).clone()
    }

    /// The shard's stop has `n` connections left to close.
    pub(crate) fn set_closing(&self, n: u64) {
        self.closing.store(n, Ordering::Relaxed);
        self.notify.poke();
    }

    /// Connections this shard still has to close: what it said during its
    /// stop, or what it last published before that; 0 once stopped.
    pub fn left_to_close(&self) -> u64 {
        if self.is_stopped() {
            return 0;
        }
        match self.closing.load(Ordering::Relaxed) {
            NOT_CLOSING => lock(&self.stats).open,
            n => n,
        }
    }

    pub(crate) fn fail(&self, errno: i32) {
        self.failed.store(errno, Ordering::Relaxed);
    }

    pub(crate) fn mark_stopped(&self) {
        self.stopped.store(true, Ordering::Release);
        self.notify.poke();
    }

    /// True once the shard's loop ended and it published its last counters.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}

/// Makes a shard's handler, on the shard's thread, inside its private fd
/// table: `(shard index, its epoll)`.
pub type Factory<H> = dyn Fn(usize, &Epoll) -> Result<H> + Send + Sync;

/// A set of shards of one kind, seen from the supervisor.
pub struct Pool<H: Handler + 'static> {
    name: String,
    factory: Arc<Factory<H>>,
    notify: Arc<Notify>,
    /// Each shard's control block; `None` once the shard retired, so that
    /// its doorbell (a descriptor in the supervisor's table) and its
    /// histograms go with it: a pool that grows and shrinks for weeks keeps
    /// nothing of the shards it retired but their counters.
    ctls: Vec<Option<Arc<ShardCtl>>>,
    threads: Vec<Option<JoinHandle<()>>>,
    /// The last counters of shards already retired (their threads are gone).
    retired: ShardStats,
    /// The latency histograms of the whole pool: samples go into them
    /// when the supervisor reads them.
    hists: Mutex<Hists>,
    /// Loop failures of shards already retired.
    retired_failures: Vec<(usize, i32)>,
}

impl<H: Handler + 'static> std::fmt::Debug for Pool<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("name", &self.name).field("shards", &self.ctls.len()).finish()
    }
}

impl<H: Handler + 'static> Pool<H> {
    /// Starts `n` shards named `name-<i>`, one after the other (so that the
    /// order in which they join a `SO_REUSEPORT` group is their index), each
    /// with a private fd table holding only its doorbell, its epoll and what
    /// its handler opens. Returns once all run, or the first error; a
    /// SIGINT or SIGTERM during the start stops it with
    /// [`Error::Interrupted`].
    pub fn start(name: &str, n: usize, factory: Arc<Factory<H>>) -> Result<Pool<H>> {
        let mut pool = Pool {
            name: name.to_string(),
            factory,
            notify: Arc::new(Notify::default()),
            ctls: Vec::new(),
            threads: Vec::new(),
            retired: ShardStats::default(),
            hists: Mutex::new(Hists::new()),
            retired_failures: Vec::new(),
        };
        for _ in 0..n {
            if crate::interrupt::requested().is_some() {
                pool.stop();
                return Err(Error::Interrupted);
            }
            if let Err(e) = pool.add() {
                pool.stop();
                return Err(e);
            }
        }
        Ok(pool)
    }

    /// Starts one more shard; returns its index once it runs.
    pub fn add(&mut self) -> Result<usize> {
        let id = self.ctls.len();
        let ctl = Arc::new(
            ShardCtl::new(self.notify.clone()).map_err(|e| Error::os("creating a shard doorbell (eventfd)", e))?,
        );
        let (tx, rx): (Sender<Result<()>>, Receiver<Result<()>>) = mpsc::channel();
        let (ctl2, factory) = (ctl.clone(), self.factory.clone());
        let thread = std::thread::Builder::new()
            .name(format!("{}-{id}", self.name))
            .stack_size(STACK_BYTES)
            .spawn(move || shard_main(id, &ctl2, &*factory, &tx))
            .map_err(|e| Error::os(format!("starting shard {id} (a thread)"), e))?;
        self.ctls.push(Some(ctl));
        self.threads.push(Some(thread));
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => Ok(id),
            Ok(Err(e)) => {
                self.join(id);
                Err(e)
            }
            Err(_) => Err(Error::os(
                format!("shard {id} did not start within 30 s"),
                io::Error::from(io::ErrorKind::TimedOut),
            )),
        }
    }

    /// Number of shards started, retired ones included (indices stay valid).
    pub fn len(&self) -> usize {
        self.ctls.len()
    }

    /// True when the pool has no shard.
    pub fn is_empty(&self) -> bool {
        self.ctls.is_empty()
    }

    /// Shards running now.
    pub fn running(&self) -> usize {
        self.threads.iter().filter(|t| t.is_some()).count()
    }

    /// True while shard `i` runs.
    pub fn is_running(&self, i: usize) -> bool {
        self.threads.get(i).is_some_and(|t| t.is_some())
    }

    /// Sends every running shard `mail`.
    pub fn broadcast(&self, mail: &Mail) {
        for (c, t) in self.ctls.iter().zip(&self.threads) {
            if let (Some(c), Some(_)) = (c, t) {
                c.send(mail.clone());
            }
        }
    }

    /// Sends shard `i` `mail`.
    pub fn send(&self, i: usize, mail: Mail) {
        if let Some(Some(c)) = self.ctls.get(i) {
            c.send(mail);
        }
    }

    /// The counters each shard last published (retired ones excluded).
    pub fn per_shard(&self) -> Vec<Option<ShardStats>> {
        self.ctls.iter().zip(&self.threads).map(|(c, t)| c.as_ref().zip(t.as_ref()).map(|(c, _)| c.stats())).collect()
    }

    /// The elastic policy's view of each running shard: `used` from its
    /// counters, `retiring` as the supervisor marked it; shard 0 is the base.
    pub fn views(
        &self,
        used: impl Fn(&ShardStats) -> u64,
        retiring: impl Fn(usize) -> bool,
    ) -> Vec<super::elastic::View> {
        self.per_shard()
            .iter()
            .enumerate()
            .filter_map(|(id, s)| {
                s.as_ref().map(|s| super::elastic::View { id, used: used(s), base: id == 0, retiring: retiring(id) })
            })
            .collect()
    }

    /// The merged counters as last published, retired shards included.
    pub fn totals(&self) -> ShardStats {
        let mut t = self.retired.clone();
        for (c, th) in self.ctls.iter().zip(&self.threads) {
            if let (Some(c), Some(_)) = (c, th) {
                t.merge(&c.stats());
            }
        }
        t
    }

    /// Moves every shard's waiting samples into the pool's histograms.
    fn collect(&self) -> MutexGuard<'_, Hists> {
        let mut h = lock(&self.hists);
        for c in self.ctls.iter().flatten() {
            c.drain_samples(&mut h);
        }
        h
    }

    /// The pool's histograms, every sample handed over so far included.
    pub fn hists(&self) -> Hists {
        self.collect().clone()
    }

    /// The round-trip histogram so far (the per-second sample needs only
    /// this one).
    pub fn rtt_hist(&self) -> Histogram<u32> {
        self.collect().rtt_us.clone()
    }

    /// Waits up to `limit` for any shard to publish, then returns the totals.
    pub fn wait_change(&self, limit: Duration) -> ShardStats {
        self.notify.wait(limit);
        self.totals()
    }

    /// Stops shard `i` (it closes what it holds) and keeps its counters.
    pub fn retire(&mut self, i: usize) {
        if let Some(Some(c)) = self.ctls.get(i) {
            c.request_stop();
        }
        self.join(i);
        // The thread is gone: this was the last reference to its control
        // block, and dropping it closes the doorbell.
        if let Some(c) = self.ctls.get_mut(i).and_then(Option::take) {
            match c.failed.load(Ordering::Relaxed) {
                0 => {}
                e => self.retired_failures.push((i, e)),
            }
        }
    }

    fn join(&mut self, i: usize) {
        if let Some(t) = self.threads.get_mut(i).and_then(Option::take) {
            let _ = t.join();
            let Some(c) = &self.ctls[i] else { return };
            self.retired.merge(&c.stats());
            c.drain_samples(&mut lock(&self.hists));
        }
    }

    /// Asks every shard to stop, joins them, and returns the final totals.
    pub fn stop(&mut self) -> ShardStats {
        self.stop_watching(Duration::MAX, |_| {})
    }

    /// Asks every shard to stop; while they close what they hold, calls
    /// `progress` with the connections left to close every `every`; then
    /// joins them and returns the final totals.
    pub fn stop_watching(&mut self, every: Duration, mut progress: impl FnMut(u64)) -> ShardStats {
        for c in self.ctls.iter().flatten() {
            c.request_stop();
        }
        let mut next = Instant::now().checked_add(every);
        while self.ctls.iter().flatten().any(|c| !c.is_stopped()) {
            // Short waits: a shard that stops between the check and the wait
            // may not wake this one (pokes skip a supervisor not waiting).
            let wait = next.map_or(STOP_LOOK, |n| n.saturating_duration_since(Instant::now()));
            self.notify.wait(wait.min(STOP_LOOK));
            if let Some(n) = next
                && Instant::now() >= n
            {
                progress(self.left_to_close());
                next = n.checked_add(every);
            }
        }
        for i in 0..self.threads.len() {
            self.join(i);
        }
        self.retired.clone()
    }

    /// Connections the shards still hold or have left to close.
    pub fn left_to_close(&self) -> u64 {
        self.ctls.iter().flatten().map(|c| c.left_to_close()).sum()
    }

    /// Asks every shard to stop without waiting (a second signal may exit
    /// the process while they close).
    pub fn request_stop(&self) {
        for c in self.ctls.iter().flatten() {
            c.request_stop();
        }
    }

    /// Shards whose loop failed, with the errno.
    pub fn failures(&self) -> Vec<(usize, i32)> {
        let mut f = self.retired_failures.clone();
        f.extend(self.ctls.iter().enumerate().filter_map(|(i, c)| match c.as_ref()?.failed.load(Ordering::Relaxed) {
            0 => None,
            e => Some((i, e)),
        }));
        f.sort_unstable();
        f
    }
}

impl<H: Handler + 'static> Drop for Pool<H> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A shard's thread: private fd table, epoll with the doorbell, the
/// handler, then the loop.
fn shard_main<H: Handler>(id: usize, ctl: &ShardCtl, factory: &Factory<H>, ready: &Sender<Result<()>>) {
    let setup = || -> Result<(Epoll, H)> {
        process::private_fd_table(&[ctl.bell_fd()])
            .map_err(|e| Error::os("a private fd table (unshare CLONE_FILES)", e))?;
        let epoll = Epoll::new().map_err(|e| Error::os("epoll_create1", e))?;
        epoll
            .add(ctl.bell_fd(), epoll::IN | epoll::ET, Token::Bell.encode())
            .map_err(|e| Error::os("epoll_ctl(doorbell)", e))?;
        let handler = factory(id, &epoll)?;
        Ok((epoll, handler))
    };
    match setup() {
        Ok((epoll, mut handler)) => {
            let _ = ready.send(Ok(()));
            reactor::run(ctl, &epoll, &mut handler);
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            ctl.mark_stopped();
        }
    }
}

/// Waits until `pred(totals)` holds or `limit` passes, waking on each
/// publication; returns the last totals.
pub fn wait_until<H: Handler + 'static>(
    pool: &Pool<H>,
    limit: Duration,
    mut pred: impl FnMut(&ShardStats) -> bool,
) -> ShardStats {
    let deadline = Instant::now() + limit;
    loop {
        let t = pool.totals();
        let left = deadline.saturating_duration_since(Instant::now());
        if pred(&t) || left.is_zero() {
            return t;
        }
        pool.wait_change(left.min(Duration::from_millis(250)));
    }
}
