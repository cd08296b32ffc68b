//! What `serve --agent` tells a load balancer: this backend's headroom as
//! one line of HAProxy's agent-check protocol. Pure: figures in, a line out.
//!
//! # The protocol
//!
//! HAProxy's `agent-check` (with `agent-port` and `agent-inter` on the
//! `server` line) opens a TCP connection to the agent every `agent-inter`
//! (2 s by default), optionally sends `agent-send`'s string, and reads one
//! ASCII line ending at the first `\r` or `\n`: words separated by spaces,
//! tabs or commas. The words used here:
//!
//! - `75%`: the server's weight, as a share of the weight configured on its
//!   `server` line;
//! - `maxconn:N`: the server's connection limit. Each HAProxy process (and
//!   each load balancer) applies it on its own, so a backend behind K
//!   processes may receive up to K × N;
//! - `drain`: administrative state DRAIN: no new connections (except by
//!   persistence), the established ones stay;
//! - `ready`: cancels DRAIN (and MAINT). Only the agent can undo its own
//!   `drain`, and HAProxy processes poll independently, so every reply while
//!   admitting carries `ready`;
//! - `up`: operational state UP, if the regular health check agrees.
//!
//! The server writes the latest line to every connection as it accepts it,
//! whatever other connections do, then closes once the checker has (within
//! half a second); an `agent-send` string is read and ignored
//! ([`super::agent_port`]).
//!
//! # The mapping
//!
//! Three resources bound how many more sockets this backend can hold:
//!
//! - **memory**: bytes in use against the limit that applies, in this order:
//!   `--memory-budget` (the footprint of this process: anonymous RSS plus
//!   sockets held × the kernel's measured bytes per socket), else the
//!   cgroup's limit (its working set against `memory.max` /
//!   `memory.limit_in_bytes`), else the machine (memory in use by tcpmax's
//!   rule against MemTotal minus the doctor's margin);
//! - **descriptors**: sockets held against the shards' fd tables
//!   (shards × descriptors per shard);
//! - **watches**: sockets held against `fs.epoll.max_user_watches`.
//!
//! The agent looks one reaction time ahead: between a connection arriving
//! and the balancer hearing about it pass one second of measurement plus
//! `agent-inter`, so the sockets expected to arrive meanwhile (the recent
//! accept rate × `--agent-reaction`, 1.5 s by default) count as held
//! already. The rate is the last second's, or half the previous estimate if
//! that is higher, so the estimate of a storm fades over a few seconds
//! instead of vanishing the moment a drain stops it.
//!
//! The usage `u` is the highest of the three projected shares; the resource
//! that has it is the one named. With the marks `fall < low < high`
//! (default 45%, 55%, 60%):
//!
//! | state | condition | reply |
//! |---|---|---|
//! | admitting | `u <= fall` | `up ready 100% maxconn:N` |
//! | admitting | `fall < u < high` | `up ready W% maxconn:N`, W falling linearly from 100% at `fall` to 10% at `high` |
//! | admitting | `u >= high` | becomes draining |
//! | draining | `u >= low` | `drain maxconn:N` |
//! | draining | `u < low` | becomes admitting, `up ready W% maxconn:N` (40% at the default 55%) |
//!
//! Why: a falling weight makes a weighted `leastconn` balancer send this
//! backend a shrinking share of new connections while the others still have
//! room, so the high mark is approached slowly instead of overshot; `drain`
//! at the high mark stops new connections while the held ones stay (a
//! refusal would reset them); the gap between `high` and `low` keeps the
//! state from flapping while connections come and go near the mark; and the
//! margin between `high` and the limit itself absorbs what arrives during
//! the check interval (the agent's figure is up to one second old, HAProxy
//! asks every `agent-inter`).
//!
//! The defaults are calibrated on that last point. The arrivals that matter
//! are storms: a ramp, or the reconnecting clients of a failed peer,
//! thousands a second on each backend. The projection covers a storm
//! already under way; the 40% above the high mark covers one that starts
//! within the last second (about 6,800 idle sockets of a 64 MiB budget) and
//! the buffers that busy connections add to the idle socket's cost, which
//! is only the floor. The weight stays at 100% up to 45% so that a balancer
//! spreads evenly while there is plenty of room, then falls to 10% at the
//! high mark; the 5-point gap between `low` and `high` is enough for held
//! connections, which leave only when their clients close them.
//!
//! `N` is the most this backend can hold: the sockets held now plus the room
//! left before the first limit (memory room is bytes left over the bytes per
//! socket). It is never 0, which HAProxy reads as "no limit".

use std::fmt;

use serde::Serialize;

/// Which limit the memory figures are measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    /// `--memory-budget`: this process's own footprint against its budget.
    Budget,
    /// The cgroup's working set against its memory limit.
    Cgroup,
    /// The machine's memory in use against MemTotal minus the margin.
    Machine,
}

impl Basis {
    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Basis::Budget => "budget",
            Basis::Cgroup => "cgroup",
            Basis::Machine => "machine",
        }
    }
}

/// A resource that bounds the sockets a backend can still take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    /// Memory against the limit of the [`Basis`].
    Memory,
    /// Descriptors in the shards' fd tables.
    Descriptors,
    /// `fs.epoll.max_user_watches`.
    Watches,
}

impl Resource {
    /// The three, in report order.
    pub const ALL: [Resource; 3] = [Resource::Memory, Resource::Descriptors, Resource::Watches];

    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Resource::Memory => "memory",
            Resource::Descriptors => "descriptors",
            Resource::Watches => "watches",
        }
    }
}

/// One measurement of a backend's headroom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Headroom {
    /// What the memory figures are measured against.
    pub basis: Basis,
    /// The memory limit in bytes (budget, cgroup limit, or usable machine memory).
    pub memory_limit: u64,
    /// Memory in use in bytes, by the basis's rule.
    pub memory_used: u64,
    /// Kernel bytes per idle socket (the doctor's figure).
    pub bytes_per_socket: u64,
    /// Sockets held now.
    pub held: u64,
    /// Sockets expected to arrive before the balancer hears of this
    /// measurement (recent accept rate × reaction time).
    pub arriving: u64,
    /// Descriptors over all shards' fd tables (0: unknown, ignored).
    pub descriptors_limit: u64,
    /// `fs.epoll.max_user_watches` (0: unknown, ignored).
    pub watches_limit: u64,
}

impl Headroom {
    /// The share of `r` in use now, 0.0 to 1.0 and above; 0 when its limit
    /// is unknown.
    pub fn usage(&self, r: Resource) -> f64 {
        self.share(r, 0)
    }

    /// The share of `r` in use once the arriving sockets are held.
    pub fn projected(&self, r: Resource) -> f64 {
        self.share(r, self.arriving)
    }

    fn share(&self, r: Resource, more: u64) -> f64 {
        let (used, limit) = match r {
            Resource::Memory => {
                (self.memory_used.saturating_add(more.saturating_mul(self.bytes_per_socket)), self.memory_limit)
            }
            Resource::Descriptors => (self.held.saturating_add(more), self.descriptors_limit),
            Resource::Watches => (self.held.saturating_add(more), self.watches_limit),
        };
        if limit == 0 { 0.0 } else { used as f64 / limit as f64 }
    }

    /// Sockets `r` still allows; `u64::MAX` when its limit is unknown.
    pub fn room(&self, r: Resource) -> u64 {
        match r {
            Resource::Memory if self.memory_limit == 0 => u64::MAX,
            Resource::Memory => self.memory_limit.saturating_sub(self.memory_used) / self.bytes_per_socket.max(1),
            Resource::Descriptors if self.descriptors_limit == 0 => u64::MAX,
            Resource::Descriptors => self.descriptors_limit.saturating_sub(self.held),
            Resource::Watches if self.watches_limit == 0 => u64::MAX,
            Resource::Watches => self.watches_limit.saturating_sub(self.held),
        }
    }

    /// The resource with the highest projected share, and that share (the
    /// first of [`Resource::ALL`] wins a tie).
    pub fn tightest(&self) -> (Resource, f64) {
        let mut best = (Resource::Memory, self.projected(Resource::Memory));
        for r in &Resource::ALL[1..] {
            let u = self.projected(*r);
            if u > best.1 {
                best = (*r, u);
            }
        }
        best
    }

    /// The resource with the least room, and that room in sockets.
    pub fn room_left(&self) -> (Resource, u64) {
        let mut best = (Resource::Memory, self.room(Resource::Memory));
        for r in &Resource::ALL[1..] {
            let room = self.room(*r);
            if room < best.1 {
                best = (*r, room);
            }
        }
        best
    }
}

/// The marks, as shares of a limit in use.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Marks {
    /// The weight starts falling above this.
    pub fall: f64,
    /// A draining backend admits again below this.
    pub low: f64,
    /// A backend drains at or above this.
    pub high: f64,
}

/// The weight at the high mark, percent: low enough that a weighted
/// balancer sends little, above 0% (which HAProxy shows as DRAIN).
pub const FLOOR_WEIGHT: u8 = 10;

impl Default for Marks {
    fn default() -> Marks {
        Marks { fall: 0.45, low: 0.55, high: 0.60 }
    }
}

impl Marks {
    /// Checks `0 < fall < low < high <= 1`.
    pub fn new(fall: f64, low: f64, high: f64) -> Result<Marks, String> {
        if !(0.0 < fall && fall < low && low < high && high <= 1.0) {
            return Err(format!(
                "agent marks {}%,{}%,{}% must rise strictly and stay within (0, 100] (example: 50%,70%,80%)",
                fall * 100.0,
                low * 100.0,
                high * 100.0
            ));
        }
        Ok(Marks { fall, low, high })
    }

    /// The weight, percent, for a share `u` in use (ignoring hysteresis):
    /// 100 up to `fall`, then linear down to [`FLOOR_WEIGHT`] at `high`.
    pub fn weight(&self, u: f64) -> u8 {
        if u <= self.fall {
            return 100;
        }
        let span = 100.0 - f64::from(FLOOR_WEIGHT);
        let w = 100.0 - span * (u - self.fall) / (self.high - self.fall);
        w.round().clamp(f64::from(FLOOR_WEIGHT), 100.0) as u8
    }
}

/// Parses `50%,70%,80%` (fall, low, high).
pub fn parse_marks(s: &str) -> Result<Marks, String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let bad = || format!("`{s}` is not three percentages FALL,LOW,HIGH (example: 50%,70%,80%)");
    if parts.len() != 3 {
        return Err(bad());
    }
    let mut v = [0.0; 3];
    for (slot, p) in v.iter_mut().zip(&parts) {
        let n: f64 = p.strip_suffix('%').unwrap_or(p).trim().parse().map_err(|_| bad())?;
        *slot = n / 100.0;
    }
    Marks::new(v[0], v[1], v[2])
}

/// What the agent says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum State {
    /// Admitting new connections at this weight (percent).
    Up {
        /// Percent of the configured weight.
        weight: u8,
    },
    /// No new connections; the held ones stay.
    Drain,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Up { weight } => write!(f, "up {weight}%"),
            State::Drain => write!(f, "drain"),
        }
    }
}

/// One reply of the agent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Reply {
    /// The state after this measurement.
    pub state: State,
    /// The `maxconn:N` figure.
    pub maxconn: u64,
    /// The resource with the highest projected share.
    pub resource: Resource,
    /// Its projected share.
    pub usage: f64,
}

impl Reply {
    /// The protocol line, `\n`-terminated.
    pub fn line(&self) -> String {
        match self.state {
            State::Up { weight } => format!("up ready {weight}% maxconn:{}\n", self.maxconn),
            State::Drain => format!("drain maxconn:{}\n", self.maxconn),
        }
    }
}

/// How much of the previous arrival-rate estimate survives a second.
pub const RATE_DECAY: f64 = 0.5;

/// The arrival-rate estimate after a second in which `rate` sockets a
/// second were accepted: that rate, or the previous estimate decayed if it
/// is higher.
pub fn arrival_rate(previous: f64, rate: f64) -> f64 {
    rate.max(previous * RATE_DECAY).max(0.0)
}

/// The largest `maxconn:N` sent: HAProxy keeps it in a C `int`.
pub const MAX_MAXCONN: u64 = i32::MAX as u64;

/// The agent's state machine: the marks and whether it is draining.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agent {
    marks: Marks,
    draining: bool,
}

impl Agent {
    /// Starts admitting.
    pub fn new(marks: Marks) -> Agent {
        Agent { marks, draining: false }
    }

    /// The marks.
    pub fn marks(&self) -> Marks {
        self.marks
    }

    /// True while draining.
    pub fn draining(&self) -> bool {
        self.draining
    }

    /// Takes one measurement and gives the reply (see the module's table).
    pub fn next(&mut self, h: &Headroom) -> Reply {
        let (resource, usage) = h.tightest();
        self.draining = if self.draining { usage >= self.marks.low } else { usage >= self.marks.high };
        let state = if self.draining { State::Drain } else { State::Up { weight: self.marks.weight(usage) } };
        let room = h.room_left().1;
        let maxconn = h.held.saturating_add(room).clamp(1, MAX_MAXCONN);
        Reply { state, maxconn, resource, usage }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// The marks the mapping tests use: 50%, 70%, 80% (round numbers).
    fn m() -> Marks {
        Marks::new(0.5, 0.7, 0.8).unwrap()
    }

    /// A 64 MiB budget with `used` MiB in use, 4,000 B per socket.
    fn budget(used_mib: f64, held: u64) -> Headroom {
        Headroom {
            basis: Basis::Budget,
            memory_limit: 64 * MIB,
            memory_used: (used_mib * MIB as f64) as u64,
            bytes_per_socket: 4_000,
            held,
            arriving: 0,
            descriptors_limit: 19_936,
            watches_limit: 5_000_000,
        }
    }

    #[test]
    fn a_storm_drains_early_and_its_estimate_fades() {
        let mut a = Agent::new(m());
        // 20% in use, but 8,000 sockets a second arriving for 1.5 s: 12,000
        // x 4,000 B more is 91% projected.
        let storm = Headroom { arriving: 12_000, ..budget(12.8, 3_000) };
        assert!((storm.usage(Resource::Memory) - 0.2).abs() < 1e-6);
        let r = a.next(&storm);
        assert_eq!(r.state, State::Drain);
        assert!(r.usage > 0.9, "{r:?}");
        // maxconn counts the room left now, not the projection.
        assert_eq!(r.maxconn, 3_000 + (64 * MIB - (12.8 * MIB as f64) as u64) / 4_000);
        // The drain stopped the arrivals; the estimate halves each second:
        // 6,000, 3,000, 1,500, 750 sockets arriving on 31% in use.
        let mut rate = 8_000.0;
        let mut states = Vec::new();
        for _ in 0..4 {
            rate = arrival_rate(rate, 0.0);
            let h = Headroom { arriving: (rate * 1.5) as u64, ..budget(20.0, 4_000) };
            states.push(a.next(&h).state);
        }
        // 67% projected: below the low mark, at a reduced weight; then full.
        assert_eq!(states[0], State::Up { weight: 49 });
        assert!(states[1..].iter().all(|s| *s == State::Up { weight: 100 }), "{states:?}");
        assert_eq!(arrival_rate(100.0, 300.0), 300.0);
        assert_eq!(arrival_rate(1_000.0, 300.0), 500.0);
    }

    #[test]
    fn weight_falls_linearly_between_fall_and_high() {
        let m = m();
        assert_eq!(m.weight(0.0), 100);
        assert_eq!(m.weight(0.5), 100);
        assert_eq!(m.weight(0.6), 70);
        assert_eq!(m.weight(0.7), 40);
        assert_eq!(m.weight(0.8), 10);
        assert_eq!(m.weight(0.99), 10);
        let mut last = 100;
        for i in 0..=100 {
            let w = m.weight(f64::from(i) / 100.0);
            assert!(w <= last, "weight never rises with usage");
            assert!(w >= FLOOR_WEIGHT);
            last = w;
        }
    }

    #[test]
    fn hysteresis_drains_at_high_and_readmits_below_low() {
        let mut a = Agent::new(m());
        // Up through the marks, then back down (MiB of 64).
        let states: Vec<State> = [10.0, 32.0, 41.6, 51.3, 60.0, 48.0, 45.0, 44.0, 20.0]
            .iter()
            .map(|&u| a.next(&budget(u, 0)).state)
            .collect();
        assert_eq!(
            states,
            vec![
                State::Up { weight: 100 },
                State::Up { weight: 100 }, // 50%: the weight starts falling above it
                State::Up { weight: 55 },  // 65%
                State::Drain,              // 80.2%
                State::Drain,
                State::Drain,             // 75%: above the low mark
                State::Drain,             // 70.3%
                State::Up { weight: 44 }, // 68.75%: below the low mark, weight from the line
                State::Up { weight: 100 },
            ]
        );
    }

    #[test]
    fn between_the_marks_the_state_depends_on_the_way_in() {
        let mid = budget(48.0, 0); // 75%: between low and high
        let mut rising = Agent::new(m());
        assert_eq!(rising.next(&mid).state, State::Up { weight: 25 });
        let mut falling = Agent::new(m());
        assert_eq!(falling.next(&budget(52.0, 0)).state, State::Drain);
        assert_eq!(falling.next(&mid).state, State::Drain);
        assert!(falling.draining());
    }

    #[test]
    fn lines_follow_the_protocol() {
        let mut a = Agent::new(m());
        let r = a.next(&budget(16.0, 1_000));
        // (64 - 16) MiB / 4,000 B = 12,582 more sockets.
        assert_eq!(r.line(), "up ready 100% maxconn:13582\n");
        let r = a.next(&budget(62.0, 15_000));
        assert_eq!(r.line(), format!("drain maxconn:{}\n", 15_000 + 2 * MIB / 4_000));
        let r = a.next(&budget(41.6, 9_000));
        assert_eq!(r.line(), "up ready 55% maxconn:14872\n");
        for line in [r.line(), Reply { state: State::Drain, ..r }.line()] {
            assert!(line.ends_with('\n') && line.is_ascii());
            assert_eq!(line.matches('\n').count(), 1);
            for word in line.trim_end().split([' ', ',', '\t']) {
                let known = matches!(word, "up" | "ready" | "drain")
                    || word.strip_suffix('%').is_some_and(|n| n.parse::<u8>().is_ok_and(|n| n <= 100))
                    || word.strip_prefix("maxconn:").is_some_and(|n| n.parse::<u64>().is_ok_and(|n| n > 0));
                assert!(known, "{word:?} is not an agent-check word");
            }
        }
    }

    #[test]
    fn maxconn_is_never_zero() {
        let mut a = Agent::new(m());
        let full = Headroom { memory_used: 70 * MIB, held: 0, ..budget(0.0, 0) };
        let r = a.next(&full);
        assert_eq!(r.maxconn, 1, "0 would mean no limit to HAProxy");
        assert_eq!(r.state, State::Drain);
    }

    #[test]
    fn the_tightest_resource_decides() {
        let mut a = Agent::new(m());
        // Memory at 25%, descriptors at 85%: descriptors drain it.
        let h = Headroom { descriptors_limit: 20_000, ..budget(16.0, 17_000) };
        let r = a.next(&h);
        assert_eq!(r.resource, Resource::Descriptors);
        assert_eq!(r.state, State::Drain);
        assert_eq!(h.room_left(), (Resource::Descriptors, 3_000));
        assert_eq!(r.maxconn, 20_000);
        // Watches at 60%, the rest lower.
        let h = Headroom { watches_limit: 10_000, ..budget(8.0, 6_000) };
        assert_eq!(h.tightest().0, Resource::Watches);
        assert_eq!(Agent::new(m()).next(&h).state, State::Up { weight: 70 });
    }

    #[test]
    fn unknown_limits_are_ignored() {
        let h = Headroom { descriptors_limit: 0, watches_limit: 0, ..budget(16.0, 10) };
        assert_eq!(h.usage(Resource::Descriptors), 0.0);
        assert_eq!(h.room(Resource::Watches), u64::MAX);
        assert_eq!(h.room_left().0, Resource::Memory);
        let none = Headroom { memory_limit: 0, ..h };
        assert_eq!(none.room_left().1, u64::MAX);
        assert_eq!(Agent::new(m()).next(&none).maxconn, MAX_MAXCONN);
    }

    #[test]
    fn marks_parse_and_validate() {
        assert_eq!(parse_marks("50%,70%,80%"), Ok(m()));
        assert_eq!(parse_marks("45%,55%,60%"), Ok(Marks::default()));
        let d = Marks::default();
        assert_eq!((d.weight(0.45), d.weight(0.55), d.weight(0.6)), (100, 40, 10));
        assert_eq!(parse_marks(" 40 , 60 ,90%"), Marks::new(0.4, 0.6, 0.9));
        assert!(parse_marks("70%,50%,80%").is_err());
        assert!(parse_marks("50%,70%,101%").is_err());
        assert!(parse_marks("0%,70%,80%").is_err());
        assert!(parse_marks("50%,70%").is_err());
        assert!(parse_marks("a,b,c").is_err());
    }

    #[test]
    fn display_names() {
        assert_eq!(State::Up { weight: 40 }.to_string(), "up 40%");
        assert_eq!(State::Drain.to_string(), "drain");
        assert_eq!(Basis::Cgroup.name(), "cgroup");
        assert_eq!(Resource::Watches.name(), "watches");
    }
}
