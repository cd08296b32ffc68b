//! The report of a load run: what was planned, what happened, how long it
//! took, latency percentiles, every errno with its meaning, a per-second
//! timeline and the machine. Serialised as JSON (`schemas/load.schema.json`)
//! and rendered as a table.

use std::fmt::Write as _;
use std::net::SocketAddr;

use hdrhistogram::{Counter, Histogram};
use serde::{Deserialize, Serialize};

use super::agent::AgentInfo;
use super::explain::{AcceptQueue, Named, explain, name_drops};
use super::hist::Histograms;
use super::plan::Plan;
pub use super::timeline::Sample;
use crate::engine::stats::Errnos;
use crate::machine::Machine;
use crate::procfs::drops::Drops;
use crate::units::{group, human_bytes};

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples recorded.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
}

impl Percentiles {
    /// The percentiles of a histogram (all zero when it is empty).
    pub fn of<T: Counter>(h: &Histogram<T>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }

    /// "p50 120 us, p99 900 us, p99.9 2.1 ms, max 5.0 ms".
    pub fn summary(&self) -> String {
        if self.count == 0 {
            return "no samples".into();
        }
        format!(
            "p50 {}, p99 {}, p99.9 {}, max {}",
            micros(self.p50),
            micros(self.p99),
            micros(self.p999),
            micros(self.max)
        )
    }
}

/// Formats microseconds for people.
pub fn micros(us: u64) -> String {
    match us {
        0..1_000 => format!("{us} us"),
        1_000..1_000_000 => format!("{:.1} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

/// One errno seen during the run, with what it means.
#[derive(Debug, Clone, Serialize)]
pub struct ErrnoRow {
    /// Symbolic name (`ECONNREFUSED`).
    pub errno: &'static str,
    /// Times seen.
    pub count: u64,
    /// What it means in a load run (for `ETIMEDOUT`, the limit the drop
    /// counters name, when they could be read).
    pub meaning: String,
    /// What to do.
    pub fix: String,
}

/// The errno table of a run, most frequent first. `drops` are the kernel's
/// drop counters before and after the run: with them a connect timeout is
/// put down to the limit that dropped its SYNs ([`name_drops`]).
pub fn errno_rows(errors: &Errnos, drops: Option<(&Drops, &Drops)>) -> Vec<ErrnoRow> {
    errno_rows_named(errors, drops.and_then(|(before, after)| name_drops(before, after)))
}

/// The errno table of a run, the connect timeouts put down to `named`.
pub fn errno_rows_named(errors: &Errnos, named: Option<Named>) -> Vec<ErrnoRow> {
    errors
        .ranked()
        .into_iter()
        .map(|(errno, count)| {
            let e = explain(errno);
            let (meaning, fix) = match &named {
                Some(n) if errno == "ETIMEDOUT" => (n.meaning.clone(), n.fix.clone()),
                _ => (e.meaning.to_string(), e.fix.to_string()),
            };
            ErrnoRow { errno, count, meaning, fix }
        })
        .collect()
}

/// The first limit a run met: what stopped it short of the target.
#[derive(Debug, Clone, Serialize)]
pub struct FirstLimit {
    /// `accept queue` (the server stopped accepting), `guard`, `errno` or
    /// `closed by server`.
    pub kind: &'static str,
    /// The limit, the guard or the errno name.
    pub name: String,
    /// What it means.
    pub explanation: String,
    /// The fix.
    pub fix: String,
}

/// The first limit of a run: a full accept queue of a local server first
/// (its drops are the timeouts), then a guard, then the most frequent
/// errno, then the server closing connections; None when the whole target
/// was held.
pub fn first_limit(
    queue: Option<&AcceptQueue>,
    stopped_by: Option<&str>,
    errors: &[ErrnoRow],
    short: bool,
    closed_by_peer: u64,
) -> Option<FirstLimit> {
    if let Some(n) = queue.and_then(AcceptQueue::name) {
        return Some(FirstLimit { kind: "accept queue", name: n.limit.into(), explanation: n.meaning, fix: n.fix });
    }
    if let Some(why) = stopped_by {
        return Some(FirstLimit {
            kind: "guard",
            name: "guard".into(),
            explanation: why.into(),
            fix: "see the guard's reason".into(),
        });
    }
    if short && let Some(e) = errors.first() {
        return Some(FirstLimit {
            kind: "errno",
            name: e.errno.to_string(),
            explanation: e.meaning.clone(),
            fix: e.fix.clone(),
        });
    }
    if closed_by_peer > 0 {
        return Some(FirstLimit {
            kind: "closed by server",
            name: "closed by server".into(),
            explanation: format!("the server closed {} established connections", group(closed_by_peer)),
            fix: "read the server's log and its connection cap and idle timeout".into(),
        });
    }
    None
}

/// The whole report of `tcpmax load`.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// The layout version of this report ([`crate::output::REPORT_VERSION`]).
    pub report_version: u32,
    /// Destinations.
    pub targets: Vec<SocketAddr>,
    /// Connections asked for.
    pub count: u64,
    /// The address plan.
    pub plan: Plan,
    /// Shards (fd tables) used.
    pub shards: usize,
    /// Most connections established at once.
    pub peak_established: u64,
    /// Connections held when the hold ended: for a server on this machine,
    /// those it accepted (established here, minus those waiting in its
    /// accept queue or half open on its side); else as established here.
    pub held_at_end: u64,
    /// Connections established on this side when the hold ended, as the
    /// kernel counts them (accepted by the server or not).
    pub held_at_end_kernel: u64,
    /// The accept queue of the server, when it runs on this machine.
    pub accept_queue: Option<AcceptQueue>,
    /// What stopped the run short of the target, if anything did.
    pub first_limit: Option<FirstLimit>,
    /// Connections established, ever (reconnects included).
    pub opened: u64,
    /// Connect attempts that failed.
    pub failed: u64,
    /// Established connections the server closed or reset.
    pub closed_by_peer: u64,
    /// Connections opened again (`--reconnect`).
    pub reconnects: u64,
    /// Seconds from the first connect until every connection was attempted.
    pub ramp_seconds: f64,
    /// Connections established per second over the ramp.
    pub connect_rate_per_s: f64,
    /// Seconds the connections were held.
    pub hold_seconds: f64,
    /// Seconds to close everything.
    pub teardown_seconds: f64,
    /// True when Ctrl-C (or SIGTERM) ended the run early.
    pub interrupted: bool,
    /// True when the whole target was held through the hold (exit code 0).
    pub goal_met: bool,
    /// Why the hold ended before its time, if it did.
    pub hold_ended_early: Option<String>,
    /// What stopped the ramp before the target, if anything did (a guard).
    pub stopped_by: Option<String>,
    /// Connect latency (TCP).
    pub connect_latency_us: Percentiles,
    /// The protocol spoken over each connection.
    pub protocol: crate::proto::Protocol,
    /// True when it ran over TLS.
    pub tls: bool,
    /// Protocol handshake time, from TCP connected to the handshake done
    /// (no samples over bare TCP).
    pub handshake_latency_us: Percentiles,
    /// Protocol handshakes completed per second over the ramp (0 over bare
    /// TCP).
    pub handshake_rate_per_s: f64,
    /// Sessions closed cleanly at the end (a WebSocket close answered).
    pub close_handshakes: u64,
    /// Ping (or message) round-trip time.
    pub ping_rtt_us: Percentiles,
    /// Both latency histograms whole (HDR V2, base64), for `tcpmax merge`.
    pub histograms: Histograms,
    /// Pings (or messages) sent.
    pub pings_sent: u64,
    /// Replies received.
    pub pongs: u64,
    /// Every errno seen, with its meaning and fix.
    pub errors: Vec<ErrnoRow>,
    /// One sample a second.
    pub timeline: Vec<Sample>,
    /// Anonymous RSS of this process at peak, in bytes.
    pub rss_anon_bytes: u64,
    /// The same per connection at peak.
    pub rss_anon_bytes_per_connection: f64,
    /// Which agent of which whole plan this run was.
    pub agent: AgentInfo,
    /// Where it ran.
    pub machine: Machine,
}

/// Now, in ms since the Unix epoch.
pub fn unix_ms_now() -> u64 {
    super::agent::unix_ms(std::time::SystemTime::now())
}

impl LoadReport {
    /// The human table.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let w = &mut s;
        let _ = writeln!(w, "load: {} connections to {}", group(self.count), targets(&self.targets));
        if self.interrupted {
            let _ = writeln!(w, "  (interrupted: stopped early, figures below are what was measured)");
        }
        if let Some(why) = &self.stopped_by {
            let _ = writeln!(w, "  ramp stopped by      {why}");
        }
        if let Some(why) = &self.hold_ended_early {
            let _ = writeln!(w, "  hold ended early    {why}");
        }
        let _ = writeln!(w, "  peak established    {}", group(self.peak_established));
        let _ = writeln!(
            w,
            "  held at end         {}{}",
            group(self.held_at_end),
            if self.goal_met { " (the whole target, through the hold)" } else { "" }
        );
        if let Some(q) = &self.accept_queue {
            let _ = writeln!(
                w,
                "                      accepted by the server: {} established here, {} of them waiting in its \
                 accept queue, {} half open",
                group(self.held_at_end_kernel),
                group(q.waiting),
                group(q.half_open)
            );
        }
        let _ = writeln!(w, "  failed connects     {}", group(self.failed));
        let _ = writeln!(w, "  closed by server    {}", group(self.closed_by_peer));
        if self.reconnects > 0 {
            let _ = writeln!(w, "  reconnects          {}", group(self.reconnects));
        }
        let _ = writeln!(
            w,
            "  ramp                {:.1} s at {} connections/s",
            self.ramp_seconds,
            group(self.connect_rate_per_s as u64)
        );
        let _ = writeln!(w, "  hold / teardown     {:.1} s / {:.1} s", self.hold_seconds, self.teardown_seconds);
        let _ = writeln!(w, "  connect latency     {}", self.connect_latency_us.summary());
        if self.protocol != crate::proto::Protocol::Tcp || self.tls {
            let _ = writeln!(
                w,
                "  {:<19} {} ({} handshakes/s)",
                format!("{}{} handshake", if self.tls { "tls+" } else { "" }, self.protocol.name()),
                self.handshake_latency_us.summary(),
                group(self.handshake_rate_per_s as u64)
            );
        }
        if self.pings_sent > 0 {
            let _ = writeln!(
                w,
                "  ping rtt            {} ({} sent, {} back)",
                self.ping_rtt_us.summary(),
                group(self.pings_sent),
                group(self.pongs)
            );
        }
        let _ = writeln!(
            w,
            "  shards / memory     {} fd tables, {} anonymous RSS ({:.1} B per connection)",
            self.shards,
            human_bytes(self.rss_anon_bytes),
            self.rss_anon_bytes_per_connection
        );
        match &self.first_limit {
            Some(l) if l.name == l.kind => {
                let _ = writeln!(w, "  first limit         {}: {}", l.name, l.explanation);
                let _ = writeln!(w, "                      fix: {}", l.fix);
            }
            Some(l) => {
                let _ = writeln!(w, "  first limit         {} ({}): {}", l.name, l.kind, l.explanation);
                let _ = writeln!(w, "                      fix: {}", l.fix);
            }
            None if self.goal_met => {
                let _ = writeln!(w, "  first limit         none met: the whole target was held");
            }
            None => {}
        }
        if self.errors.is_empty() {
            let _ = writeln!(w, "  errors              none");
        } else {
            let _ = writeln!(w, "  errors:");
            for e in &self.errors {
                let _ = writeln!(w, "    {:<14} {:>10}  {}", e.errno, group(e.count), e.meaning);
                let _ = writeln!(w, "    {:<14} {:>10}  fix: {}", "", "", e.fix);
            }
        }
        s
    }
}

fn targets(t: &[SocketAddr]) -> String {
    match t {
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} and {} more", rest.len()),
        [] => "nothing".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_histogram() {
        let mut h = crate::engine::samples::new_hist();
        assert_eq!(Percentiles::of(&h), Percentiles::default());
        for v in 1..=1000u64 {
            h.saturating_record(v);
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1000);
        assert_eq!(p.p50, 500);
        assert_eq!(p.max, 1000);
        assert!(p.p99 >= 990 && p.p999 >= p.p99);
    }

    #[test]
    fn micros_are_readable() {
        assert_eq!(micros(12), "12 us");
        assert_eq!(micros(2_500), "2.5 ms");
        assert_eq!(micros(3_000_000), "3.00 s");
    }
}
