//! `tcpmax prove`: each claim about TCP connection limits runs as a small
//! experiment on loopback, and gets a verdict from what the kernel actually
//! did (counts, errnos), with the evidence beside it.
//!
//! Nothing is assumed: an experiment counts what succeeded and names the
//! errno that stopped it, and the verdict compares those observations with
//! the claim. A kernel that behaves otherwise gets `refuted`; a machine that
//! cannot run an experiment gets `skipped` with the reason. Every experiment
//! is bounded in count and time and cleans up after itself (sockets reset
//! and closed, threads joined, child processes reaped) even when it fails
//! midway. No sysctl is read for more than its value, and none is changed.
//!
//! | experiment | module |
//! |---|---|
//! | four-tuple, udp-shares-port | [`mod@tuple`] |
//! | server-past-65535, client-past-65535, memory-per-connection | [`scale`] |
//! | port-exhaustion, bind-without-no-port | [`ports`] |
//! | privileged-ports | [`privileged`] |
//! | fd-limit | [`fdlimit`] |

pub mod fdlimit;
pub mod kit;
pub mod ports;
pub mod privileged;
pub mod report;
pub mod scale;
pub mod tuple;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use crate::error::Error;
use crate::machine::Machine;
use crate::output;
use crate::procfs::ProcFs;
use crate::sys::process;
use report::{ExperimentReport, Outcome, ProveReport, Verdict};

/// Arguments of `tcpmax prove`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Experiments to run, by name (default: all; `--list` names them).
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// List the experiments and their claims, run nothing.
    #[arg(long)]
    pub list: bool,
    /// Write the report as JSON to FILE (`-` for stdout, then the table goes
    /// to stderr).
    #[arg(long, value_name = "FILE|-")]
    pub json: Option<PathBuf>,
    /// Internal: run an experiment's child side (`fd-limit N`).
    #[arg(long, hide = true, num_args = 2, value_names = ["EXPERIMENT", "N"])]
    pub child: Option<Vec<String>>,
}

/// What every experiment may read.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// /proc and /sys.
    pub fs: ProcFs,
    /// RLIMIT_NOFILE of one fd table (soft, raised to hard).
    pub nofile: u64,
}

/// One experiment: a claim and the code that tests it.
#[derive(Debug, Clone, Copy)]
pub struct Experiment {
    /// Short name, as given on the command line.
    pub name: &'static str,
    /// The claim, one sentence.
    pub claim: &'static str,
    /// Runs it, cleans up, and returns what was observed.
    pub run: fn(&Ctx) -> Outcome,
}

/// Every experiment, in the order they run.
pub const EXPERIMENTS: &[Experiment] = &[
    Experiment {
        name: "four-tuple",
        claim: "one local address and port connects to many destinations, but not twice to the same one",
        run: tuple::four_tuple,
    },
    Experiment {
        name: "udp-shares-port",
        claim: "TCP and UDP serve on the same IP and port at once: the protocol is part of the tuple",
        run: tuple::udp_shares_port,
    },
    Experiment {
        name: "server-past-65535",
        claim: "one listening port holds more than 65,535 established connections",
        run: scale::server_past_65535,
    },
    Experiment {
        name: "client-past-65535",
        claim: "one source IP holds more than 65,535 connections, over several destination ports",
        run: scale::client_past_65535,
    },
    Experiment {
        name: "port-exhaustion",
        claim: "one source IP to one destination stops at the size of the local port range, with EADDRNOTAVAIL",
        run: ports::port_exhaustion,
    },
    Experiment {
        name: "bind-without-no-port",
        claim: "bind(ip, 0) before connect spends a port for every destination; IP_BIND_ADDRESS_NO_PORT gives the range per destination",
        run: ports::bind_without_no_port,
    },
    Experiment {
        name: "privileged-ports",
        claim: "ports below ip_unprivileged_port_start need CAP_NET_BIND_SERVICE, per thread",
        run: privileged::privileged_ports,
    },
    Experiment {
        name: "fd-limit",
        claim: "RLIMIT_NOFILE N gives EMFILE at the N-th descriptor, yet sharded fd tables hold more than N connections",
        run: fdlimit::fd_limit,
    },
    Experiment {
        name: "memory-per-connection",
        claim: "an idle loopback socket costs the kernel what the doctor predicts, within 25%",
        run: scale::memory_per_connection,
    },
];

/// The experiments named, in registry order, or all of them; an unknown
/// name is an input error listing the valid ones.
pub fn select(names: &[String]) -> crate::Result<Vec<&'static Experiment>> {
    if let Some(bad) = names.iter().find(|n| !EXPERIMENTS.iter().any(|e| e.name == n.as_str())) {
        let valid: Vec<&str> = EXPERIMENTS.iter().map(|e| e.name).collect();
        return Err(Error::Input(format!("unknown experiment {bad:?}; valid names: {}", valid.join(", "))));
    }
    Ok(EXPERIMENTS.iter().filter(|e| names.is_empty() || names.iter().any(|n| n == e.name)).collect())
}

/// The `--list` text: each name and its claim.
pub fn list() -> String {
    let width = EXPERIMENTS.iter().map(|e| e.name.len()).max().unwrap_or(0);
    EXPERIMENTS.iter().map(|e| format!("{:<width$}  {}\n", e.name, e.claim)).collect()
}

/// Runs the experiments in order, timing each.
pub fn prove(experiments: &[&Experiment], ctx: &Ctx, mut progress: impl FnMut(&ExperimentReport)) -> ProveReport {
    let start = Instant::now();
    let mut done = Vec::with_capacity(experiments.len());
    for e in experiments {
        let t = Instant::now();
        let o = (e.run)(ctx);
        let r = ExperimentReport {
            name: e.name,
            claim: e.claim,
            verdict: o.verdict,
            evidence: o.evidence,
            summary: o.summary,
            seconds: t.elapsed().as_secs_f64(),
        };
        progress(&r);
        done.push(r);
    }
    ProveReport { experiments: done, seconds: start.elapsed().as_secs_f64(), machine: Machine::read() }
}

/// Runs `tcpmax prove`. The exit code is 1 when a claim was refuted.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(child) = &args.child {
        return match child.as_slice() {
            [name, n] if name == "fd-limit" => {
                let n = n.parse().map_err(|_| Error::Input(format!("fd-limit child: bad N {n:?}")))?;
                fdlimit::child(n)
            }
            _ => Err(Error::Input(format!("unknown child experiment {child:?}")).into()),
        };
    }
    if args.list {
        print!("{}", list());
        return Ok(ExitCode::SUCCESS);
    }
    let chosen = select(&args.names)?;
    let nofile = process::raise_nofile().context("raising RLIMIT_NOFILE")?.soft;
    let ctx = Ctx { fs: ProcFs::default(), nofile };
    let tty = output::stderr_is_tty();
    let report = prove(&chosen, &ctx, |r| {
        if tty {
            eprintln!("{:<22} {:<10} {:.2} s", r.name, r.verdict.name(), r.seconds);
        }
    });
    output::emit(args.json.as_deref(), &report, &report.render())?;
    Ok(if report.count(Verdict::Refuted) > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_selectable() {
        assert_eq!(EXPERIMENTS.len(), 9);
        let all = select(&[]).expect("all");
        assert_eq!(all.len(), 9);
        let names: std::collections::BTreeSet<_> = EXPERIMENTS.iter().map(|e| e.name).collect();
        assert_eq!(names.len(), 9);
        // Registry order, whatever order the names come in.
        let two = select(&["fd-limit".into(), "four-tuple".into()]).expect("known");
        assert_eq!(two.iter().map(|e| e.name).collect::<Vec<_>>(), ["four-tuple", "fd-limit"]);
        let err = select(&["nope".into()]).expect_err("unknown");
        assert!(err.is_input() && err.to_string().contains("port-exhaustion"), "{err}");
        assert!(list().lines().count() == 9 && list().contains("four-tuple  "));
    }
}
