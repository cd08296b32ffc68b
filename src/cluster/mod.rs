//! `tcpmax cluster`: a cluster rehearsed on one machine. Backend hosts run
//! `tcpmax serve --agent` with their own memory budgets, a load balancer
//! host runs a tier of HAProxy processes (`balance leastconn`, an agent
//! check on every server), a client host runs `tcpmax load --reconnect`
//! against it; all are network namespaces on a private bridge.
//!
//! - [`topology`]: the hosts, their names and addresses (pure);
//! - [`netns`]: building and removing them with `ip`, leftovers of earlier runs;
//! - [`haproxy`]: the tier's arithmetic and configuration (pure);
//! - [`supervise`]: the child processes and the guard that removes everything;
//! - [`live`]: reading status lines, HAProxy's stats and accept-queue counters;
//! - [`watch`]: what is kept from each second (pure);
//! - [`report`]: the report.
//!
//! The run: refuse up front without HAProxy, `ip` or the privilege for
//! namespaces (exit 2, with the fix); remove what a killed earlier run left;
//! create the namespaces, read the limits inside them, size the tier, wire
//! the bridge and the addresses; start the backends, check and start
//! HAProxy, start the client; once a second, watch and print one line; kill
//! a backend if asked; at the end of the hold take the figures, stop
//! everything, remove every namespace and the temporary directory, and
//! report. SIGINT/SIGTERM are blocked and waited for, so an interrupted run
//! cleans up too (exit 130).

pub mod haproxy;
pub mod live;
pub mod netns;
pub mod report;
pub mod supervise;
pub mod topology;
pub mod watch;

mod rehearse;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::error::{Error, Result};
use crate::output;
use crate::sys::caps;
use crate::sys::process::{self, SIGINT, SIGTERM};
use crate::units;
use supervise::Guard;

/// The budget of a backend not given one.
pub const DEFAULT_BUDGET: u64 = 1 << 30;
/// Linux capability bit of CAP_NET_ADMIN.
const CAP_NET_ADMIN: u32 = 12;
/// Linux capability bit of CAP_SYS_ADMIN.
const CAP_SYS_ADMIN: u32 = 21;

/// `--kill-backend NAME@TIME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kill {
    /// The backend (`b2`).
    pub backend: String,
    /// How long into the hold.
    pub after: Duration,
}

fn parse_kill(s: &str) -> Result<Kill, String> {
    let (name, time) =
        s.split_once('@').ok_or_else(|| format!("`{s}` is not NAME@TIME (example: b2@10s: b2, 10 s into the hold)"))?;
    Ok(Kill { backend: name.trim().to_string(), after: units::parse_duration(time)? })
}

/// Arguments of `tcpmax cluster`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Backend hosts, each running `tcpmax serve --agent` with its budget.
    #[arg(long, default_value_t = 4)]
    pub backends: usize,
    /// HAProxy processes in the load balancer tier (default: derived from
    /// -c and the fd limit: two descriptors per connection).
    #[arg(long, value_name = "K")]
    pub lb_processes: Option<usize>,
    /// Connections to hold through the load balancer tier.
    #[arg(short = 'c', long = "connections", default_value = "50k", value_parser = units::parse_count)]
    pub count: u64,
    /// Memory budget of each backend, comma-separated in backend order (one
    /// value: every backend); default 1GiB each.
    #[arg(long, value_delimiter = ',', value_parser = units::parse_bytes, value_name = "SIZE,...")]
    pub backend_memory: Vec<u64>,
    /// How long to hold once the client holds its target.
    #[arg(long, default_value = "20s", value_parser = units::parse_duration)]
    pub hold: Duration,
    /// Kill one backend this long into the hold (b2@10s); with
    /// `load --reconnect` its clients come back through the load balancer.
    #[arg(long, value_name = "NAME@TIME", value_parser = parse_kill)]
    pub kill_backend: Option<Kill>,
    /// Write the report as JSON to FILE (`-` for stdout); the HAProxy
    /// configuration is written beside it (FILE's stem + `.haproxy.cfg`).
    #[arg(long, value_name = "FILE|-")]
    pub json: Option<PathBuf>,
}

/// The budgets of the backends, checked.
pub fn budgets(args: &Args) -> Result<Vec<u64>> {
    let n = args.backends;
    if n == 0 {
        return Err(Error::Input("--backends must be at least 1".into()));
    }
    let budgets = match args.backend_memory.len() {
        0 => vec![DEFAULT_BUDGET; n],
        1 => vec![args.backend_memory[0]; n],
        m if m == n => args.backend_memory.clone(),
        m => {
            return Err(Error::Input(format!(
                "--backend-memory lists {m} budgets for {n} backends: give one for all, or exactly {n}"
            )));
        }
    };
    if budgets.contains(&0) {
        return Err(Error::Input("--backend-memory: a budget must be above 0 (example: 64MiB)".into()));
    }
    if let Some(k) = &args.kill_backend {
        let valid =
            k.backend.strip_prefix('b').and_then(|i| i.parse::<usize>().ok()).is_some_and(|i| (1..=n).contains(&i));
        if !valid {
            return Err(Error::Input(format!("--kill-backend {}: the backends are b1 to b{n}", k.backend)));
        }
        if k.after >= args.hold {
            return Err(Error::Input(format!(
                "--kill-backend {}@{:?} falls after the {:?} hold: kill it earlier or hold longer",
                k.backend, k.after, args.hold
            )));
        }
    }
    if args.count == 0 {
        return Err(Error::Input("-c must be at least 1".into()));
    }
    Ok(budgets)
}

/// True when an executable `name` is on PATH.
fn on_path(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .any(|dir| std::fs::metadata(dir.join(name)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// Refuses up front what cannot work: no HAProxy, no `ip`, no privilege.
pub fn preflight() -> Result<()> {
    if !on_path("haproxy") {
        return Err(Error::Refused {
            reason: "haproxy is not installed (not on PATH): the load balancer tier runs HAProxy".into(),
            fix: "apt-get install -y haproxy (Debian, Ubuntu; `dnf install -y haproxy` on Fedora, RHEL)".into(),
        });
    }
    if !on_path("ip") {
        return Err(Error::Refused {
            reason: "`ip` (iproute2) is not installed: the hosts are network namespaces made with it".into(),
            fix: "apt-get install -y iproute2".into(),
        });
    }
    let c = caps::get().map_err(|e| Error::os("reading this process's capabilities", e))?;
    if !c.has_effective(CAP_SYS_ADMIN) || !c.has_effective(CAP_NET_ADMIN) {
        return Err(Error::Refused {
            reason: "creating network namespaces and a bridge needs CAP_SYS_ADMIN and CAP_NET_ADMIN, which this process lacks".into(),
            fix: "run it as root: sudo tcpmax cluster ...".into(),
        });
    }
    Ok(())
}

/// Removes the namespaces and temporary directories of earlier runs that
/// are no longer running, and says so; the names removed.
fn clean_leftovers(me: u32, human: &mut dyn std::io::Write) -> anyhow::Result<Vec<String>> {
    let names = netns::list()?;
    let mut removed = Vec::new();
    for (run, mut namespaces) in netns::leftovers(&names, me) {
        // The hosts first, the switch last.
        namespaces.sort_by_key(|n| n.ends_with("-sw"));
        let mut procs = 0;
        for ns in &namespaces {
            procs += netns::remove(ns)?;
        }
        writeln!(
            human,
            "removed leftovers of an earlier run (pid {run}, no longer running): {} namespaces ({}), {procs} processes",
            namespaces.len(),
            namespaces.join(", ")
        )?;
        removed.extend(namespaces);
    }
    let tmp = std::env::temp_dir();
    for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let run = name.strip_suffix("-cluster").and_then(|n| topology::run_of(&format!("{n}-x")));
        if let Some(run) = run
            && run != me
            && !netns::is_live_run(run)
        {
            std::fs::remove_dir_all(entry.path()).with_context(|| format!("removing {}", entry.path().display()))?;
            writeln!(human, "removed the temporary directory of an earlier run: {}", entry.path().display())?;
            removed.push(entry.path().display().to_string());
        }
    }
    Ok(removed)
}

/// Where the HAProxy configuration goes: beside a JSON report file.
fn config_path(json: Option<&Path>) -> Option<PathBuf> {
    let json = json.filter(|p| *p != Path::new("-"))?;
    let stem = json.file_stem()?.to_string_lossy().into_owned();
    Some(json.with_file_name(format!("{stem}.haproxy.cfg")))
}

/// Runs `tcpmax cluster`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let budgets = budgets(&args)?;
    preflight()?;
    // Blocked before any thread or child starts; children get a clean mask.
    process::block_signals(&[SIGINT, SIGTERM]).context("blocking SIGINT/SIGTERM")?;
    let json_to_stdout = output::is_stdout(args.json.as_deref());
    let mut human: Box<dyn std::io::Write> =
        if json_to_stdout { Box::new(std::io::stderr()) } else { Box::new(std::io::stdout()) };
    let me = std::process::id();
    let leftovers = clean_leftovers(me, &mut *human)?;
    let mut guard = Guard::new(supervise::tmp_dir(me))?;
    let config = config_path(args.json.as_deref());
    let outcome = rehearse::rehearse(&args, &budgets, &mut guard, &mut *human, config);
    // Everything goes, whatever happened.
    let removed = guard.cleanup();
    let ours = topology::run_prefix(me);
    let left_behind: Vec<String> =
        netns::list().unwrap_or_default().into_iter().filter(|n| n.starts_with(&ours)).collect();
    for p in &removed.problems {
        writeln!(human, "cleanup: {p}")?;
    }
    let Some(mut report) = outcome? else {
        writeln!(human, "interrupted while setting up; everything created was removed")?;
        return Ok(ExitCode::from(130));
    };
    report.leftovers_removed = leftovers;
    report.cleanup =
        report::CleanupReport { processes: removed.processes, namespaces: removed.namespaces, left_behind };
    // The JSON first: a closed stdout must not lose what was measured.
    if let Some(path) = &args.json {
        output::write_json(path, &report)?;
    }
    write!(human, "{}", report.render())?;
    human.flush()?;
    Ok(if report.interrupted {
        ExitCode::from(130)
    } else if report.goal_met && report.cleanup.left_behind.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn args(line: &[&str]) -> Args {
        Cli::try_parse_from(std::iter::once("cluster").chain(line.iter().copied())).unwrap().args
    }

    #[test]
    fn budgets_per_backend() {
        let a = args(&["--backends", "4", "--backend-memory", "64MiB,64MiB,2GiB,2GiB"]);
        assert_eq!(budgets(&a).unwrap(), vec![64 << 20, 64 << 20, 2 << 30, 2 << 30]);
        assert_eq!(budgets(&args(&["--backends", "2"])).unwrap(), vec![DEFAULT_BUDGET; 2]);
        assert_eq!(budgets(&args(&["--backends", "3", "--backend-memory", "1GiB"])).unwrap(), vec![1 << 30; 3]);
        let e = budgets(&args(&["--backends", "3", "--backend-memory", "1GiB,2GiB"])).unwrap_err();
        assert!(e.to_string().contains("2 budgets for 3 backends"), "{e}");
        assert!(budgets(&args(&["--backends", "0"])).is_err());
        assert!(budgets(&args(&["--backend-memory", "0"])).is_err());
    }

    #[test]
    fn kill_is_checked() {
        let a = args(&["--backends", "2", "--hold", "30s", "--kill-backend", "b2@10s"]);
        assert_eq!(a.kill_backend, Some(Kill { backend: "b2".into(), after: Duration::from_secs(10) }));
        assert!(budgets(&a).is_ok());
        assert!(budgets(&args(&["--backends", "2", "--kill-backend", "b3@5s"])).is_err());
        assert!(budgets(&args(&["--hold", "10s", "--kill-backend", "b1@10s"])).is_err());
        assert!(parse_kill("b1").is_err());
        assert!(parse_kill("b1@soon").is_err());
    }

    #[test]
    fn config_beside_the_report() {
        assert_eq!(config_path(Some(Path::new("out/run.json"))), Some(PathBuf::from("out/run.haproxy.cfg")));
        assert_eq!(config_path(Some(Path::new("-"))), None);
        assert_eq!(config_path(None), None);
    }
}
