//! The `tcpmax` binary: parse the command line, dispatch, map errors to an
//! exit code. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = tcpmax::cli::Cli::parse();
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
