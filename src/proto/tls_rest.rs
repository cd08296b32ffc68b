//! A TLS 1.3 connection at rest: its traffic keys and sequence numbers, and
//! the record layer (RFC 8446, section 5) that protects application data
//! with them, the AEAD from `ring` (rustls' own provider).
//!
//! Why this exists: once the handshake is over, rustls' connection still
//! holds the key schedule, the handshake's state object, the peer's
//! certificate and one AEAD context per direction (ring's AES-GCM key with
//! its expanded schedule and GHASH table, about 560 bytes each): about 3.3
//! to 4.2 KiB per side, measured (`tests/tls_memory.rs`). An idle
//! connection needs only what protects its next record: the key, the IV and
//! the sequence number of each direction, 112 bytes here; the AEAD context
//! is built for each record, which costs far less than a heartbeat's
//! syscalls. rustls hands the keys over itself (`dangerous_extract_secrets`,
//! made for kernel TLS).
//!
//! What is given up: post-handshake messages other than session tickets
//! (which are read and dropped). A KeyUpdate from the peer ends the
//! connection, named `TLS_KEY_UPDATE`; peers send one only after very large
//! transfers. A client that resumes (`--tls-resume`) keeps rustls' whole
//! connection to take in its tickets.

use ring::aead::{AES_128_GCM, AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use rustls::{ConnectionTrafficSecrets, ExtractedSecrets};

use super::Fault;
use super::tls::{MAX_RECORD, Progress, alert_name};

/// The largest plaintext of one record.
const MAX_PLAIN: usize = 16 * 1024;
const APPLICATION_DATA: u8 = 23;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const NEW_SESSION_TICKET: u8 = 4;
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

/// One direction: key, IV, next sequence number.
#[derive(Clone)]
struct Dir {
    alg: Alg,
    key: [u8; 32],
    iv: [u8; 12],
    seq: u64,
}

impl Dir {
    fn new((seq, s): (u64, ConnectionTrafficSecrets)) -> Option<Dir> {
        let (alg, key, iv) = match s {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (Alg::Aes128Gcm, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (Alg::Aes256Gcm, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (Alg::Chacha20Poly1305, key, iv),
            _ => return None,
        };
        let (mut k, mut v) = ([0u8; 32], [0u8; 12]);
        let kb = key.as_ref();
        k.get_mut(..kb.len())?.copy_from_slice(kb);
        v.copy_from_slice(iv.as_ref().get(..12)?);
        Some(Dir { alg, key: k, iv: v, seq })
    }

    /// The AEAD context for one record.
    fn aead(&self) -> Result<LessSafeKey, Fault> {
        let (alg, len) = match self.alg {
            Alg::Aes128Gcm => (&AES_128_GCM, 16),
            Alg::Aes256Gcm => (&AES_256_GCM, 32),
            Alg::Chacha20Poly1305 => (&CHACHA20_POLY1305, 32),
        };
        UnboundKey::new(alg, &self.key[..len]).map(LessSafeKey::new).map_err(|_| Fault::Tls("TLS_OTHER"))
    }

    /// The per-record nonce (the IV with the sequence number XORed in) and
    /// the next sequence number.
    fn nonce(&mut self) -> Nonce {
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *b ^= s;
        }
        self.seq = self.seq.wrapping_add(1);
        Nonce::assume_unique_for_key(n)
    }
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
    /// The keys rustls handed over; None for an AEAD this layer lacks.
    pub fn new(s: ExtractedSecrets) -> Option<Keys> {
        Some(Keys { tx: Dir::new(s.tx)?, rx: Dir::new(s.rx)? })
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
            let key = self.tx.aead()?;
            let nonce = self.tx.nonce();
            let tag = key
                .seal_in_place_separate_tag(nonce, Aad::from(header), &mut out[start..])
                .map_err(|_| Fault::Tls("TLS_OTHER"))?;
            out.extend_from_slice(tag.as_ref());
        }
        Ok(())
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
            let key = self.rx.aead()?;
            let nonce = self.rx.nonce();
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
                HANDSHAKE if content.first() == Some(&NEW_SESSION_TICKET) => {} // not resuming
                HANDSHAKE => return Err(self.fatal(out, UNEXPECTED_MESSAGE, "TLS_KEY_UPDATE")),
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
