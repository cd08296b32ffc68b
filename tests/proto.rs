//! WebSocket and MQTT through the binary: `bench --ws` and `bench --mqtt`
//! on loopback, `load` against `serve --mode ws|mqtt`, and the causes named
//! when a server speaks another protocol or never answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Serve, tcpmax, validate};
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
