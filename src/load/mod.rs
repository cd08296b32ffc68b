//! `tcpmax load`: the pure parts of a load run, computed before any socket
//! opens.
//!
//! - [`explain`] says what each errno means during a load run and what to
//!   change.
//! - [`bytes`] parses the payload escapes of `--message` and
//!   `--first-message`.

pub mod bytes;
pub mod explain;
