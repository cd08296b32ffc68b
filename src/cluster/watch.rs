//! What the rehearsal keeps from its once-a-second observations: peaks,
//! state changes, the first limit reached and the failure rehearsal's
//! figures. Pure: parsed lines in, report parts out.

use super::haproxy::backend_of;
use super::live::{BackendLine, ClientLine, LbStat};
use super::report::{BackendReport, Change, FirstLimit, KillReport, Sample};
use crate::serve::agent::State;
use crate::units::{group, human_bytes};

/// One backend as watched.
#[derive(Debug, Clone, Default)]
struct Backend {
    name: String,
    address: String,
    budget: u64,
    line: BackendLine,
    peak_held: u64,
    peak_bytes: u64,
    drained_at: Option<(f64, u64, u64)>,
    refused_at: Option<f64>,
    agent: Vec<Change>,
    lb_view: Vec<Change>,
    killed: bool,
}

/// The failure rehearsal as watched.
#[derive(Debug, Clone, Default)]
struct Kill {
    index: usize,
    at: f64,
    held: u64,
    client_before: u64,
    client_lowest: u64,
    others_before: u64,
    came_back: u64,
    last_rise: Option<f64>,
    full_at: Option<f64>,
}

/// Everything kept from the observations.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    backends: Vec<Backend>,
    client: ClientLine,
    client_peak: u64,
    lb: u64,
    lb_peak: u64,
    lb_maxconn: u64,
    lb_full_at: Option<f64>,
    client_failed_at: Option<f64>,
    kill: Option<Kill>,
    /// One sample a second.
    pub samples: Vec<Sample>,
}

/// HAProxy's view of one backend over all processes: the status when they
/// agree, else the most common one with its count (`DRAIN 4/6`).
pub fn lb_view(stats: &[LbStat], backend: &str) -> Option<String> {
    let statuses: Vec<&str> = stats
        .iter()
        .flat_map(|s| s.servers.iter())
        .filter(|s| backend_of(&s.name) == backend)
        .map(|s| s.status.as_str())
        .collect();
    let first = *statuses.first()?;
    if statuses.iter().all(|s| *s == first) {
        return Some(first.to_string());
    }
    let mut best = (first, 0);
    for s in &statuses {
        let n = statuses.iter().filter(|x| *x == s).count();
        if n > best.1 {
            best = (s, n);
        }
    }
    Some(format!("{} {}/{}", best.0, best.1, statuses.len()))
}

impl Tracker {
    /// Watches backends given as (name, address, budget), behind load
    /// balancer processes of `maxconn` each.
    pub fn new(backends: &[(String, String, u64)], maxconn: u64) -> Tracker {
        Tracker {
            backends: backends
                .iter()
                .map(|(n, a, b)| Backend { name: n.clone(), address: a.clone(), budget: *b, ..Default::default() })
                .collect(),
            lb_maxconn: maxconn,
            ..Default::default()
        }
    }

    /// Records one second: the client's latest line, every load balancer
    /// process's stats, each backend's latest line (`None`: none new).
    pub fn observe(&mut self, t: f64, client: Option<ClientLine>, lb: &[LbStat], lines: &[Option<BackendLine>]) {
        if let Some(c) = client {
            self.client = c;
            self.client_peak = self.client_peak.max(c.established);
            if c.failed > 0 && self.client_failed_at.is_none() {
                self.client_failed_at = Some(t);
            }
        }
        if !lb.is_empty() {
            self.lb = lb.iter().map(|s| s.frontend).sum();
            self.lb_peak = self.lb_peak.max(self.lb);
            if self.lb_full_at.is_none() && lb.iter().any(|s| self.lb_maxconn > 0 && s.frontend >= self.lb_maxconn) {
                self.lb_full_at = Some(t);
            }
        }
        for (b, line) in self.backends.iter_mut().zip(lines) {
            if let Some(view) = lb_view(lb, &b.name)
                && b.lb_view.last().is_none_or(|c| c.state != view)
            {
                b.lb_view.push(Change { t, state: view });
            }
            if b.killed {
                b.line.conns = 0;
                continue;
            }
            let Some(l) = line else { continue };
            b.line = *l;
            b.peak_held = b.peak_held.max(l.conns);
            b.peak_bytes = b.peak_bytes.max(l.mem_used);
            if l.refused > 0 && b.refused_at.is_none() {
                b.refused_at = Some(t);
            }
            if let Some(state) = l.agent {
                if state == State::Drain && b.drained_at.is_none() {
                    b.drained_at = Some((t, l.conns, l.mem_used));
                }
                let text = state.to_string();
                if b.agent.last().is_none_or(|c| !same_kind(&c.state, &text)) {
                    b.agent.push(Change { t, state: text });
                }
            }
        }
        let held: Vec<u64> = self.backends.iter().map(|b| b.line.conns).collect();
        if let Some(k) = &mut self.kill {
            let others: u64 = held.iter().enumerate().filter(|(i, _)| *i != k.index).map(|(_, h)| h).sum();
            let gain = others.saturating_sub(k.others_before);
            k.client_lowest = k.client_lowest.min(self.client.established);
            if gain > k.came_back && k.full_at.is_none() {
                k.came_back = gain.min(k.held);
                k.last_rise = Some(t);
            }
            if gain >= k.held && k.full_at.is_none() {
                k.full_at = Some(t);
            }
        }
        self.samples.push(Sample { t, client: self.client.established, lb: self.lb, backends: held });
    }

    /// Records that backend `index` was killed at `t`.
    pub fn killed(&mut self, index: usize, t: f64) {
        let held: Vec<u64> = self.backends.iter().map(|b| b.line.conns).collect();
        let Some(b) = self.backends.get_mut(index) else { return };
        b.killed = true;
        let others = held.iter().enumerate().filter(|(i, _)| *i != index).map(|(_, h)| h).sum();
        self.kill = Some(Kill {
            index,
            at: t,
            held: held[index],
            client_before: self.client.established,
            client_lowest: self.client.established,
            others_before: others,
            came_back: 0,
            last_rise: None,
            full_at: None,
        });
    }

    /// Held end to end now: the least of the client's, the load balancer's
    /// and the backends' counts.
    pub fn total_held(&self) -> u64 {
        let backends: u64 = self.backends.iter().map(|b| b.line.conns).sum();
        backends.min(self.client.established).min(self.lb)
    }

    /// The client's latest line.
    pub fn client(&self) -> ClientLine {
        self.client
    }

    /// (held now, peak) of the load balancer tier.
    pub fn lb(&self) -> (u64, u64) {
        (self.lb, self.lb_peak)
    }

    /// The client's peak.
    pub fn client_peak(&self) -> u64 {
        self.client_peak
    }

    /// The live line: `client 31,204/50,000 | lb 31,180 | b1 12,003 drain
    /// 51.2 MiB/64.0 MiB LB DRAIN | ...`.
    pub fn line(&self, t: f64, target: u64) -> String {
        let mut s =
            format!("[{t:>4.0}s] client {}/{} | lb {}", group(self.client.established), group(target), group(self.lb));
        for b in &self.backends {
            if b.killed {
                s.push_str(&format!(" | {} killed", b.name));
                continue;
            }
            let agent = b.line.agent.map_or_else(|| "?".to_string(), |a| a.to_string());
            let view = b.lb_view.last().map_or("?", |c| c.state.as_str());
            s.push_str(&format!(
                " | {} {} {agent} {}/{} LB {view}",
                b.name,
                group(b.line.conns),
                human_bytes(b.line.mem_used),
                human_bytes(b.budget)
            ));
        }
        s
    }

    /// The limit reached first.
    pub fn first_limit(&self) -> FirstLimit {
        let mut found: Vec<(f64, u8, String, String)> = Vec::new();
        for b in &self.backends {
            if let Some(t) = b.refused_at {
                found.push((t, 0, "backend_refusal".into(), format!("{} refused connections at {t:.0}s", b.name)));
            }
            if let Some((t, held, bytes)) = b.drained_at {
                let pct = if b.budget == 0 { 0.0 } else { bytes as f64 * 100.0 / b.budget as f64 };
                found.push((
                    t,
                    1,
                    "backend_drain".into(),
                    format!(
                        "{}'s agent said drain at {t:.0}s holding {}: {} of its {} budget ({pct:.0}%)",
                        b.name,
                        group(held),
                        human_bytes(bytes),
                        human_bytes(b.budget)
                    ),
                ));
            }
        }
        if let Some(t) = self.lb_full_at {
            found.push((t, 2, "lb_maxconn".into(), format!("an HAProxy process reached its maxconn at {t:.0}s")));
        }
        if let Some(t) = self.client_failed_at {
            found.push((t, 3, "client_errors".into(), format!("the client's connects started failing at {t:.0}s")));
        }
        found.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        match found.into_iter().next() {
            Some((t, _, kind, what)) => FirstLimit { kind, at_s: Some(t), what },
            None => FirstLimit { kind: "none".into(), at_s: None, what: "none reached: every connection held".into() },
        }
    }

    /// The backends' part of the report.
    pub fn backends(&self) -> Vec<BackendReport> {
        self.backends
            .iter()
            .map(|b| BackendReport {
                name: b.name.clone(),
                address: b.address.clone(),
                budget_bytes: b.budget,
                peak_bytes: b.peak_bytes,
                held: b.line.conns,
                peak_held: b.peak_held,
                drained: b.drained_at.is_some(),
                drained_at_s: b.drained_at.map(|d| d.0),
                drained_at_held: b.drained_at.map(|d| d.1),
                drained_at_bytes: b.drained_at.map(|d| d.2),
                refused: b.line.refused,
                killed: b.killed,
                agent: b.agent.clone(),
                lb_view: b.lb_view.clone(),
            })
            .collect()
    }

    /// The failure rehearsal's figures (without the overflows, read
    /// elsewhere).
    pub fn kill(&self) -> Option<KillReport> {
        let k = self.kill.as_ref()?;
        Some(KillReport {
            backend: self.backends.get(k.index)?.name.clone(),
            at_s: k.at,
            held_at_kill: k.held,
            client_before: k.client_before,
            client_lowest: k.client_lowest,
            came_back: k.came_back,
            seconds_to_come_back: k.full_at.or(k.last_rise).map(|b| ((b - k.at) * 10.0).round() / 10.0),
            overflows: Vec::new(),
        })
    }
}

/// True when two agent states are of the same kind (`up N%` vs `drain`):
/// weight changes are not state changes.
fn same_kind(a: &str, b: &str) -> bool {
    a.starts_with("up") == b.starts_with("up")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::live::ServerStat;

    fn line(conns: u64, mem_mib: u64, agent: State) -> Option<BackendLine> {
        Some(BackendLine { conns, refused: 0, mem_used: mem_mib << 20, mem_limit: 64 << 20, agent: Some(agent) })
    }

    fn stat(front: u64, servers: &[(&str, &str)]) -> LbStat {
        LbStat {
            frontend: front,
            servers: servers
                .iter()
                .map(|(n, s)| ServerStat { name: n.to_string(), scur: 0, status: s.to_string(), weight: 100 })
                .collect(),
        }
    }

    fn client(established: u64) -> Option<ClientLine> {
        Some(ClientLine { established, ..Default::default() })
    }

    #[test]
    fn drain_and_views_are_recorded() {
        let mut w = Tracker::new(&[("b1".into(), "a".into(), 64 << 20), ("b2".into(), "b".into(), 2 << 30)], 99_999);
        let up = State::Up { weight: 100 };
        w.observe(1.0, client(10), &[stat(10, &[("b1", "UP"), ("b2", "UP")])], &[line(5, 10, up), line(5, 1, up)]);
        w.observe(
            2.0,
            client(20_000),
            &[stat(20_000, &[("b1", "UP"), ("b2", "UP")])],
            &[line(12_000, 51, State::Up { weight: 12 }), line(8_000, 40, up)],
        );
        w.observe(
            3.0,
            client(30_000),
            &[stat(15_000, &[("b1", "DRAIN"), ("b2", "UP")]), stat(15_000, &[("b1", "UP"), ("b2", "UP")])],
            &[line(12_300, 52, State::Drain), line(17_700, 60, up)],
        );
        let b = w.backends();
        assert!(b[0].drained && !b[1].drained);
        assert_eq!(b[0].drained_at_s, Some(3.0));
        assert_eq!(b[0].drained_at_held, Some(12_300));
        assert_eq!(b[0].peak_bytes, 52 << 20);
        // The weight change is not a state change.
        let states: Vec<&str> = b[0].agent.iter().map(|c| c.state.as_str()).collect();
        assert_eq!(states, ["up 100%", "drain"]);
        let views: Vec<&str> = b[0].lb_view.iter().map(|c| c.state.as_str()).collect();
        assert_eq!(views, ["UP", "DRAIN 1/2"]);
        assert_eq!(w.total_held(), 30_000);
        let f = w.first_limit();
        assert_eq!(f.kind, "backend_drain");
        assert!(f.what.contains("b1's agent said drain at 3s holding 12,300"), "{}", f.what);
        assert!(
            w.line(3.0, 50_000).contains("b1 12,300 drain 52.0 MiB/64.0 MiB LB DRAIN 1/2"),
            "{}",
            w.line(3.0, 50_000)
        );
    }

    #[test]
    fn the_kill_counts_what_came_back() {
        let up = State::Up { weight: 100 };
        let mut w = Tracker::new(&[("b1".into(), "a".into(), 1 << 30), ("b2".into(), "b".into(), 1 << 30)], 9_964);
        w.observe(1.0, client(2_000), &[], &[line(1_000, 5, up), line(1_000, 5, up)]);
        w.killed(0, 1.5);
        w.observe(2.0, client(1_200), &[], &[None, line(1_200, 6, up)]);
        w.observe(3.0, client(1_900), &[], &[None, line(1_900, 7, up)]);
        w.observe(4.0, client(2_000), &[], &[None, line(2_000, 7, up)]);
        w.observe(5.0, client(2_000), &[], &[None, line(2_000, 7, up)]);
        let k = w.kill().unwrap();
        assert_eq!(
            (k.backend.as_str(), k.at_s, k.held_at_kill, k.client_before, k.client_lowest, k.came_back),
            ("b1", 1.5, 1_000, 2_000, 1_200, 1_000)
        );
        assert_eq!(k.seconds_to_come_back, Some(2.5));
        assert_eq!(w.backends()[0].held, 0);
        assert!(w.backends()[0].killed);
        assert_eq!(w.first_limit().kind, "none");
    }

    #[test]
    fn refusals_and_full_processes_are_limits() {
        let mut w = Tracker::new(&[("b1".into(), "a".into(), 1 << 20)], 100);
        let refused = BackendLine { conns: 50, refused: 3, ..Default::default() };
        w.observe(1.0, client(50), &[stat(100, &[])], &[Some(refused)]);
        let f = w.first_limit();
        assert_eq!(f.kind, "backend_refusal");
        assert_eq!(f.at_s, Some(1.0));
        assert_eq!(lb_view(&[], "b1"), None);
    }
}
