//! The command line: clap definitions and dispatch. Each subcommand's
//! arguments live beside its code (`doctor::Args`, ...); this file only
//! gathers them.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::Error;

/// Finds, explains and proves how many concurrent TCP connections this Linux
/// machine can hold.
#[derive(Debug, Parser)]
#[command(name = "tcpmax", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read this machine's limits, predict the connection ceiling, name the
    /// limit that binds first and the fix.
    Doctor(crate::doctor::Args),
    /// Four-tuple arithmetic: how many connections a topology allows.
    Calc(crate::calc::Args),
    /// Hold a huge number of TCP connections (sharded over many fd tables).
    Serve(crate::serve::Args),
    /// Open and hold connections against any TCP server.
    Load(crate::load::Args),
    /// Prove the ceiling: serve and load on loopback, ramp, hold, report.
    Bench(crate::bench::Args),
    /// Prove the claims one by one: small experiments on loopback, each with
    /// a verdict from what the kernel did and the evidence.
    Prove(crate::prove::Args),
    /// Rehearse a cluster on this machine: backends with memory budgets
    /// behind HAProxy processes that throttle them by agent check, a client
    /// through them, each host a network namespace (needs root and haproxy).
    Cluster(crate::cluster::Args),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Doctor(args) => crate::doctor::run(args),
        Command::Calc(args) => crate::calc::run(args),
        Command::Serve(args) => crate::serve::run(args),
        Command::Load(args) => crate::load::run(args),
        Command::Bench(args) => crate::bench::run(args),
        Command::Prove(args) => crate::prove::run(args),
        Command::Cluster(args) => crate::cluster::run(args),
    }
}

/// The exit code for an error: 2 when the input must change, 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    let input = err.chain().any(|e| e.downcast_ref::<Error>().is_some_and(Error::is_input));
    if input { 2 } else { 1 }
}
