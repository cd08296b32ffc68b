//! Per-shard counters, sent to the supervisor as cumulative snapshots and
//! merged there.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::sys::errno_name;

/// Counts of failures by errno name. A shard meets only a handful of
/// distinct errnos, so a small sorted map is both compact and readable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Errnos(BTreeMap<&'static str, u64>);

impl Errnos {
    /// Counts one failure with `errno`.
    pub fn add(&mut self, errno: i32) {
        *self.0.entry(errno_name(errno)).or_insert(0) += 1;
    }

    /// Counts one failure by name: a protocol failure
    /// ([`Fault::name`](crate::proto::Fault::name)) beside the errnos.
    pub fn add_name(&mut self, name: &'static str) {
        *self.0.entry(name).or_insert(0) += 1;
    }

    /// Adds another table into this one.
    pub fn merge(&mut self, other: &Errnos) {
        for (k, v) in &other.0 {
            *self.0.entry(k).or_insert(0) += v;
        }
    }

    /// Removes the count for an errno name and returns it (a count that is
    /// not a failure where it is reported, e.g. a peer's reset on a server).
    pub fn take(&mut self, name: &str) -> u64 {
        self.0.remove(name).unwrap_or(0)
    }

    /// Total failures.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// The count for an errno name.
    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// (name, count) pairs, most frequent first.
    pub fn ranked(&self) -> Vec<(&'static str, u64)> {
        let mut v: Vec<_> = self.0.iter().map(|(k, v)| (*k, *v)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }

    /// "ECONNRESET 3, EMFILE 1" or "none".
    pub fn summary(&self) -> String {
        if self.0.is_empty() {
            return "none".into();
        }
        self.ranked().iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    }
}

/// What one shard (or, merged, the whole server) has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ShardStats {
    /// Connections open now.
    pub open: u64,
    /// Connections accepted (server) or established (client), ever.
    pub opened: u64,
    /// Connections closed, ever (by the peer or by us).
    pub closed: u64,
    /// Connections refused because `--max-conns` was reached.
    pub refused_max_conns: u64,
    /// Connections refused because memory was above the watermark.
    pub refused_memory: u64,
    /// Failures by errno (accept, connect, read, write).
    pub errors: Errnos,
    /// Payload bytes read.
    pub bytes_in: u64,
    /// Payload bytes written.
    pub bytes_out: u64,
    /// UDP datagrams echoed.
    pub udp_datagrams: u64,
    /// Connections whose peer was not reading, now holding a bounded buffer.
    pub backpressured: u64,
    /// Highest descriptor number seen (how full the shard's fd table got).
    pub max_fd: u64,
    /// Client: connects in progress now.
    pub connecting: u64,
    /// Client: connect attempts that failed (their errnos are in `errors`).
    pub failed: u64,
    /// Client: pings sent.
    pub pings: u64,
    /// Client: ping echoes (or replies to `--message`) received.
    pub pongs: u64,
    /// Client: connections opened again after the server closed one or a
    /// connect failed (`--reconnect`).
    pub reconnects: u64,
    /// Client: protocol sessions closed cleanly at the stop (a WebSocket
    /// close answered by the server).
    pub close_handshakes: u64,
    /// Connections still held when the stop came (closed by us then), taken
    /// after the events pending at that moment were handled.
    pub held_at_stop: u64,
}

impl ShardStats {
    /// Adds another shard's snapshot into this total.
    pub fn merge(&mut self, o: &ShardStats) {
        self.open += o.open;
        self.opened += o.opened;
        self.closed += o.closed;
        self.refused_max_conns += o.refused_max_conns;
        self.refused_memory += o.refused_memory;
        self.errors.merge(&o.errors);
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.udp_datagrams += o.udp_datagrams;
        self.backpressured += o.backpressured;
        self.max_fd = self.max_fd.max(o.max_fd);
        self.connecting += o.connecting;
        self.failed += o.failed;
        self.pings += o.pings;
        self.pongs += o.pongs;
        self.reconnects += o.reconnects;
        self.held_at_stop += o.held_at_stop;
        self.close_handshakes += o.close_handshakes;
    }

    /// Copies every counter of `o` but the error table (which the caller
    /// copies only when it changed: it is the one field that allocates).
    pub fn set_counters(&mut self, o: &ShardStats) {
        let errors = std::mem::take(&mut self.errors);
        *self = ShardStats { errors, ..*o };
    }

    /// Merges a slice of snapshots.
    pub fn sum<'a>(all: impl IntoIterator<Item = &'a ShardStats>) -> ShardStats {
        let mut t = ShardStats::default();
        for s in all {
            t.merge(s);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_up() {
        let mut a = ShardStats { open: 2, opened: 3, max_fd: 10, ..Default::default() };
        a.errors.add(libc::ECONNRESET);
        let mut b = ShardStats { open: 1, opened: 1, max_fd: 20, ..Default::default() };
        b.errors.add(libc::ECONNRESET);
        b.errors.add(libc::EMFILE);
        let t = ShardStats::sum([&a, &b]);
        assert_eq!(t.open, 3);
        assert_eq!(t.opened, 4);
        assert_eq!(t.max_fd, 20);
        assert_eq!(t.errors.get("ECONNRESET"), 2);
        assert_eq!(t.errors.total(), 3);
        assert_eq!(t.errors.summary(), "ECONNRESET 2, EMFILE 1");
    }
}
