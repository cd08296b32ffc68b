//! WebSocket (RFC 6455), both sides, sans-IO.
//!
//! The client sends the upgrade request with a fresh `Sec-WebSocket-Key`,
//! checks the 101 answer (the headers and the accept key, no extension:
//! none is offered, so no compression), then sends masked ping frames as
//! the heartbeat; a ping's 8-byte payload carries a token (the send time)
//! that the pong brings back, so no per-ping state is kept. It answers the
//! server's pings and closes with the close handshake.
//!
//! The server parses the upgrade request (CRLF or LF line ends, as httparse
//! reads them), answers 101, echoes data frames (unmasked, same opcode and
//! FIN bit, so fragmented messages pass through as they came), answers
//! pings with pongs and a close with a close. It checks what RFC 6455 makes
//! it check: continuations only within a fragmented message, text (also
//! split over fragments) and close reasons in UTF-8, close codes a peer may
//! send, a close payload of 0 or at least 2 bytes. A broken rule closes
//! with a close frame first: 1002, 1007 for UTF-8, 1009 for a frame past
//! the cap; an upgrade past the header cap gets 431, one left incomplete
//! past the deadline 408.
//!
//! Header blocks are capped at [`MAX_HEADER`] and frames at [`MAX_FRAME`]:
//! a longer one is a fault, so no peer makes a connection buffer more. The
//! HTTP parsing is `httparse`'s (no allocation); the accept key is SHA-1
//! and base64 from crates.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha1::{Digest, Sha1};

use super::{Event, Fault, Machine};

/// The longest HTTP header block accepted (request or answer).
pub const MAX_HEADER: usize = 8 * 1024;
/// The longest frame accepted (header and payload).
pub const MAX_FRAME: usize = 64 * 1024;
/// Headers parsed at most in one block.
const MAX_HEADERS: usize = 32;
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The client's states (the engine keeps one byte).
pub mod client_state {
    /// Upgrade request sent, waiting for the 101.
    pub const HANDSHAKE: u8 = 0;
    /// Upgraded: frames flow.
    pub const OPEN: u8 = 1;
    /// Close sent, waiting for the server's close.
    pub const CLOSING: u8 = 2;
    /// Closed at the WebSocket level.
    pub const CLOSED: u8 = 3;
}

/// The server's states (0 to 11: four bits of the engine's record).
pub mod server_state {
    /// Waiting for the upgrade request.
    pub const UPGRADE: u8 = 0;
    /// Upgraded: frames flow, no fragmented message is under way.
    pub const OPEN: u8 = 1;
    /// A close was answered; nothing more is read.
    pub const CLOSED: u8 = 2;
    /// A fragmented binary message is under way.
    pub const IN_BINARY: u8 = 3;
    /// A fragmented text message is under way: `IN_TEXT + s`, s the UTF-8
    /// check's state at the end of the last fragment (0 to 7, 0 between
    /// code points), so a code point split over fragments is checked whole.
    pub const IN_TEXT: u8 = 4;
    /// The highest state.
    pub const LAST: u8 = IN_TEXT + 7;
}

const CONT: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// Close codes used here.
const NORMAL: u16 = 1000;
const PROTOCOL_ERROR: u16 = 1002;
const INVALID_PAYLOAD: u16 = 1007;
const POLICY_VIOLATION: u16 = 1008;
const MESSAGE_TOO_BIG: u16 = 1009;
const TRY_AGAIN_LATER: u16 = 1013;

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (as sent, base64).
pub fn accept_key(key_b64: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(key_b64);
    h.update(GUID);
    B64.encode(h.finalize())
}

/// What every client connection of a run sends in its upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Request path (`/chat`), starting with `/`.
    pub path: String,
    /// `Host` header value, unless a `Host` header is given.
    pub host: String,
    /// Extra headers (`-H 'Name: value'`).
    pub headers: Vec<(String, String)>,
}

impl ClientConfig {
    /// Writes the upgrade request with `key` (16 random bytes) into `out`.
    pub fn request(&self, key: &[u8; 16], out: &mut Vec<u8>) {
        out.extend_from_slice(b"GET ");
        out.extend_from_slice(self.path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        if !self.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            out.extend_from_slice(b"Host: ");
            out.extend_from_slice(self.host.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n");
        out.extend_from_slice(b"Sec-WebSocket-Key: ");
        out.extend_from_slice(B64.encode(key).as_bytes());
        out.extend_from_slice(b"\r\n");
        for (n, v) in &self.headers {
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Parses `-H 'Name: value'`: a token name, a colon, a value without line
/// breaks.
pub fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("`{s}` is not a header: give 'Name: value' (example: -H 'Origin: http://x')"))?;
    let name = name.trim();
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!("`{name}` is not a header name: letters, digits and -_. only (example: X-Token)"));
    }
    if value.contains(['\r', '\n']) {
        return Err(format!("the value of header `{name}` has a line break"));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

/// Writes one frame: FIN set unless `more`, masked with `mask` (a client's
/// frames must be, a server's must not be).
pub fn encode(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    encode_part(true, opcode, payload, mask, out);
}

fn encode_part(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    write_header(fin, opcode, mask.is_some(), payload.len(), out);
    match mask {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
}

/// A client's heartbeat: a masked ping whose payload is `token`.
pub fn ping(token: u64, mask: [u8; 4], out: &mut Vec<u8>) {
    encode(PING, &token.to_le_bytes(), Some(mask), out);
}

/// A client's close frame (normal closure).
pub fn close(mask: [u8; 4], out: &mut Vec<u8>) {
    encode(CLOSE, &NORMAL.to_be_bytes(), Some(mask), out);
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    /// Header length (2 to 14 bytes).
    at: usize,
    len: usize,
}

/// Parses the header at the front of `b`: None while incomplete. Frames
/// past [`MAX_FRAME`] are refused from their header, before any payload
/// is buffered.
fn head(b: &[u8]) -> Result<Option<Head>, Fault> {
    let [b0, b1, ..] = *b else { return Ok(None) };
    if b0 & 0x70 != 0 {
        return Err(Fault::WsBadFrame); // reserved bits: no extension was agreed
    }
    let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0F);
    if !matches!(opcode, CONT | TEXT | BINARY | CLOSE | PING | PONG) {
        return Err(Fault::WsBadFrame);
    }
    let masked = b1 & 0x80 != 0;
    let (len, mut at) = match b1 & 0x7F {
        126 => match b.get(2..4) {
            Some(x) => (u64::from(u16::from_be_bytes([x[0], x[1]])), 4),
            None => return Ok(None),
        },
        127 => match b.get(2..10) {
            Some(x) => {
                let mut v = [0u8; 8];
                v.copy_from_slice(x);
                (u64::from_be_bytes(v), 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if opcode >= CLOSE && (!fin || len > 125) {
        return Err(Fault::WsBadFrame); // control frames are whole and short
    }
    // The cap counts the whole frame, header and mask key included, and is
    // decided here from the header's bytes alone: the same verdict however
    // the frame arrives.
    let whole = len.saturating_add(at as u64 + if masked { 4 } else { 0 });
    if whole > MAX_FRAME as u64 {
        return Err(Fault::WsFrameTooLarge);
    }
    let mask = if masked {
        let Some(k) = b.get(at..at + 4) else { return Ok(None) };
        at += 4;
        Some([k[0], k[1], k[2], k[3]])
    } else {
        None
    };
    Ok(Some(Head { fin, opcode, mask, at, len: len as usize }))
}

/// The frames at the front of `b`, each with its payload (still masked).
fn frames(b: &[u8], mut each: impl FnMut(Head, &[u8]) -> Result<bool, Fault>) -> Result<usize, Fault> {
    let mut used = 0;
    while let Some(h) = head(&b[used..])? {
        let end = used + h.at + h.len;
        let Some(payload) = b.get(used + h.at..end) else { break };
        used = end;
        if !each(h, payload)? {
            break;
        }
    }
    Ok(used)
}

fn unmask(payload: &[u8], mask: Option<[u8; 4]>) -> impl Iterator<Item = u8> + '_ {
    payload.iter().enumerate().map(move |(i, b)| mask.map_or(*b, |k| b ^ k[i % 4]))
}

/// The end of the header block (after `\r\n\r\n`) within its first
/// [`MAX_HEADER`] bytes, None while incomplete: a block ending later is too
/// large however it arrived.
fn header_end(b: &[u8]) -> Option<usize> {
    b[..b.len().min(MAX_HEADER)].windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn header<'a>(headers: &[httparse::Header<'a>], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
}

/// True when a comma-separated header value has `token` (case-insensitive).
fn has_token(value: Option<&[u8]>, token: &str) -> bool {
    value.is_some_and(|v| v.split(|&c| c == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes())))
}

/// The client side of one connection.
#[derive(Debug)]
pub struct Client {
    /// The key sent in the upgrade request (16 bytes, base64 on the wire).
    pub key: [u8; 16],
    /// Seed of the masks of answers (pongs, close).
    pub mask_seed: u32,
}

impl Client {
    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift32: masks differ frame to frame.
        let mut x = self.mask_seed.max(1);
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_seed = x;
        x.to_le_bytes()
    }

    fn handshake(&mut self, b: &[u8], events: &mut Vec<Event>) -> Result<usize, Fault> {
        // Another protocol shows in the first bytes: no need to wait for more.
        let n = b.len().min(5);
        if b[..n] != b"HTTP/"[..n] {
            return Err(Fault::WsNotHttp);
        }
        let Some(end) = header_end(b) else {
            return if b.len() > MAX_HEADER { Err(Fault::WsHeaderTooLarge) } else { Ok(0) };
        };
        let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut hs);
        match resp.parse(&b[..end]) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) | Err(_) => return Err(Fault::WsNotHttp),
        }
        match resp.code {
            Some(101) => {}
            Some(code) => return Err(Fault::WsStatus(code)),
            None => return Err(Fault::WsNotHttp),
        }
        let h = resp.headers;
        if header(h, "Sec-WebSocket-Extensions").is_some() {
            return Err(Fault::WsExtension);
        }
        let want = accept_key(B64.encode(self.key).as_bytes());
        let ok = header(h, "Upgrade").is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"websocket"))
            && has_token(header(h, "Connection"), "upgrade")
            && header(h, "Sec-WebSocket-Accept").is_some_and(|v| v.trim_ascii() == want.as_bytes());
        if !ok {
            return Err(Fault::WsBadAccept);
        }
        events.push(Event::Ready);
        Ok(end)
    }
}

impl Machine for Client {
    fn cap(&self, state: u8) -> usize {
        if state == client_state::HANDSHAKE { MAX_HEADER } else { MAX_FRAME }
    }

    fn too_large(&self, state: u8) -> Fault {
        if state == client_state::HANDSHAKE { Fault::WsHeaderTooLarge } else { Fault::WsFrameTooLarge }
    }

    fn step(&mut self, state: &mut u8, b: &[u8], out: &mut Vec<u8>, events: &mut Vec<Event>) -> Result<usize, Fault> {
        use client_state::*;
        match *state {
            HANDSHAKE => {
                let n = self.handshake(b, events)?;
                if n > 0 {
                    *state = OPEN;
                }
                Ok(n)
            }
            CLOSED => Ok(b.len()),
            _ => frames(b, |h, payload| {
                if h.mask.is_some() {
                    return Err(Fault::WsBadFrame); // a server never masks
                }
                match h.opcode {
                    PING => {
                        let m = self.next_mask();
                        encode(PONG, payload, Some(m), out);
                    }
                    PONG if payload.len() == 8 => {
                        let mut t = [0u8; 8];
                        t.copy_from_slice(payload);
                        events.push(Event::Pong(Some(u64::from_le_bytes(t))));
                    }
                    CLOSE => {
                        if *state == CLOSING {
                            events.push(Event::Closed);
                        } else {
                            let m = self.next_mask();
                            encode(CLOSE, payload.get(..2).unwrap_or(&[]), Some(m), out);
                            events.push(Event::PeerClose);
                        }
                        *state = CLOSED;
                        return Ok(false);
                    }
                    _ => {} // data and unsolicited pongs: read and dropped
                }
                Ok(true)
            }),
        }
    }
}

/// The server side of one connection.
#[derive(Debug, Default)]
pub struct Server;

const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
const UPGRADE_REQUIRED: &[u8] =
    b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
const TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
const TOO_LARGE: &[u8] =
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
const UNAVAILABLE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

impl Server {
    /// The upgrade request at the front of `b`. The block must end within
    /// its first [`MAX_HEADER`] bytes; line ends are CRLF or LF, as
    /// httparse reads them.
    fn upgrade(b: &[u8], out: &mut Vec<u8>, events: &mut Vec<Event>) -> Result<usize, Fault> {
        let n = b.len().min(4);
        if b[..n] != b"GET "[..n] {
            return Err(Fault::WsBadRequest); // another protocol: no answer
        }
        let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut hs);
        let end = match req.parse(&b[..b.len().min(MAX_HEADER)]) {
            Ok(httparse::Status::Complete(end)) => end,
            Ok(httparse::Status::Partial) if b.len() > MAX_HEADER => return Err(Fault::WsHeaderTooLarge),
            Ok(httparse::Status::Partial) => return Ok(0),
            Err(_) => {
                out.extend_from_slice(BAD_REQUEST);
                return Err(Fault::WsBadRequest);
            }
        };
        let h = req.headers;
        let key = header(h, "Sec-WebSocket-Key").map(<[u8]>::trim_ascii);
        let key_ok = key.is_some_and(|k| B64.decode(k).is_ok_and(|d| d.len() == 16));
        let upgrade = req.version == Some(1)
            && header(h, "Upgrade").is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"websocket"))
            && has_token(header(h, "Connection"), "upgrade");
        if !upgrade || !key_ok {
            out.extend_from_slice(BAD_REQUEST);
            return Err(Fault::WsBadRequest);
        }
        if header(h, "Sec-WebSocket-Version").map(<[u8]>::trim_ascii) != Some(b"13") {
            out.extend_from_slice(UPGRADE_REQUIRED);
            return Err(Fault::WsBadRequest);
        }
        out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n");
        out.extend_from_slice(b"Sec-WebSocket-Accept: ");
        out.extend_from_slice(accept_key(key.unwrap_or_default()).as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        events.push(Event::Ready);
        Ok(end)
    }

    /// The frames at the front of `b` once upgraded.
    fn frames(state: &mut u8, b: &[u8], out: &mut Vec<u8>, events: &mut Vec<Event>) -> Result<usize, Fault> {
        use server_state::*;
        frames(b, |h, payload| {
            if h.mask.is_none() {
                return Err(Fault::WsBadFrame); // a client always masks
            }
            match h.opcode {
                PING => {
                    let p: Vec<u8> = unmask(payload, h.mask).collect();
                    encode(PONG, &p, None, out);
                }
                PONG => {}
                CLOSE => {
                    let p: Vec<u8> = unmask(payload, h.mask).collect();
                    check_close(&p)?;
                    encode(CLOSE, &p[..p.len().min(2)], None, out);
                    events.push(Event::PeerClose);
                    *state = CLOSED;
                    return Ok(false);
                }
                op => {
                    // Data: a new message only between messages, a
                    // continuation only within one.
                    let text = match (*state, op) {
                        (OPEN, TEXT) => Some(0),
                        (OPEN, BINARY) | (IN_BINARY, CONT) => None,
                        (s, CONT) if s >= IN_TEXT => Some(s - IN_TEXT),
                        _ => return Err(Fault::WsBadFrame),
                    };
                    // Echo: same opcode and FIN, unmasked, payload unmasked
                    // straight into the output (taken back if not UTF-8).
                    let start = out.len();
                    write_header(h.fin, op, false, payload.len(), out);
                    let body = out.len();
                    out.extend(unmask(payload, h.mask));
                    *state = match text {
                        None if h.fin => OPEN,
                        None => IN_BINARY,
                        Some(u) => match utf8_check(u, &out[body..]) {
                            Some(0) if h.fin => OPEN,
                            Some(u) if !h.fin => IN_TEXT + u,
                            _ => {
                                out.truncate(start);
                                return Err(Fault::WsBadUtf8);
                            }
                        },
                    };
                }
            }
            Ok(true)
        })
    }
}

impl Machine for Server {
    fn cap(&self, state: u8) -> usize {
        if state == server_state::UPGRADE { MAX_HEADER } else { MAX_FRAME }
    }

    fn too_large(&self, state: u8) -> Fault {
        if state == server_state::UPGRADE { Fault::WsHeaderTooLarge } else { Fault::WsFrameTooLarge }
    }

    fn step(&mut self, state: &mut u8, b: &[u8], out: &mut Vec<u8>, events: &mut Vec<Event>) -> Result<usize, Fault> {
        use server_state::*;
        let r = match *state {
            UPGRADE => Server::upgrade(b, out, events).inspect(|&n| {
                if n > 0 {
                    *state = OPEN;
                }
            }),
            CLOSED => Ok(b.len()),
            _ => Server::frames(state, b, out, events),
        };
        r.inspect_err(|&f| self.last_word(*state, f, out))
    }

    fn last_word(&self, state: u8, fault: Fault, out: &mut Vec<u8>) {
        use server_state::*;
        if state == UPGRADE {
            // The 400 and 426 answers are written where they are decided.
            let status = match fault {
                Fault::WsHeaderTooLarge => TOO_LARGE,
                Fault::PartialTimeout => TIMEOUT,
                Fault::PartialBudget => UNAVAILABLE,
                _ => return,
            };
            out.extend_from_slice(status);
            return;
        }
        if state == CLOSED {
            return;
        }
        let code = match fault {
            Fault::WsBadUtf8 => INVALID_PAYLOAD,
            Fault::WsFrameTooLarge => MESSAGE_TOO_BIG,
            Fault::PartialTimeout => POLICY_VIOLATION,
            Fault::PartialBudget => TRY_AGAIN_LATER,
            _ => PROTOCOL_ERROR,
        };
        encode(CLOSE, &code.to_be_bytes(), None, out);
    }
}

/// A close frame's payload: empty, or a code RFC 6455 lets a peer send
/// followed by a UTF-8 reason.
fn check_close(p: &[u8]) -> Result<(), Fault> {
    let [a, b, reason @ ..] = p else {
        return if p.is_empty() { Ok(()) } else { Err(Fault::WsBadFrame) }; // a 1-byte payload
    };
    // 1004-1006 and 1015 are reserved (never sent), 1016-2999 unassigned,
    // below 1000 and from 5000 undefined.
    if !matches!(u16::from_be_bytes([*a, *b]), 1000..=1003 | 1007..=1014 | 3000..=4999) {
        return Err(Fault::WsBadFrame);
    }
    std::str::from_utf8(reason).map(|_| ()).map_err(|_| Fault::WsBadUtf8)
}

/// Checks `b` as the next bytes of UTF-8 text, starting in state `s` (0
/// between code points, see [`utf8_byte`]): the state at its end, None when
/// invalid.
pub(crate) fn utf8_check(mut s: u8, b: &[u8]) -> Option<u8> {
    let mut i = 0;
    // Finish a code point begun in an earlier fragment.
    while s != 0 {
        let Some(&x) = b.get(i) else { return Some(s) };
        s = utf8_byte(s, x)?;
        i += 1;
    }
    match std::str::from_utf8(&b[i..]) {
        Ok(_) => Some(0),
        Err(e) if e.error_len().is_none() => {
            // A code point cut at the end: carry its state.
            b[i + e.valid_up_to()..].iter().try_fold(0, |s, &x| utf8_byte(s, x))
        }
        Err(_) => None,
    }
}

/// One byte of the UTF-8 check. States: 0 between code points; 1, 2, 3
/// continuation bytes (80-BF) left; 4 after E0 (next A0-BF), 5 after ED
/// (next 80-9F, no surrogates), 6 after F0 (next 90-BF), 7 after F4 (next
/// 80-8F, at most U+10FFFF). None: not UTF-8.
fn utf8_byte(s: u8, x: u8) -> Option<u8> {
    match (s, x) {
        (0, 0x00..=0x7F) => Some(0),
        (0, 0xC2..=0xDF) => Some(1),
        (0, 0xE0) => Some(4),
        (0, 0xE1..=0xEC | 0xEE..=0xEF) => Some(2),
        (0, 0xED) => Some(5),
        (0, 0xF0) => Some(6),
        (0, 0xF1..=0xF3) => Some(3),
        (0, 0xF4) => Some(7),
        (1..=3, 0x80..=0xBF) => Some(s - 1),
        (4, 0xA0..=0xBF) | (5, 0x80..=0x9F) => Some(1),
        (6, 0x90..=0xBF) | (7, 0x80..=0x8F) => Some(2),
        _ => None,
    }
}

/// A frame header for a payload of `len` bytes (the mask key, if any,
/// follows it).
fn write_header(fin: bool, opcode: u8, masked: bool, len: usize, out: &mut Vec<u8>) {
    out.push(if fin { 0x80 } else { 0 } | opcode);
    let m = if masked { 0x80 } else { 0 };
    match len {
        0..=125 => out.push(m | len as u8),
        126..=0xFFFF => {
            out.push(m | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(m | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

#[cfg(test)]
#[path = "ws_tests.rs"]
mod tests;
