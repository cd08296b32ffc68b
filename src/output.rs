//! Where reports go: `--json FILE` or `-` for stdout, and the terminal checks
//! that decide between a live progress line and plain lines.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

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

/// True when the error chain ends in a broken pipe (`tcpmax doctor | head`).
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe))
}
