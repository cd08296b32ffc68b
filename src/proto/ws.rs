//! WebSocket (RFC 6455), both sides, sans-IO.
//!
//! The client sends the upgrade request with a fresh `Sec-WebSocket-Key`,
//! checks the 101 answer (the headers and the accept key, no extension:
//! none is offered, so no compression), then sends masked ping frames as
//! the heartbeat; a ping's 8-byte payload carries a token (the send time)
//! that the pong brings back, so no per-ping state is kept. It answers the
//! server's pings and closes with the close handshake.
//!
//! The server parses the upgrade request, answers 101, echoes data frames
//! (unmasked, same opcode and FIN bit, so fragmented messages pass through
//! as they came), answers pings with pongs and a close with a close.
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

/// The server's states.
pub mod server_state {
    /// Waiting for the upgrade request.
    pub const UPGRADE: u8 = 0;
    /// Upgraded: frames flow.
    pub const OPEN: u8 = 1;
    /// A close was answered; nothing more is read.
    pub const CLOSED: u8 = 2;
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
    if len > MAX_FRAME as u64 {
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

/// The end of the header block (after `\r\n\r\n`), None while incomplete.
fn header_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
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

impl Server {
    fn upgrade(b: &[u8], out: &mut Vec<u8>, events: &mut Vec<Event>) -> Result<usize, Fault> {
        let n = b.len().min(4);
        if b[..n] != b"GET "[..n] {
            return Err(Fault::WsBadRequest); // another protocol: no answer
        }
        let Some(end) = header_end(b) else {
            return if b.len() > MAX_HEADER { Err(Fault::WsHeaderTooLarge) } else { Ok(0) };
        };
        let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut hs);
        let parsed = matches!(req.parse(&b[..end]), Ok(httparse::Status::Complete(_)));
        let h = req.headers;
        let key = header(h, "Sec-WebSocket-Key").map(<[u8]>::trim_ascii);
        let key_ok = key.is_some_and(|k| B64.decode(k).is_ok_and(|d| d.len() == 16));
        let upgrade = parsed
            && req.version == Some(1)
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
        match *state {
            UPGRADE => {
                let n = Server::upgrade(b, out, events)?;
                if n > 0 {
                    *state = OPEN;
                }
                Ok(n)
            }
            CLOSED => Ok(b.len()),
            _ => frames(b, |h, payload| {
                if h.mask.is_none() {
                    encode(CLOSE, &PROTOCOL_ERROR.to_be_bytes(), None, out);
                    return Err(Fault::WsBadFrame); // a client always masks
                }
                match h.opcode {
                    PING => {
                        let p: Vec<u8> = unmask(payload, h.mask).collect();
                        encode(PONG, &p, None, out);
                    }
                    PONG => {}
                    CLOSE => {
                        let code: Vec<u8> = unmask(payload, h.mask).take(2).collect();
                        encode(CLOSE, &code, None, out);
                        events.push(Event::PeerClose);
                        *state = CLOSED;
                        return Ok(false);
                    }
                    op => {
                        // Echo: same opcode and FIN, unmasked, payload
                        // unmasked straight into the output.
                        write_header(h.fin, op, false, payload.len(), out);
                        out.extend(unmask(payload, h.mask));
                    }
                }
                Ok(true)
            }),
        }
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
