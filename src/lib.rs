//! tcpmax finds, explains and proves how many concurrent TCP connections a
//! Linux machine can hold.
//!
//! A connection is its four-tuple (local IP, local port, remote IP, remote
//! port), so the 65,535 ports are not a connection limit. What stops a
//! machine is file descriptors, kernel memory, port ranges per (source,
//! destination) pair and kernel queues. tcpmax reads those limits
//! (`doctor`), does the four-tuple arithmetic (`calc`) and holds the
//! connections for real (`serve`, `load`, `bench`), spreading sockets over
//! many fd tables so that a per-process `RLIMIT_NOFILE` caps one shard, not
//! the machine.
//!
//! # Layout
//!
//! | module | what it is for |
//! |---|---|
//! | [`cli`] | clap definitions of the subcommands and dispatch |
//! | [`error`] | typed library errors and their exit codes |
//! | [`units`] | `10k`, `1M`, `30s`, `64KiB`, `85%` parsers and number formatting |
//! | [`machine`] | the machine facts every report records: kernel, CPUs, memory, limits, commit |
//! | [`interrupt`] | SIGINT and SIGTERM for every subcommand: the first stops in order, the second at once |
//! | [`output`] | JSON reports to a file or stdout, terminal checks |
//! | [`bounded`] | reading report files from outside within bounds: size, string length, a memory budget; text made safe to print |
//! | [`files`] | certificate and key files read with a size cap, the self-signed certificate's private temporary file |
//! | [`procfs`] | reading /proc and /sys through a root path (fixtures in tests), the cgroup's memory limit, the kernel's drop counters, the accept queues of local listeners |
//! | [`doctor`] | this machine's limits and the predicted ceiling per role |
//! | [`calc`] | pure four-tuple arithmetic for a topology |
//! | [`engine`] | the one sharded edge-triggered epoll loop, elastic shards, the client handler, pure bookkeeping |
//! | [`proto`] | sans-IO protocol state machines: WebSocket, MQTT and TLS records, client and server |
//! | [`serve`] | the server that holds connections, on the engine; its headroom and HAProxy agent |
//! | [`load`] | `tcpmax load`: targets and host names, address plan, errno explanations, payload escapes, the per-second timeline, agents' shares of one plan |
//! | [`merge`] | `tcpmax merge`: the agents' reports of one plan into one, with exact percentiles |
//! | [`mod@bench`] | `tcpmax bench`: serve and load on loopback, memory guard, the report |
//! | [`prove`] | `tcpmax prove`: each claim as an experiment on loopback, a verdict from what the kernel did |
//! | [`report`] | `tcpmax report`: JSON reports drawn as one self-contained HTML page with SVG plots |
//! | [`cluster`] | `tcpmax cluster`: backends behind HAProxy in network namespaces, rehearsed on one machine |
//! | `sys` (crate-private) | every syscall and every `unsafe` block, nowhere else |

pub mod bench;
pub mod bounded;
pub mod calc;
pub mod cli;
pub mod cluster;
pub mod doctor;
pub mod engine;
pub mod error;
pub mod files;
pub mod interrupt;
pub mod load;
pub mod machine;
pub mod merge;
pub mod output;
pub mod procfs;
pub mod proto;
pub mod prove;
pub mod report;
pub mod serve;
#[allow(unsafe_code)]
pub(crate) mod sys;
#[cfg(test)]
mod testing;
pub mod units;

pub use error::{Error, Result};
