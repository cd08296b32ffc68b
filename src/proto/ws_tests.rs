use super::*;
use crate::proto::feed;

const KEY: [u8; 16] = *b"0123456789abcdef";

fn config() -> ClientConfig {
    ClientConfig { path: "/chat".into(), host: "127.0.0.1:9000".into(), headers: vec![("X-A".into(), "1".into())] }
}

fn client() -> Client {
    Client { key: KEY, mask_seed: 7 }
}

/// Feeds `bytes` whole; returns (output, events, result).
fn run<M: Machine>(m: &mut M, state: &mut u8, bytes: &[u8]) -> (Vec<u8>, Vec<Event>, Result<(), Fault>) {
    let (mut partial, mut out, mut ev) = (Vec::new(), Vec::new(), Vec::new());
    let r = feed(m, state, &mut partial, bytes, &mut out, &mut ev);
    (out, ev, r)
}

/// A client and a server, upgraded.
fn upgraded() -> (Client, u8, Server, u8) {
    let (mut c, mut cs, mut s, mut ss) = (client(), client_state::HANDSHAKE, Server, server_state::UPGRADE);
    let mut req = Vec::new();
    config().request(&KEY, &mut req);
    let (answer, ev, r) = run(&mut s, &mut ss, &req);
    assert_eq!((ev, r), (vec![Event::Ready], Ok(())));
    let (out, ev, r) = run(&mut c, &mut cs, &answer);
    assert_eq!((out, ev, r), (vec![], vec![Event::Ready], Ok(())));
    assert_eq!((cs, ss), (client_state::OPEN, server_state::OPEN));
    (c, cs, s, ss)
}

#[test]
fn the_rfc_accept_example() {
    assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[test]
fn the_request_has_the_upgrade_headers() {
    let mut req = Vec::new();
    config().request(&KEY, &mut req);
    let text = String::from_utf8(req).unwrap();
    assert!(text.starts_with("GET /chat HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n"), "{text}");
    assert!(text.contains("Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\n"), "{text}");
    assert!(text.contains("Sec-WebSocket-Version: 13\r\n") && text.contains("X-A: 1\r\n"));
    assert!(!text.contains("Extensions"), "no compression offered");
    assert!(text.ends_with("\r\n\r\n"));
    let mut own_host = config();
    own_host.headers.push(("host".into(), "example".into()));
    let mut req = Vec::new();
    own_host.request(&KEY, &mut req);
    assert!(!String::from_utf8(req).unwrap().contains("127.0.0.1:9000"));
}

#[test]
fn ping_pong_carries_the_token_and_data_is_echoed() {
    let (mut c, mut cs, mut s, mut ss) = upgraded();
    let mut wire = Vec::new();
    ping(0xDEAD_BEEF_0123, [1, 2, 3, 4], &mut wire);
    assert_eq!(wire[1] & 0x80, 0x80, "client frames are masked");
    let (pong, ev, r) = run(&mut s, &mut ss, &wire);
    assert_eq!((ev, r), (vec![], Ok(())));
    assert_eq!(pong[1] & 0x80, 0, "server frames are not");
    let (out, ev, r) = run(&mut c, &mut cs, &pong);
    assert_eq!((out, ev, r), (vec![], vec![Event::Pong(Some(0xDEAD_BEEF_0123))], Ok(())));

    // A fragmented text message comes back frame by frame, unmasked.
    let mut msg = Vec::new();
    encode_part(false, TEXT, b"hel", Some([9, 9, 9, 9]), &mut msg);
    encode_part(true, CONT, b"lo", Some([7, 0, 7, 0]), &mut msg);
    let (echo, _, r) = run(&mut s, &mut ss, &msg);
    assert_eq!(r, Ok(()));
    let mut want = Vec::new();
    encode_part(false, TEXT, b"hel", None, &mut want);
    encode_part(true, CONT, b"lo", None, &mut want);
    assert_eq!(echo, want);
    // A 300-byte binary frame: 16-bit length.
    let big = vec![0x5A; 300];
    let mut msg = Vec::new();
    encode(BINARY, &big, Some([1, 1, 1, 1]), &mut msg);
    let (echo, _, _) = run(&mut s, &mut ss, &msg);
    let mut want = Vec::new();
    encode(BINARY, &big, None, &mut want);
    assert_eq!(echo, want);
    assert_eq!(&echo[..4], &[0x82, 126, 1, 44]);
}

#[test]
fn server_pings_are_answered_masked() {
    let (mut c, mut cs, _, _) = upgraded();
    let mut wire = Vec::new();
    encode(PING, b"abc", None, &mut wire);
    let (pong, ev, r) = run(&mut c, &mut cs, &wire);
    assert_eq!((ev, r), (vec![], Ok(())));
    let h = head(&pong).unwrap().unwrap();
    assert_eq!(h.opcode, PONG);
    assert!(h.mask.is_some());
    assert_eq!(unmask(&pong[h.at..], h.mask).collect::<Vec<_>>(), b"abc");
}

#[test]
fn the_close_handshake_both_ways() {
    // The client closes; the server answers and asks the engine to close.
    let (mut c, _, mut s, mut ss) = upgraded();
    let mut wire = Vec::new();
    close([5, 6, 7, 8], &mut wire);
    let mut cs = client_state::CLOSING;
    let (answer, ev, r) = run(&mut s, &mut ss, &wire);
    assert_eq!((ev, r, ss), (vec![Event::PeerClose], Ok(()), server_state::CLOSED));
    assert_eq!(answer, [0x88, 2, 0x03, 0xE8]);
    let (out, ev, r) = run(&mut c, &mut cs, &answer);
    assert_eq!((out, ev, r, cs), (vec![], vec![Event::Closed], Ok(()), client_state::CLOSED));

    // The server closes; the client answers with the same code.
    let (mut c, mut cs, _, _) = upgraded();
    let mut wire = Vec::new();
    encode(CLOSE, &1001u16.to_be_bytes(), None, &mut wire);
    let (answer, ev, r) = run(&mut c, &mut cs, &wire);
    assert_eq!((ev, r, cs), (vec![Event::PeerClose], Ok(()), client_state::CLOSED));
    let h = head(&answer).unwrap().unwrap();
    assert_eq!(unmask(&answer[h.at..], h.mask).collect::<Vec<_>>(), 1001u16.to_be_bytes());
}

#[test]
fn refusals_name_the_cause() {
    let cases: [(&[u8], Fault); 6] = [
        (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", Fault::WsStatus(403)),
        (b"HTTP/1.1 200 OK\r\n\r\n", Fault::WsStatus(200)),
        (b"SSH-2.0-OpenSSH\r\n", Fault::WsNotHttp),
        (b"GET /", Fault::WsNotHttp), // an echo server sends the request back
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: bogus\r\n\r\n", Fault::WsBadAccept),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", Fault::WsBadAccept),
    ];
    for (answer, fault) in cases {
        let mut st = client_state::HANDSHAKE;
        assert_eq!(run(&mut client(), &mut st, answer).2, Err(fault), "{}", String::from_utf8_lossy(answer));
    }
    let accept = accept_key(B64.encode(KEY).as_bytes());
    let with_ext = format!(
        "HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    );
    let mut st = client_state::HANDSHAKE;
    assert_eq!(run(&mut client(), &mut st, with_ext.as_bytes()).2, Err(Fault::WsExtension));
    // An endless header block is cut at the cap, not buffered.
    let mut st = client_state::HANDSHAKE;
    let long = [b"HTTP/1.1 101 x\r\nX: ".as_slice(), &vec![b'a'; MAX_HEADER]].concat();
    assert_eq!(run(&mut client(), &mut st, &long).2, Err(Fault::WsHeaderTooLarge));
}

#[test]
fn the_server_refuses_what_is_not_an_upgrade() {
    let mut st = server_state::UPGRADE;
    assert_eq!(run(&mut Server, &mut st, &[0x10, 0x0C, 0, 4]).2, Err(Fault::WsBadRequest), "MQTT is not HTTP");
    let mut st = server_state::UPGRADE;
    let (out, _, r) = run(&mut Server, &mut st, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r, Err(Fault::WsBadRequest));
    assert!(out.starts_with(b"HTTP/1.1 400"));
    let mut st = server_state::UPGRADE;
    let req = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\nSec-WebSocket-Version: 8\r\n\r\n";
    let (out, _, r) = run(&mut Server, &mut st, req);
    assert_eq!(r, Err(Fault::WsBadRequest));
    assert!(out.starts_with(b"HTTP/1.1 426"));
}

#[test]
fn bad_frames_are_faults() {
    let server_frame = |bytes: &[u8]| {
        let (mut c, mut cs, _, _) = upgraded();
        run(&mut c, &mut cs, bytes).2
    };
    assert_eq!(server_frame(&[0x81 | 0x40, 0]), Err(Fault::WsBadFrame), "reserved bit");
    assert_eq!(server_frame(&[0x83, 0]), Err(Fault::WsBadFrame), "opcode 3");
    assert_eq!(server_frame(&[0x09, 0]), Err(Fault::WsBadFrame), "fragmented ping");
    assert_eq!(server_frame(&[0x89, 126, 0, 200]), Err(Fault::WsBadFrame), "long ping");
    assert_eq!(server_frame(&[0x82, 0x80, 1, 2, 3, 4]), Err(Fault::WsBadFrame), "masked server frame");
    let mut huge = vec![0x82, 127];
    huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
    assert_eq!(server_frame(&huge), Err(Fault::WsFrameTooLarge), "refused from the header");
    let (_, _, mut s, mut ss) = upgraded();
    let (out, _, r) = run(&mut s, &mut ss, &[0x81, 1, b'x']);
    assert_eq!(r, Err(Fault::WsBadFrame), "unmasked client frame");
    assert_eq!(out, [0x88, 2, 0x03, 0xEA], "closed with 1002");
}

#[test]
fn headers_parse_or_say_why() {
    assert_eq!(parse_header("Origin: http://x"), Ok(("Origin".into(), "http://x".into())));
    assert!(parse_header("no colon").unwrap_err().contains("Name: value"));
    assert!(parse_header("Bad Name: x").unwrap_err().contains("not a header name"));
}

/// The same conversation in every split gives the same events, and no
/// buffer is left once a unit is complete.
#[test]
fn any_split_gives_the_same_events() {
    let mut req = Vec::new();
    config().request(&KEY, &mut req);
    let mut ss = server_state::UPGRADE;
    let (mut answer, _, _) = run(&mut Server, &mut ss, &req);
    for t in 0..3u64 {
        encode(PONG, &t.to_le_bytes(), None, &mut answer);
    }
    encode(TEXT, b"pushed data", None, &mut answer);
    let mut next = crate::testing::xorshift(42);
    for _ in 0..300 {
        let (mut c, mut st, mut partial, mut out, mut ev) =
            (client(), client_state::HANDSHAKE, Vec::new(), Vec::new(), Vec::new());
        let mut off = 0;
        while off < answer.len() {
            let end = (off + 1 + (next() % 50) as usize).min(answer.len());
            feed(&mut c, &mut st, &mut partial, &answer[off..end], &mut out, &mut ev).unwrap();
            off = end;
        }
        assert_eq!(ev, vec![Event::Ready, Event::Pong(Some(0)), Event::Pong(Some(1)), Event::Pong(Some(2))]);
        assert!(partial.is_empty() && partial.capacity() == 0, "no buffer at rest");
    }
}

/// Random bytes in random splits, in every state, on both sides: a fault
/// or progress, never a panic, and never more buffered than the cap.
#[test]
fn fuzz_random_bytes() {
    let mut next = crate::testing::xorshift(0xC0FF_EE00_1234);
    for round in 0..2000 {
        let n = (next() % 300) as usize;
        let mut bytes: Vec<u8> = (0..n).map(|_| next() as u8).collect();
        if round % 3 == 0 && n > 2 {
            bytes[0] = 0x80 | [TEXT, BINARY, PING, PONG, CLOSE][(next() % 5) as usize];
            bytes[1] = (next() % 126) as u8 | if round % 2 == 0 { 0x80 } else { 0 };
        }
        let side = next() % 4;
        let (mut partial, mut out, mut ev) = (Vec::new(), Vec::new(), Vec::new());
        let mut off = 0;
        let (mut c, mut s) = (client(), Server);
        let mut st = (side % 2) as u8;
        while off < n {
            let end = (off + 1 + (next() % 64) as usize).min(n);
            let r = if side < 2 {
                feed(&mut c, &mut st, &mut partial, &bytes[off..end], &mut out, &mut ev)
            } else {
                feed(&mut s, &mut st, &mut partial, &bytes[off..end], &mut out, &mut ev)
            };
            if r.is_err() {
                break;
            }
            assert!(partial.len() <= MAX_HEADER.max(MAX_FRAME));
            off = end;
        }
    }
}
