//! The report of a rehearsal: per backend what it held, its memory against
//! its budget, its agent's state changes and HAProxy's view of them; the
//! load balancer tier's connections and descriptors and the arithmetic
//! behind it; the client; the limit that bound first; the failure
//! rehearsal; what was cleaned up. JSON (`schemas/cluster.schema.json`) and
//! a human summary.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use super::live::Overflows;
use crate::machine::Machine;
use crate::units::{group, human_bytes};

/// One change of state, seconds since the client started.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// Seconds since the client started.
    pub t: f64,
    /// `up 100%`, `drain`; HAProxy's `UP`, `DRAIN`, `DOWN`.
    pub state: String,
}

/// One backend host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendReport {
    /// `b1`.
    pub name: String,
    /// Where serve listened.
    pub address: String,
    /// Its memory budget.
    pub budget_bytes: u64,
    /// Its highest footprint measured (its own status lines).
    pub peak_bytes: u64,
    /// Connections held at the end of the hold.
    pub held: u64,
    /// Most connections held at once.
    pub peak_held: u64,
    /// True when its agent said `drain` at least once.
    pub drained: bool,
    /// When its agent first said `drain`.
    pub drained_at_s: Option<f64>,
    /// Connections it held then.
    pub drained_at_held: Option<u64>,
    /// Its footprint then.
    pub drained_at_bytes: Option<u64>,
    /// Connections it refused (over its budget, or its own caps).
    pub refused: u64,
    /// True when `--kill-backend` killed it.
    pub killed: bool,
    /// Its agent's state changes.
    pub agent: Vec<Change>,
    /// HAProxy's view of it (all processes agreeing, or `DRAIN 4/6`).
    pub lb_view: Vec<Change>,
}

/// The load balancer tier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LbReport {
    /// The frontend address.
    pub frontend: String,
    /// HAProxy processes.
    pub processes: usize,
    /// `maxconn` of each.
    pub maxconn_per_process: u64,
    /// `ulimit-n` of each.
    pub nofile_per_process: u64,
    /// Connections held through the frontends at the end of the hold.
    pub held: u64,
    /// Most at once.
    pub peak_held: u64,
    /// Descriptors of each process at the end of the hold.
    pub descriptors: Vec<u64>,
    /// Source addresses toward the backends.
    pub sources: Vec<String>,
    /// Source addresses per process.
    pub sources_per_process: usize,
    /// How the tier was sized.
    pub arithmetic: Vec<String>,
}

/// The client host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClientReport {
    /// Its source addresses.
    pub sources: Vec<String>,
    /// Established at the end of the hold.
    pub held: u64,
    /// Most established at once.
    pub peak_held: u64,
    /// Connect attempts that failed.
    pub failed: u64,
    /// Connections reopened after a close or a failure.
    pub reconnects: u64,
    /// Failures by errno.
    pub errors: Vec<ErrnoCount>,
}

/// Failures of one errno.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrnoCount {
    /// `ECONNRESET`.
    pub errno: String,
    /// How many.
    pub count: u64,
}

/// The limit reached first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FirstLimit {
    /// `backend_drain`, `backend_refusal`, `lb_maxconn`, `client_errors` or `none`.
    pub kind: String,
    /// Seconds since the client started.
    pub at_s: Option<f64>,
    /// What happened, with the figures.
    pub what: String,
}

/// Accept-queue counters of one host over a span.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostOverflows {
    /// `b1`, `lb`, `client`.
    pub host: String,
    /// The counters' growth.
    #[serde(flatten)]
    pub counters: Overflows,
}

/// The failure rehearsal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KillReport {
    /// The backend killed.
    pub backend: String,
    /// Seconds since the client started.
    pub at_s: f64,
    /// Connections it held when killed.
    pub held_at_kill: u64,
    /// The client's connections just before.
    pub client_before: u64,
    /// The fewest the client held afterwards.
    pub client_lowest: u64,
    /// Connections the other backends gained afterwards: the ones that
    /// came back through the load balancer.
    pub came_back: u64,
    /// Seconds from the kill until the last of them was back (or until the
    /// client held as many as before).
    pub seconds_to_come_back: Option<f64>,
    /// Accept-queue counters' growth from the kill to the end, per host.
    pub overflows: Vec<HostOverflows>,
}

/// The rehearsal network.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkReport {
    /// The private subnet.
    pub subnet: String,
    /// The bridge and the namespace it lives in.
    pub bridge: String,
    /// Every namespace created.
    pub namespaces: Vec<String>,
}

/// What was removed at the end.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CleanupReport {
    /// Processes stopped by the cleanup (those still running).
    pub processes: usize,
    /// Namespaces deleted.
    pub namespaces: Vec<String>,
    /// Namespaces of this run still listed afterwards (should be none).
    pub left_behind: Vec<String>,
}

/// One second of the rehearsal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the client started.
    pub t: f64,
    /// Client established.
    pub client: u64,
    /// Load balancer frontends.
    pub lb: u64,
    /// Held per backend, in order.
    pub backends: Vec<u64>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    /// Connections asked for.
    pub target: u64,
    /// Held end to end at the end of the hold: the least of the client's,
    /// the load balancer's and the backends' counts.
    pub total_held: u64,
    /// True when `total_held` reached the target.
    pub goal_met: bool,
    /// True when SIGINT/SIGTERM ended the run early.
    pub interrupted: bool,
    /// Seconds until the client held its target (or stopped opening).
    pub ramp_seconds: f64,
    /// Seconds held after that.
    pub hold_seconds: f64,
    /// The backends.
    pub backends: Vec<BackendReport>,
    /// The load balancer tier.
    pub lb: LbReport,
    /// The client.
    pub client: ClientReport,
    /// The limit reached first.
    pub first_limit: FirstLimit,
    /// `--kill-backend`.
    pub kill: Option<KillReport>,
    /// Accept-queue counters' growth over the run, per host.
    pub overflows: Vec<HostOverflows>,
    /// The network.
    pub network: NetworkReport,
    /// Where the HAProxy configuration was written.
    pub haproxy_config: Option<PathBuf>,
    /// Leftovers of earlier runs removed first.
    pub leftovers_removed: Vec<String>,
    /// What the end removed.
    pub cleanup: CleanupReport,
    /// One sample a second.
    pub timeline: Vec<Sample>,
    /// Where it ran.
    pub machine: Machine,
}

fn mib(b: u64) -> String {
    human_bytes(b)
}

impl ClusterReport {
    /// The human summary.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let verdict = if self.goal_met { "held" } else { "NOT held" };
        let _ = writeln!(
            o,
            "\n{} of {} connections {verdict} through the load balancer tier (ramp {:.1}s, hold {:.1}s{})",
            group(self.total_held),
            group(self.target),
            self.ramp_seconds,
            self.hold_seconds,
            if self.interrupted { ", interrupted" } else { "" }
        );
        let _ = writeln!(o, "  first limit: {}", self.first_limit.what);
        let _ = writeln!(
            o,
            "\n  backend  held     peak     budget     peak mem   drained at                 refused  agent"
        );
        for b in &self.backends {
            let drained = match (b.drained_at_s, b.drained_at_held, b.drained_at_bytes) {
                (Some(t), Some(h), Some(m)) => format!("{t:.0}s, {} held, {}", group(h), mib(m)),
                _ => "-".into(),
            };
            let agent: Vec<String> = b.agent.iter().map(|c| format!("{} @{:.0}s", c.state, c.t)).collect();
            let _ = writeln!(
                o,
                "  {:<8} {:<8} {:<8} {:<10} {:<10} {:<26} {:<8} {}{}",
                b.name,
                group(b.held),
                group(b.peak_held),
                mib(b.budget_bytes),
                mib(b.peak_bytes),
                drained,
                group(b.refused),
                agent.join(", "),
                if b.killed { " (killed)" } else { "" }
            );
            if !b.lb_view.is_empty() {
                let v: Vec<String> = b.lb_view.iter().map(|c| format!("{} @{:.0}s", c.state, c.t)).collect();
                let _ = writeln!(o, "  {:<8} HAProxy saw: {}", "", v.join(", "));
            }
        }
        let lb = &self.lb;
        let _ = writeln!(
            o,
            "\n  load balancer {}: {} HAProxy processes, maxconn {} each, {} held (peak {}), descriptors {}",
            lb.frontend,
            lb.processes,
            group(lb.maxconn_per_process),
            group(lb.held),
            group(lb.peak_held),
            lb.descriptors.iter().map(|d| group(*d)).collect::<Vec<_>>().join(" / ")
        );
        for line in &lb.arithmetic {
            let _ = writeln!(o, "    {line}");
        }
        let c = &self.client;
        let errors: Vec<String> = c.errors.iter().map(|e| format!("{} {}", e.errno, group(e.count))).collect();
        let _ = writeln!(
            o,
            "  client ({} source addresses): {} held (peak {}), {} failed, {} reconnects{}",
            c.sources.len(),
            group(c.held),
            group(c.peak_held),
            group(c.failed),
            group(c.reconnects),
            if errors.is_empty() { String::new() } else { format!(", errors: {}", errors.join(", ")) }
        );
        if let Some(k) = &self.kill {
            let took = k.seconds_to_come_back.map_or_else(|| "not within the hold".into(), |s| format!("{s:.1}s"));
            let _ = writeln!(
                o,
                "\n  killed {} at {:.0}s holding {}: {} came back through the load balancer in {took}; client {} -> lowest {}",
                k.backend,
                k.at_s,
                group(k.held_at_kill),
                group(k.came_back),
                group(k.client_before),
                group(k.client_lowest)
            );
            let ov: Vec<String> = k
                .overflows
                .iter()
                .map(|h| {
                    format!("{} {}/{}", h.host, group(h.counters.listen_overflows), group(h.counters.listen_drops))
                })
                .collect();
            let _ = writeln!(o, "  accept-queue overflows/drops after the kill: {}", ov.join(", "));
        }
        let ov: Vec<String> = self
            .overflows
            .iter()
            .map(|h| format!("{} {}/{}", h.host, group(h.counters.listen_overflows), group(h.counters.listen_drops)))
            .collect();
        let _ = writeln!(o, "  accept-queue overflows/drops over the run: {}", ov.join(", "));
        if let Some(p) = &self.haproxy_config {
            let _ = writeln!(o, "  HAProxy configuration: {}", p.display());
        }
        let cl = &self.cleanup;
        let left = if cl.left_behind.is_empty() {
            "nothing left behind".to_string()
        } else {
            format!("LEFT: {}", cl.left_behind.join(", "))
        };
        let _ = writeln!(
            o,
            "  cleanup: {} namespaces and the bridge removed, {} processes stopped; {left}",
            cl.namespaces.len(),
            cl.processes
        );
        o
    }
}
