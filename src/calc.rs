//! `tcpmax calc` (placeholder until it lands).

use std::process::ExitCode;

/// Arguments of `tcpmax calc`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `tcpmax calc`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("calc is not implemented yet")
}
