use super::*;
use std::time::{Duration, Instant};

use crate::proto::{Held, PARTIAL_DEADLINE, expire, feed, feed_at, split};

fn run<M: Machine>(m: &mut M, state: &mut u8, bytes: &[u8]) -> (Vec<u8>, Vec<Event>, Result<(), Fault>) {
    let (mut partial, mut out, mut ev) = (Vec::new(), Vec::new(), Vec::new());
    let r = feed(m, state, &mut partial, bytes, &mut out, &mut ev);
    (out, ev, r)
}

#[test]
fn remaining_length_varint_at_the_spec_boundaries() {
    for (n, bytes) in [
        (0usize, vec![0x00]),
        (127, vec![0x7F]),
        (128, vec![0x80, 0x01]),
        (16_383, vec![0xFF, 0x7F]),
        (16_384, vec![0x80, 0x80, 0x01]),
        (2_097_151, vec![0xFF, 0xFF, 0x7F]),
        (2_097_152, vec![0x80, 0x80, 0x80, 0x01]),
        (268_435_455, vec![0xFF, 0xFF, 0xFF, 0x7F]),
    ] {
        let mut out = Vec::new();
        write_len(n, &mut out);
        assert_eq!(out, bytes, "{n}");
        assert_eq!(read_len(&bytes), Ok(Some((n, bytes.len()))));
        assert_eq!(read_len(&bytes[..bytes.len() - 1]), Ok(None), "incomplete");
    }
    assert_eq!(read_len(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01]), Err(Fault::MqttBadPacket), "a fifth byte");
}

#[test]
fn connect_is_the_spec_layout() {
    let mut out = Vec::new();
    connect("tcpmax-7", 60, &mut out);
    let want =
        [0x10, 20, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 8, b't', b'c', b'p', b'm', b'a', b'x', b'-', b'7'];
    assert_eq!(out, want);
    let mut out = Vec::new();
    subscribe("a/b", &mut out);
    assert_eq!(out, [0x82, 8, 0, 1, 0, 3, b'a', b'/', b'b', 0]);
}

#[test]
fn a_session_from_connect_to_disconnect() {
    let (mut c, mut cs) = (Client { subscribe: Some("t/#") }, client_state::CONNECTING);
    let (mut s, mut ss) = (Server, server_state::AWAIT_CONNECT);
    let mut wire = Vec::new();
    connect("id-1", 30, &mut wire);
    let (connack, ev, r) = run(&mut s, &mut ss, &wire);
    assert_eq!((connack.as_slice(), ev, r), (&[0x20, 2, 0, 0][..], vec![Event::Ready], Ok(())));
    let (sub, ev, r) = run(&mut c, &mut cs, &connack);
    assert_eq!((ev, r, cs), (vec![], Ok(()), client_state::SUBSCRIBING));
    let (suback, _, r) = run(&mut s, &mut ss, &sub);
    assert_eq!((suback.as_slice(), r), (&[0x90, 3, 0, 1, 0][..], Ok(())));
    let (_, ev, r) = run(&mut c, &mut cs, &suback);
    assert_eq!((ev, r, cs), (vec![Event::Ready], Ok(()), client_state::OPEN));

    let (pingresp, _, _) = run(&mut s, &mut ss, &PINGREQ_BYTES);
    assert_eq!(pingresp, [0xD0, 0]);
    let (_, ev, _) = run(&mut c, &mut cs, &pingresp);
    assert_eq!(ev, vec![Event::Pong(None)]);

    // A QoS 1 message on the subscription is acknowledged.
    let publish = [0x32, 7, 0, 3, b't', b'/', b'x', 0, 9];
    let (puback, ev, r) = run(&mut c, &mut cs, &publish);
    assert_eq!((puback.as_slice(), ev, r), (&[0x40, 2, 0, 9][..], vec![], Ok(())));

    let (out, ev, r) = run(&mut s, &mut ss, &DISCONNECT_BYTES);
    assert_eq!((out, ev, r, ss), (vec![], vec![Event::PeerClose], Ok(()), server_state::CLOSED));
}

#[test]
fn refusals_and_other_protocols_are_named() {
    for code in 1..=5u8 {
        let mut cs = client_state::CONNECTING;
        let r = run(&mut Client { subscribe: None }, &mut cs, &[0x20, 2, 0, code]).2;
        assert_eq!(r, Err(Fault::MqttRefused(code)));
    }
    assert_eq!(Fault::MqttRefused(3).name(), "MQTT_REFUSED_SERVER_UNAVAILABLE");
    let mut cs = client_state::CONNECTING;
    let r = run(&mut Client { subscribe: None }, &mut cs, b"HTTP/1.1 400 Bad Request\r\n").2;
    assert_eq!(r, Err(Fault::MqttNotMqtt), "an HTTP server");
    let mut cs = client_state::CONNECTING;
    let r = run(&mut Client { subscribe: None }, &mut cs, &[0x10]).2;
    assert_eq!(r, Err(Fault::MqttNotMqtt), "an echo server, from its first byte");
    let mut cs = client_state::SUBSCRIBING;
    let r = run(&mut Client { subscribe: Some("x") }, &mut cs, &[0x90, 3, 0, 1, 0x80]).2;
    assert_eq!(r, Err(Fault::MqttSubscribeRefused));

    // The server: an old protocol level is refused with return code 1.
    let mut ss = server_state::AWAIT_CONNECT;
    let old = [0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60, 0, 0];
    let (out, _, r) = run(&mut Server, &mut ss, &old);
    assert_eq!((out.as_slice(), r), (&[0x20, 2, 0, 1][..], Err(Fault::MqttRefused(1))));
    let mut ss = server_state::AWAIT_CONNECT;
    assert_eq!(run(&mut Server, &mut ss, b"GET / HTTP/1.1\r\n").2, Err(Fault::MqttNotMqtt));
    let mut ss = server_state::AWAIT_CONNECT;
    assert_eq!(run(&mut Server, &mut ss, &PINGREQ_BYTES).2, Err(Fault::MqttNotMqtt), "PINGREQ before CONNECT");
    let mut ss = server_state::OPEN;
    assert_eq!(run(&mut Server, &mut ss, &[0xC1, 0]).2, Err(Fault::MqttBadPacket), "bad flags");
    let mut ss = server_state::OPEN;
    let mut big = vec![0x30];
    write_len(MAX_PACKET, &mut big);
    assert_eq!(run(&mut Server, &mut ss, &big).2, Err(Fault::MqttTooLarge), "refused from the header");
}

#[test]
fn any_split_gives_the_same_events() {
    let mut wire = vec![0x20, 2, 0, 0];
    for _ in 0..3 {
        wire.extend_from_slice(&[0xD0, 0]);
    }
    wire.extend_from_slice(&[0x30, 5, 0, 1, b't', b'h', b'i']);
    let mut next = crate::testing::xorshift(99);
    for _ in 0..300 {
        let (mut c, mut st, mut partial, mut out, mut ev) =
            (Client { subscribe: None }, client_state::CONNECTING, Vec::new(), Vec::new(), Vec::new());
        let mut off = 0;
        while off < wire.len() {
            let end = (off + 1 + (next() % 5) as usize).min(wire.len());
            feed(&mut c, &mut st, &mut partial, &wire[off..end], &mut out, &mut ev).unwrap();
            off = end;
        }
        assert_eq!(ev, vec![Event::Ready, Event::Pong(None), Event::Pong(None), Event::Pong(None)]);
        assert!(partial.is_empty() && partial.capacity() == 0, "no buffer at rest");
    }
}

#[test]
fn fuzz_random_bytes() {
    let mut next = crate::testing::xorshift(0x5EED_0000_4242);
    for round in 0..3000 {
        let n = (next() % 200) as usize;
        let mut bytes: Vec<u8> = (0..n).map(|_| next() as u8).collect();
        if round % 2 == 0 && n > 1 {
            bytes[0] = (((next() % 15) as u8) << 4) | ((next() % 4) as u8 * 2);
            bytes[1] = (next() % 100) as u8;
        }
        let side = next() % 2;
        let mut st = (next() % 3) as u8;
        let (mut partial, mut out, mut ev) = (Vec::new(), Vec::new(), Vec::new());
        let mut off = 0;
        while off < n {
            let end = (off + 1 + (next() % 16) as usize).min(n);
            let r = if side == 0 {
                feed(&mut Client { subscribe: Some("t") }, &mut st, &mut partial, &bytes[off..end], &mut out, &mut ev)
            } else {
                feed(&mut Server, &mut st, &mut partial, &bytes[off..end], &mut out, &mut ev)
            };
            if r.is_err() {
                break;
            }
            assert!(partial.len() <= MAX_PACKET);
            off = end;
        }
    }
}

/// A CONNECT with these connect flags and payload fields, as sent.
fn connect_with(flags: u8, fields: &[&[u8]]) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, flags, 0, 60];
    for f in fields {
        put_str(f, &mut body);
    }
    let mut p = vec![CONNECT << 4];
    write_len(body.len(), &mut p);
    p.extend_from_slice(&body);
    p
}

fn server_fed(state: u8, bytes: &[u8]) -> split::Verdict {
    split::same_for_every_cut(|| (Server, state), bytes, 0..=bytes.len())
}

/// #17: CONNECT flags without their fields and an empty client id without
/// clean session were accepted; mosquitto refuses them, as the spec says.
#[test]
fn connect_is_checked_as_the_spec_says() {
    let accepted = [
        connect_with(0x02, &[b"id"]),
        connect_with(0x02, &[b""]), // an empty id with clean session
        connect_with(0x02 | 0x04 | 0x08, &[b"id", b"will/t", b"bye"]),
        connect_with(0x02 | 0x80 | 0x40, &[b"id", b"user", b"pw"]),
        connect_with(0x02 | 0x80, &[b"id", b"user"]),
    ];
    for p in accepted {
        let (r, out, ev, st) = server_fed(server_state::AWAIT_CONNECT, &p);
        assert_eq!((r, out, ev, st), (Ok(()), vec![0x20, 2, 0, 0], vec![Event::Ready], server_state::OPEN), "{p:02x?}");
    }
    let malformed = [
        connect_with(0x02 | 0x04, &[b"id"]),            // will flag, no will topic or message
        connect_with(0x02 | 0x04, &[b"id", b"will/t"]), // will flag, no will message
        connect_with(0x02 | 0x80, &[b"id"]),            // username flag, no username
        connect_with(0x02 | 0xC0, &[b"id", b"user"]),   // password flag, no password
        connect_with(0x02 | 0x40, &[b"id", b"pw"]),     // password without username
        connect_with(0x02 | 0x08, &[b"id"]),            // will QoS without will
        connect_with(0x02 | 0x20, &[b"id"]),            // will retain without will
        connect_with(0x02 | 0x04 | 0x18, &[b"id", b"t", b"m"]), // will QoS 3
        connect_with(0x02, &[b"id", b"extra"]),         // bytes no flag announced
        connect_with(0x02, &[&[0xC3, 0x28]]),           // a client id that is not UTF-8
        connect_with(0x02, &[b"a\0b"]),                 // U+0000
    ];
    for p in malformed {
        let (r, out, _, _) = server_fed(server_state::AWAIT_CONNECT, &p);
        assert_eq!((r, out), (Err(Fault::MqttBadPacket), vec![]), "{p:02x?}: closed, no CONNACK");
    }
    let (r, out, _, _) = server_fed(server_state::AWAIT_CONNECT, &connect_with(0, &[b""]));
    assert_eq!((r, out), (Err(Fault::MqttRefused(2)), vec![0x20, 2, 0, 2]), "identifier rejected");
}

fn subscribe_with(filters: &[(&[u8], u8)]) -> Vec<u8> {
    let mut body = vec![0, 7];
    for (f, qos) in filters {
        put_str(f, &mut body);
        body.push(*qos);
    }
    let mut p = vec![SUBSCRIBE << 4 | 2];
    write_len(body.len(), &mut p);
    p.extend_from_slice(&body);
    p
}

/// #17: SUBSCRIBE with QoS 3 or a topic that is not UTF-8 was granted.
#[test]
fn subscribe_and_publish_topics_are_checked() {
    let (r, out, _, _) = server_fed(server_state::OPEN, &subscribe_with(&[(b"a/+/c", 2), (b"#", 0), (b"+/x/#", 1)]));
    assert_eq!((r, out), (Ok(()), vec![0x90, 5, 0, 7, 0, 0, 0]));
    for bad in [
        subscribe_with(&[(b"a", 3)]),
        subscribe_with(&[(b"a", 0x40)]),
        subscribe_with(&[(&[b'a', 0xFF], 0)]),
        subscribe_with(&[(b"", 0)]),
        subscribe_with(&[(b"a/#/b", 0)]),
        subscribe_with(&[(b"a#", 0)]),
        subscribe_with(&[(b"a+/b", 0)]),
        subscribe_with(&[]),
    ] {
        let (r, out, _, _) = server_fed(server_state::OPEN, &bad);
        assert_eq!((r, out), (Err(Fault::MqttBadPacket), vec![]), "{bad:02x?}");
    }
    let publish = |topic: &[u8]| {
        let mut p = vec![PUBLISH << 4];
        write_len(2 + topic.len() + 1, &mut p);
        put_str(topic, &mut p);
        p.push(b'x');
        p
    };
    assert_eq!(server_fed(server_state::OPEN, &publish(b"a/b")).0, Ok(()));
    for bad in [&b"a/+"[..], b"#", b"", &[0xC0, 0x80]] {
        assert_eq!(server_fed(server_state::OPEN, &publish(bad)).0, Err(Fault::MqttBadPacket), "{bad:02x?}");
    }
}

/// #17: the packet cap is decided from the fixed header, the same for
/// every split.
#[test]
fn the_packet_cap_is_the_same_for_every_split() {
    for (len, ok) in [(MAX_PACKET - 1, true), (MAX_PACKET, true), (MAX_PACKET + 1, false)] {
        // PUBLISH QoS 0: fixed header 1 + 3 bytes, topic "t", payload.
        let body = 2 + 1 + (len - 4 - 3);
        let mut p = vec![PUBLISH << 4];
        write_len(body, &mut p);
        put_str(b"t", &mut p);
        p.resize(len, b'x');
        // Every cut of the refused packet; of the accepted ones every cut in
        // the fixed header and around the ends, one in 89 between.
        let cuts = (0..=p.len()).filter(|c| !ok || *c < 32 || p.len() - c < 32 || c % 89 == 0);
        let (r, _, _, _) = split::same_for_every_cut(|| (Server, server_state::OPEN), &p, cuts);
        assert_eq!(r, if ok { Ok(()) } else { Err(Fault::MqttTooLarge) }, "{len}");
    }
}

/// #17: a packet left half-sent is held only until its deadline.
#[test]
fn a_stalled_packet_times_out() {
    let p = connect_with(0x02, &[b"id"]);
    let t0 = Instant::now();
    let (mut st, mut held, mut out, mut ev) = (server_state::AWAIT_CONNECT, Held::default(), Vec::new(), Vec::new());
    feed_at(&mut Server, &mut st, &mut held, &p[..5], t0, &mut out, &mut ev).unwrap();
    assert_eq!(expire(&Server, st, &held, t0 + Duration::from_millis(4999), &mut out), None);
    assert_eq!(expire(&Server, st, &held, t0 + PARTIAL_DEADLINE, &mut out), Some(Fault::PartialTimeout));
    assert!(out.is_empty(), "MQTT 3.1.1 has no word for it: the connection closes");
    feed_at(&mut Server, &mut st, &mut held, &p[5..], t0 + Duration::from_secs(1), &mut out, &mut ev).unwrap();
    assert_eq!((held.since, st), (None, server_state::OPEN), "complete: nothing held, no deadline");
}
