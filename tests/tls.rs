//! TLS through the binary: `bench --tls`, `load --tls` against `serve --tls
//! self-signed`, and the causes named for a wrong certificate and for a
//! server that does not speak TLS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Serve, tcpmax, validate};
use serde_json::Value;

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    })
}

fn error_names(r: &Value) -> Vec<String> {
    r["errors"].as_array().unwrap().iter().map(|e| e["errno"].as_str().unwrap().to_string()).collect()
}

#[test]
fn bench_tls_holds_tls_connections() {
    let out = tcpmax(&["bench", "-c", "2k", "--hold", "2s", "--ping-rate", "2k", "--tls", "--json", "-"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = json_of(&out);
    validate("bench", &r);
    assert_eq!((r["held"].as_u64(), r["failed"].as_u64()), (Some(2000), Some(0)), "{:#}", r["first_limit"]);
    assert_eq!(r["tls"], true);
    assert_eq!(r["protocol"], "tcp");
    assert_eq!(r["handshake_latency_us"]["count"], 2000, "one TLS handshake per connection");
    assert!(r["ping_rtt_us"]["count"].as_u64().unwrap() > 0, "encrypted ping frames echoed");
}

/// The PEM `serve --tls self-signed` writes for clients.
fn cert_of(serve: &Serve) -> String {
    std::env::temp_dir().join(format!("tcpmax-{}-cert.pem", serve.pid())).display().to_string()
}

#[test]
fn load_tls_against_serve_tls_with_its_ca() {
    let serve = Serve::start(&["--tls", "self-signed", "--mode", "ws"]);
    let (addr, ca) = (serve.addr.to_string(), cert_of(&serve));
    let out = tcpmax(&[
        "load",
        &addr,
        "-c",
        "200",
        "--hold",
        "1s",
        "--ping-rate",
        "400",
        "--tls",
        "--ca",
        &ca,
        "--sni",
        "localhost",
        "--ws",
        "/",
        "--json",
        "-",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = json_of(&out);
    validate("load", &r);
    assert_eq!((r["held_at_end"].as_u64(), r["tls"].as_bool()), (Some(200), Some(true)));
    assert_eq!(r["close_handshakes"], 200, "wss closes cleanly");
    assert!(r["pongs"].as_u64().unwrap() > 0);

    // Without its CA, the certificate is refused and named.
    let out = tcpmax(&["load", &addr, "-c", "20", "--hold", "0s", "--tls", "--sni", "localhost", "--json", "-"]);
    let r = json_of(&out);
    assert_eq!(r["failed"], 20);
    let names = error_names(&r);
    assert!(names.len() == 1 && names[0].starts_with("TLS_CERT_"), "{names:?}");
    assert!(r["errors"][0]["meaning"].as_str().unwrap().contains("wrong certificate"));
}

#[test]
fn load_tls_against_a_plain_server_says_it_does_not_speak_tls() {
    let serve = Serve::start(&["--mode", "echo"]);
    let out =
        tcpmax(&["load", &serve.addr.to_string(), "-c", "20", "--hold", "0s", "--tls", "--insecure", "--json", "-"]);
    let r = json_of(&out);
    assert_eq!(r["failed"], 20);
    assert_eq!(error_names(&r), vec!["TLS_NOT_TLS"]);
}
