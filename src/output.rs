//! Where reports go: `--json FILE` or `-` for stdout, and the terminal checks
//! that decide between a live progress line and plain lines.

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::error::Error;

/// The one way every subcommand hands over its result: the JSON first (to
/// `--json FILE`, or stdout with `-`), so that a closed terminal never loses
/// what was measured; then the human text, on stdout, or on stderr when the
/// JSON took stdout, so that `--json -` gives a stream a program can parse.
pub fn emit<T: Serialize>(json: Option<&Path>, value: &T, human: &str) -> anyhow::Result<()> {
    if let Some(dest) = json {
        write_json(dest, value)?;
    }
    if is_stdout(json) {
        let mut err = io::stderr().lock();
        err.write_all(human.as_bytes())?;
        err.flush()?;
    } else {
        let mut out = io::stdout().lock();
        out.write_all(human.as_bytes())?;
        out.flush()?;
    }
    Ok(())
}

/// Where human lines go while a run lasts: stderr when the JSON takes
/// stdout, stdout otherwise.
pub fn human(json: Option<&Path>) -> Box<dyn Write> {
    if is_stdout(json) { Box::new(io::stderr()) } else { Box::new(io::stdout()) }
}

/// The layout version of the JSON reports of `bench` and `load`
/// (`report_version`): 2 added the timeline's wall clock, failures by
/// cause, memory and shards; a report without the field is version 1.
/// `tcpmax report` reads every version up to this one.
pub const REPORT_VERSION: u32 = 2;

/// Writes `value` as pretty JSON to `dest` (`-` is stdout).
pub fn write_json<T: Serialize>(dest: &Path, value: &T) -> anyhow::Result<()> {
    if dest == Path::new("-") {
        let stdout = io::stdout();
        let mut lock = stdout.lock();
        serde_json::to_writer_pretty(&mut lock, value).context("writing JSON to stdout")?;
        writeln!(lock).context("writing JSON to stdout")?;
        lock.flush().context("writing JSON to stdout")?;
        return Ok(());
    }
    let tmp = tmp_path(dest);
    let write = || -> io::Result<()> {
        let mut f = io::BufWriter::new(File::create(&tmp)?);
        serde_json::to_writer_pretty(&mut f, value)?;
        writeln!(f)?;
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, dest)
    };
    write().with_context(|| format!("writing JSON report to {}", dest.display()))
}

/// Checks, before any work starts, that a report can be written to `dest`
/// (`-` always can): [`write_json`] writes a temporary file beside it and
/// renames it, so that temporary file is created here and removed again.
/// A destination that cannot take it is [`Error::Input`] naming the path
/// and the OS error, so a long run never ends with its report lost.
pub fn check_writable(dest: &Path) -> crate::Result<()> {
    if dest == Path::new("-") {
        return Ok(());
    }
    let refuse = |why: String| {
        Error::Input(format!(
            "--json {}: cannot write there ({why}); give a path in a writable directory, or - for stdout",
            dest.display()
        ))
    };
    if dest.is_dir() {
        return Err(refuse("it is a directory".into()));
    }
    let tmp = tmp_path(dest);
    match OpenOptions::new().write(true).create_new(true).open(&tmp) {
        Ok(_) => std::fs::remove_file(&tmp).map_err(|e| refuse(format!("removing {}: {e}", tmp.display()))),
        // Left by an earlier run: writable is all that matters, and it stays.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            OpenOptions::new().write(true).open(&tmp).map(drop).map_err(|e| refuse(e.to_string()))
        }
        Err(e) => Err(refuse(e.to_string())),
    }
}

/// Writes `text` to `dest` whole or not at all (a temporary file renamed).
pub fn write_text(dest: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = tmp_path(dest);
    let write = || -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, dest)
    };
    write().with_context(|| format!("writing {}", dest.display()))
}

/// True when `dest` asks for stdout, so human output must go elsewhere.
pub fn is_stdout(dest: Option<&Path>) -> bool {
    dest.is_some_and(|d| d == Path::new("-"))
}

fn tmp_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    dest.with_file_name(name)
}

/// True when stderr is a terminal (live progress lines are drawn there).
pub fn stderr_is_tty() -> bool {
    io::stderr().is_terminal()
}

/// True when stdout is a terminal.
pub fn stdout_is_tty() -> bool {
    io::stdout().is_terminal()
}

/// Shows a progress line on stderr: redrawn in place on a terminal, one
/// plain line each otherwise (logs, pipes, CI).
pub fn live_line(line: &str, tty: bool) {
    if tty {
        eprint!("\r\x1b[K{line}");
    } else {
        eprintln!("{line}");
    }
}

/// Holding at least this many at the stop, the teardown is shown: below,
/// it takes milliseconds.
pub const SHOW_TEARDOWN: u64 = 10_000;

/// The teardown's progress line (nothing below [`SHOW_TEARDOWN`]).
pub fn closing_line(left: u64, held: u64, tty: bool) {
    if held >= SHOW_TEARDOWN {
        live_line(
            &format!("closing: {} of {} connections left", crate::units::group(left), crate::units::group(held)),
            tty,
        );
    }
}

/// True when the error chain ends in a broken pipe (`tcpmax doctor | head`).
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writable_destinations() {
        let dir = std::env::temp_dir().join(format!("tcpmax-output-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dest = dir.join("report.json");
        assert!(check_writable(Path::new("-")).is_ok());
        assert!(check_writable(&dest).is_ok());
        // Nothing left behind by the check.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);

        let missing = Path::new("/nonexistent-tcpmax-dir/x.json");
        let err = check_writable(missing).unwrap_err();
        assert!(err.is_input());
        let msg = err.to_string();
        assert!(msg.starts_with("--json /nonexistent-tcpmax-dir/x.json: cannot write there (No such file"), "{msg}");
        assert!(!msg.contains('\n'));

        let err = check_writable(&dir).unwrap_err().to_string();
        assert!(err.contains("it is a directory"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
