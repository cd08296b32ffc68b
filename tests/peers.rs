//! TLS, WebSocket and MQTT against independent peers: `load --tls` against
//! `openssl s_server` and nginx, `serve --tls` driven by `openssl s_client`,
//! `load --ws` against the Python `websockets` server and `serve --mode ws`
//! driven by its client, `load --mqtt` against mosquitto. Each test runs
//! when its peer is installed and says why it skips when not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Peer, Serve, free_port, runs, tcpmax, validate};
use serde_json::Value;

/// True, saying the test skips, when openssl is not installed.
fn missing_openssl() -> bool {
    let missing = !runs("openssl", &["version"]);
    if missing {
        common::skip("openssl is not installed (apt-get install openssl)");
    }
    missing
}

/// True, saying the test skips, when Python's websockets package is absent.
fn missing_websockets() -> bool {
    let missing = !runs("python3", &["-c", "import websockets"]);
    if missing {
        common::skip("the Python websockets package is not installed (pip install websockets)");
    }
    missing
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tcpmax-peer-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A self-signed ECDSA P-256 certificate for localhost, made by openssl.
fn openssl_cert(dir: &Path) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        // A leaf, not a CA (req -x509 makes CAs): webpki refuses a CA
        // certificate as the server's own.
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-addext", "keyUsage=digitalSignature"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    (cert.display().to_string(), key.display().to_string())
}

fn load_json(args: &[&str]) -> Value {
    let out = tcpmax(args);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    validate("load", &r);
    r
}

#[test]
fn load_tls_against_openssl_s_server() {
    if missing_openssl() {
        return;
    }
    let dir = temp_dir("s_server");
    let (cert, key) = openssl_cert(&dir);
    let port = free_port();
    let (_peer, addr) = Peer::listening(
        Command::new("openssl")
            .args(["s_server", "-rev", "-quiet", "-tls1_3", "-accept", &format!("127.0.0.1:{port}")])
            .args(["-cert", &cert, "-key", &key])
            .stdin(Stdio::piped()),
        port,
    );
    // s_server serves one connection at a time; -rev sends each line back
    // reversed, so the messages cross the record layer both ways.
    let r = load_json(&[
        "load",
        &addr.to_string(),
        "-c",
        "1",
        "--hold",
        "2s",
        "--tls",
        "--ca",
        &cert,
        "--sni",
        "localhost",
        "--ping-rate",
        "5",
        "--message",
        "tcpmax\\n",
        "--json",
        "-",
    ]);
    assert_eq!(r["held_at_end"], 1, "{:#}", r["errors"]);
    assert_eq!(r["handshake_latency_us"]["count"], 1);
    assert!(r["pongs"].as_u64().unwrap() > 0, "the reversed lines came back and were decrypted");
    assert_eq!(r["errors"], serde_json::json!([]));
}

#[test]
fn serve_tls_driven_by_openssl_s_client() {
    if missing_openssl() {
        return;
    }
    let serve = Serve::start(&["--tls", "self-signed", "--mode", "echo"]);
    let pem = serve.self_signed_pem();
    let mut client = Peer(
        Command::new("openssl")
            .args(["s_client", "-quiet", "-verify_return_error", "-servername", "localhost"])
            .args(["-connect", &serve.addr.to_string()])
            .arg("-CAfile")
            .arg(&pem)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    client.0.stdin.as_mut().unwrap().write_all(b"hello over tls\n").unwrap();
    let lines = common::lines(client.0.stdout.take().unwrap());
    let echoed = lines.recv_timeout(Duration::from_secs(20)).expect("s_client got the echo");
    assert_eq!(echoed, "hello over tls", "verified the certificate, then the echo");
}

#[test]
fn load_tls_against_nginx() {
    if !runs("nginx", &["-v"]) {
        common::skip("nginx is not installed (apt-get install nginx-light)");
        return;
    }
    if missing_openssl() {
        return;
    }
    let dir = temp_dir("nginx");
    let (cert, key) = openssl_cert(&dir);
    let port = free_port();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\nerror_log stderr;\npid {d}/nginx.pid;\nevents {{ worker_connections 1024; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
             keepalive_timeout 3600s;\n client_header_timeout 3600s;\n\
             server {{\n  listen 127.0.0.1:{port} ssl;\n  ssl_certificate {cert};\n  ssl_certificate_key {key};\n\
             ssl_protocols TLSv1.3;\n  location / {{ return 204; }}\n }}\n}}\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let (_peer, addr) = Peer::listening(
        Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(&dir)
            // One process: killing it leaves no worker behind.
            .args(["-g", "daemon off; master_process off;"]),
        port,
    );
    let r = load_json(&[
        "load",
        &addr.to_string(),
        "-c",
        "300",
        "--hold",
        "1s",
        "--tls",
        "--ca",
        &cert,
        "--sni",
        "localhost",
        "--json",
        "-",
    ]);
    assert_eq!(r["held_at_end"], 300, "{:#}", r["errors"]);
    assert_eq!(r["handshake_latency_us"]["count"], 300);
}

const WS_SERVER: &str = r#"
import asyncio, sys, websockets
async def echo(ws):
    async for m in ws:
        await ws.send(m)
async def main():
    async with websockets.serve(echo, "127.0.0.1", int(sys.argv[1]), compression=None):
        await asyncio.Future()
asyncio.run(main())
"#;

#[test]
fn load_ws_against_python_websockets() {
    if missing_websockets() {
        return;
    }
    let port = free_port();
    let (_peer, addr) = Peer::listening(Command::new("python3").args(["-c", WS_SERVER, &port.to_string()]), port);
    let r = load_json(&[
        "load",
        &addr.to_string(),
        "-c",
        "200",
        "--hold",
        "2s",
        "--ping-rate",
        "400",
        "--ws",
        "/",
        "--json",
        "-",
    ]);
    assert_eq!(r["held_at_end"], 200, "{:#}", r["errors"]);
    assert!(r["pongs"].as_u64().unwrap() > 0, "websockets answers pings");
    assert_eq!(r["close_handshakes"], 200, "and the close handshake");
}

const WS_CLIENT: &str = r#"
import asyncio, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1], compression=None) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
        await ws.send(b"\x00\x01binary")
        assert await ws.recv() == b"\x00\x01binary"
        pong = await ws.ping(b"beat")
        await asyncio.wait_for(pong, 5)
    print("ok", flush=True)
asyncio.run(main())
"#;

#[test]
fn serve_ws_driven_by_python_websockets() {
    if missing_websockets() {
        return;
    }
    let serve = Serve::start(&["--mode", "ws"]);
    let mut client = Command::new("python3")
        .args(["-c", WS_CLIENT, &format!("ws://{}/chat", serve.addr)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(client.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let status = client.wait().unwrap();
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(&mut client.stderr.take().unwrap(), &mut err);
    assert!(status.success() && line.trim() == "ok", "{line}{err}");
}

#[test]
fn load_mqtt_against_mosquitto() {
    if !runs("mosquitto", &["-h"]) && !Path::new("/usr/sbin/mosquitto").exists() {
        common::skip("mosquitto is not installed (apt-get install mosquitto)");
        return;
    }
    let dir = temp_dir("mosquitto");
    let port = free_port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_connections 1000\npersistence false\n"),
    )
    .unwrap();
    let bin = if Path::new("/usr/sbin/mosquitto").exists() { "/usr/sbin/mosquitto" } else { "mosquitto" };
    let (_peer, addr) = Peer::listening(Command::new(bin).arg("-c").arg(&conf), port);
    let r = load_json(&[
        "load",
        &addr.to_string(),
        "-c",
        "200",
        "--hold",
        "1s",
        "--ping-rate",
        "400",
        "--mqtt",
        "--subscribe",
        "tcpmax/#",
        "--json",
        "-",
    ]);
    assert_eq!(r["held_at_end"], 200, "{:#}", r["errors"]);
    assert!(r["pongs"].as_u64().unwrap() > 0, "PINGRESP");
    assert_eq!(r["protocol"], "mqtt");
}
