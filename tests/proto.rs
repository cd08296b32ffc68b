//! WebSocket and MQTT through the binary: `bench --ws` and `bench --mqtt`
//! on loopback, `load` against `serve --mode ws|mqtt`, and the causes named
//! when a server speaks another protocol or never answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Peer, Serve, free_port, tcpmax, validate};
use serde_json::Value;

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    })
}

fn bench(proto: &str) -> Value {
    let out = tcpmax(&["bench", "-c", "2k", "--hold", "2s", "--ping-rate", "2k", proto, "--json", "-"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = json_of(&out);
    validate("bench", &r);
    assert_eq!(r["held"], 2000, "{:#}", r["first_limit"]);
    assert_eq!(r["failed"], 0);
    assert_eq!(r["handshake_latency_us"]["count"], 2000, "one handshake per connection");
    assert!(r["handshake_rate_per_s"].as_f64().unwrap() > 0.0);
    assert!(r["ping_rtt_us"]["count"].as_u64().unwrap() > 0, "heartbeats answered");
    r
}

#[test]
fn bench_ws_holds_websocket_connections() {
    assert_eq!(bench("--ws")["protocol"], "ws");
}

#[test]
fn bench_mqtt_holds_mqtt_sessions() {
    assert_eq!(bench("--mqtt")["protocol"], "mqtt");
}

fn error_names(r: &Value) -> Vec<String> {
    r["errors"].as_array().unwrap().iter().map(|e| e["errno"].as_str().unwrap().to_string()).collect()
}

#[test]
fn load_ws_against_serve_ws_closes_with_the_handshake() {
    let serve = Serve::start(&["--mode", "ws"]);
    let addr = serve.addr.to_string();
    let out = tcpmax(&[
        "load",
        &addr,
        "-c",
        "300",
        "--hold",
        "1s",
        "--ping-rate",
        "300",
        "--ws",
        "/chat",
        "-H",
        "Origin: http://t",
        "--json",
        "-",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = json_of(&out);
    validate("load", &r);
    assert_eq!(r["protocol"], "ws");
    assert_eq!(r["held_at_end"], 300);
    assert_eq!(r["close_handshakes"], 300, "every close answered by the server");
    assert!(r["pongs"].as_u64().unwrap() > 0);
}

#[test]
fn the_cause_is_named_when_the_server_speaks_another_protocol() {
    // An echo server sends the upgrade request back: not HTTP.
    let echo = Serve::start(&["--mode", "echo"]);
    let out = tcpmax(&["load", &echo.addr.to_string(), "-c", "50", "--hold", "0s", "--ws", "/", "--json", "-"]);
    assert_eq!(out.status.code(), Some(1), "goal not met");
    let r = json_of(&out);
    validate("load", &r);
    assert_eq!(r["failed"], 50);
    assert_eq!(error_names(&r), vec!["WS_NOT_HTTP"]);
    assert!(r["errors"][0]["meaning"].as_str().unwrap().contains("another protocol"));

    // A WebSocket server refuses MQTT, and an MQTT client says so.
    let ws = Serve::start(&["--mode", "ws"]);
    let out = tcpmax(&["load", &ws.addr.to_string(), "-c", "50", "--hold", "0s", "--mqtt", "--json", "-"]);
    let r = json_of(&out);
    assert_eq!(r["failed"], 50);
    let names = error_names(&r);
    assert!(names.iter().all(|n| n == "HANDSHAKE_CLOSED" || n == "ECONNRESET" || n == "MQTT_NOT_MQTT"), "{names:?}");

    // A server that never answers: the handshake times out.
    let silent = Serve::start(&["--mode", "silent"]);
    let out = tcpmax(&[
        "load",
        &silent.addr.to_string(),
        "-c",
        "20",
        "--hold",
        "0s",
        "--mqtt",
        "--connect-timeout",
        "300ms",
        "--json",
        "-",
    ]);
    let r = json_of(&out);
    assert_eq!(r["failed"], 20);
    assert_eq!(error_names(&r), vec!["HANDSHAKE_TIMEOUT"]);
}

#[test]
fn bad_protocol_options_are_one_line() {
    let out = tcpmax(&["load", "127.0.0.1:9", "--ws", "chat"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a request path"));
    let out = tcpmax(&["load", "127.0.0.1:9", "--ws", "/", "--message", "hi"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--message"));
    let out = tcpmax(&["load", "127.0.0.1:9", "--ws", "/", "--mqtt"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn mqtt_keepalives_are_sent_without_a_ping_rate() {
    let serve = Serve::start(&["--mode", "mqtt"]);
    let out = tcpmax(&[
        "load",
        &serve.addr.to_string(),
        "-c",
        "100",
        "--hold",
        "2s",
        "--ping-rate",
        "0",
        "--mqtt",
        "--keepalive",
        "1s",
        "--json",
        "-",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = json_of(&out);
    // Every session pings within two thirds of its keepalive: 100 sessions,
    // 2 s, at least one round each.
    assert!(r["pings_sent"].as_u64().unwrap() >= 100, "{}", r["pings_sent"]);
    assert!(r["pongs"].as_u64().unwrap() >= 100);
}

// ---- #17: the server's conformance, against real peers ----
//
// The same bytes go to `serve --mode ws|mqtt` and to an independent peer
// (Python's websockets, mosquitto); both must answer and close alike. A
// test skips, saying so, when its peer is not installed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

fn installed(cmd: &str, args: &[&str]) -> bool {
    let ok = common::runs(cmd, args);
    if !ok {
        common::skip(&format!("`{cmd} {}` fails: not installed", args.join(" ")));
    }
    ok
}

/// Reads until the peer closes (or resets): what it sent, and whether it
/// closed before the read timeout.
fn read_to_close(c: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (got, true),
            Err(_) => return (got, false),
        }
    }
}

/// Sends `bytes` and reads until the peer closes: what it answered, and
/// whether it closed within 10 s.
fn answer(addr: SocketAddr, bytes: &[u8]) -> (Vec<u8>, bool) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = c.write_all(bytes);
    read_to_close(&mut c)
}

fn mqtt_packet(kind: u8, body: &[u8]) -> Vec<u8> {
    assert!(body.len() < 128);
    [&[kind, body.len() as u8][..], body].concat()
}

fn mqtt_str(s: &[u8]) -> Vec<u8> {
    [&(s.len() as u16).to_be_bytes()[..], s].concat()
}

fn mqtt_connect(flags: u8, fields: &[&[u8]]) -> Vec<u8> {
    let mut body = [&mqtt_str(b"MQTT")[..], &[4, flags, 0, 60]].concat();
    for f in fields {
        body.extend_from_slice(&mqtt_str(f));
    }
    mqtt_packet(0x10, &body)
}

#[test]
fn serve_mqtt_refuses_what_mosquitto_refuses() {
    if !installed("sh", &["-c", "command -v mosquitto"]) {
        return;
    }
    let port = free_port();
    let conf = std::env::temp_dir().join(format!("tcpmax-mosquitto-{}.conf", std::process::id()));
    std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\n")).unwrap();
    let (_peer, mosquitto) = Peer::listening(Command::new("mosquitto").arg("-c").arg(&conf), port);
    let serve = Serve::start(&["--mode", "mqtt"]);
    let ok = mqtt_connect(0x02, &[b"id"]);
    let sub = |filter: &[u8], qos: u8| mqtt_packet(0x82, &[&[0, 1][..], &mqtt_str(filter), &[qos]].concat());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("will flag without its fields", mqtt_connect(0x02 | 0x04, &[b"id"])),
        ("username flag without a username", mqtt_connect(0x02 | 0x80, &[b"id"])),
        ("an empty client id without clean session", mqtt_connect(0, &[b""])),
        ("SUBSCRIBE with QoS 3", [ok.clone(), sub(b"a/b", 3)].concat()),
        ("SUBSCRIBE to a topic that is not UTF-8", [ok.clone(), sub(&[b'a', 0xFF, 0xFE], 0)].concat()),
        ("a valid session", [ok.clone(), sub(b"a/+", 1), vec![0xE0, 0]].concat()),
    ];
    for (what, bytes) in cases {
        let want = answer(mosquitto, &bytes);
        let got = answer(serve.addr, &bytes);
        assert!(want.1, "{what}: mosquitto closes");
        // mosquitto grants the QoS asked; this server grants 0, which the
        // spec allows: compare SUBACK's presence, not its grant.
        let norm = |b: &[u8]| if b.len() == 9 && b[4] == 0x90 { b[..8].to_vec() } else { b.to_vec() };
        assert_eq!((norm(&got.0), got.1), (norm(&want.0), want.1), "{what}");
    }
    let _ = std::fs::remove_file(&conf);
}

const WS_ECHO: &str = r#"
import asyncio, sys, websockets
async def echo(ws):
    async for m in ws:
        await ws.send(m)
async def main():
    async with websockets.serve(echo, "127.0.0.1", int(sys.argv[1]), compression=None):
        await asyncio.Future()
asyncio.run(main())
"#;

/// A masked client frame.
fn ws_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![b0, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Upgrades, waits for the 101, sends `frames` and reads until the close:
/// the frames answered and whether the server closed within 10 s.
fn ws_answer(addr: SocketAddr, frames: &[u8]) -> (Vec<u8>, bool) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(UPGRADE).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    let _ = c.write_all(frames);
    read_to_close(&mut c)
}

const UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// The code of the first close frame in `answer` (frames after the 101).
fn close_code_of(answer: &[u8]) -> Option<u16> {
    let mut f = answer;
    while f.len() >= 2 {
        let len = usize::from(f[1] & 0x7F);
        assert!(len < 126, "short frames only here");
        if f[0] & 0x0F == 0x8 {
            return Some(if len >= 2 { u16::from_be_bytes([f[2], f[3]]) } else { 1005 });
        }
        f = &f[(2 + len).min(f.len())..];
    }
    None
}

#[test]
fn serve_ws_closes_as_python_websockets_does() {
    if !installed("python3", &["-c", "import websockets"]) {
        return;
    }
    let port = free_port();
    let (_peer, reference) = Peer::listening(Command::new("python3").args(["-c", WS_ECHO, &port.to_string()]), port);
    let serve = Serve::start(&["--mode", "ws"]);
    let e_acute = "é".as_bytes();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("invalid UTF-8 in a text frame", ws_frame(0x81, &[b'a', 0xFF])),
        ("invalid UTF-8 across fragments", [ws_frame(0x01, &[e_acute[0]]), ws_frame(0x80, b"A")].concat()),
        ("an orphan continuation frame", ws_frame(0x80, b"x")),
        ("a 1-byte close payload", ws_frame(0x88, &[3])),
        ("close code 0", ws_frame(0x88, &0u16.to_be_bytes())),
        ("close code 1005", ws_frame(0x88, &1005u16.to_be_bytes())),
        ("close code 1016", ws_frame(0x88, &1016u16.to_be_bytes())),
        ("close code 2999", ws_frame(0x88, &2999u16.to_be_bytes())),
        ("a reserved bit", ws_frame(0x81 | 0x40, b"x")),
        ("a normal close", ws_frame(0x88, &1000u16.to_be_bytes())),
    ];
    for (what, frames) in cases {
        let want = ws_answer(reference, &frames);
        let got = ws_answer(serve.addr, &frames);
        assert!(want.1 && got.1, "{what}: both close");
        assert_eq!(close_code_of(&got.0), close_code_of(&want.0), "{what}");
        assert!(close_code_of(&got.0).is_some(), "{what}: a close frame first");
    }
}
