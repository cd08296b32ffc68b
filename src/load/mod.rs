//! `tcpmax load`: the pure parts of a load run, computed before any socket
//! opens.
//!
//! - [`plan`] decides which (source IP, destination) pairs carry how many
//!   connections, keeping every pair well under half of its local port
//!   range, and refuses a plan that cannot fit with the arithmetic and the
//!   fix.
//! - [`explain`] says what each errno means during a load run and what to
//!   change.
//! - [`agent`] runs one agent's share of a plan split over many hosts and
//!   lines the agents' ramps up on one wall-clock instant.
//! - [`hist`] carries the latency histograms in the report (HDR V2,
//!   base64), so that `tcpmax merge` adds them exactly.
//! - [`bytes`] parses the payload escapes of `--message` and
//!   `--first-message`.
//! - [`mod@run`] checks the arguments, runs the engine's client through ramp,
//!   hold and teardown, and samples it once a second.
//! - [`timeline`] builds one sample a second from the engine's counters,
//!   the clock and memory readings, bounded on long runs.
//! - [`protocol`] turns `--ws` and `--mqtt` into what the engine speaks.
//! - [`report`] is the report: JSON and the human table.
//! - [`target`] parses `HOST:PORT` addresses, resolves host names once and
//!   states which addresses a load uses.

pub mod agent;
pub mod bytes;
pub mod explain;
pub mod hist;
pub mod plan;
pub mod protocol;
pub mod report;
pub mod run;
pub mod target;
pub mod timeline;

pub use agent::CommandLine;
pub use run::{Args, run};
