//! The layers above TCP of a client connection: TLS (its handshake, then
//! records in and out) and the application protocol (WebSocket, MQTT), on
//! behalf of [`ClientShard`](super::ClientShard). Bare TCP without TLS never
//! comes here.

use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{CLOSE_WAIT, ClientShard, ESTABLISHED, HANDSHAKING, TLS_HANDSHAKING};
use crate::engine::reactor::Turn;
use crate::engine::token::Token;
use crate::proto::{ClientSpec, Event, Fault, tls};
use crate::sys::epoll::{self, Epoll};
use crate::sys::net;

impl ClientShard {
    /// TCP connected: the handshakes above it start (TLS, then the
    /// protocol's), timed from now and bounded by the connect timeout.
    pub(super) fn established(&mut self, fd: RawFd) {
        let now = self.now_us();
        let Some(c) = self.conns.get_mut(fd) else { return };
        let took = now.wrapping_sub(c.started_us);
        self.samples.connect.push(took.max(1));
        if self.shared.proto == ClientSpec::Tcp && self.shared.tls.is_none() {
            c.state = ESTABLISHED;
            self.stats.connecting -= 1;
            self.stats.opened += 1;
            self.stats.open += 1;
            if let Some(first) = self.cfg().first_message.clone() {
                self.send(fd, &first);
            }
            return;
        }
        c.started_us = now;
        self.in_flight.push(fd, now);
        let Some(setup) = self.shared.tls.clone() else {
            c.state = HANDSHAKING;
            return self.hello(fd, now);
        };
        c.state = TLS_HANDSHAKING;
        let mut session = match tls::Session::client(&setup) {
            Ok(s) => s,
            Err(f) => return self.fail_named(fd, f.name()),
        };
        let mut out = std::mem::take(&mut self.cipher);
        out.clear();
        let r = session.feed(&mut [], &mut self.plain, &mut out);
        self.tls.insert(fd, session);
        match r {
            Ok(_) => {
                self.send_raw(fd, &out);
            }
            Err(f) => self.fail_named(fd, f.name()),
        }
        self.cipher = out;
    }

    /// Sends the protocol's first bytes (the upgrade request, CONNECT), or
    /// over bare TCP (under TLS) the handshake is done.
    fn hello(&mut self, fd: RawFd, nonce: u32) {
        if self.shared.proto == ClientSpec::Tcp {
            return self.ready(fd);
        }
        if let Some(c) = self.conns.get_mut(fd) {
            c.state = HANDSHAKING;
        }
        let id = self.shared.sessions.fetch_add(1, Ordering::Relaxed);
        self.sessions.hello(&self.shared.proto, fd, nonce, id);
        let hello = std::mem::take(&mut self.sessions.out);
        self.send(fd, &hello);
        self.sessions.out = hello;
    }

    /// Every handshake completed: the connection counts as established.
    pub(super) fn ready(&mut self, fd: RawFd) {
        let now = self.now_us();
        let Some(c) = self.conns.get_mut(fd) else { return };
        if c.state != HANDSHAKING && c.state != TLS_HANDSHAKING {
            return;
        }
        c.state = ESTABLISHED;
        self.samples.handshake.push(now.wrapping_sub(c.started_us).max(1));
        self.stats.connecting -= 1;
        self.stats.opened += 1;
        self.stats.open += 1;
    }

    /// Writes application bytes: encrypted when the connection has TLS.
    pub(super) fn send(&mut self, fd: RawFd, bytes: &[u8]) -> bool {
        let Some(session) = self.tls.get_mut(&fd) else {
            return self.send_raw(fd, bytes);
        };
        let mut out = std::mem::take(&mut self.cipher);
        out.clear();
        let r = session.send(bytes, &mut out);
        let sent = match r {
            Ok(()) => self.send_raw(fd, &out),
            Err(f) => {
                self.fault(fd, f);
                false
            }
        };
        self.cipher = out;
        sent
    }

    /// What `fd` read into the scratch buffer (`n` bytes): through TLS when
    /// it has it, then to the protocol.
    pub(super) fn on_wire(&mut self, fd: RawFd, n: usize) {
        let scratch = std::mem::take(&mut self.scratch);
        if self.shared.tls.is_none() {
            self.on_plain(fd, &scratch[..n]);
        } else {
            self.on_tls(fd, &scratch[..n]);
        }
        self.scratch = scratch;
    }

    /// Decrypts what `fd` read; an incomplete record waits in a side map.
    fn on_tls(&mut self, fd: RawFd, bytes: &[u8]) {
        let Some(mut session) = self.tls.remove(&fd) else { return };
        let mut buf = self.tls_partial.remove(&fd).unwrap_or_default();
        buf.extend_from_slice(bytes);
        let (mut plain, mut out) = (std::mem::take(&mut self.plain), std::mem::take(&mut self.cipher));
        plain.clear();
        out.clear();
        let r = session.feed(&mut buf, &mut plain, &mut out);
        self.tls.insert(fd, session);
        let used = r.as_ref().map_or(buf.len(), |p| p.used);
        if used < buf.len() {
            if buf.len() - used > tls::MAX_RECORD {
                self.fault(fd, Fault::Tls("TLS_RECORD_TOO_LARGE"));
                return self.put_back(plain, out);
            }
            buf.drain(..used);
            self.tls_partial.insert(fd, buf);
        }
        if !out.is_empty() && !self.send_raw(fd, &out) {
            return self.put_back(plain, out);
        }
        match r {
            Err(f) => self.fault(fd, f),
            Ok(p) => {
                let state = self.conns.get(fd).map(|c| (c.state, c.started_us));
                if p.ready && matches!(state, Some((TLS_HANDSHAKING, _))) {
                    self.hello(fd, state.map_or(0, |s| s.1));
                }
                if !plain.is_empty() && self.conns.get(fd).is_some() {
                    self.on_plain(fd, &plain);
                }
                if p.peer_closed && self.conns.get(fd).is_some() {
                    self.lost(fd, None);
                }
            }
        }
        self.put_back(plain, out);
    }

    fn put_back(&mut self, plain: Vec<u8>, out: Vec<u8>) {
        self.plain = plain;
        self.cipher = out;
    }

    /// Feeds what a protocol connection read (decrypted) to its state
    /// machine, sends the answers, and acts on what happened.
    pub(super) fn on_app_proto(&mut self, fd: RawFd, data: &[u8]) {
        let Some(&c) = self.conns.get(fd) else { return };
        let mut state = c.proto;
        let r = self.sessions.input(&self.shared.proto, fd, &mut state, c.started_us, data);
        if let Some(c) = self.conns.get_mut(fd) {
            c.proto = state;
        }
        if !self.sessions.out.is_empty() {
            let out = std::mem::take(&mut self.sessions.out);
            let sent = self.send(fd, &out);
            self.sessions.out = out;
            if !sent {
                return;
            }
        }
        if let Err(fault) = r {
            return self.fault(fd, fault);
        }
        let now_ns = self.epoch.elapsed().as_nanos() as u64;
        let now_us = self.now_us();
        for i in 0..self.sessions.events.len() {
            match self.sessions.events[i] {
                Event::Ready => self.ready(fd),
                Event::Pong(token) => {
                    let Some(c) = self.conns.get_mut(fd) else { continue };
                    if !c.ping_out || self.stopping {
                        // After the stop, pongs wait behind the closes sent
                        // to every connection: they time the teardown, not
                        // a heartbeat.
                        continue;
                    }
                    c.ping_out = false;
                    let us = match token {
                        Some(sent_ns) => now_ns.saturating_sub(sent_ns) / 1000,
                        None => u64::from(now_us.wrapping_sub(c.started_us)),
                    };
                    self.stats.pongs += 1;
                    // Keepalives during the ramp time the ramp, not a
                    // heartbeat among held connections.
                    if self.shared.heartbeats.load(Ordering::Relaxed) {
                        self.samples.rtt.push(us.clamp(1, u64::from(u32::MAX)) as u32);
                    }
                }
                Event::PeerClose | Event::Closed if self.stopping => {
                    self.stats.close_handshakes += 1;
                    return self.finish(fd);
                }
                Event::PeerClose | Event::Closed => return self.lost(fd, None),
            }
        }
    }

    /// Forgets what a closing connection had above TCP.
    pub(super) fn forget(&mut self, fd: RawFd) {
        self.partial.remove(&fd);
        self.unsent.remove(&fd);
        self.sessions.forget(fd);
        self.tls.remove(&fd);
        self.tls_partial.remove(&fd);
    }

    /// Closes a connection whose session ended at the stop, counting it
    /// neither as lost nor as failed.
    pub(super) fn finish(&mut self, fd: RawFd) {
        if self.conns.remove(fd).is_some() {
            self.stats.open -= 1;
        }
        self.forget(fd);
        net::close(fd);
    }

    /// Ends every session at the stop: a close frame or DISCONNECT on each
    /// established connection. A WebSocket close handshake then waits for
    /// the server's close (at most [`CLOSE_WAIT`]); MQTT's DISCONNECT has
    /// no answer.
    pub(super) fn say_goodbye(&mut self, epoll: &Epoll) {
        self.stopping = true;
        let shared = self.shared.clone();
        let mut awaiting = 0u64;
        for fd in self.conns.open_fds() {
            let Some(c) = self.conns.get_mut(fd) else { continue };
            if c.state != ESTABLISHED {
                continue;
            }
            let wait = self.sessions.goodbye(&shared.proto, &mut c.proto);
            if self.sessions.out.is_empty() {
                continue;
            }
            let out = std::mem::take(&mut self.sessions.out);
            if self.send(fd, &out) && wait {
                awaiting += 1;
            }
            self.sessions.out = out;
        }
        let deadline = Instant::now() + CLOSE_WAIT;
        let mut events = vec![epoll::empty_event(); 256];
        let before = self.stats.close_handshakes;
        while self.stats.close_handshakes - before < awaiting {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let turn = self.read_unread().min(Turn::Until(deadline));
            let n = epoll.wait(&mut events, turn.timeout_ms(now)).unwrap_or(0);
            for ev in &events[..n] {
                if let Token::Conn(fd) = Token::decode(epoll::token(ev)) {
                    self.read_ready(fd);
                }
            }
        }
    }

    /// A protocol failure: a failed handshake, or a lost connection.
    pub(super) fn fault(&mut self, fd: RawFd, fault: Fault) {
        match self.conns.get(fd) {
            Some(c) if c.state == HANDSHAKING || c.state == TLS_HANDSHAKING => self.fail_named(fd, fault.name()),
            Some(_) => {
                self.stats.errors.add_name(fault.name());
                self.lost(fd, None);
            }
            None => {}
        }
    }
}
