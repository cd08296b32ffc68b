//! The engine: sharded, edge-triggered epoll event loops that hold a huge
//! number of connections with almost no user-space memory.
//!
//! # Shards
//! A shard is a thread that owns a private fd table
//! ([`sys::process::private_fd_table`](crate::sys::process::private_fd_table):
//! `unshare(CLONE_FILES)`), its own epoll instance and its own sockets.
//! `RLIMIT_NOFILE` is checked per fd table, so N shards hold N times the
//! per-process cap without any privilege. Threads were chosen over worker
//! processes because a thread costs only the stack pages it touches and
//! shares the binary's pages and heap, and because when the process dies
//! (even SIGKILL) every shard dies with it: no orphan is possible. The
//! measured cost of both options is in `docs/internals.md`.
//!
//! Shards never share a hot structure. Each sends cumulative
//! [`ShardStats`](stats::ShardStats) snapshots over a channel, a few times a
//! second; the supervisor only aggregates. The one shared value is the
//! admission [`Gate`](gate::Gate), touched once per accept and once per close,
//! never per event on an idle connection.
//!
//! # Per-connection state
//! A [`ConnTable`](table::ConnTable) indexed by fd holds one small `Copy`
//! record per descriptor (1 byte on the server, 8 on the client). There is no
//! per-connection allocation, timer or buffer while a connection is idle; a
//! buffer exists only while a peer is not reading what it is sent.

pub mod client;
pub mod frame;
pub mod gate;
pub mod sched;
pub mod shard;
pub mod sizing;
pub mod stats;
pub mod table;
