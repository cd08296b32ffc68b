use super::*;
use std::time::{Duration, Instant};

use crate::proto::{Held, PARTIAL_DEADLINE, expire, feed, feed_at, refuse, split};

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

/// An upgrade request of exactly `len` bytes (padded by a header).
fn request_of(len: usize, eol: &str) -> Vec<u8> {
    let head = format!(
        "GET / HTTP/1.1{eol}Host: x{eol}Upgrade: websocket{eol}Connection: Upgrade{eol}Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg=={eol}Sec-WebSocket-Version: 13{eol}X-Pad: "
    );
    let pad = len - head.len() - 2 * eol.len();
    format!("{head}{}{eol}{eol}", "a".repeat(pad)).into_bytes()
}

fn upgraded_server() -> (Server, u8) {
    (Server, server_state::OPEN)
}

/// A masked client frame.
fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    encode_part(fin, opcode, payload, Some([0x11, 0x22, 0x33, 0x44]), &mut f);
    f
}

fn close_code(out: &[u8]) -> Option<u16> {
    let h = head(out).ok()??;
    (h.opcode == CLOSE && h.len >= 2).then(|| u16::from_be_bytes([out[h.at], out[h.at + 1]]))
}

/// #17: the header cap is the block's own length: a 9 KB request in one
/// read was upgraded, the same in two reads refused.
#[test]
fn the_header_cap_is_the_same_for_every_split() {
    let upgrade = || (Server, server_state::UPGRADE);
    for (len, ok) in [(MAX_HEADER - 1, true), (MAX_HEADER, true), (MAX_HEADER + 1, false), (9000, false)] {
        let req = request_of(len, "\r\n");
        assert_eq!(req.len(), len);
        let (r, out, _, _) = split::same_for_every_cut(upgrade, &req, 0..=req.len());
        if ok {
            assert_eq!(r, Ok(()), "{len}");
            assert!(out.starts_with(b"HTTP/1.1 101"), "{len}");
        } else {
            assert_eq!(r, Err(Fault::WsHeaderTooLarge), "{len}");
            assert!(out.starts_with(b"HTTP/1.1 431"), "{len}: answered, then closed");
        }
    }
}

/// #17: frames of 65,523 to 65,536 bytes passed or failed depending on
/// how they arrived: the cap is the whole frame's length, from its header.
#[test]
fn the_frame_cap_is_the_same_for_every_split() {
    // A masked frame with a 16-bit length has 8 header bytes.
    for (payload, ok) in [(MAX_FRAME - 8, true), (MAX_FRAME - 7, false), (MAX_FRAME - 6, false), (0xFFFF, false)] {
        let frame = masked(true, BINARY, &vec![0x5A; payload]);
        assert_eq!(frame.len(), payload + 8);
        // Every cut of a refused frame (refused from its header: cheap);
        // of the accepted one, each echoed whole, every cut in the header
        // and around the ends and one in 97 between.
        let cuts = (0..=frame.len()).filter(|c| !ok || *c < 32 || frame.len() - c < 32 || c % 97 == 0);
        let (r, out, _, st) = split::same_for_every_cut(upgraded_server, &frame, cuts);
        if ok {
            assert_eq!((r, st), (Ok(()), server_state::OPEN), "{payload}");
            assert_eq!(out.len(), payload + 4, "echoed unmasked");
        } else {
            assert_eq!(r, Err(Fault::WsFrameTooLarge), "{payload}");
            assert_eq!(close_code(&out), Some(MESSAGE_TOO_BIG), "{payload}: closed with 1009");
        }
    }
}

/// #17: a request with LF-only line ends was held forever; httparse reads
/// it, so it is answered at once, and a partial one times out with 408.
#[test]
fn an_lf_only_request_is_answered_and_a_stalled_one_times_out() {
    let req = request_of(300, "\n");
    let (r, out, ev, st) = split::same_for_every_cut(|| (Server, server_state::UPGRADE), &req, 0..=req.len());
    assert_eq!((r, ev, st), (Ok(()), vec![Event::Ready], server_state::OPEN));
    assert!(out.starts_with(b"HTTP/1.1 101"));

    let t0 = Instant::now();
    let (mut st, mut held, mut out, mut ev) = (server_state::UPGRADE, Held::default(), Vec::new(), Vec::new());
    feed_at(&mut Server, &mut st, &mut held, &req[..100], t0, &mut out, &mut ev).unwrap();
    assert_eq!(held.deadline(), Some(t0 + PARTIAL_DEADLINE), "from the first byte");
    let later = t0 + PARTIAL_DEADLINE - Duration::from_millis(1);
    feed_at(&mut Server, &mut st, &mut held, &req[100..200], later, &mut out, &mut ev).unwrap();
    assert_eq!(held.deadline(), Some(t0 + PARTIAL_DEADLINE), "more of the same block: the same deadline");
    assert_eq!(expire(&Server, st, &held, later, &mut out), None);
    let due = t0 + PARTIAL_DEADLINE;
    assert_eq!(expire(&Server, st, &held, due, &mut out), Some(Fault::PartialTimeout));
    assert!(out.starts_with(b"HTTP/1.1 408"));
    // Bytes arriving after the deadline do not save it.
    let (mut out, mut ev) = (Vec::new(), Vec::new());
    let r = feed_at(&mut Server, &mut st, &mut held, &req[200..], due, &mut out, &mut ev);
    assert_eq!(r, Err(Fault::PartialTimeout));
}

/// A frame left half-sent times out with close 1008; a completed frame
/// followed by a new partial one starts a new deadline.
#[test]
fn a_stalled_frame_times_out_with_a_close() {
    let frame = masked(true, BINARY, &[7; 300]);
    let t0 = Instant::now();
    let (mut st, mut held, mut out, mut ev) = (server_state::OPEN, Held::default(), Vec::new(), Vec::new());
    feed_at(&mut Server, &mut st, &mut held, &frame[..200], t0, &mut out, &mut ev).unwrap();
    let t1 = t0 + Duration::from_secs(3);
    let next = [&frame[200..], &frame[..10]].concat();
    feed_at(&mut Server, &mut st, &mut held, &next, t1, &mut out, &mut ev).unwrap();
    assert_eq!(held.deadline(), Some(t1 + PARTIAL_DEADLINE), "a new unit, a new deadline");
    assert_eq!(held.bytes.len(), 10);
    let mut last = Vec::new();
    assert_eq!(expire(&Server, st, &held, t1 + PARTIAL_DEADLINE, &mut last), Some(Fault::PartialTimeout));
    assert_eq!(close_code(&last), Some(POLICY_VIOLATION));
    let mut last = Vec::new();
    assert_eq!(refuse(&Server, st, Fault::PartialBudget, &mut last), Fault::PartialBudget);
    assert_eq!(close_code(&last), Some(TRY_AGAIN_LATER));
}

/// #17: invalid UTF-8 in text, also split over fragments, and orphan
/// continuations were echoed; now 1007 and 1002, and nothing echoed.
#[test]
fn text_is_utf8_and_fragments_come_in_order() {
    let e_acute = "é".as_bytes(); // C3 A9
    let euro = "€".as_bytes(); // E2 82 AC
    let cases: Vec<(Vec<Vec<u8>>, Option<u16>)> = vec![
        (vec![masked(true, TEXT, "héllo €".as_bytes())], None),
        (vec![masked(false, TEXT, &[b'a', e_acute[0]]), masked(true, CONT, &[e_acute[1]])], None),
        (
            vec![
                masked(false, TEXT, &euro[..1]),
                masked(false, CONT, &[]),
                masked(true, PING, b"p"),
                masked(false, CONT, &euro[1..2]),
                masked(true, CONT, &euro[2..]),
            ],
            None,
        ),
        (vec![masked(false, BINARY, &[0xFF]), masked(true, CONT, &[0xFE])], None),
        (vec![masked(true, TEXT, &[0xFF])], Some(INVALID_PAYLOAD)),
        (vec![masked(true, TEXT, &[0xED, 0xA0, 0x80])], Some(INVALID_PAYLOAD)), // a surrogate
        (vec![masked(false, TEXT, &[e_acute[0]]), masked(true, CONT, b"A")], Some(INVALID_PAYLOAD)),
        (vec![masked(true, TEXT, &euro[..2])], Some(INVALID_PAYLOAD)), // cut at the end
        (vec![masked(false, TEXT, &euro[..2]), masked(true, CONT, &[])], Some(INVALID_PAYLOAD)),
        (vec![masked(true, CONT, b"orphan")], Some(PROTOCOL_ERROR)),
        (vec![masked(false, TEXT, b"a"), masked(true, TEXT, b"b")], Some(PROTOCOL_ERROR)),
        (vec![masked(false, BINARY, b"a"), masked(true, BINARY, b"b")], Some(PROTOCOL_ERROR)),
    ];
    for (i, (frames, want)) in cases.into_iter().enumerate() {
        let wire = frames.concat();
        let (r, out, _, st) = split::same_for_every_cut(upgraded_server, &wire, 0..=wire.len());
        match want {
            None => assert_eq!((r, st), (Ok(()), server_state::OPEN), "case {i}"),
            Some(code) => {
                assert!(r.is_err(), "case {i}");
                // What came before the bad frame is echoed; the bad frame
                // is not, the close follows.
                let last = frames.last().map(Vec::len).unwrap_or(0);
                let good = split::fed(Server, server_state::OPEN, &wire[..wire.len() - last], 0);
                assert_eq!(&out[..good.1.len()], &good.1[..], "case {i}");
                assert_eq!(close_code(&out[good.1.len()..]), Some(code), "case {i}");
            }
        }
    }
}

/// #17: a 1-byte close payload and codes RFC 6455 does not let a peer send
/// were echoed; now 1002 (1007 for a reason that is not UTF-8).
#[test]
fn close_codes_are_checked() {
    let close_with = |p: &[u8]| split::fed(Server, server_state::OPEN, &masked(true, CLOSE, p), 0);
    for code in [1000u16, 1001, 1003, 1007, 1011, 1014, 3000, 4999] {
        let (r, out, ev, _) = close_with(&code.to_be_bytes());
        assert_eq!((r, ev), (Ok(()), vec![Event::PeerClose]), "{code}");
        assert_eq!(close_code(&out), Some(code), "{code} echoed");
    }
    let (r, out, _, _) = close_with(&[]);
    assert_eq!((r, out), (Ok(()), vec![0x88, 0]), "an empty close");
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        let (r, out, _, _) = close_with(&code.to_be_bytes());
        assert_eq!(r, Err(Fault::WsBadFrame), "{code}");
        assert_eq!(close_code(&out), Some(PROTOCOL_ERROR), "{code}");
    }
    let (r, out, _, _) = close_with(&[0x03]);
    assert_eq!((r, close_code(&out)), (Err(Fault::WsBadFrame), Some(PROTOCOL_ERROR)), "1-byte payload");
    let (r, out, _, _) = close_with(&[0x03, 0xE8, 0xFF]);
    assert_eq!((r, close_code(&out)), (Err(Fault::WsBadUtf8), Some(INVALID_PAYLOAD)), "reason not UTF-8");
}

/// #17: protocol errors closed without a close frame; now 1002 first.
#[test]
fn protocol_errors_send_1002_then_close() {
    for bad in [vec![0x82 | 0x40, 0x80, 1, 2, 3, 4], vec![0x83, 0x80, 1, 2, 3, 4], vec![0x09, 0x80, 1, 2, 3, 4]] {
        let (r, out, _, _) = split::fed(Server, server_state::OPEN, &bad, 0);
        assert_eq!(r, Err(Fault::WsBadFrame), "{bad:02x?}");
        assert_eq!(out, [0x88, 2, 0x03, 0xEA], "{bad:02x?}");
    }
}

#[test]
fn the_utf8_check_agrees_with_std_at_every_cut() {
    let mut next = crate::testing::xorshift(0xD00D);
    let samples: Vec<Vec<u8>> = (0..3000)
        .map(|i| {
            if i % 2 == 0 {
                let s: String =
                    (0..(next() % 12)).filter_map(|_| char::from_u32((next() % 0x11_0000) as u32)).collect();
                s.into_bytes()
            } else {
                (0..(next() % 12)).map(|_| next() as u8).collect()
            }
        })
        .collect();
    for b in samples {
        let valid = std::str::from_utf8(&b).is_ok();
        for cut in 0..=b.len() {
            let end = utf8_check(0, &b[..cut]).and_then(|s| utf8_check(s, &b[cut..]));
            assert_eq!(end == Some(0), valid, "{b:02x?} cut at {cut}");
        }
    }
}
