//! The command line: clap definitions and dispatch. Each subcommand's
//! arguments live beside its code (`doctor::Args`, ...); this file only
//! gathers them.

use std::process::ExitCode;

use std::ffi::OsString;
use std::path::Path;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser, Subcommand};

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
    Load(crate::load::CommandLine),
    /// Prove the ceiling: serve and load on loopback, ramp, hold, report.
    Bench(crate::bench::Args),
    /// Prove the claims one by one: small experiments on loopback, each with
    /// a verdict from what the kernel did and the evidence.
    Prove(crate::prove::Args),
    /// Draw JSON reports of bench or load as one HTML page with plots
    /// (several runs overlaid).
    Report(crate::report::Args),
    /// Merge the reports of the agents of one plan (`load --agents N`)
    /// into one: sums, exact percentiles, a row per agent.
    Merge(crate::merge::Args),
    /// Rehearse a cluster on this machine: backends with memory budgets
    /// behind HAProxy processes that throttle them by agent check, a client
    /// through them, each host a network namespace (needs root and haproxy).
    Cluster(crate::cluster::Args),
}

impl Command {
    /// Where the subcommand writes its JSON report, if anywhere.
    pub fn json(&self) -> Option<&Path> {
        match self {
            Command::Doctor(a) => a.json.as_deref(),
            Command::Calc(a) => a.json.as_deref(),
            Command::Serve(a) => a.json.as_deref(),
            Command::Load(a) => a.load.json.as_deref(),
            Command::Bench(a) => a.json.as_deref(),
            Command::Prove(a) => a.json.as_deref(),
            Command::Report(_) => None,
            Command::Merge(a) => a.json.as_deref(),
            Command::Cluster(a) => a.json.as_deref(),
        }
    }
}

/// Runs the parsed command line. The JSON destination is checked first,
/// before any socket opens, so that no run ends with its report lost.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(dest) = cli.command.json() {
        crate::output::check_writable(dest)?;
    }
    match cli.command {
        Command::Doctor(args) => crate::doctor::run(args),
        Command::Calc(args) => crate::calc::run(args),
        Command::Serve(args) => crate::serve::run(args),
        Command::Load(args) => crate::load::run(args),
        Command::Bench(args) => crate::bench::run(args),
        Command::Prove(args) => crate::prove::run(args),
        Command::Report(args) => crate::report::run(args),
        Command::Merge(args) => crate::merge::run(args),
        Command::Cluster(args) => crate::cluster::run(args),
    }
}

/// The exit code for an error: 2 when the input must change, 130 when a
/// signal stopped the start, 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.chain().any(|e| matches!(e.downcast_ref::<Error>(), Some(Error::Interrupted))) {
        return 130;
    }
    let input = err.chain().any(|e| e.downcast_ref::<Error>().is_some_and(Error::is_input));
    if input { 2 } else { 1 }
}

/// A command-line error from clap as one line naming the cause and the fix
/// (the binary prints it after `tcpmax: error: ` and exits 2). clap's own
/// rendering spreads a message, tips and the usage over several lines; here
/// a bad value is `FLAG: why` (the parsers' messages carry examples), and
/// any other error is clap's message, its tips, and where the options are
/// listed. `argv` is the command line, to name the subcommand's help.
pub fn usage_error(err: &clap::Error, argv: &[OsString]) -> String {
    if err.kind() == ErrorKind::ValueValidation
        && let Some(why) = std::error::Error::source(err)
    {
        let what = match (err.get(ContextKind::InvalidArg), err.get(ContextKind::InvalidValue)) {
            // An option: its long name (`--connections <COUNT>` -> `--connections`).
            (Some(ContextValue::String(arg)), _) if arg.starts_with('-') => {
                arg.split_whitespace().next().unwrap_or(arg).to_string()
            }
            // A positional: the value as given.
            (_, Some(ContextValue::String(value))) => value.clone(),
            (Some(arg), _) => arg.to_string(),
            _ => "invalid value".into(),
        };
        return one_line(&format!("{what}: {why}"));
    }
    let text = err.render().to_string();
    // clap's layout: `error: MESSAGE` (may wrap over lines), then blank-line
    // separated paragraphs of tips, usage and a help pointer.
    let message = text.split("\n\n").next().unwrap_or_default();
    let mut out = one_line(message.strip_prefix("error: ").unwrap_or(message));
    // "to pass '--bogus' as a value, use '-- --bogus'" misleads for an
    // unknown flag; the suggestions ("a similar argument exists") stay.
    let tips = text.lines().filter_map(|l| l.trim().strip_prefix("tip: "));
    for tip in tips.filter(|t| !t.starts_with("to pass ")) {
        out.push_str("; ");
        out.push_str(tip);
    }
    let sub = argv
        .iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .find(|a| Cli::command().get_subcommands().any(|c| c.get_name() == *a));
    match sub {
        Some(sub) => out.push_str(&format!("; `tcpmax {sub} --help` lists the options")),
        None => out.push_str("; `tcpmax --help` lists the subcommands"),
    }
    out
}

/// Joins the lines of `text` with single spaces.
fn one_line(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(args: &[&str]) -> String {
        let argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        match Cli::try_parse_from(&argv) {
            Ok(cli) => panic!("{args:?} parsed: {cli:?}"),
            Err(e) => usage_error(&e, &argv),
        }
    }

    #[test]
    fn bad_values_name_the_flag() {
        assert_eq!(
            error_of(&["tcpmax", "load", "-c", "-5", "127.0.0.1:9"]),
            "--connections: `-5` is not a count: counts are positive (examples: 20000, 10k, 1M)"
        );
        assert_eq!(
            error_of(&["tcpmax", "load", "127.0.0.1:99999"]),
            "127.0.0.1:99999: `99999` is not a port: ports are 1-65535"
        );
        assert!(error_of(&["tcpmax", "bench", "-c", "abc"]).starts_with("--connections: `abc` is not a count"));
    }

    #[test]
    fn other_errors_are_one_line_with_the_help() {
        let e = error_of(&["tcpmax", "load", "--bogus"]);
        assert!(e.starts_with("unexpected argument '--bogus' found"), "{e}");
        assert!(e.ends_with("; `tcpmax load --help` lists the options"), "{e}");
        assert!(!e.contains("as a value"), "{e}");
        let e = error_of(&["tcpmax", "load", "--rat", "5", "127.0.0.1:9"]);
        assert!(e.contains("; a similar argument exists: '--rate'"), "{e}");
        let e = error_of(&["tcpmax", "load"]);
        assert!(e.starts_with("the following required arguments were not provided: <ADDR:PORT>"), "{e}");
        let e = error_of(&["tcpmax", "lod"]);
        assert!(e.starts_with("unrecognized subcommand 'lod'"), "{e}");
        assert!(e.contains("; a similar subcommand exists: 'load'"), "{e}");
        assert!(e.ends_with("`tcpmax --help` lists the subcommands"), "{e}");
        for e in [error_of(&["tcpmax", "load", "--rat", "5", "127.0.0.1:9"]), error_of(&["tcpmax", "lod"])] {
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
