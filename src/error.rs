//! The library's typed errors. The binary adds context with anyhow and maps
//! them to exit codes: 2 for input the user must change, 1 for the rest.

use std::io;
use std::net::SocketAddr;

/// What can go wrong inside tcpmax.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is wrong or impossible as given; the message says why and
    /// what to change. Exit code 2.
    #[error("{0}")]
    Input(String),

    /// A plan the machine cannot carry out, refused before any socket opened.
    /// Exit code 2. One line: the cause, then the fix.
    #[error("{reason}; fix: {fix}")]
    Refused {
        /// The arithmetic that fails.
        reason: String,
        /// What to change.
        fix: String,
    },

    /// A listening address could not be bound.
    #[error("cannot listen on {addr}: {source} ({errno}){hint}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The errno name.
        errno: &'static str,
        /// Why this errno usually happens.
        hint: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// SIGINT or SIGTERM came before the run could start.
    #[error("interrupted")]
    Interrupted,

    /// A system call failed where no recovery makes sense.
    #[error("{what}: {source}")]
    Os {
        /// What tcpmax was doing.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Wraps an OS error with what was being done.
    pub fn os(what: impl Into<String>, source: io::Error) -> Error {
        Error::Os { what: what.into(), source }
    }

    /// True for errors the user fixes by changing the input (exit code 2).
    pub fn is_input(&self) -> bool {
        matches!(self, Error::Input(_) | Error::Refused { .. })
    }
}

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
