//! The engine: one sharded, edge-triggered epoll event loop that holds a huge
//! number of connections with almost no user-space memory, and costs nothing
//! while nothing happens.
//!
//! # Layout
//! | file | what it is for |
//! |---|---|
//! | [`reactor`] | the one shard loop and the [`Handler`](reactor::Handler) trait: the server (`serve::shard`) and the client ([`client`]) plug into it |
//! | [`token`] | the one token scheme of epoll events |
//! | [`shard`] | shard threads with private fd tables, their control blocks, published counters, the pool |
//! | [`elastic`] | pure policy: when to add, steer away from, and retire shards; the accept-steering program |
//! | [`book`] | pure client bookkeeping: claims, pacing, reconnect budget, connect expiry |
//! | [`client`] | the client handler and its supervisor API |
//! | [`session`] | the protocol layer of client connections: drives [`crate::proto`]'s machines |
//! | [`samples`] | latency samples handed from shards to the pool's one set of histograms |
//! | [`sched`] | heartbeat round-robin with a rate budget |
//! | [`table`], [`frame`], [`gate`], [`stats`], [`sizing`] | per-fd records, ping frames, admission, counters, shard sizing |
//!
//! # Shards
//! A shard is a thread that owns a private fd table
//! (`unshare(CLONE_FILES)`), its own epoll instance and its own sockets.
//! `RLIMIT_NOFILE` is checked per fd table, so N shards hold N times the
//! per-process cap without any privilege. Threads were chosen over worker
//! processes because a thread costs only the stack pages it touches and
//! shares the binary's pages and heap, and because when the process dies
//! (even SIGKILL) every shard dies with it: no orphan is possible. The
//! measured cost of both options is in `docs/internals.md`.
//!
//! Pools are elastic: about one shard per core to start, one more when the
//! running ones approach their descriptor cap, and an empty extra one
//! retires after a while ([`elastic`]).
//!
//! # At rest
//! A shard blocks in `epoll_wait` with no timeout unless a deadline really
//! exists (a heartbeat batch, a connect timeout, a paced connect). Counters
//! are published into the shard's control block after each batch of events
//! and read by the supervisor when it likes, so nothing wakes a shard to
//! report. The one value shards share while running is the admission
//! [`Gate`](gate::Gate), touched once per accept and once per close.
//!
//! # Per-connection state
//! A [`ConnTable`](table::ConnTable) indexed by fd holds one small `Copy`
//! record per descriptor (1 byte on the server, 8 on the client). There is no
//! per-connection allocation, timer or buffer while a connection is idle; a
//! buffer exists only while a peer is not reading what it is sent.

pub mod book;
pub mod client;
pub mod elastic;
pub mod frame;
pub mod gate;
pub mod reactor;
pub mod samples;
pub mod sched;
pub mod session;
pub mod shard;
pub mod sizing;
pub mod stats;
pub mod table;
pub mod token;
