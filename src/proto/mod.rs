//! The protocols spoken over held connections, as sans-IO state machines:
//! fed the bytes a socket gave, they return the bytes to send and what
//! happened (handshake done, heartbeat answered, close asked), with no
//! socket and no clock inside, so every rule is unit-tested on its own. The
//! engine drives them.
//!
//! # Layout
//! | file | what it is for |
//! |---|---|
//! | [`ws`] | WebSocket (RFC 6455), client and server: upgrade, masking, ping/pong, close |
//! | [`mqtt`] | MQTT 3.1.1, client and server: CONNECT/CONNACK, PINGREQ/PINGRESP, SUBSCRIBE, DISCONNECT |
//! | [`tls`] | TLS 1.3 under any of them, client and server, on rustls' unbuffered API |
//!
//! # Compact state
//! What a connection keeps between reads is one state byte, in the engine's
//! per-descriptor record. The bytes of a unit (header block, frame, packet)
//! split over reads are the only buffer, kept by the caller in a side map
//! only while the unit is incomplete ([`feed`]), and each unit has a hard
//! size cap, so a peer cannot make a connection hold more than the cap. The
//! cap is decided from the unit's own bytes (its length field, where its
//! header block ends), so the verdict is the same however the bytes were
//! split over reads.
//!
//! A server also holds an incomplete unit only until a deadline
//! ([`PARTIAL_DEADLINE`] from its first byte, [`Held`]); the time is passed
//! in ([`feed_at`], [`expire`]), never read inside. The total a server's
//! connections may hold at once is the caller's budget; past it,
//! [`refuse`] gives the protocol's last word for the one that went over.
//!
//! # Driving a server machine (a fuzz harness does the same)
//! ```
//! use std::time::{Duration, Instant};
//! use tcpmax::proto::{self, Held, mqtt, ws};
//!
//! let (mut out, mut events, mut held) = (Vec::new(), Vec::new(), Held::default());
//! let mut state = ws::server_state::UPGRADE;
//! let t0 = Instant::now();
//! let r = proto::feed_at(&mut ws::Server, &mut state, &mut held, b"GET / HTTP/1.1\r\n", t0, &mut out, &mut events);
//! assert!(r.is_ok() && held.deadline().is_some());
//! let late = t0 + proto::PARTIAL_DEADLINE + Duration::from_millis(1);
//! assert_eq!(proto::expire(&ws::Server, state, &held, late, &mut out), Some(proto::Fault::PartialTimeout));
//! assert!(out.starts_with(b"HTTP/1.1 408"));
//!
//! let (mut held, mut state) = (Held::default(), mqtt::server_state::AWAIT_CONNECT);
//! let r = proto::feed_at(&mut mqtt::Server, &mut state, &mut held, &[0x10, 0xFF], t0, &mut out, &mut events);
//! assert!(r.is_ok());
//! ```
//!
//! Why hand-written framing instead of tungstenite or an MQTT client crate:
//! those keep a read and a write buffer per connection (tungstenite's read
//! buffer is 128 KiB by default) and a state struct of hundreds of bytes,
//! which is the whole cost here: held connections are idle almost all the
//! time, and the framing needed (a frame header, a fixed header and a
//! varint) is a few dozen lines, each rule tested below. The cryptography
//! (SHA-1 and base64 of the WebSocket accept key) comes from crates.

pub mod mqtt;
pub mod tls;
mod tls_rest;
pub mod ws;

use std::time::{Duration, Instant};

use serde::Serialize;

/// The protocol spoken over each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Bare TCP: ping frames echoed by the server.
    #[default]
    Tcp,
    /// WebSocket.
    Ws,
    /// MQTT 3.1.1.
    Mqtt,
}

impl Protocol {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Ws => "ws",
            Protocol::Mqtt => "mqtt",
        }
    }
}

/// What a client speaks, with the settings every connection shares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ClientSpec {
    /// Bare TCP.
    #[default]
    Tcp,
    /// WebSocket.
    Ws(ws::ClientConfig),
    /// MQTT.
    Mqtt(mqtt::ClientConfig),
}

impl ClientSpec {
    /// The protocol.
    pub fn protocol(&self) -> Protocol {
        match self {
            ClientSpec::Tcp => Protocol::Tcp,
            ClientSpec::Ws(_) => Protocol::Ws,
            ClientSpec::Mqtt(_) => Protocol::Mqtt,
        }
    }
}

/// What a state machine saw in the bytes it was fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed: the connection is established at this
    /// protocol's level.
    Ready,
    /// A heartbeat was answered; the token sent with it, when the protocol
    /// carries one (a WebSocket ping's payload; MQTT's PINGREQ has none).
    Pong(Option<u64>),
    /// The peer asked to close; the answer, if any, is in the output: send
    /// it, then close.
    PeerClose,
    /// The close handshake this side started is complete.
    Closed,
}

/// Why a connection was dropped at the protocol level: a short stable name
/// for the failure table (beside the errnos) and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.meaning())]
pub enum Fault {
    /// The WebSocket upgrade was answered with an HTTP status other than 101.
    WsStatus(u16),
    /// The answer to the upgrade is not HTTP: the server speaks another protocol.
    WsNotHttp,
    /// The 101 answer lacks the upgrade headers or has a wrong accept key.
    WsBadAccept,
    /// The server enabled an extension that was not offered.
    WsExtension,
    /// The upgrade request is not a WebSocket upgrade (server side).
    WsBadRequest,
    /// A header block longer than the cap.
    WsHeaderTooLarge,
    /// A frame longer than the cap.
    WsFrameTooLarge,
    /// A frame breaking RFC 6455 (reserved bits, unknown opcode, masking,
    /// fragments out of order, a malformed close).
    WsBadFrame,
    /// A text message or close reason that is not UTF-8.
    WsBadUtf8,
    /// The broker refused the connection with this CONNACK return code.
    MqttRefused(u8),
    /// The first answer to CONNECT is not a CONNACK: another protocol.
    MqttNotMqtt,
    /// A packet breaking MQTT 3.1.1 (type, flags, lengths).
    MqttBadPacket,
    /// A packet longer than the cap.
    MqttTooLarge,
    /// The broker refused the subscription (SUBACK 0x80).
    MqttSubscribeRefused,
    /// The protocol handshake did not complete within the connect timeout.
    HandshakeTimeout,
    /// The server closed the connection before the handshake completed.
    HandshakeClosed,
    /// A TLS failure, by its name in the failure table ([`tls::name_of`]).
    Tls(&'static str),
    /// A header block, frame or packet stayed incomplete past
    /// [`PARTIAL_DEADLINE`].
    PartialTimeout,
    /// The server's budget for incomplete input was spent: the connection
    /// whose input would go past it is closed.
    PartialBudget,
}

impl Fault {
    /// The name in the failure table.
    pub fn name(self) -> &'static str {
        match self {
            Fault::WsStatus(code) => ws_status_name(code),
            Fault::WsNotHttp => "WS_NOT_HTTP",
            Fault::WsBadAccept => "WS_BAD_ACCEPT",
            Fault::WsExtension => "WS_EXTENSION",
            Fault::WsBadRequest => "WS_BAD_REQUEST",
            Fault::WsHeaderTooLarge => "WS_HEADER_TOO_LARGE",
            Fault::WsFrameTooLarge => "WS_FRAME_TOO_LARGE",
            Fault::WsBadFrame => "WS_BAD_FRAME",
            Fault::WsBadUtf8 => "WS_BAD_UTF8",
            Fault::MqttRefused(code) => mqtt::refusal_name(code),
            Fault::MqttNotMqtt => "MQTT_NOT_MQTT",
            Fault::MqttBadPacket => "MQTT_BAD_PACKET",
            Fault::MqttTooLarge => "MQTT_PACKET_TOO_LARGE",
            Fault::MqttSubscribeRefused => "MQTT_SUBSCRIBE_REFUSED",
            Fault::HandshakeTimeout => "HANDSHAKE_TIMEOUT",
            Fault::HandshakeClosed => "HANDSHAKE_CLOSED",
            Fault::Tls(name) => name,
            Fault::PartialTimeout => "PARTIAL_TIMEOUT",
            Fault::PartialBudget => "PARTIAL_BUDGET",
        }
    }

    fn meaning(self) -> &'static str {
        explain(self.name()).map_or("a protocol failure", |e| e.0)
    }
}

/// The HTTP statuses named one by one in the failure table; others count
/// together.
fn ws_status_name(code: u16) -> &'static str {
    match code {
        200 => "WS_HTTP_200",
        301 => "WS_HTTP_301",
        302 => "WS_HTTP_302",
        400 => "WS_HTTP_400",
        401 => "WS_HTTP_401",
        403 => "WS_HTTP_403",
        404 => "WS_HTTP_404",
        405 => "WS_HTTP_405",
        426 => "WS_HTTP_426",
        429 => "WS_HTTP_429",
        500 => "WS_HTTP_500",
        502 => "WS_HTTP_502",
        503 => "WS_HTTP_503",
        _ => "WS_HTTP_OTHER",
    }
}

/// What a protocol failure means and how to fix it: `(meaning, fix)`, for
/// the failure table of `load` and `bench`. None for a name that is not a
/// protocol failure.
pub fn explain(name: &str) -> Option<(&'static str, &'static str)> {
    const NOT_WS: &str = "point --ws at a WebSocket endpoint, or leave --ws out for a plain TCP server";
    const NOT_MQTT: &str = "point --mqtt at an MQTT 3.1.1 broker (port 1883 by convention), or leave --mqtt out";
    Some(match name {
        "WS_NOT_HTTP" => (
            "the server answered the WebSocket upgrade with something that is not HTTP: it speaks another protocol",
            NOT_WS,
        ),
        "WS_BAD_ACCEPT" => {
            ("the server answered 101 without the upgrade headers or with a wrong Sec-WebSocket-Accept key", NOT_WS)
        }
        "WS_EXTENSION" => (
            "the server enabled a WebSocket extension (compression) that was not offered",
            "configure the server not to force extensions; tcpmax offers none",
        ),
        "WS_BAD_REQUEST" => (
            "a client sent something that is not a WebSocket upgrade request",
            "connect with a WebSocket client, or serve --mode echo for plain TCP",
        ),
        "WS_HEADER_TOO_LARGE" => ("an HTTP header block was longer than 8 KiB", "send fewer or shorter headers (-H)"),
        "WS_FRAME_TOO_LARGE" => (
            "a WebSocket frame was longer than the 64 KiB cap",
            "send smaller frames: held connections carry heartbeats",
        ),
        "WS_BAD_FRAME" => (
            "a WebSocket frame broke RFC 6455 (reserved bits, unknown opcode, wrong masking, fragmented control frame, a continuation without a message, a malformed close code)",
            "check the peer's WebSocket implementation",
        ),
        "WS_BAD_UTF8" => (
            "a WebSocket text message or close reason was not valid UTF-8 (closed with 1007)",
            "send binary frames for bytes that are not text",
        ),
        "PARTIAL_TIMEOUT" => (
            "a peer left a header block, frame or packet incomplete for longer than 5 s: the server closed it",
            "send each header block, frame or packet whole; a peer that stalls mid-unit is cut",
        ),
        "PARTIAL_BUDGET" => (
            "the server's memory for incomplete header blocks, frames and packets was spent: the connection whose input went past it was closed",
            "send each unit whole, or give the server a larger --memory-budget",
        ),
        "MQTT_REFUSED_PROTOCOL_VERSION" => (
            "the broker refused CONNECT: it does not accept MQTT 3.1.1 (return code 1)",
            "enable MQTT 3.1.1 on the broker",
        ),
        "MQTT_REFUSED_IDENTIFIER" => (
            "the broker refused the client id (return code 2)",
            "give another --client-id prefix, or allow longer client ids on the broker",
        ),
        "MQTT_REFUSED_SERVER_UNAVAILABLE" => (
            "the broker refused CONNECT: server unavailable (return code 3), often its connection limit",
            "raise the broker's connection limit (mosquitto: max_connections and its descriptor limit)",
        ),
        "MQTT_REFUSED_BAD_CREDENTIALS" => (
            "the broker refused CONNECT: bad user name or password (return code 4)",
            "allow anonymous clients on the broker for the test",
        ),
        "MQTT_REFUSED_NOT_AUTHORIZED" => (
            "the broker refused CONNECT: not authorized (return code 5)",
            "allow anonymous clients on the broker for the test",
        ),
        "MQTT_REFUSED_OTHER" => {
            ("the broker refused CONNECT with a return code MQTT 3.1.1 does not define", "check the broker's log")
        }
        "MQTT_NOT_MQTT" => {
            ("the server answered CONNECT with something that is not a CONNACK: it speaks another protocol", NOT_MQTT)
        }
        "MQTT_BAD_PACKET" => {
            ("a packet broke MQTT 3.1.1 (type, flags, lengths)", "check the peer's MQTT implementation")
        }
        "MQTT_PACKET_TOO_LARGE" => {
            ("an MQTT packet was longer than the 64 KiB cap", "publish smaller messages on the subscribed topic")
        }
        "MQTT_SUBSCRIBE_REFUSED" => (
            "the broker refused the subscription (SUBACK 0x80)",
            "subscribe to a topic the broker allows (--subscribe)",
        ),
        "HANDSHAKE_TIMEOUT" => (
            "the protocol handshake did not complete within the connect timeout: the server accepted TCP but never answered",
            "check that the server speaks the protocol, or raise --connect-timeout",
        ),
        "HANDSHAKE_CLOSED" => (
            "the server closed the connection before the protocol handshake completed: often a server at its connection limit (mosquitto closes at max_connections or when its descriptors run out)",
            "raise the server's connection and descriptor limits, or spread the load over more server processes",
        ),
        n if n.starts_with("WS_HTTP_") => (
            "the server refused the WebSocket upgrade with this HTTP status",
            "check the path and the headers (-H) the endpoint needs",
        ),
        n if n.starts_with("TLS_") => return tls::explain(n),
        _ => return None,
    })
}

/// A protocol state machine: it consumes whole units (a header block, a
/// frame, a packet) from the front of its input and leaves the tail.
///
/// Caps are a pure function of the bytes: a machine refuses a unit past its
/// cap from the unit's own bytes (a frame's length field, the end of a
/// header block), so the verdict is the same however the bytes were split
/// over reads.
pub trait Machine {
    /// The most bytes one unit may take in state `state`: a longer unit is
    /// a fault, so a peer never makes a connection buffer more.
    fn cap(&self, state: u8) -> usize;

    /// The fault of a unit past [`Machine::cap`].
    fn too_large(&self, state: u8) -> Fault;

    /// Consumes the whole units at the front of `bytes`, writing what to
    /// send into `out` and what happened into `events`; returns the bytes
    /// used. An error ends the connection (`out` may hold a last answer to
    /// send first).
    fn step(
        &mut self,
        state: &mut u8,
        bytes: &[u8],
        out: &mut Vec<u8>,
        events: &mut Vec<Event>,
    ) -> Result<usize, Fault>;

    /// Writes into `out` what this side says before closing for `fault`
    /// in state `state`, when the protocol has a word for it (an HTTP
    /// status, a close frame); nothing by default.
    fn last_word(&self, _state: u8, _fault: Fault, _out: &mut Vec<u8>) {}
}

/// How long a header block, frame or packet may stay incomplete, from its
/// first byte.
pub const PARTIAL_DEADLINE: Duration = Duration::from_secs(5);

/// What a server keeps of one connection's input between reads: the bytes
/// of a unit split over reads and when its first byte came. Empty at rest
/// (no allocation).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Held {
    /// The incomplete unit.
    pub bytes: Vec<u8>,
    /// When its first byte was read; None at rest.
    pub since: Option<Instant>,
}

impl Held {
    /// When the incomplete unit times out; None at rest.
    pub fn deadline(&self) -> Option<Instant> {
        self.since.map(|s| s + PARTIAL_DEADLINE)
    }
}

/// A server's entry point: feeds `input`, read at `now`, to `m` in `state`
/// with what `held` kept from earlier reads. A unit left incomplete past
/// [`PARTIAL_DEADLINE`] is a [`Fault::PartialTimeout`] (checked before the
/// new bytes count). On error `out` holds the last word to send (a status,
/// a close frame) before closing.
pub fn feed_at<M: Machine>(
    m: &mut M,
    state: &mut u8,
    held: &mut Held,
    input: &[u8],
    now: Instant,
    out: &mut Vec<u8>,
    events: &mut Vec<Event>,
) -> Result<(), Fault> {
    if let Some(f) = expire(m, *state, held, now, out) {
        return Err(f);
    }
    let progress = feed_inner(m, state, &mut held.bytes, input, out, events)?;
    held.since = match held.since {
        _ if held.bytes.is_empty() => None,
        // The unit held before is still the one incomplete.
        Some(t) if !progress => Some(t),
        _ => Some(now),
    };
    Ok(())
}

/// Ends a connection whose held unit is past its deadline at `now`: the
/// fault, with the machine's last word in `out`. None while in time (or
/// at rest).
pub fn expire<M: Machine>(m: &M, state: u8, held: &Held, now: Instant, out: &mut Vec<u8>) -> Option<Fault> {
    let due = held.deadline()?;
    (now >= due).then(|| refuse(m, state, Fault::PartialTimeout, out))
}

/// Ends a connection for `fault` decided outside the machine (a deadline,
/// the input budget): the machine's last word goes into `out`.
pub fn refuse<M: Machine>(m: &M, state: u8, fault: Fault, out: &mut Vec<u8>) -> Fault {
    m.last_word(state, fault, out);
    fault
}

/// Feeds `input` to `m`: straight from the input when no unit is pending
/// (the common case: no copy), through `partial` otherwise. On return,
/// `partial` holds the incomplete tail, if any (the caller keeps it only
/// while it is not empty).
pub fn feed<M: Machine>(
    m: &mut M,
    state: &mut u8,
    partial: &mut Vec<u8>,
    input: &[u8],
    out: &mut Vec<u8>,
    events: &mut Vec<Event>,
) -> Result<(), Fault> {
    feed_inner(m, state, partial, input, out, events).map(|_| ())
}

/// [`feed`], saying whether a unit was consumed.
fn feed_inner<M: Machine>(
    m: &mut M,
    state: &mut u8,
    partial: &mut Vec<u8>,
    input: &[u8],
    out: &mut Vec<u8>,
    events: &mut Vec<Event>,
) -> Result<bool, Fault> {
    let (tail, progress) = if partial.is_empty() {
        let used = run(m, state, input, out, events)?;
        (&input[used..], used > 0)
    } else {
        partial.extend_from_slice(input);
        let used = run(m, state, partial, out, events)?;
        partial.drain(..used);
        (&[][..], used > 0)
    };
    if !tail.is_empty() {
        partial.extend_from_slice(tail);
    }
    if partial.len() > m.cap(*state) {
        // A machine refuses an overlong unit itself; this is the backstop.
        return Err(refuse(m, *state, m.too_large(*state), out));
    }
    if partial.is_empty() {
        // Back at rest: give the buffer's memory back.
        *partial = Vec::new();
    }
    Ok(progress)
}

/// Steps until a step uses nothing (an incomplete unit is left), also
/// across state changes (a handshake answer followed by frames).
fn run<M: Machine>(
    m: &mut M,
    state: &mut u8,
    bytes: &[u8],
    out: &mut Vec<u8>,
    events: &mut Vec<Event>,
) -> Result<usize, Fault> {
    let mut used = 0;
    loop {
        let n = m.step(state, &bytes[used..], out, events)?;
        used += n;
        if n == 0 || used == bytes.len() {
            return Ok(used);
        }
    }
}

/// Feeding in pieces, for the machines' tests.
#[cfg(test)]
pub(crate) mod split {
    use super::*;

    /// What feeding gave: the result, the bytes to send, the events, the
    /// state at the end.
    pub(crate) type Verdict = (Result<(), Fault>, Vec<u8>, Vec<Event>, u8);

    /// Feeds `bytes` cut at `cut` (two pieces) through [`feed_at`], all at
    /// one instant; stops at the first fault.
    pub(crate) fn fed<M: Machine>(mut m: M, mut state: u8, bytes: &[u8], cut: usize) -> Verdict {
        let (now, mut held, mut out, mut ev) = (Instant::now(), Held::default(), Vec::new(), Vec::new());
        for piece in [&bytes[..cut], &bytes[cut..]] {
            let r = feed_at(&mut m, &mut state, &mut held, piece, now, &mut out, &mut ev);
            if r.is_err() {
                return (r, out, ev, state);
            }
        }
        (Ok(()), out, ev, state)
    }

    /// Asserts that every cut in `cuts` gives the verdict of `bytes` fed
    /// whole, and returns it.
    pub(crate) fn same_for_every_cut<M: Machine>(
        make: impl Fn() -> (M, u8),
        bytes: &[u8],
        cuts: impl Iterator<Item = usize>,
    ) -> Verdict {
        let (m, st) = make();
        let whole = fed(m, st, bytes, bytes.len());
        for cut in cuts {
            let (m, st) = make();
            let v = fed(m, st, bytes, cut);
            assert!(v == whole, "cut at {cut} of {}: {:?} but whole: {:?}", bytes.len(), v.0, whole.0);
        }
        whole
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_is_explained() {
        let faults = [
            Fault::WsStatus(403),
            Fault::WsStatus(599),
            Fault::WsNotHttp,
            Fault::WsBadAccept,
            Fault::WsExtension,
            Fault::WsBadRequest,
            Fault::WsHeaderTooLarge,
            Fault::WsFrameTooLarge,
            Fault::WsBadFrame,
            Fault::WsBadUtf8,
            Fault::PartialTimeout,
            Fault::PartialBudget,
            Fault::MqttRefused(1),
            Fault::MqttRefused(5),
            Fault::MqttRefused(77),
            Fault::MqttNotMqtt,
            Fault::MqttBadPacket,
            Fault::MqttTooLarge,
            Fault::MqttSubscribeRefused,
            Fault::HandshakeTimeout,
            Fault::HandshakeClosed,
            Fault::Tls("TLS_CERT_UNKNOWN_ISSUER"),
            Fault::Tls("TLS_ALERT_UNKNOWN_CA"),
            Fault::Tls("TLS_NOT_TLS"),
        ];
        for f in faults {
            assert!(explain(f.name()).is_some(), "{}", f.name());
            assert_ne!(f.to_string(), "a protocol failure");
        }
        assert_eq!(Fault::WsStatus(403).name(), "WS_HTTP_403");
        assert_eq!(Fault::MqttRefused(3).name(), "MQTT_REFUSED_SERVER_UNAVAILABLE");
        assert_eq!(explain("ECONNRESET"), None);
    }
}
