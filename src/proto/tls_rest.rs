//! A TLS 1.3 connection at rest: its traffic keys and sequence numbers, and
//! the record layer (RFC 8446, section 5) that protects application data
//! with them, the AEAD from `ring` (rustls' own provider).
//!
//! Why this exists: once the handshake is over, rustls' connection still
//! holds the key schedule, the handshake's state object, the peer's
//! certificate and one AEAD context per direction (ring's AES-GCM key with
//! its expanded schedule and GHASH table, about 560 bytes each): about 3.3
//! to 4.2 KiB per side, measured (`tests/tls_memory.rs`). An idle
//! connection needs only what protects its next record: the traffic secret and
//! the sequence number of each direction, 128 bytes here; the AEAD context
//! is built for each record, which costs far less than a heartbeat's
//! syscalls. rustls hands the keys over itself (`dangerous_extract_secrets`,
//! made for kernel TLS).
//!
//! Each direction keeps its traffic secret (RFC 8446, 7.1), not the key
//! and IV derived from it: they are derived again for each record (two
//! HKDF expansions, far less than a record's syscalls), and a KeyUpdate
//! (4.6.3) is followed by deriving the next secret, answered with this
//! side's own KeyUpdate when the peer asks. rustls hands over the sequence
//! numbers (`dangerous_extract_secrets`, made for kernel TLS) and the
//! secrets through its key log, which [`TrafficLog`] takes for the
//! connection being driven on this thread.
//!
//! What is given up: session tickets are read and dropped. A client that
//! resumes (`--tls-resume`) keeps rustls' whole connection to take them in.

use std::cell::Cell;

use ring::aead::{AES_128_GCM, AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use rustls::{ConnectionTrafficSecrets, ExtractedSecrets, KeyLog};

use super::Fault;
use super::tls::{MAX_RECORD, Progress, alert_name};

/// The largest plaintext of one record.
const MAX_PLAIN: usize = 16 * 1024;
const APPLICATION_DATA: u8 = 23;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const NEW_SESSION_TICKET: u8 = 4;
const KEY_UPDATE: u8 = 24;
const TAG_LEN: usize = 16;
/// Alert descriptions (RFC 8446, 6.2).
const UNEXPECTED_MESSAGE: u8 = 10;
const BAD_RECORD_MAC: u8 = 20;
const RECORD_OVERFLOW: u8 = 22;
const DECODE_ERROR: u8 = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

impl Alg {
    /// The AEAD, its key length, the suite's hash and its length.
    fn params(self) -> (&'static ring::aead::Algorithm, usize, hkdf::Algorithm, usize) {
        match self {
            Alg::Aes128Gcm => (&AES_128_GCM, 16, hkdf::HKDF_SHA256, 32),
            Alg::Aes256Gcm => (&AES_256_GCM, 32, hkdf::HKDF_SHA384, 48),
            Alg::Chacha20Poly1305 => (&CHACHA20_POLY1305, 32, hkdf::HKDF_SHA256, 32),
        }
    }
}

/// A traffic secret as rustls' key log gives it (32 or 48 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secret {
    bytes: [u8; 48],
    len: u8,
}

impl Secret {
    fn of(b: &[u8]) -> Option<Secret> {
        let mut bytes = [0u8; 48];
        bytes.get_mut(..b.len())?.copy_from_slice(b);
        Some(Secret { bytes, len: b.len() as u8 })
    }
}

/// An HKDF output length.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label (RFC 8446, 7.1) with an empty context, into `out`.
fn expand_label(hash: hkdf::Algorithm, secret: &[u8], label: &[u8], out: &mut [u8]) -> Result<(), Fault> {
    let len = (out.len() as u16).to_be_bytes();
    let label_len = [(6 + label.len()) as u8];
    let info: [&[u8]; 5] = [&len, &label_len, b"tls13 ", label, &[0]];
    hkdf::Prk::new_less_safe(hash, secret)
        .expand(&info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| Fault::Tls("TLS_OTHER"))
}

/// One direction: the traffic secret and the next sequence number.
#[derive(Clone)]
struct Dir {
    alg: Alg,
    secret: [u8; 48],
    seq: u64,
}

impl Dir {
    fn new((seq, s): (u64, ConnectionTrafficSecrets), secret: Secret) -> Option<Dir> {
        let alg = match s {
            ConnectionTrafficSecrets::Aes128Gcm { .. } => Alg::Aes128Gcm,
            ConnectionTrafficSecrets::Aes256Gcm { .. } => Alg::Aes256Gcm,
            ConnectionTrafficSecrets::Chacha20Poly1305 { .. } => Alg::Chacha20Poly1305,
            _ => return None,
        };
        (usize::from(secret.len) == alg.params().3).then_some(Dir { alg, secret: secret.bytes, seq })
    }

    fn secret(&self) -> &[u8] {
        &self.secret[..self.alg.params().3]
    }

    /// The AEAD context and the nonce for the next record (the IV with the
    /// sequence number XORed in); the sequence number moves on.
    fn next(&mut self) -> Result<(LessSafeKey, Nonce), Fault> {
        let (aead, key_len, hash, _) = self.alg.params();
        let (mut key, mut iv) = ([0u8; 32], [0u8; 12]);
        expand_label(hash, self.secret(), b"key", &mut key[..key_len])?;
        expand_label(hash, self.secret(), b"iv", &mut iv)?;
        let key = UnboundKey::new(aead, &key[..key_len]).map(LessSafeKey::new).map_err(|_| Fault::Tls("TLS_OTHER"))?;
        for (b, s) in iv[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *b ^= s;
        }
        self.seq = self.seq.wrapping_add(1);
        Ok((key, Nonce::assume_unique_for_key(iv)))
    }

    /// The next generation of keys (KeyUpdate, RFC 8446 7.2).
    fn update(&mut self) -> Result<(), Fault> {
        let (_, _, hash, len) = self.alg.params();
        let mut next = [0u8; 48];
        expand_label(hash, self.secret(), b"traffic upd", &mut next[..len])?;
        self.secret = next;
        self.seq = 0;
        Ok(())
    }
}

thread_local! {
    /// The application traffic secrets rustls logged while driving the
    /// connection on this thread: (client's, server's).
    static LOGGED: Cell<[Option<Secret>; 2]> = const { Cell::new([None, None]) };
}

/// rustls' key log, kept for the connection being driven on this thread
/// (a shard drives one connection at a time): its application traffic
/// secrets, which [`Keys`] needs to follow key updates.
#[derive(Debug)]
pub struct TrafficLog;

impl KeyLog for TrafficLog {
    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        let at = match label {
            "CLIENT_TRAFFIC_SECRET_0" => 0,
            "SERVER_TRAFFIC_SECRET_0" => 1,
            _ => return,
        };
        let mut logged = LOGGED.get();
        logged[at] = Secret::of(secret);
        LOGGED.set(logged);
    }

    fn will_log(&self, label: &str) -> bool {
        matches!(label, "CLIENT_TRAFFIC_SECRET_0" | "SERVER_TRAFFIC_SECRET_0")
    }
}

/// Takes what [`TrafficLog`] kept on this thread: (client's, server's).
pub fn take_logged() -> [Option<Secret>; 2] {
    LOGGED.replace([None, None])
}

/// Both directions of a TLS 1.3 connection at rest.
pub struct Keys {
    tx: Dir,
    rx: Dir,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys")
    }
}

impl Keys {
    /// The keys rustls handed over with the traffic secrets it logged
    /// (this side's, the peer's); None for an AEAD this layer lacks.
    pub fn new(s: ExtractedSecrets, tx: Secret, rx: Secret) -> Option<Keys> {
        Some(Keys { tx: Dir::new(s.tx, tx)?, rx: Dir::new(s.rx, rx)? })
    }

    /// Protects `data` as records of content type `typ` into `out`.
    fn seal(&mut self, typ: u8, data: &[u8], out: &mut Vec<u8>) -> Result<(), Fault> {
        let mut chunks = data.chunks(MAX_PLAIN);
        let empty: &[u8] = &[];
        let first = chunks.next().unwrap_or(empty);
        for chunk in std::iter::once(first).chain(chunks) {
            let len = chunk.len() + 1 + TAG_LEN;
            let header = [APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
            out.extend_from_slice(&header);
            let start = out.len();
            out.extend_from_slice(chunk);
            out.push(typ);
            let (key, nonce) = self.tx.next()?;
            let tag = key
                .seal_in_place_separate_tag(nonce, Aad::from(header), &mut out[start..])
                .map_err(|_| Fault::Tls("TLS_OTHER"))?;
            out.extend_from_slice(tag.as_ref());
        }
        Ok(())
    }

    /// Seals any record (tests make peers that misbehave).
    #[cfg(test)]
    pub fn seal_for_tests(&mut self, typ: u8, data: &[u8], out: &mut Vec<u8>) {
        self.seal(typ, data, out).unwrap();
    }

    /// Encrypts application data into `out`.
    pub fn send(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), Fault> {
        self.seal(APPLICATION_DATA, data, out)
    }

    /// A fatal alert `description` into `out`; the failure named `name`.
    fn fatal(&mut self, out: &mut Vec<u8>, description: u8, name: &'static str) -> Fault {
        let _ = self.seal(ALERT, &[2, description], out);
        Fault::Tls(name)
    }

    /// A close_notify alert into `out`.
    pub fn close(&mut self, out: &mut Vec<u8>) {
        let _ = self.seal(ALERT, &[1, 0], out);
    }

    /// Opens the whole records at the front of `incoming` (in place):
    /// application data to `plain`; what is left is an incomplete record.
    /// On a failure of this side's making, the fatal alert that says why
    /// goes to `out` (none for the peer's own alert).
    pub fn feed(&mut self, incoming: &mut [u8], plain: &mut Vec<u8>, out: &mut Vec<u8>) -> Result<Progress, Fault> {
        let mut p = Progress { ready: true, ..Progress::default() };
        loop {
            let rest = &mut incoming[p.used..];
            let [typ, _, _, hi, lo, ..] = *rest else { break };
            if typ != APPLICATION_DATA {
                return Err(self.fatal(out, UNEXPECTED_MESSAGE, "TLS_NOT_TLS"));
            }
            let len = usize::from(hi) << 8 | usize::from(lo);
            if !(TAG_LEN + 1..=MAX_RECORD).contains(&len) {
                return Err(self.fatal(out, RECORD_OVERFLOW, "TLS_PEER_MISBEHAVED"));
            }
            if rest.len() < 5 + len {
                break;
            }
            let (header, body) = rest.split_at_mut(5);
            let aad = [header[0], header[1], header[2], header[3], header[4]];
            let (key, nonce) = self.rx.next()?;
            let Ok(inner) = key.open_in_place(nonce, Aad::from(aad), &mut body[..len]) else {
                return Err(self.fatal(out, BAD_RECORD_MAC, "TLS_DECRYPT_ERROR"));
            };
            // The content type is the last byte that is not padding.
            let Some(at) = inner.iter().rposition(|&b| b != 0) else {
                return Err(self.fatal(out, UNEXPECTED_MESSAGE, "TLS_PEER_MISBEHAVED"));
            };
            let (content, kind) = (&inner[..at], inner[at]);
            match kind {
                APPLICATION_DATA => plain.extend_from_slice(content),
                ALERT => match content {
                    [_, 0] => p.peer_closed = true,
                    [_, d] => return Err(Fault::Tls(alert_name(rustls::AlertDescription::from(*d)))),
                    _ => return Err(self.fatal(out, DECODE_ERROR, "TLS_PEER_MISBEHAVED")),
                },
                HANDSHAKE => {
                    let mut messages = content;
                    let mut update = None;
                    while let [typ, a, b, c, rest @ ..] = messages {
                        let len = usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c);
                        let Some(body) = rest.get(..len) else {
                            return Err(self.fatal(out, UNEXPECTED_MESSAGE, "TLS_PEER_MISBEHAVED"));
                        };
                        match (*typ, body) {
                            (NEW_SESSION_TICKET, _) => {} // not resuming
                            // A KeyUpdate ends its record (RFC 8446, 5.1).
                            (KEY_UPDATE, [ask @ (0 | 1)]) if rest.len() == 1 => update = Some(*ask == 1),
                            _ => return Err(self.fatal(out, UNEXPECTED_MESSAGE, "TLS_PEER_MISBEHAVED")),
                        }
                        messages = &rest[len..];
                    }
                    if !messages.is_empty() {
                        return Err(self.fatal(out, DECODE_ERROR, "TLS_PEER_MISBEHAVED"));
                    }
                    if let Some(asked) = update {
                        self.rx.update()?;
                        if asked {
                            // Ours, under the old keys, then the new ones.
                            self.seal(HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 0], out)?;
                            self.tx.update()?;
                        }
                    }
                }
                _ => return Err(self.fatal(out, UNEXPECTED_MESSAGE, "TLS_PEER_MISBEHAVED")),
            }
            p.used += 5 + len;
            if p.peer_closed {
                break;
            }
        }
        Ok(p)
    }
}
