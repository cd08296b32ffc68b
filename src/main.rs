//! The `tcpmax` binary: parse the command line, dispatch, map errors to an
//! exit code. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match tcpmax::cli::Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        // --help, --version, and the help shown for a bare `tcpmax`.
        Err(e) if !e.use_stderr() || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            eprintln!("tcpmax: error: {}", tcpmax::cli::usage_error(&e, &argv));
            return ExitCode::from(2);
        }
    };
    match tcpmax::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            if tcpmax::output::is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("tcpmax: error: {err:#}");
            ExitCode::from(tcpmax::cli::exit_code(&err))
        }
    }
}
