//! MQTT 3.1.1, both sides, sans-IO.
//!
//! The client sends CONNECT (clean session, its client id and keepalive),
//! checks CONNACK and names a refusal by its return code, optionally
//! subscribes to one topic at QoS 0, then sends PINGREQ as the heartbeat
//! (the round trip is timed by the engine: PINGREQ carries no token) and
//! DISCONNECT at the end. Messages published to its subscription are read
//! and dropped (QoS 1 and 2 acknowledged).
//!
//! The server answers CONNECT with CONNACK, PINGREQ with PINGRESP,
//! SUBSCRIBE with SUBACK (QoS 0 granted), UNSUBSCRIBE with UNSUBACK,
//! acknowledges PUBLISH, and closes on DISCONNECT. It keeps no session and
//! does not enforce the keepalive (it holds idle clients indefinitely). It
//! checks what the spec makes it check, as mosquitto does: CONNECT's flags
//! and exactly the fields they announce, UTF-8 strings without U+0000,
//! topic filters and names, requested QoS 0 to 2; an empty client id
//! without clean session gets CONNACK 0x02. A malformed packet closes the
//! connection without an answer (MQTT 3.1.1 has none).
//!
//! Packets are capped at [`MAX_PACKET`]; the remaining length is the spec's
//! varint of at most 4 bytes.

use super::{Event, Fault, Machine};

/// What every client connection of a run sends in CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Client ids are `PREFIX-<n>`, n counting the sessions of the run.
    pub client_id_prefix: String,
    /// Keepalive in seconds (0: none); the heartbeat rate keeps every
    /// session under it.
    pub keepalive_s: u16,
    /// A topic to subscribe to once connected.
    pub subscribe: Option<String>,
}

/// The longest packet accepted (fixed header included).
pub const MAX_PACKET: usize = 64 * 1024;

/// The client's states (the engine keeps one byte).
pub mod client_state {
    /// CONNECT sent, waiting for CONNACK.
    pub const CONNECTING: u8 = 0;
    /// SUBSCRIBE sent, waiting for SUBACK.
    pub const SUBSCRIBING: u8 = 1;
    /// Connected.
    pub const OPEN: u8 = 2;
    /// DISCONNECT sent or the session ended.
    pub const CLOSED: u8 = 3;
}

/// The server's states.
pub mod server_state {
    /// Waiting for CONNECT.
    pub const AWAIT_CONNECT: u8 = 0;
    /// Connected.
    pub const OPEN: u8 = 1;
    /// DISCONNECT received.
    pub const CLOSED: u8 = 2;
}

const CONNECT: u8 = 1;
const CONNACK: u8 = 2;
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const PUBREC: u8 = 5;
const PUBREL: u8 = 6;
const PUBCOMP: u8 = 7;
const SUBSCRIBE: u8 = 8;
const SUBACK: u8 = 9;
const UNSUBSCRIBE: u8 = 10;
const UNSUBACK: u8 = 11;
const PINGREQ: u8 = 12;
const PINGRESP: u8 = 13;
const DISCONNECT: u8 = 14;

/// The packet identifier of the one SUBSCRIBE a client sends.
const SUBSCRIBE_ID: u16 = 1;

/// The name of a CONNACK refusal in the failure table.
pub fn refusal_name(code: u8) -> &'static str {
    match code {
        1 => "MQTT_REFUSED_PROTOCOL_VERSION",
        2 => "MQTT_REFUSED_IDENTIFIER",
        3 => "MQTT_REFUSED_SERVER_UNAVAILABLE",
        4 => "MQTT_REFUSED_BAD_CREDENTIALS",
        5 => "MQTT_REFUSED_NOT_AUTHORIZED",
        _ => "MQTT_REFUSED_OTHER",
    }
}

/// Writes a remaining length (1 to 4 bytes, 7 bits each, low first).
pub fn write_len(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return;
        }
    }
}

/// Reads a remaining length: (value, bytes used), None while incomplete;
/// a fifth byte is malformed (the spec's cap is 268,435,455).
fn read_len(b: &[u8]) -> Result<Option<(usize, usize)>, Fault> {
    let mut v = 0usize;
    for i in 0..4 {
        let Some(&x) = b.get(i) else { return Ok(None) };
        v |= usize::from(x & 0x7F) << (7 * i);
        if x & 0x80 == 0 {
            return Ok(Some((v, i + 1)));
        }
    }
    Err(Fault::MqttBadPacket)
}

/// A packet: (type, flags, body, length on the wire).
type Packet<'a> = (u8, u8, &'a [u8], usize);

/// A whole packet at the front of `b`, None while incomplete. Packets past
/// the cap are refused from their header.
fn packet(b: &[u8]) -> Result<Option<Packet<'_>>, Fault> {
    let Some(&first) = b.first() else { return Ok(None) };
    let Some((len, n)) = read_len(&b[1..])? else { return Ok(None) };
    if 1 + n + len > MAX_PACKET {
        return Err(Fault::MqttTooLarge);
    }
    let Some(body) = b.get(1 + n..1 + n + len) else { return Ok(None) };
    Ok(Some((first >> 4, first & 0x0F, body, 1 + n + len)))
}

fn put_str(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// A big-endian u16 at `at`.
fn u16_at(b: &[u8], at: usize) -> Result<u16, Fault> {
    b.get(at..at + 2).map(|x| u16::from_be_bytes([x[0], x[1]])).ok_or(Fault::MqttBadPacket)
}

/// A length-prefixed string at `at`: (bytes, next offset).
fn str_at(b: &[u8], at: usize) -> Result<(&[u8], usize), Fault> {
    let n = usize::from(u16_at(b, at)?);
    let s = b.get(at + 2..at + 2 + n).ok_or(Fault::MqttBadPacket)?;
    Ok((s, at + 2 + n))
}

/// CONNECT: MQTT 3.1.1, clean session, no will, no credentials.
pub fn connect(client_id: &str, keepalive_s: u16, out: &mut Vec<u8>) {
    let id = client_id.as_bytes();
    out.push(CONNECT << 4);
    write_len(10 + 2 + id.len(), out);
    put_str(b"MQTT", out);
    out.push(4); // protocol level 3.1.1
    out.push(0x02); // clean session
    out.extend_from_slice(&keepalive_s.to_be_bytes());
    put_str(id, out);
}

/// SUBSCRIBE to `topic` at QoS 0.
pub fn subscribe(topic: &str, out: &mut Vec<u8>) {
    out.push(SUBSCRIBE << 4 | 0x2);
    write_len(2 + 2 + topic.len() + 1, out);
    out.extend_from_slice(&SUBSCRIBE_ID.to_be_bytes());
    put_str(topic.as_bytes(), out);
    out.push(0);
}

/// The heartbeat.
pub const PINGREQ_BYTES: [u8; 2] = [PINGREQ << 4, 0];
/// The end of a session.
pub const DISCONNECT_BYTES: [u8; 2] = [DISCONNECT << 4, 0];

/// Acknowledges a PUBLISH of QoS 1 or 2 (`flags` of its fixed header).
fn ack_publish(flags: u8, body: &[u8], out: &mut Vec<u8>) -> Result<(), Fault> {
    let qos = (flags >> 1) & 3;
    if qos == 0 {
        return Ok(());
    }
    if qos == 3 {
        return Err(Fault::MqttBadPacket);
    }
    let (_, at) = str_at(body, 0)?;
    let id = u16_at(body, at)?;
    out.push(if qos == 1 { PUBACK << 4 } else { PUBREC << 4 });
    out.push(2);
    out.extend_from_slice(&id.to_be_bytes());
    Ok(())
}

/// Answers PUBREL with PUBCOMP.
fn ack_pubrel(body: &[u8], out: &mut Vec<u8>) -> Result<(), Fault> {
    out.extend_from_slice(&[PUBCOMP << 4, 2]);
    out.extend_from_slice(&u16_at(body, 0)?.to_be_bytes());
    Ok(())
}

/// The client side of one connection; `subscribe`: the topic to subscribe
/// to once connected.
#[derive(Debug)]
pub struct Client<'a> {
    /// Topic to subscribe to after CONNACK.
    pub subscribe: Option<&'a str>,
}

impl Machine for Client<'_> {
    fn cap(&self, _state: u8) -> usize {
        MAX_PACKET
    }

    fn too_large(&self, _state: u8) -> Fault {
        Fault::MqttTooLarge
    }

    fn step(&mut self, state: &mut u8, b: &[u8], out: &mut Vec<u8>, events: &mut Vec<Event>) -> Result<usize, Fault> {
        use client_state::*;
        if *state == CLOSED {
            return Ok(b.len());
        }
        if *state == CONNECTING && b.first().is_some_and(|&f| f != CONNACK << 4) {
            return Err(Fault::MqttNotMqtt); // seen from the first byte
        }
        let mut used = 0;
        while let Some((kind, flags, body, len)) = packet(&b[used..])? {
            used += len;
            match (*state, kind) {
                (CONNECTING, CONNACK) => {
                    let [_, code] = *body else { return Err(Fault::MqttNotMqtt) };
                    if code != 0 {
                        return Err(Fault::MqttRefused(code));
                    }
                    match self.subscribe {
                        Some(topic) => {
                            subscribe(topic, out);
                            *state = SUBSCRIBING;
                        }
                        None => {
                            events.push(Event::Ready);
                            *state = OPEN;
                        }
                    }
                }
                (SUBSCRIBING, SUBACK) => {
                    if u16_at(body, 0)? != SUBSCRIBE_ID || body.len() < 3 {
                        return Err(Fault::MqttBadPacket);
                    }
                    if body[2] & 0x80 != 0 {
                        return Err(Fault::MqttSubscribeRefused);
                    }
                    events.push(Event::Ready);
                    *state = OPEN;
                }
                (_, PINGRESP) if flags == 0 && body.is_empty() => events.push(Event::Pong(None)),
                (_, PUBLISH) => ack_publish(flags, body, out)?,
                (_, PUBREL) => ack_pubrel(body, out)?,
                (_, PUBACK | PUBREC | PUBCOMP | UNSUBACK) => {}
                _ => return Err(Fault::MqttBadPacket),
            }
        }
        Ok(used)
    }
}

/// The server side of one connection.
#[derive(Debug, Default)]
pub struct Server;

/// An MQTT string as the spec wants it (1.5.3): UTF-8, no U+0000.
fn check_str(s: &[u8]) -> Result<&str, Fault> {
    match std::str::from_utf8(s) {
        Ok(t) if !t.contains('\0') => Ok(t),
        _ => Err(Fault::MqttBadPacket),
    }
}

/// A topic filter (4.7): at least one character; `#` alone in the last
/// level, `+` alone in its level.
fn check_filter(s: &[u8]) -> Result<(), Fault> {
    let t = check_str(s)?;
    let levels: Vec<&str> = t.split('/').collect();
    let ok = !t.is_empty()
        && levels.iter().enumerate().all(|(i, l)| match *l {
            "#" => i + 1 == levels.len(),
            "+" => true,
            l => !l.contains(['#', '+']),
        });
    if ok { Ok(()) } else { Err(Fault::MqttBadPacket) }
}

/// A PUBLISH's topic name: at least one character, no wildcard.
fn check_topic_name(body: &[u8]) -> Result<(), Fault> {
    let (name, _) = str_at(body, 0)?;
    let t = check_str(name)?;
    if t.is_empty() || t.contains(['#', '+']) {
        return Err(Fault::MqttBadPacket);
    }
    Ok(())
}

impl Server {
    /// CONNECT (3.1): the variable header's flags, then exactly the payload
    /// fields they announce.
    fn connect(body: &[u8], out: &mut Vec<u8>) -> Result<(), Fault> {
        let (name, at) = str_at(body, 0).map_err(|_| Fault::MqttNotMqtt)?;
        let level = *body.get(at).ok_or(Fault::MqttBadPacket)?;
        let flags = *body.get(at + 1).ok_or(Fault::MqttBadPacket)?;
        match (name, level) {
            (b"MQTT", 4) | (b"MQIsdp", 3) => {}
            (b"MQTT" | b"MQIsdp", _) => {
                out.extend_from_slice(&[CONNACK << 4, 2, 0, 1]);
                return Err(Fault::MqttRefused(1));
            }
            _ => return Err(Fault::MqttNotMqtt),
        }
        let (clean, will, will_qos, will_retain) =
            (flags & 0x02 != 0, flags & 0x04 != 0, (flags >> 3) & 3, flags & 0x20);
        let (password, username) = (flags & 0x40 != 0, flags & 0x80 != 0);
        let flags_ok = flags & 1 == 0 // the reserved flag
            && will_qos != 3
            && (will || (will_qos == 0 && will_retain == 0))
            && (username || !password);
        if !flags_ok {
            return Err(Fault::MqttBadPacket);
        }
        let (id, mut at) = str_at(body, at + 4)?; // after the keepalive
        check_str(id)?;
        if will {
            let (topic, next) = str_at(body, at)?;
            check_str(topic)?;
            (_, at) = str_at(body, next)?; // the will message: any bytes
        }
        if username {
            let (user, next) = str_at(body, at)?;
            check_str(user)?;
            at = next;
        }
        if password {
            (_, at) = str_at(body, at)?;
        }
        if at != body.len() {
            return Err(Fault::MqttBadPacket); // bytes no flag announced
        }
        if id.is_empty() && !clean {
            // A session must have a name to be kept (3.1.3.1).
            out.extend_from_slice(&[CONNACK << 4, 2, 0, 2]);
            return Err(Fault::MqttRefused(2));
        }
        out.extend_from_slice(&[CONNACK << 4, 2, 0, 0]);
        Ok(())
    }

    /// The topic filters of SUBSCRIBE or UNSUBSCRIBE after the packet id,
    /// each followed by a requested QoS when `with_qos`; how many.
    fn filters(body: &[u8], with_qos: bool) -> Result<usize, Fault> {
        let mut at = 2;
        let mut n = 0;
        while at < body.len() {
            let (filter, next) = str_at(body, at)?;
            check_filter(filter)?;
            at = next;
            if with_qos {
                // QoS 0 to 2; the reserved upper bits are 0.
                if *body.get(at).ok_or(Fault::MqttBadPacket)? > 2 {
                    return Err(Fault::MqttBadPacket);
                }
                at += 1;
            }
            n += 1;
        }
        if n == 0 {
            return Err(Fault::MqttBadPacket); // at least one filter
        }
        Ok(n)
    }

    fn subscribe(body: &[u8], out: &mut Vec<u8>) -> Result<(), Fault> {
        let id = u16_at(body, 0)?;
        let granted = Server::filters(body, true)?;
        out.push(SUBACK << 4);
        write_len(2 + granted, out);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend(std::iter::repeat_n(0u8, granted));
        Ok(())
    }

    fn unsubscribe(body: &[u8], out: &mut Vec<u8>) -> Result<(), Fault> {
        let id = u16_at(body, 0)?;
        Server::filters(body, false)?;
        out.extend_from_slice(&[UNSUBACK << 4, 2]);
        out.extend_from_slice(&id.to_be_bytes());
        Ok(())
    }
}

impl Machine for Server {
    fn cap(&self, _state: u8) -> usize {
        MAX_PACKET
    }

    fn too_large(&self, _state: u8) -> Fault {
        Fault::MqttTooLarge
    }

    fn step(&mut self, state: &mut u8, b: &[u8], out: &mut Vec<u8>, events: &mut Vec<Event>) -> Result<usize, Fault> {
        use server_state::*;
        if *state == CLOSED {
            return Ok(b.len());
        }
        if *state == AWAIT_CONNECT && b.first().is_some_and(|&f| f != CONNECT << 4) {
            return Err(Fault::MqttNotMqtt);
        }
        let mut used = 0;
        while let Some((kind, flags, body, len)) = packet(&b[used..])? {
            used += len;
            match (*state, kind, flags) {
                (AWAIT_CONNECT, CONNECT, 0) => {
                    Server::connect(body, out)?;
                    events.push(Event::Ready);
                    *state = OPEN;
                }
                (OPEN, PINGREQ, 0) => out.extend_from_slice(&[PINGRESP << 4, 0]),
                (OPEN, SUBSCRIBE, 2) => Server::subscribe(body, out)?,
                (OPEN, UNSUBSCRIBE, 2) => Server::unsubscribe(body, out)?,
                (OPEN, PUBLISH, f) => {
                    check_topic_name(body)?;
                    ack_publish(f, body, out)?;
                }
                (OPEN, PUBREL, 2) => ack_pubrel(body, out)?,
                (OPEN, PUBACK | PUBREC | PUBCOMP, _) => {}
                (OPEN, DISCONNECT, 0) => {
                    events.push(Event::PeerClose);
                    *state = CLOSED;
                    return Ok(b.len());
                }
                _ => return Err(Fault::MqttBadPacket),
            }
        }
        Ok(used)
    }
}

#[cfg(test)]
#[path = "mqtt_tests.rs"]
mod tests;
