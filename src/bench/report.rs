//! The report of `tcpmax bench`: held against predicted, what it cost the
//! kernel and user space per connection, how fast it ramped and tore down,
//! the heartbeat round trip, what stopped it if anything did, and the
//! machine. JSON (`schemas/bench.schema.json`) and a human table.

use std::fmt::Write as _;

use serde::Serialize;

use crate::load::hist::Histograms;
use crate::load::report::{Percentiles, Sample};
use crate::machine::Machine;
use crate::units::{group, human_bytes};

/// What stopped the ramp before the target.
#[derive(Debug, Clone, Serialize)]
pub struct FirstLimit {
    /// `guard` or `errno`.
    pub kind: &'static str,
    /// The guard or the errno name.
    pub name: String,
    /// What it means (the doctor's or the errno table's words).
    pub explanation: String,
    /// The fix.
    pub fix: String,
}

/// Shards used on each side.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Shards {
    /// Server shards (SO_REUSEPORT listeners).
    pub server: usize,
    /// Client shards.
    pub client: usize,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// The layout version of this report ([`crate::output::REPORT_VERSION`]).
    pub report_version: u32,
    /// Connections asked for.
    pub target: u64,
    /// Connections held at the peak (both ends established).
    pub held: u64,
    /// The doctor's loopback ceiling for this machine.
    pub predicted: Option<u64>,
    /// The limit the doctor says binds first.
    pub predicted_binding: Option<String>,
    /// Seconds from the first connect until the ramp ended.
    pub ramp_seconds: f64,
    /// Mean connections per second over the ramp.
    pub connect_rate_per_s: f64,
    /// Seconds held with heartbeats.
    pub hold_seconds: f64,
    /// The doctor's kernel bytes per connection: two sockets on loopback.
    pub predicted_bytes_per_connection: u64,
    /// Kernel memory per connection: fall of really free memory / held.
    pub kernel_bytes_per_connection: f64,
    /// Slab growth / held (the part of it in slab caches).
    pub kernel_slab_bytes_per_connection: f64,
    /// Anonymous RSS of all tcpmax processes at the peak / held.
    pub user_bytes_per_connection: f64,
    /// Anonymous RSS of all tcpmax processes at the peak.
    pub user_rss_anon_bytes: u64,
    /// Heartbeat round trip.
    pub ping_rtt_us: Percentiles,
    /// Connect latency (TCP).
    pub connect_latency_us: Percentiles,
    /// Both latency histograms whole (HDR V2, base64), as a load report
    /// carries them: the report page draws the percentile spectra from them.
    pub histograms: Histograms,
    /// The protocol spoken over each connection.
    pub protocol: crate::proto::Protocol,
    /// True when it ran over TLS.
    pub tls: bool,
    /// Protocol handshake time, TCP connected to handshake done (no samples
    /// over bare TCP).
    pub handshake_latency_us: Percentiles,
    /// Protocol handshakes completed per second over the ramp (0 over bare
    /// TCP).
    pub handshake_rate_per_s: f64,
    /// Connect attempts that failed.
    pub failed: u64,
    /// What stopped the ramp, or null when the target was reached.
    pub first_limit: Option<FirstLimit>,
    /// Shards per side.
    pub shards: Shards,
    /// Seconds to close everything on both ends.
    pub teardown_seconds: f64,
    /// True when Ctrl-C ended the run early.
    pub interrupted: bool,
    /// One sample a second.
    pub timeline: Vec<Sample>,
    /// Where it ran.
    pub machine: Machine,
}

impl BenchReport {
    /// The human table.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let w = &mut s;
        let tls = if self.tls { " over TLS" } else { "" };
        let _ =
            writeln!(w, "tcpmax bench: {} {}{tls} connections on loopback", group(self.target), self.protocol.name());
        if self.interrupted {
            let _ = writeln!(w, "  (interrupted: figures below are what was measured before Ctrl-C)");
        }
        let predicted = self.predicted.map_or("unknown".into(), group);
        let binding = self.predicted_binding.as_deref().unwrap_or("unknown");
        let _ =
            writeln!(w, "  held                {} (doctor predicts {predicted}, bound by {binding})", group(self.held));
        let _ = writeln!(
            w,
            "  ramp                {:.1} s at {} connections/s",
            self.ramp_seconds,
            group(self.connect_rate_per_s as u64)
        );
        let _ = writeln!(
            w,
            "  hold                {:.1} s, heartbeat rtt {}",
            self.hold_seconds,
            self.ping_rtt_us.summary()
        );
        let _ = writeln!(w, "  connect latency     {}", self.connect_latency_us.summary());
        if self.protocol != crate::proto::Protocol::Tcp || self.tls {
            let _ = writeln!(
                w,
                "  handshake           {} ({} handshakes/s)",
                self.handshake_latency_us.summary(),
                group(self.handshake_rate_per_s as u64)
            );
        }
        let _ = writeln!(
            w,
            "  kernel memory       {:.0} B per connection (slab grew {:.0} B per connection)",
            self.kernel_bytes_per_connection, self.kernel_slab_bytes_per_connection
        );
        let _ = writeln!(
            w,
            "  user memory         {:.1} B per connection ({} anonymous RSS, both ends)",
            self.user_bytes_per_connection,
            human_bytes(self.user_rss_anon_bytes)
        );
        let _ = writeln!(w, "  shards              {} server, {} client", self.shards.server, self.shards.client);
        let _ = writeln!(w, "  teardown            {:.1} s", self.teardown_seconds);
        match &self.first_limit {
            None => {
                let _ = writeln!(w, "  first limit         {}", no_limit(self.interrupted, self.held, self.target));
            }
            Some(l) => {
                let _ = writeln!(w, "  first limit         {} ({}): {}", l.name, l.kind, l.explanation);
                let _ = writeln!(w, "                      fix: {}", l.fix);
            }
        }
        if self.failed > 0 {
            let _ = writeln!(w, "  failed connects     {}", group(self.failed));
        }
        s
    }
}

/// The first-limit line when no limit was met: the target was reached, or
/// the run was interrupted before it could tell.
fn no_limit(interrupted: bool, held: u64, target: u64) -> String {
    match (interrupted, held >= target) {
        (false, _) => "none: the target was reached".into(),
        (true, true) => "none: the target was reached, then the run was interrupted (Ctrl-C) during the hold".into(),
        (true, false) => format!(
            "none met: interrupted (Ctrl-C) at {} of {} held, before the ramp ended",
            group(held),
            group(target)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_run_never_claims_the_target() {
        assert_eq!(no_limit(false, 100, 100), "none: the target was reached");
        let cut = no_limit(true, 40_000, 100_000);
        assert_eq!(cut, "none met: interrupted (Ctrl-C) at 40,000 of 100,000 held, before the ramp ended");
        assert!(!cut.contains("was reached"));
        assert!(no_limit(true, 100, 100).contains("interrupted (Ctrl-C) during the hold"));
    }
}
