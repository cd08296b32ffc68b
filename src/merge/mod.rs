//! `tcpmax merge`: one report from the reports of the agents of one plan
//! (`tcpmax load --agents N`, on many hosts or in a Kubernetes Indexed Job).
//!
//! - [`input`] reads each file and names a missing, empty, truncated or
//!   foreign one.
//! - [`combine`] checks that every report belongs to one plan and one
//!   version, then sums: counters and errnos are added, the HDR histograms
//!   are added bucket by bucket so the percentiles are exact (never an
//!   average of percentiles), the timelines are summed by wall-clock second,
//!   and each agent's ramp start is compared with the earliest.
//! - [`report`] is the merged report: JSON (`schemas/merge.schema.json`)
//!   and the human table.
//!
//! Exit codes: 0 when every agent of the plan is in, 1 when some are
//! missing (the merged report of the others is still written), 2 for a file
//! that is not a report of the same plan.

pub mod combine;
pub mod input;
pub mod report;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::output;

/// Arguments of `tcpmax merge`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The agents' JSON reports (`tcpmax load --agents N ... --json FILE`).
    #[arg(required = true, value_name = "REPORT.json")]
    pub reports: Vec<PathBuf>,
    /// Write the merged report as JSON to FILE (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// Runs `tcpmax merge`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let parts = args.reports.iter().map(|p| input::read(p)).collect::<crate::Result<Vec<_>>>()?;
    let merged = combine::merge(parts)?;
    if let Some(path) = &args.json {
        output::write_json(path, &merged)?;
    }
    let mut human: Box<dyn std::io::Write> =
        if output::is_stdout(args.json.as_deref()) { Box::new(std::io::stderr()) } else { Box::new(std::io::stdout()) };
    write!(human, "{}", merged.render())?;
    human.flush()?;
    Ok(if merged.complete { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
