//! `tcpmax doctor` (placeholder until it lands).

use std::process::ExitCode;

/// Arguments of `tcpmax doctor`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `tcpmax doctor`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("doctor is not implemented yet")
}
