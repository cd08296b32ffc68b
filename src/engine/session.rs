//! The protocol layer of the client's connections: drives the sans-IO state
//! machines of [`crate::proto`] with what sockets give, on behalf of
//! [`client`](super::client).
//!
//! A connection keeps one state byte in its record; the bytes of an
//! incomplete unit live here, in a side map, only until the unit is whole.
//! The WebSocket key of a handshake is not stored either: it is derived from
//! a per-shard secret, the descriptor and the handshake's start time (which
//! the record holds until the handshake ends), so the accept check needs no
//! per-connection memory.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::os::fd::RawFd;

use sha1::{Digest, Sha1};

use crate::proto::{self, ClientSpec, Event, Fault, mqtt, tls, ws};

/// TLS sessions indexed by descriptor, dense like the connection table: a
/// session at rest is its keys inline in the slot, with no heap block.
#[derive(Debug)]
pub struct TlsTable {
    slots: Vec<tls::Session>,
    /// Slots never grow past this (the fd table's limit).
    limit: usize,
}

impl Default for TlsTable {
    fn default() -> Self {
        TlsTable::new()
    }
}

impl TlsTable {
    /// An empty table that grows up to the shard's descriptor limit.
    pub fn new() -> TlsTable {
        let limit = crate::sys::process::getrlimit(crate::sys::process::Resource::NoFile)
            .map_or(usize::MAX, |l| l.soft.min(usize::MAX as u64) as usize);
        TlsTable { slots: Vec::new(), limit }
    }

    /// Puts `s` in the slot of `fd`.
    pub fn insert(&mut self, fd: RawFd, s: tls::Session) {
        let i = fd as usize;
        if i >= self.slots.len() {
            let grown = (self.slots.len() * 2).max(64).min(self.limit).max(i + 1);
            self.slots.reserve_exact(grown - self.slots.len());
            self.slots.resize_with(grown, || tls::Session::Done);
        }
        self.slots[i] = s;
    }

    /// The session of `fd`, if any.
    pub fn get_mut(&mut self, fd: &RawFd) -> Option<&mut tls::Session> {
        self.slots.get_mut(*fd as usize).filter(|s| !matches!(s, tls::Session::Done))
    }

    /// Takes the session of `fd` out, leaving the slot free.
    pub fn remove(&mut self, fd: &RawFd) -> Option<tls::Session> {
        let slot = self.slots.get_mut(*fd as usize)?;
        match std::mem::replace(slot, tls::Session::Done) {
            tls::Session::Done => None,
            s => Some(s),
        }
    }
}

/// The protocol state of one shard's client connections.
#[derive(Debug)]
pub struct ClientSessions {
    /// Bytes of a unit split over reads, only while it is incomplete.
    partial: HashMap<RawFd, Vec<u8>>,
    /// What to send after the last call.
    pub out: Vec<u8>,
    /// What happened in the last call.
    pub events: Vec<Event>,
    secret: [u8; 16],
    mask: u32,
}

impl Default for ClientSessions {
    fn default() -> Self {
        ClientSessions::new()
    }
}

impl ClientSessions {
    /// A fresh secret (from the process's random hash keys) and no session.
    pub fn new() -> ClientSessions {
        let mut secret = [0u8; 16];
        secret[..8].copy_from_slice(&RandomState::new().hash_one(1u8).to_le_bytes());
        secret[8..].copy_from_slice(&RandomState::new().hash_one(2u8).to_le_bytes());
        let mask = secret[0..4].iter().fold(1u32, |m, b| m.rotate_left(8) ^ u32::from(*b)) | 1;
        ClientSessions { partial: HashMap::new(), out: Vec::new(), events: Vec::new(), secret, mask }
    }

    /// The WebSocket key of the handshake of `fd` started at `nonce`.
    fn key(&self, fd: RawFd, nonce: u32) -> [u8; 16] {
        let mut h = Sha1::new();
        h.update(self.secret);
        h.update(fd.to_le_bytes());
        h.update(nonce.to_le_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&h.finalize()[..16]);
        key
    }

    fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.mask;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask = x;
        x.to_le_bytes()
    }

    /// Puts into `out` the bytes that open the protocol on `fd` (the
    /// upgrade request, CONNECT); `id` numbers the session in the run.
    pub fn hello(&mut self, spec: &ClientSpec, fd: RawFd, nonce: u32, id: u64) {
        self.out.clear();
        match spec {
            ClientSpec::Tcp => {}
            ClientSpec::Ws(c) => c.request(&self.key(fd, nonce), &mut self.out),
            ClientSpec::Mqtt(c) => {
                mqtt::connect(&format!("{}-{id}", c.client_id_prefix), c.keepalive_s, &mut self.out);
            }
        }
    }

    /// Feeds what `fd` read; `out` and `events` then say what to send and
    /// what happened. `nonce` is the handshake's start (for the key).
    pub fn input(
        &mut self,
        spec: &ClientSpec,
        fd: RawFd,
        state: &mut u8,
        nonce: u32,
        bytes: &[u8],
    ) -> Result<(), Fault> {
        self.out.clear();
        self.events.clear();
        let mut partial = self.partial.remove(&fd).unwrap_or_default();
        let r = match spec {
            ClientSpec::Tcp => Ok(()),
            ClientSpec::Ws(_) => {
                let mut m = ws::Client { key: self.key(fd, nonce), mask_seed: self.mask };
                let r = proto::feed(&mut m, state, &mut partial, bytes, &mut self.out, &mut self.events);
                self.mask = m.mask_seed;
                r
            }
            ClientSpec::Mqtt(c) => {
                let mut m = mqtt::Client { subscribe: c.subscribe.as_deref() };
                proto::feed(&mut m, state, &mut partial, bytes, &mut self.out, &mut self.events)
            }
        };
        if r.is_ok() && !partial.is_empty() {
            self.partial.insert(fd, partial);
        }
        r
    }

    /// Puts a heartbeat into `out`: a ping carrying `token`, or PINGREQ.
    pub fn heartbeat(&mut self, spec: &ClientSpec, token: u64) {
        self.out.clear();
        match spec {
            ClientSpec::Tcp => {}
            ClientSpec::Ws(_) => {
                let m = self.next_mask();
                ws::ping(token, m, &mut self.out);
            }
            ClientSpec::Mqtt(_) => self.out.extend_from_slice(&mqtt::PINGREQ_BYTES),
        }
    }

    /// Puts the end of the session into `out` (a close frame, DISCONNECT)
    /// and moves `state` on; true when the peer's answer is awaited.
    pub fn goodbye(&mut self, spec: &ClientSpec, state: &mut u8) -> bool {
        self.out.clear();
        match spec {
            ClientSpec::Tcp => false,
            ClientSpec::Ws(_) => {
                if *state != ws::client_state::OPEN {
                    return false;
                }
                let m = self.next_mask();
                ws::close(m, &mut self.out);
                *state = ws::client_state::CLOSING;
                true
            }
            ClientSpec::Mqtt(_) => {
                if *state == mqtt::client_state::OPEN {
                    self.out.extend_from_slice(&mqtt::DISCONNECT_BYTES);
                }
                *state = mqtt::client_state::CLOSED;
                false
            }
        }
    }

    /// Forgets what `fd` had pending (it closed).
    pub fn forget(&mut self, fd: RawFd) {
        self.partial.remove(&fd);
    }

    /// Forgets everything (teardown).
    pub fn clear(&mut self) {
        self.partial = HashMap::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_derived_not_stored() {
        let s = ClientSessions::new();
        assert_eq!(s.key(5, 100), s.key(5, 100));
        assert_ne!(s.key(5, 100), s.key(5, 101));
        assert_ne!(s.key(5, 100), s.key(6, 100));
        assert_ne!(ClientSessions::new().key(5, 100), s.key(5, 100), "a secret per shard");
    }

    #[test]
    fn a_websocket_session_against_the_server_machine() {
        let spec = ClientSpec::Ws(ws::ClientConfig { path: "/".into(), host: "h".into(), headers: vec![] });
        let mut c = ClientSessions::new();
        c.hello(&spec, 7, 42, 0);
        let (mut ss, mut sp, mut so, mut se) = (0u8, Vec::new(), Vec::new(), Vec::new());
        proto::feed(&mut ws::Server, &mut ss, &mut sp, &c.out.clone(), &mut so, &mut se).unwrap();
        let mut st = 0u8;
        // The answer in two reads: the tail waits in the side map, then goes.
        c.input(&spec, 7, &mut st, 42, &so[..10]).unwrap();
        assert!(c.events.is_empty() && c.partial.contains_key(&7));
        c.input(&spec, 7, &mut st, 42, &so[10..]).unwrap();
        assert_eq!(c.events, vec![Event::Ready]);
        assert!(c.partial.is_empty(), "nothing kept at rest");
        // A handshake checked against another start time fails: the key moved.
        let mut st = 0u8;
        assert_eq!(c.input(&spec, 7, &mut st, 43, &so), Err(Fault::WsBadAccept));
        c.heartbeat(&spec, 99);
        let (mut so, mut se) = (Vec::new(), Vec::new());
        proto::feed(&mut ws::Server, &mut 1, &mut Vec::new(), &c.out.clone(), &mut so, &mut se).unwrap();
        let mut st = ws::client_state::OPEN;
        c.input(&spec, 7, &mut st, 0, &so).unwrap();
        assert_eq!(c.events, vec![Event::Pong(Some(99))]);
        assert!(c.goodbye(&spec, &mut st));
        assert_eq!(st, ws::client_state::CLOSING);
    }
}
