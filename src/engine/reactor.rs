//! The one shard event loop, for the server and the client alike.
//!
//! The loop owns the epoll instance, the event buffer and the doorbell; a
//! [`Handler`] (the server's or the client's) owns the connections and
//! decides what each event means. After every batch of events the handler
//! says what it needs next ([`Turn`]): more work now, a deadline that really
//! exists (a heartbeat, a connect timeout, a ramp step), or nothing, in which
//! case the loop blocks in `epoll_wait` until an event or the doorbell. A
//! shard with nothing to do therefore costs no wake-up at all.
//!
//! Counters are published to the shard's [`ShardCtl`] after each batch, so
//! the supervisor reads them at any time without waking the shard.

use std::time::Instant;

use super::shard::{Mail, ShardCtl};
use super::stats::ShardStats;
use super::token::Token;
use crate::sys::epoll::{self, Epoll};
use crate::sys::errno_of;

/// Events taken from the kernel per `epoll_wait`.
const EVENTS: usize = 256;
/// Batches of pending events taken in at the stop, at most.
const DRAIN_ROUNDS: usize = 16;

/// What a handler needs after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Work is left over (a bounded batch stopped early): poll again at once.
    Again,
    /// Nothing to do before this instant unless an event comes.
    Until(Instant),
    /// Nothing to do until an event comes.
    Idle,
}

impl Turn {
    /// The earlier of two needs.
    pub fn min(self, other: Turn) -> Turn {
        match (self, other) {
            (Turn::Again, _) | (_, Turn::Again) => Turn::Again,
            (Turn::Until(a), Turn::Until(b)) => Turn::Until(a.min(b)),
            (Turn::Until(a), Turn::Idle) | (Turn::Idle, Turn::Until(a)) => Turn::Until(a),
            (Turn::Idle, Turn::Idle) => Turn::Idle,
        }
    }

    /// The epoll timeout in milliseconds (-1: block), rounded up so a
    /// deadline is never woken for early.
    pub fn timeout_ms(self, now: Instant) -> i32 {
        match self {
            Turn::Again => 0,
            Turn::Idle => -1,
            Turn::Until(t) => {
                let us = t.saturating_duration_since(now).as_micros();
                us.div_ceil(1000).min(i32::MAX as u128) as i32
            }
        }
    }
}

/// A handler reports what is left to close after this many closes.
pub const CLOSE_REPORT_EVERY: usize = 4096;

/// One side of the engine: the server or the client.
pub trait Handler {
    /// A readiness event on one of the handler's descriptors.
    fn on_ready(&mut self, epoll: &Epoll, token: Token, flags: u32);
    /// The supervisor sent something other than a stop.
    fn on_mail(&mut self, epoll: &Epoll, mail: Mail);
    /// After each batch: do timed work, say what is needed next.
    fn on_turn(&mut self, epoll: &Epoll, now: Instant) -> Turn;
    /// The stop: take in what is pending, then close everything, telling
    /// `left` now and then how many connections remain to close (closing a
    /// million is seconds of kernel work, and the supervisor shows it).
    fn on_stop(&mut self, epoll: &Epoll, left: &dyn Fn(u64));
    /// The counters to publish.
    fn stats(&self) -> &ShardStats;
    /// Publishes anything beyond the counters (histograms); called with the
    /// counters, after each batch.
    fn publish_extra(&mut self, _ctl: &ShardCtl) {}
}

/// Runs `handler` until a stop is requested, then lets it close everything
/// and publishes the last counters.
pub fn run<H: Handler>(ctl: &ShardCtl, epoll: &Epoll, handler: &mut H) {
    let mut events = vec![epoll::empty_event(); EVENTS];
    let mut turn = Turn::Again;
    while !ctl.stop_requested() {
        let n = match epoll.wait(&mut events, turn.timeout_ms(Instant::now())) {
            Ok(n) => n,
            Err(e) => {
                ctl.fail(errno_of(&e));
                break;
            }
        };
        for ev in &events[..n] {
            match Token::decode(epoll::token(ev)) {
                Token::Bell => {
                    ctl.drain_bell();
                    for mail in ctl.take_mail() {
                        handler.on_mail(epoll, mail);
                    }
                }
                token => handler.on_ready(epoll, token, epoll::flags(ev)),
            }
        }
        turn = handler.on_turn(epoll, Instant::now());
        ctl.publish(handler.stats());
        handler.publish_extra(ctl);
    }
    // Take in what is pending at the stop (resets, closes, connects that
    // completed), bounded, so the last counters describe one moment.
    for _ in 0..DRAIN_ROUNDS {
        let n = epoll.wait(&mut events, 0).unwrap_or(0);
        for ev in &events[..n] {
            match Token::decode(epoll::token(ev)) {
                Token::Bell => ctl.drain_bell(),
                token => handler.on_ready(epoll, token, epoll::flags(ev)),
            }
        }
        if n < events.len() {
            break;
        }
    }
    handler.on_stop(epoll, &|n| ctl.set_closing(n));
    ctl.publish(handler.stats());
    handler.publish_extra(ctl);
    ctl.mark_stopped();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn turns_combine_and_time_out() {
        let now = Instant::now();
        let soon = now + Duration::from_micros(1500);
        assert_eq!(Turn::Idle.min(Turn::Until(soon)), Turn::Until(soon));
        assert_eq!(Turn::Until(soon).min(Turn::Again), Turn::Again);
        assert_eq!(Turn::Idle.timeout_ms(now), -1);
        assert_eq!(Turn::Again.timeout_ms(now), 0);
        assert_eq!(Turn::Until(soon).timeout_ms(now), 2, "rounded up, never early");
        assert_eq!(Turn::Until(now).timeout_ms(now + Duration::from_secs(1)), 0);
    }
}
