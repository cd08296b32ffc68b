//! The seeds made by code: real flights of the protocol machines and of
//! rustls, real serialized histograms. The report seeds are trimmed real
//! reports, committed as they are.

use std::path::PathBuf;

use hdrhistogram::serialization::{Serializer as _, V2DeflateSerializer, V2Serializer};
use tcpmax::engine::frame::{self, Ping};
use tcpmax::engine::samples::new_hist;
use tcpmax::proto::tls::Session;
use tcpmax::proto::{mqtt, ws};

use super::WS_KEY;

/// Writes `files` into `tests/__fuzz__/<target>/corpus/` (replacing files
/// of the same name, leaving others).
fn put(target: &str, files: &[(&str, Vec<u8>)]) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/__fuzz__").join(target).join("corpus");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::new();
    ws::encode(opcode, payload, mask, &mut out);
    out
}

fn upgrade(headers: &[(&str, &str)]) -> Vec<u8> {
    let cfg = ws::ClientConfig {
        path: "/chat?room=1".into(),
        host: "127.0.0.1:9000".into(),
        headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
    };
    let mut out = Vec::new();
    cfg.request(&WS_KEY, &mut out);
    out
}

fn accept() -> Vec<u8> {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD.encode(WS_KEY);
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        ws::accept_key(key.as_bytes())
    )
    .into_bytes()
}

fn mqtt_connect(id: &str) -> Vec<u8> {
    let mut out = Vec::new();
    mqtt::connect(id, 60, &mut out);
    out
}

fn mqtt_subscribe(topic: &str) -> Vec<u8> {
    let mut out = Vec::new();
    mqtt::subscribe(topic, &mut out);
    out
}

/// PUBLISH of `payload` on `topic` at `qos` (packet id 7 when qos > 0).
fn mqtt_publish(topic: &str, qos: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    body.extend_from_slice(topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&7u16.to_be_bytes());
    }
    body.extend_from_slice(payload);
    let mut out = vec![0x30 | qos << 1];
    mqtt::write_len(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

fn ws_seeds() {
    let m = Some([0x12, 0x34, 0x56, 0x78]);
    let req = upgrade(&[]);
    let frames = cat(&[
        &frame(0x9, &42u64.to_le_bytes(), m),
        &frame(0x1, b"hello", m),
        &frame(0x2, &[0u8; 300], m),
        &frame(0xA, b"", m),
        &frame(0x8, &1000u16.to_be_bytes(), m),
    ]);
    put("ws_server", &[("upgrade", req.clone()), ("upgrade_then_frames", cat(&[&req, &frames]))]);
    put(
        "ws_server_open",
        &[
            ("frames", frames.clone()),
            ("ping", frame(0x9, &7u64.to_le_bytes(), m)),
            ("unmasked", frame(0x1, b"a server never gets this", None)),
        ],
    );
    put(
        "ws_upgrade",
        &[
            ("upgrade", req),
            ("upgrade_headers", upgrade(&[("Origin", "http://x"), ("Sec-WebSocket-Protocol", "chat, mqtt")])),
            ("version_8", String::from_utf8(upgrade(&[])).unwrap().replace("Version: 13", "Version: 8").into_bytes()),
            ("plain_get", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ],
    );
    let server_frames = cat(&[&frame(0x9, b"are you there", None), &frame(0xA, &9u64.to_le_bytes(), None)]);
    put(
        "ws_client",
        &[
            ("accept", accept()),
            ("accept_then_frames", cat(&[&accept(), &server_frames, &frame(0x8, &1000u16.to_be_bytes(), None)])),
            ("forbidden", b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_vec()),
            ("frames", server_frames),
        ],
    );
}

fn mqtt_seeds() {
    let connect = mqtt_connect("tcpmax-0001");
    let session = cat(&[
        &connect,
        &mqtt_subscribe("sensors/#"),
        &mqtt::PINGREQ_BYTES,
        &mqtt_publish("sensors/1", 0, b"21.5"),
        &mqtt_publish("sensors/2", 1, b"22"),
        &mqtt_publish("sensors/3", 2, b"23"),
        &[0x62, 2, 0, 7],             // PUBREL
        &[0xA2, 5, 0, 9, 0, 1, b'x'], // UNSUBSCRIBE
        &mqtt::DISCONNECT_BYTES,
    ]);
    let mut old = vec![0x10, 14, 0, 6];
    old.extend_from_slice(b"MQIsdp");
    old.extend_from_slice(&[3, 2, 0, 60, 0, 2, b'i', b'd']);
    put("mqtt_server", &[("connect", connect), ("session", session), ("mqisdp", old)]);
    let connack = [0x20, 2, 0, 0];
    put(
        "mqtt_client",
        &[
            ("connack", connack.to_vec()),
            ("connack_suback", cat(&[&connack, &[0x90, 3, 0, 1, 0]])),
            (
                "open",
                cat(&[
                    &connack,
                    &[0xD0, 0],
                    &mqtt_publish("t/1", 0, b"x"),
                    &mqtt_publish("t/2", 1, b"y"),
                    &[0x62, 2, 0, 7],
                ]),
            ),
            ("refused", vec![0x20, 2, 0, 3]),
        ],
    );
}

fn tls_seeds() {
    let pki = super::tls::pki();
    let (mut plain, mut hello) = (Vec::new(), Vec::new());
    let mut c = Session::client(&pki.client).unwrap();
    c.feed(&mut [], &mut plain, &mut hello).unwrap();
    let mut s = Session::server(&pki.server).unwrap();
    let mut flight = Vec::new();
    s.feed(&mut hello.clone(), &mut plain, &mut flight).unwrap();
    let alpn = tcpmax::proto::tls::client_setup(
        tcpmax::proto::tls::Trust::Insecure,
        "example.com",
        &["h2".into(), "mqtt".into()],
        true,
    )
    .unwrap();
    let mut hello2 = Vec::new();
    Session::client(&alpn).unwrap().feed(&mut [], &mut plain, &mut hello2).unwrap();
    put("tls_server", &[("client_hello", hello), ("client_hello_alpn", hello2)]);
    put("tls_client", &[("server_flight", flight)]);
    put(
        "tls_records",
        &[
            ("data_then_close", cat(&[&[0], b"hello", &[0xA5, 1]])),
            ("damaged", cat(&[&[0], b"first", &[0xA5, 2, 3], b"second"])),
            ("raw_header", vec![23, 3, 3, 0x40, 0x11, 0, 0, 0]),
        ],
    );
    let pings: Vec<u8> = (0..4).flat_map(|i| frame::encode(Ping { seq: i, sent_ns: u64::from(i) << 40 })).collect();
    put("ping_frames", &[("pings", pings.clone()), ("garbage_then_pings", cat(&[b"GET / HTTP/1.1\r\n", &pings]))]);
}

fn hist_seeds() {
    let mut h = new_hist();
    let mut x = 0x2545F4914F6CDD1Du64;
    for _ in 0..5_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        h.saturating_record(1 + x % 200_000);
    }
    let (mut v2, mut deflate, mut empty) = (Vec::new(), Vec::new(), Vec::new());
    V2Serializer::new().serialize(&h, &mut v2).unwrap();
    V2DeflateSerializer::new().serialize(&h, &mut deflate).unwrap();
    V2Serializer::new().serialize(&new_hist(), &mut empty).unwrap();
    put("histogram", &[("v2", v2), ("v2_deflate", deflate), ("v2_empty", empty)]);
}

fn text_seeds() {
    let units: &[&str] = &[
        "10k",
        "1.5M",
        "1_000_000",
        "30s",
        "1h 30m",
        "500ms",
        "64KiB",
        "2GiB",
        "85%",
        "1%",
        "50%,70%,80%",
        "32768-60999",
        "2030-01-02T03:04:05Z",
        "PING\\r\\n\\x00",
        "Origin: http://x",
        "cert.pem,key.pem",
    ];
    let files: Vec<(String, Vec<u8>)> =
        units.iter().enumerate().map(|(i, u)| (format!("{i:02}"), u.as_bytes().to_vec())).collect();
    let files: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    put("units", &files);
    put(
        "metrics_request",
        &[
            (
                "prometheus",
                b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9100\r\nUser-Agent: Prometheus/2.53.0\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n".to_vec(),
            ),
            ("curl", b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n".to_vec()),
            ("post", b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello".to_vec()),
        ],
    );
    put(
        "agent_port_input",
        &[("empty", Vec::new()), ("agent_send", b"hello\n".to_vec()), ("binary", vec![0, 0xff, b'\r', b'\n'])],
    );
}

fn status_seeds() {
    put(
        "status_lines",
        &[
            ("serve", b"[   12s] conns 12,003 | accepted 1,200/s | closed 4 | refused 1 max-conns, 2 memory | backpressured 0 | mem 51.2 MiB / 64.0 MiB budget (80%) | agent drain | errors: none\n[    1s] conns 0 | accepted 0/s | closed 0 | refused 0 max-conns, 0 memory | backpressured 0 | mem 500.0 KiB / 2.0 GiB budget (0%) | agent up 55% (descriptors 60%) | errors: none\n".to_vec()),
            ("load", b"[ 3s] established 1,000 / 2,000 | 1,000/s | connecting 0 | failed 0 | closed by server 0 | errors: none\n".to_vec()),
            ("haproxy_stat", b"# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act\ntcpmax,FRONTEND,,,8300,8400,9964,9000,0,0,0,0,0,,,,,OPEN,,\nbackends,b1,0,0,2000,2100,,3000,0,0,,0,,0,0,0,0,DRAIN,0,1\nbackends,b2,0,0,6300,6300,,6400,0,0,,0,,0,0,0,0,UP,55,1\n".to_vec()),
            ("proc_net_tcp", b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:9C40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0\n   1: 4D00007F:9C41 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1\n".to_vec()),
            ("netstat", b"TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 17 23\n".to_vec()),
        ],
    );
}

/// Writes every seed made by code.
pub fn write_all() {
    ws_seeds();
    mqtt_seeds();
    tls_seeds();
    hist_seeds();
    text_seeds();
    status_seeds();
}
