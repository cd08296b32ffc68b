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
    serve.self_signed_pem().display().to_string()
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

/// #17: the self-signed certificate is written to a private directory with
/// a random name (not /tmp/tcpmax-<pid>-cert.pem, where a link planted by
/// another user was followed), mode 0600, and removed when serve exits.
#[test]
fn the_self_signed_pem_is_private_and_removed_at_exit() {
    use std::os::unix::fs::PermissionsExt;
    let mut serve = Serve::start(&["--tls", "self-signed", "--mode", "echo"]);
    let pem = serve.self_signed_pem();
    let dir = pem.parent().unwrap().to_path_buf();
    let old = std::env::temp_dir().join(format!("tcpmax-{}-cert.pem", serve.pid()));
    assert!(!old.exists(), "nothing at the predictable name");
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(&pem).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(std::fs::read_to_string(&pem).unwrap().contains("BEGIN CERTIFICATE"));
    let stopped = serve.stop_within("-INT", common::LIMIT);
    assert!(stopped.status.success() || stopped.status.code() == Some(130), "{:?}", stopped.status);
    assert!(!pem.exists() && !dir.exists(), "removed at exit");
}

/// #17: a key or certificate that is a device or too big is refused at
/// once with one line and exit 2 (/dev/zero allocated 4 GiB, then aborted;
/// /dev/urandom never finished starting).
#[test]
fn a_device_or_huge_file_as_key_is_refused_at_once() {
    let dir = std::env::temp_dir().join(format!("tcpmax-test-pem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (_, _, cert_pem, key_pem) = tcpmax::proto::tls::self_signed().unwrap();
    let (cert, key, huge) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("huge.pem"));
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    std::fs::write(&huge, vec![b'A'; 2 << 20]).unwrap();
    let cert = cert.display().to_string();
    for bad in ["/dev/zero", "/dev/urandom", huge.to_str().unwrap()] {
        let out = tcpmax(&["serve", "--listen", "127.0.0.1:0", "--tls", &format!("{cert},{bad}")]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert_eq!(err.lines().count(), 1, "{bad}: one line: {err}");
        assert!(err.contains(bad), "{bad}: names the file: {err}");
        let out = tcpmax(&["load", "127.0.0.1:9", "-c", "1", "--tls", "--ca", bad]);
        assert_eq!(out.status.code(), Some(2), "--ca {bad}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// #17: KeyUpdate against OpenSSL's client: `K` updates its keys and asks
/// for ours, `k` only updates its own; the echo after each comes back, so
/// the server at rest followed both and answered the first (it used to
/// drop the connection with no alert).
#[test]
fn key_updates_from_openssl_s_client_are_followed() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    if Command::new("openssl").arg("version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "openssl is missing under CI");
        eprintln!("skipped: openssl is not installed");
        return;
    }
    let serve = Serve::start(&["--tls", "self-signed", "--mode", "echo"]);
    let mut client = Command::new("openssl")
        .args(["s_client", "-tls1_3", "-verify_return_error", "-servername", "localhost"])
        .args(["-connect", &serve.addr.to_string(), "-CAfile", &cert_of(&serve)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = common::lines(client.stdout.take().unwrap());
    // s_client says KEYUPDATE on stderr once it sent one.
    let said = common::lines(client.stderr.take().unwrap());
    let mut stdin = client.stdin.take().unwrap();
    let mut echoed = |command: Option<&str>, say: &str| {
        if let Some(c) = command {
            writeln!(stdin, "{c}").unwrap();
            while said.recv_timeout(common::LIMIT).expect("s_client sent the KeyUpdate") != "KEYUPDATE" {}
        }
        writeln!(stdin, "{say}").unwrap();
        loop {
            let line = lines.recv_timeout(common::LIMIT).unwrap_or_else(|_| panic!("no echo of {say}"));
            if line == say {
                return;
            }
        }
    };
    echoed(None, "before");
    for command in ["K", "k", "K"] {
        echoed(Some(command), &format!("after {command}"));
    }
    drop(stdin); // s_client sees the end of its input
    let _ = client.kill();
    let _ = client.wait();
}
