//! Elastic shards: as few fd tables as the connections need.
//!
//! A pool starts with about one shard per core. Each shard fills its own fd
//! table; when the shards that still take new connections approach their
//! descriptor cap, the supervisor adds one, and an extra shard that stayed
//! empty for a while retires. This module is the pure policy (counts in,
//! decisions out, unit-tested) and, for the server, the steering program.
//!
//! # Steering the server's accepts
//! Every server shard listens on the same port with `SO_REUSEPORT`, and the
//! kernel spreads new connections over the listeners of the group. A full
//! shard must stop receiving them, but closing its listener would reset the
//! connections waiting in its accept queue. Instead, a classic BPF program
//! attached to the group (`SO_ATTACH_REUSEPORT_CBPF`) picks a listener at
//! random among the shards that still have room: a full shard keeps its
//! listener, and nothing queued is ever lost. The kernel numbers a group's
//! listeners in the order they joined, and a leaving listener's slot is
//! taken by the last one: [`Group`] mirrors that order.

use std::time::{Duration, Instant};

use crate::sys::net::BpfInsn;

/// When a shard counts as full: this share of its descriptors in use. The
/// rest is slack for what arrives before the supervisor's next look steers
/// new connections away (at 40,000 connects a second spread over two roomy
/// shards, 100 ms brings 2,000 each): measured at 95%, a 500k ramp left a
/// few hundred connections in the queues of shards that had hit EMFILE.
pub const FULL: f64 = 0.85;
/// When a shard stops counting as roomy: the supervisor adds a shard before
/// the roomy ones run out.
pub const ROOMY: f64 = 0.60;
/// How long an extra shard stays empty before it retires.
pub const RETIRE_AFTER: Duration = Duration::from_secs(30);

/// The supervisor's view of one running shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// Shard index in the pool.
    pub id: usize,
    /// Descriptors in use for connections (open plus connecting).
    pub used: u64,
    /// True for the shards started up front: they never retire.
    pub base: bool,
    /// True once the shard was asked to retire.
    pub retiring: bool,
}

/// What the supervisor should do now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// Shards to add.
    pub grow: usize,
    /// Shards that may take new connections (not full, not retiring).
    pub open_to_new: Vec<usize>,
    /// Shards to retire: extra, empty for [`RETIRE_AFTER`].
    pub retire: Vec<usize>,
}

/// The policy of one pool.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Connections one shard may hold.
    pub per_shard: u64,
    /// Roomy shards to keep: about the number of cores.
    pub keep_roomy: usize,
    /// Most shards the pool may run.
    pub max_shards: usize,
    /// False when `--shards` pins the count.
    pub elastic: bool,
    /// Since when each extra shard has been empty.
    empty_since: Vec<Option<Instant>>,
}

impl Policy {
    /// A policy for shards of `per_shard` connections.
    pub fn new(per_shard: u64, keep_roomy: usize, max_shards: usize, elastic: bool) -> Policy {
        Policy { per_shard, keep_roomy: keep_roomy.max(1), max_shards: max_shards.max(1), elastic, empty_since: vec![] }
    }

    /// Connections at which a shard counts as full.
    pub fn full_at(&self) -> u64 {
        ((self.per_shard as f64 * FULL) as u64).max(1)
    }

    fn roomy_below(&self) -> u64 {
        ((self.per_shard as f64 * ROOMY) as u64).max(1)
    }

    /// Decides from the running shards' views. `more_work`: connections may
    /// still come (a server always; a client while its ramp or reconnects
    /// are not done).
    pub fn decide(&mut self, views: &[View], more_work: bool, now: Instant) -> Decision {
        let full = self.full_at();
        let open_to_new: Vec<usize> = views.iter().filter(|v| !v.retiring && v.used < full).map(|v| v.id).collect();
        let mut d = Decision { open_to_new, ..Decision::default() };
        if !self.elastic {
            return d;
        }
        let roomy = views.iter().filter(|v| !v.retiring && v.used < self.roomy_below()).count();
        let running = views.iter().filter(|v| !v.retiring).count();
        if more_work && roomy < self.keep_roomy {
            d.grow = (self.keep_roomy - roomy).min(self.max_shards.saturating_sub(running));
        }
        let spare = roomy.saturating_sub(self.keep_roomy);
        for v in views {
            if self.empty_since.len() <= v.id {
                self.empty_since.resize(v.id + 1, None);
            }
            let slot = &mut self.empty_since[v.id];
            if v.base || v.retiring || v.used > 0 {
                *slot = None;
                continue;
            }
            let since = *slot.get_or_insert(now);
            if now.duration_since(since) >= RETIRE_AFTER && d.retire.len() < spare {
                d.retire.push(v.id);
                *slot = None;
            }
        }
        d
    }
}

/// The listeners of one `SO_REUSEPORT` group, in the kernel's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    /// Shard index at each slot of the group.
    slots: Vec<usize>,
}

impl Group {
    /// A shard's listener joined the group (at the end).
    pub fn join(&mut self, shard: usize) {
        self.slots.push(shard);
    }

    /// A shard's listener left: the last slot moves into its place, as the
    /// kernel does.
    pub fn leave(&mut self, shard: usize) {
        if let Some(i) = self.slots.iter().position(|&s| s == shard) {
            self.slots.swap_remove(i);
        }
    }

    /// The slots of `shards`, in shard order.
    pub fn slots_of(&self, shards: &[usize]) -> Vec<u32> {
        shards.iter().filter_map(|s| self.slots.iter().position(|x| x == s)).map(|i| i as u32).collect()
    }

    /// Number of listeners in the group.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no listener joined.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

// Classic BPF opcodes (linux/filter.h).
const LD_W_ABS: u16 = 0x20;
const ALU_MOD_K: u16 = 0x94;
const JMP_JEQ_K: u16 = 0x15;
const RET_K: u16 = 0x06;
const RET_A: u16 = 0x16;
/// `SKF_AD_OFF + SKF_AD_RANDOM`: a random 32-bit number.
const AD_RANDOM: u32 = 0xffff_f000 + 56;

/// A program that returns one of `slots` at random (an empty list returns
/// an index past any group, so the kernel falls back to its own hash).
pub fn steering_program(slots: &[u32]) -> Vec<BpfInsn> {
    let Some((&last, rest)) = slots.split_last() else {
        return vec![(RET_K, 0, 0, u32::MAX)];
    };
    let k = slots.len() as u32;
    let mut p = vec![(LD_W_ABS, 0, 0, AD_RANDOM), (ALU_MOD_K, 0, 0, k)];
    if slots.iter().enumerate().all(|(i, &s)| s == i as u32) {
        p.push((RET_A, 0, 0, 0));
        return p;
    }
    for (j, &slot) in rest.iter().enumerate() {
        p.push((JMP_JEQ_K, 0, 1, j as u32));
        p.push((RET_K, 0, 0, slot));
    }
    p.push((RET_K, 0, 0, last));
    p
}

/// Runs a steering program on a given random number: what the kernel does,
/// for tests.
pub fn run_program(p: &[BpfInsn], random: u32) -> u32 {
    let (mut a, mut pc) = (0u32, 0usize);
    while let Some(&(code, jt, jf, k)) = p.get(pc) {
        pc += 1;
        match code {
            LD_W_ABS => a = random,
            ALU_MOD_K => a %= k.max(1),
            JMP_JEQ_K => pc += usize::from(if a == k { jt } else { jf }),
            RET_K => return k,
            RET_A => return a,
            _ => return u32::MAX,
        }
    }
    u32::MAX
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: usize, used: u64, base: bool) -> View {
        View { id, used, base, retiring: false }
    }

    #[test]
    fn grows_before_the_roomy_shards_run_out() {
        let mut p = Policy::new(1000, 2, 10, true);
        let now = Instant::now();
        let d = p.decide(&[view(0, 100, true), view(1, 100, true)], true, now);
        assert_eq!(d.grow, 0);
        assert_eq!(d.open_to_new, vec![0, 1]);
        let d = p.decide(&[view(0, 700, true), view(1, 100, true)], true, now);
        assert_eq!(d.grow, 1, "one shard is past 60%: add one");
        let d = p.decide(&[view(0, 960, true), view(1, 700, true), view(2, 0, false)], true, now);
        assert_eq!(d.open_to_new, vec![1, 2], "a full shard takes no new connections");
        assert_eq!(d.grow, 1);
        // The cap holds.
        let mut p = Policy::new(1000, 2, 2, true);
        assert_eq!(p.decide(&[view(0, 990, true), view(1, 990, true)], true, now).grow, 0);
        // Nothing more to come: no growth.
        let mut p = Policy::new(1000, 2, 10, true);
        assert_eq!(p.decide(&[view(0, 990, true), view(1, 990, true)], false, now).grow, 0);
    }

    #[test]
    fn pinned_pools_never_change() {
        let mut p = Policy::new(1000, 2, 10, false);
        let d = p.decide(&[view(0, 990, true), view(1, 990, true)], true, Instant::now());
        assert_eq!((d.grow, d.retire.len()), (0, 0));
    }

    #[test]
    fn an_empty_extra_shard_retires_after_a_while() {
        let mut p = Policy::new(1000, 1, 10, true);
        let t0 = Instant::now();
        let views = [view(0, 0, true), view(1, 0, false), view(2, 10, false)];
        assert!(p.decide(&views, true, t0).retire.is_empty());
        assert!(p.decide(&views, true, t0 + RETIRE_AFTER / 2).retire.is_empty());
        assert_eq!(p.decide(&views, true, t0 + RETIRE_AFTER).retire, vec![1], "never a base shard");
        // One that got a connection meanwhile starts over.
        let mut p = Policy::new(1000, 1, 10, true);
        p.decide(&views, true, t0);
        p.decide(&[view(0, 0, true), view(1, 1, false)], true, t0 + RETIRE_AFTER / 2);
        assert!(p.decide(&views, true, t0 + RETIRE_AFTER).retire.is_empty());
    }

    #[test]
    fn group_mirrors_the_kernel_order() {
        let mut g = Group::default();
        for s in 0..4 {
            g.join(s);
        }
        g.leave(1);
        // Slot 1 now holds shard 3.
        assert_eq!(g.slots_of(&[0, 2, 3]), vec![0, 2, 1]);
        assert_eq!(g.len(), 3);
    }

    #[test]
    fn program_picks_only_given_slots() {
        let p = steering_program(&[2, 5, 7]);
        let mut seen = [0u32; 8];
        for r in 0..3000u32 {
            seen[run_program(&p, r.wrapping_mul(2_654_435_761)) as usize] += 1;
        }
        assert_eq!(seen.iter().enumerate().filter(|(_, n)| **n > 0).map(|(i, _)| i).collect::<Vec<_>>(), vec![2, 5, 7]);
        assert!(seen[2] > 900 && seen[5] > 900 && seen[7] > 900, "{seen:?}");
        // Contiguous from 0: three instructions.
        assert_eq!(steering_program(&[0, 1, 2]).len(), 3);
        assert_eq!(run_program(&steering_program(&[0, 1, 2]), 7), 1);
        assert_eq!(run_program(&steering_program(&[]), 7), u32::MAX);
    }
}
