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
    /// The doctor's kernel bytes per connection: the slab objects of two
    /// idle sockets on loopback (compare with
    /// `kernel_slab_bytes_per_connection`).
    pub predicted_bytes_per_connection: u64,
    /// The fall of really free memory on the whole machine / held: slab,
    /// user memory, socket buffers, page tables and whatever else ran; kept
    /// beside the slab figure, which is the one to read.
    pub kernel_bytes_per_connection: f64,
    /// Kernel memory per connection: slab growth on the machine / held, what
    /// the doctor's `predicted_bytes_per_connection` predicts.
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
        let kernel = KernelMemory {
            slab: self.kernel_slab_bytes_per_connection,
            free: self.kernel_bytes_per_connection,
            user: self.user_bytes_per_connection,
            predicted: self.predicted_bytes_per_connection,
            held: self.held,
        };
        for line in kernel.lines() {
            let _ = writeln!(w, "{line}");
        }
        let _ = writeln!(
            w,
            "  user memory         {:.1} B per connection ({} anonymous RSS, both ends)",
            self.user_bytes_per_connection,
            human_bytes(self.user_rss_anon_bytes)
        );
        let _ = writeln!(
            w,
            "  shards              {} server, {} client at the peak",
            self.shards.server, self.shards.client
        );
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

/// How far the fall of really free memory may exceed slab plus user memory,
/// per connection (a share of the slab figure) and in all, before it is
/// shown: below either, the difference is the machine's own coming and going
/// (page cache, other processes) and explains nothing the slab growth does
/// not.
const OTHER_KERNEL_SHOWN: f64 = 0.10;
const OTHER_KERNEL_SHOWN_BYTES: f64 = 256.0 * 1024.0 * 1024.0;

/// The memory figures per connection the kernel memory lines are made of.
struct KernelMemory {
    slab: f64,
    free: f64,
    user: f64,
    predicted: u64,
    held: u64,
}

impl KernelMemory {
    /// Slab growth first (what the doctor's figure counts, so the two compare
    /// like with like), then the fall of really free memory only when it
    /// shows kernel memory outside the slab caches.
    fn lines(&self) -> Vec<String> {
        let KernelMemory { slab, free, user, predicted, held } = *self;
        let mut lines = vec![
            format!(
                "  kernel memory       {} B per connection (slab growth on the machine / held)",
                group(slab.round() as u64)
            ),
            format!(
                "                      the doctor predicts {} B: the slab objects of 2 idle sockets",
                group(predicted)
            ),
        ];
        let other = free - (slab + user);
        if other > OTHER_KERNEL_SHOWN * slab.max(predicted as f64) && other * held as f64 > OTHER_KERNEL_SHOWN_BYTES {
            lines.push(format!(
                "                      really free memory on the machine fell {} B per connection:",
                group(free.round() as u64)
            ));
            lines.push(format!(
                "                      {} B more than slab + user (socket buffers, page tables, other processes)",
                group(other.round() as u64)
            ));
        }
        lines
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

    fn kernel(slab: f64, free: f64, user: f64) -> Vec<String> {
        KernelMemory { slab, free, user, predicted: 7_928, held: 100_000 }.lines()
    }

    #[test]
    fn kernel_memory_leads_with_slab_growth_beside_the_doctors_figure() {
        // #18: "5930 B per connection (slab grew 8355 B per connection)".
        let lines = kernel(8_355.2, 5_930.0, 30.0);
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert_eq!(lines[0], "  kernel memory       8,355 B per connection (slab growth on the machine / held)");
        assert!(lines[1].contains("doctor predicts 7,928 B: the slab objects of 2 idle sockets"), "{}", lines[1]);
        assert!(!lines.concat().contains("5,930"));
        // Within the noise of slab + user memory: not shown either.
        assert_eq!(kernel(8_355.0, 9_000.0, 30.0).len(), 2);
        // Far beyond them: kernel memory outside the slab caches, shown.
        let more = kernel(8_355.0, 12_385.0, 30.0);
        assert_eq!(more.len(), 4, "{more:#?}");
        assert!(more[2].ends_with("really free memory on the machine fell 12,385 B per connection:"), "{}", more[2]);
        assert!(more[3].contains(" 4,000 B more than slab + user (socket buffers"), "{}", more[3]);
        assert!(more.iter().all(|l| l.len() <= 100), "{more:#?}");
        // 10 kB beyond over 2,000 connections is 21 MB: the machine's own noise
        // (a compiler running beside it moves more).
        let few = KernelMemory { slab: 8_355.0, free: 19_423.0, user: 483.0, predicted: 7_928, held: 2_000 };
        assert_eq!(few.lines().len(), 2);
    }

    #[test]
    fn an_interrupted_run_never_claims_the_target() {
        assert_eq!(no_limit(false, 100, 100), "none: the target was reached");
        let cut = no_limit(true, 40_000, 100_000);
        assert_eq!(cut, "none met: interrupted (Ctrl-C) at 40,000 of 100,000 held, before the ramp ended");
        assert!(!cut.contains("was reached"));
        assert!(no_limit(true, 100, 100).contains("interrupted (Ctrl-C) during the hold"));
    }
}
