//! Measuring a backend's headroom once a second, where it lives: against
//! its `--memory-budget`, else its cgroup's memory limit, else the machine
//! (the rules are on [`super::agent`]). The [`Throttle`] feeds the agent
//! port, the budget's refusal gate, the status line and `/metrics`.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::agent::{Agent, Basis, Headroom, Marks, Reply, State, arrival_rate};
use super::agent_port::AgentPort;
use crate::doctor::{Probe, margin};
use crate::error::{Error, Result};
use crate::procfs::ProcFs;
use crate::procfs::cgroup::{self, CgroupMemory};
use crate::units::{group, human_bytes};

/// Where the memory figures come from.
#[derive(Debug, Clone)]
enum Source {
    /// This process's anonymous RSS plus sockets × bytes per socket.
    Budget(u64),
    /// The cgroup (its directory is read again every time).
    Cgroup(CgroupMemory),
    /// /proc/meminfo.
    Machine,
}

/// One change of the agent's state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Transition {
    /// Seconds since serve started.
    pub t: f64,
    /// The new state.
    #[serde(flatten)]
    pub state: State,
}

/// The headroom part of serve's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// budget, cgroup or machine.
    pub basis: Basis,
    /// The memory limit, bytes.
    pub memory_limit_bytes: u64,
    /// The highest memory in use measured, bytes.
    pub peak_memory_used_bytes: u64,
    /// The agent's state changes.
    pub transitions: Vec<Transition>,
}

/// The smallest `--memory-budget` a serve holding `idle` bytes with no
/// connection may have: idle, it must sit below the `low` mark (where a
/// drained backend admits again), else it would drain before its first
/// connection. Whole MiB, at least one.
pub fn budget_floor(idle: u64, low: f64) -> u64 {
    const MIB: u64 = 1 << 20;
    let need = (idle as f64 / low.clamp(0.01, 1.0)).ceil() as u64;
    need.div_ceil(MIB).max(1) * MIB
}

/// The headroom meter, the agent's state machine and the agent port.
#[derive(Debug)]
pub struct Throttle {
    fs: ProcFs,
    source: Source,
    bytes_per_socket: u64,
    descriptors_limit: u64,
    watches_limit: u64,
    agent: Agent,
    reaction: f64,
    rate: f64,
    opened: Option<(Instant, u64)>,
    port: Option<AgentPort>,
    last: Option<(Headroom, Reply)>,
    admitting: bool,
    peak: u64,
    transitions: Vec<Transition>,
    started: Instant,
}

impl Throttle {
    /// Picks the basis, reads the kernel's bytes per socket and, with
    /// `agent`, listens for HAProxy's agent checks.
    pub fn start(
        budget: Option<u64>,
        agent: Option<SocketAddr>,
        marks: Marks,
        reaction: Duration,
        descriptors_limit: u64,
    ) -> Result<Self> {
        let fs = ProcFs::default();
        let source = match budget {
            Some(b) => {
                // What this serve holds now, idle: its shards are running.
                let idle = crate::machine::rss_anon(std::process::id()).unwrap_or(0);
                let floor = budget_floor(idle, marks.low);
                if b < floor {
                    return Err(Error::Refused {
                        reason: format!(
                            "--memory-budget {} is below the {} an idle serve needs here ({} of anonymous memory, under the {:.0}% mark where a drained backend admits again)",
                            human_bytes(b),
                            human_bytes(floor),
                            human_bytes(idle),
                            marks.low * 100.0
                        ),
                        fix: format!("give --memory-budget {}MiB or more (example: 64MiB)", floor >> 20),
                    });
                }
                Source::Budget(b)
            }
            None => match cgroup::memory(&fs) {
                Ok(Some(c)) if c.limit.is_some() => Source::Cgroup(c),
                _ => Source::Machine,
            },
        };
        let bytes_per_socket = Probe::read(&fs).socket_cost.bytes.max(1);
        let watches_limit = fs.sysctl_u64("fs.epoll.max_user_watches").unwrap_or(0);
        let mut t = Throttle {
            fs,
            source,
            bytes_per_socket,
            descriptors_limit,
            watches_limit,
            agent: Agent::new(marks),
            reaction: reaction.as_secs_f64(),
            rate: 0.0,
            opened: None,
            port: None,
            last: None,
            admitting: true,
            peak: 0,
            transitions: Vec::new(),
            started: Instant::now(),
        };
        let first = t.tick(0, 0).map(|(_, r)| r.line()).unwrap_or_else(|| "up ready 100%\n".into());
        if let Some(addr) = agent {
            t.port = Some(AgentPort::start(addr, first)?);
        }
        Ok(t)
    }

    /// The agent's address, when it listens.
    pub fn agent_addr(&self) -> Option<SocketAddr> {
        self.port.as_ref().map(AgentPort::addr)
    }

    /// The basis in use.
    pub fn basis(&self) -> Basis {
        match self.source {
            Source::Budget(_) => Basis::Budget,
            Source::Cgroup(_) => Basis::Cgroup,
            Source::Machine => Basis::Machine,
        }
    }

    /// Writes what the headroom is measured against (one line).
    pub fn announce(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let per = group(self.bytes_per_socket);
        match &self.source {
            Source::Budget(b) => writeln!(
                out,
                "headroom: budget {} (footprint: anonymous RSS + sockets held x {per} B of kernel memory)",
                human_bytes(*b)
            )?,
            Source::Cgroup(c) => writeln!(
                out,
                "headroom: cgroup {} {} {} (working set: usage minus inactive page cache)",
                c.path,
                c.limit_file(),
                human_bytes(c.limit.unwrap_or(0))
            )?,
            Source::Machine => {
                writeln!(out, "headroom: machine memory (no budget, no cgroup memory limit; {per} B per socket)")?
            }
        }
        if let Some(a) = self.agent_addr() {
            writeln!(out, "agent {a} (HAProxy agent-check)")?;
        }
        Ok(())
    }

    /// Measures with `held` sockets and `opened` accepted so far, advances
    /// the agent and updates its port. `None` when memory could not be read
    /// (the last reply stays).
    pub fn tick(&mut self, held: u64, opened: u64) -> Option<(Headroom, Reply)> {
        let now = Instant::now();
        if let Some((then, before)) = self.opened {
            let dt = now.duration_since(then).as_secs_f64().max(1e-3);
            self.rate = arrival_rate(self.rate, opened.saturating_sub(before) as f64 / dt);
        }
        self.opened = Some((now, opened));
        let (limit, used) = self.memory(held)?;
        let h = Headroom {
            basis: self.basis(),
            memory_limit: limit,
            memory_used: used,
            bytes_per_socket: self.bytes_per_socket,
            held,
            arriving: (self.rate * self.reaction).round() as u64,
            descriptors_limit: self.descriptors_limit,
            watches_limit: self.watches_limit,
        };
        let before = self.last.map(|(_, r)| r.state);
        let reply = self.agent.next(&h);
        let changed = match (before, reply.state) {
            (None, _) => true,
            (Some(State::Drain), State::Drain) => false,
            (Some(State::Up { .. }), State::Up { .. }) => false,
            _ => true,
        };
        if changed {
            let t = (self.started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
            self.transitions.push(Transition { t, state: reply.state });
        }
        self.peak = self.peak.max(used);
        // The budget refuses at 100% and admits again below the high mark.
        self.admitting =
            if self.admitting { used < limit } else { (used as f64) < limit as f64 * self.agent.marks().high };
        if let Some(p) = &self.port {
            p.set(reply.line());
        }
        self.last = Some((h, reply));
        Some((h, reply))
    }

    /// With a budget: whether new connections may be admitted (refused at
    /// the budget, admitted again below the high mark). `None` otherwise.
    pub fn budget_admits(&self) -> Option<bool> {
        matches!(self.source, Source::Budget(_)).then_some(self.admitting)
    }

    /// The last measurement.
    pub fn last(&self) -> Option<(Headroom, Reply)> {
        self.last
    }

    /// The status line's part: `mem 23.4 MiB / 64.0 MiB budget (37%) | agent up 100%`.
    pub fn status(&self) -> String {
        let Some((h, r)) = self.last else { return "mem unknown".into() };
        let pct = if h.memory_limit == 0 { 0.0 } else { h.memory_used as f64 * 100.0 / h.memory_limit as f64 };
        let mut s = format!(
            "mem {} / {} {} ({pct:.0}%)",
            human_bytes(h.memory_used),
            human_bytes(h.memory_limit),
            h.basis.name()
        );
        if self.port.is_some() {
            s.push_str(&format!(" | agent {}", r.state));
            if h.arriving > 0 || r.resource != super::agent::Resource::Memory {
                s.push_str(&format!(" ({} {:.0}% projected)", r.resource.name(), r.usage * 100.0));
            }
        }
        s
    }

    /// What the summary reports.
    pub fn summary(&self) -> Summary {
        Summary {
            basis: self.basis(),
            memory_limit_bytes: self.last.map_or(0, |(h, _)| h.memory_limit),
            peak_memory_used_bytes: self.peak,
            transitions: self.transitions.clone(),
        }
    }

    /// (limit, used) in bytes by the basis's rule.
    fn memory(&mut self, held: u64) -> Option<(u64, u64)> {
        match &mut self.source {
            Source::Budget(b) => {
                let rss = crate::machine::rss_anon(std::process::id())?;
                Some((*b, rss.saturating_add(held.saturating_mul(self.bytes_per_socket))))
            }
            Source::Cgroup(c) => {
                // Read the same directory again: the limit may change at run time.
                let fresh = cgroup::memory(&self.fs).ok().flatten().filter(|n| n.dir == c.dir && n.limit.is_some());
                if let Some(n) = fresh {
                    *c = n;
                }
                Some((c.limit.unwrap_or(0), c.working_set()))
            }
            Source::Machine => {
                let m = self.fs.meminfo().ok()?;
                Some((m.total.saturating_sub(margin(m.total)), m.in_use()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_floor_keeps_an_idle_serve_below_the_low_mark() {
        const MIB: u64 = 1 << 20;
        assert_eq!(budget_floor(0, 0.55), MIB, "at least one MiB");
        assert_eq!(budget_floor(700 << 10, 0.55), 2 * MIB, "700 KiB / 55% = 1.24 MiB, up to 2");
        assert_eq!(budget_floor(11 * MIB, 0.55), 20 * MIB);
        assert!(budget_floor(11 * MIB, 0.55) as f64 * 0.55 >= (11 * MIB) as f64);
    }
}
