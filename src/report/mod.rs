//! `tcpmax report`: draws one or more JSON reports of `bench` or `load` as
//! a single self-contained HTML page (inline CSS and SVG, no scripts, no
//! network; it opens from file://): the summary and the machine on top,
//! then the plots. Several runs are overlaid, one colour each.
//!
//! - [`input`] reads and recognises the reports; a file that is not one
//!   is an input error naming the file (exit 2).
//! - [`figures`] decides what each plot shows, [`plots`] draws it as SVG
//!   with plotters.
//! - [`html`] lays out the page.
//!
//! `tcpmax bench --report FILE.html` writes the same page at the end of a
//! run.

pub mod figures;
pub mod html;
pub mod input;
pub mod plots;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::bench::report::BenchReport;
use crate::error::Error;
use crate::output;
use input::Run;

/// Arguments of `tcpmax report`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Reports written by `tcpmax bench --json` or `tcpmax load --json`;
    /// several are overlaid, one colour each.
    #[arg(required = true, value_name = "RUN.json")]
    pub inputs: Vec<PathBuf>,
    /// The HTML file to write.
    #[arg(short = 'o', long = "output", value_name = "FILE.html", default_value = "report.html")]
    pub output: PathBuf,
}

/// Runs `tcpmax report`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    check_writable(&args.output)?;
    let mut runs = args.inputs.iter().map(|p| input::read(p)).collect::<crate::Result<Vec<Run>>>()?;
    input::unique_labels(&mut runs);
    let plots = write(&args.output, &runs)?;
    println!(
        "wrote {}: {} run{}, {plots} plots (open it in a browser)",
        args.output.display(),
        runs.len(),
        if runs.len() == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}

/// The page of these runs.
pub fn render(runs: &[Run]) -> anyhow::Result<(String, usize)> {
    let figures = figures::all(runs)?;
    Ok((html::page(runs, &figures), figures.iter().filter(|f| f.svg.is_some()).count()))
}

/// Writes the page of these runs to `path`; returns how many plots it has.
pub fn write(path: &Path, runs: &[Run]) -> anyhow::Result<usize> {
    let (page, plots) = render(runs)?;
    output::write_text(path, &page)?;
    Ok(plots)
}

/// Writes the page of a bench run that just ended (`bench --report`).
pub fn write_bench(path: &Path, report: &BenchReport) -> anyhow::Result<()> {
    let value = serde_json::to_value(report)?;
    let label = format!("bench -c {}", figures::si(report.target as f64));
    let run = input::from_value("this run", label, value)?;
    write(path, &[run]).map(|_| ())
}

/// Checks that a file can be created at `path` (before a run, so that a
/// long run does not end unable to write its report).
pub fn check_writable(path: &Path) -> crate::Result<()> {
    let bad = |why: String| {
        Error::Input(format!("cannot write {}: {why}; give a path in a writable directory", path.display()))
    };
    if path.is_dir() {
        return Err(bad("it is a directory".into()));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let probe = dir.join(format!(".tcpmax-write-check-{}", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| bad(format!("{} ({e})", dir.display())))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwritable_places_are_refused() {
        assert!(check_writable(Path::new("/nonexistent-dir/r.html")).is_err());
        assert!(check_writable(&std::env::temp_dir()).is_err(), "a directory is not a file");
        let ok = std::env::temp_dir().join("tcpmax-check-writable.html");
        assert!(check_writable(&ok).is_ok());
        assert!(!ok.exists(), "the check leaves nothing behind");
    }
}
