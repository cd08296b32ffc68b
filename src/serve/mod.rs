//! `tcpmax serve` (placeholder until it lands).

use std::process::ExitCode;

/// Arguments of `tcpmax serve`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `tcpmax serve`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("serve is not implemented yet")
}
