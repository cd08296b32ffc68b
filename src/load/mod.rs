//! `tcpmax load`: the pure parts of a load run, computed before any socket
//! opens.
//!
//! - [`bytes`] parses the payload escapes of `--message` and
//!   `--first-message`.

pub mod bytes;
