//! What an experiment found, the whole run's report, and the human table.

use serde::Serialize;
use serde_json::Value;

use crate::machine::Machine;

/// What the kernel's behaviour says about a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The kernel did what the claim says.
    Confirmed,
    /// The kernel did something else; the evidence shows what.
    Refuted,
    /// This machine cannot run the experiment; the evidence says why.
    Skipped,
}

impl Verdict {
    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Confirmed => "confirmed",
            Verdict::Refuted => "refuted",
            Verdict::Skipped => "skipped",
        }
    }
}

/// What one experiment returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The verdict, computed from what was observed.
    pub verdict: Verdict,
    /// Numbers and errno names observed (a `reason` when skipped).
    pub evidence: Value,
    /// One line for the table.
    pub summary: String,
}

impl Outcome {
    /// Confirmed when `holds`, refuted otherwise.
    pub fn decide(holds: bool, evidence: Value, summary: impl Into<String>) -> Outcome {
        let verdict = if holds { Verdict::Confirmed } else { Verdict::Refuted };
        Outcome { verdict, evidence, summary: summary.into() }
    }

    /// Skipped, with the reason in the summary and in `evidence.reason`.
    pub fn skipped(reason: impl Into<String>) -> Outcome {
        let reason = reason.into();
        Outcome {
            verdict: Verdict::Skipped,
            evidence: serde_json::json!({ "reason": reason }),
            summary: format!("skipped: {reason}"),
        }
    }
}

/// One experiment in the report.
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentReport {
    /// The experiment's name.
    pub name: &'static str,
    /// The claim it tests.
    pub claim: &'static str,
    /// The verdict.
    pub verdict: Verdict,
    /// What was observed.
    pub evidence: Value,
    /// One line.
    pub summary: String,
    /// Wall time the experiment took, set-up and clean-up included.
    pub seconds: f64,
}

/// The report of `tcpmax prove`.
#[derive(Debug, Clone, Serialize)]
pub struct ProveReport {
    /// The experiments run, in order.
    pub experiments: Vec<ExperimentReport>,
    /// Wall time of the whole run.
    pub seconds: f64,
    /// Where it ran.
    pub machine: Machine,
}

impl ProveReport {
    /// How many experiments got `verdict`.
    pub fn count(&self, verdict: Verdict) -> usize {
        self.experiments.iter().filter(|e| e.verdict == verdict).count()
    }

    /// The human table: verdict, time, name and claim, then the evidence.
    pub fn render(&self) -> String {
        let mut out = String::from("verdict    time     experiment: claim\n");
        out.push_str("                    evidence\n");
        for e in &self.experiments {
            out.push_str(&format!("{:<10} {:>5.2} s  {}: {}\n", e.verdict.name(), e.seconds, e.name, e.claim));
            out.push_str(&format!("                    {}\n", e.summary));
        }
        out.push_str(&format!(
            "{} experiments in {:.1} s: {} confirmed, {} refuted, {} skipped\n",
            self.experiments.len(),
            self.seconds,
            self.count(Verdict::Confirmed),
            self.count(Verdict::Refuted),
            self.count(Verdict::Skipped)
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_carries_its_reason() {
        let o = Outcome::skipped("no IP_LOCAL_PORT_RANGE");
        assert_eq!(o.verdict, Verdict::Skipped);
        assert_eq!(o.evidence["reason"], "no IP_LOCAL_PORT_RANGE");
        assert!(o.summary.contains("no IP_LOCAL_PORT_RANGE"));
        assert_eq!(Outcome::decide(false, Value::Null, "x").verdict, Verdict::Refuted);
    }
}
