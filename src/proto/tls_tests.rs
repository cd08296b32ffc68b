use super::*;

fn pair(trust_right: bool) -> (Session, Session) {
    let (cert, key, _, _) = self_signed().unwrap();
    let server = server_config(vec![cert.clone()], key, 0).unwrap();
    let trust = if trust_right { Trust::Roots(vec![cert]) } else { Trust::Roots(vec![self_signed().unwrap().0]) };
    let client = client_setup(trust, "localhost", &[], false).unwrap();
    (Session::client(&client).unwrap(), Session::server(&server).unwrap())
}

/// Moves bytes between the two until neither has anything to say; returns
/// (client result, server result) of the last feeds.
fn converse(c: &mut Session, s: &mut Session) -> (Result<Progress, Fault>, Result<Progress, Fault>, Vec<u8>) {
    let (mut c2s, mut s2c, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    let mut rc = c.feed(&mut [], &mut plain, &mut c2s);
    let mut rs = Ok(Progress::default());
    for _ in 0..10 {
        if c2s.is_empty() && s2c.is_empty() {
            break;
        }
        let mut inbound = std::mem::take(&mut c2s);
        rs = s.feed(&mut inbound, &mut plain, &mut s2c);
        if let Ok(p) = rs {
            assert_eq!(p.used, inbound.len(), "whole records in, whole records used");
        }
        let mut inbound = std::mem::take(&mut s2c);
        rc = c.feed(&mut inbound, &mut plain, &mut c2s);
        if rc.is_err() && !c2s.is_empty() {
            let mut alert = std::mem::take(&mut c2s);
            rs = s.feed(&mut alert, &mut plain, &mut s2c);
            break;
        }
    }
    (rc, rs, plain)
}

#[test]
fn a_handshake_then_data_both_ways_then_close() {
    let (mut c, mut s) = pair(true);
    let (rc, rs, _) = converse(&mut c, &mut s);
    assert!(rc.unwrap().ready && rs.unwrap().ready);
    assert!(c.is_compact() && s.is_compact(), "only the keys are kept at rest");
    let mut wire = Vec::new();
    c.send(b"ping!", &mut wire).unwrap();
    let (mut plain, mut out) = (Vec::new(), Vec::new());
    // A record split in two: the first part is not used, the whole is.
    let p = s.feed(&mut wire.clone()[..5], &mut plain, &mut out).unwrap();
    assert_eq!((p.used, plain.len()), (0, 0));
    let p = s.feed(&mut wire, &mut plain, &mut out).unwrap();
    assert_eq!((p.used, plain.as_slice()), (wire.len(), &b"ping!"[..]));
    let mut back = Vec::new();
    s.send(b"pong!", &mut back).unwrap();
    plain.clear();
    c.feed(&mut back, &mut plain, &mut out).unwrap();
    assert_eq!(plain, b"pong!");
    let mut bye = Vec::new();
    c.close(&mut bye);
    assert!(s.feed(&mut bye, &mut plain, &mut out).unwrap().peer_closed);
}

#[test]
fn a_wrong_certificate_is_named_on_both_ends() {
    let (mut c, mut s) = pair(false);
    let (rc, rs, _) = converse(&mut c, &mut s);
    // Two rcgen certificates share their issuer's name: the client finds
    // the "issuer" and its signature does not match.
    let (c, s) = (rc.unwrap_err().name(), rs.unwrap_err().name());
    assert!(c.starts_with("TLS_CERT_"), "{c}");
    assert!(explain(c).unwrap().0.contains("wrong certificate"), "{c}");
    assert!(s.starts_with("TLS_ALERT_"), "the client's alert reached the server: {s}");
}

#[test]
fn a_peer_that_does_not_speak_tls() {
    let (mut c, mut s) = pair(true);
    let (mut plain, mut out) = (Vec::new(), Vec::new());
    c.feed(&mut [], &mut plain, &mut out).unwrap();
    let mut http = b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec();
    assert_eq!(c.feed(&mut http, &mut plain, &mut out).unwrap_err(), Fault::Tls("TLS_NOT_TLS"));
    let mut get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    assert_eq!(s.feed(&mut get, &mut plain, &mut out).unwrap_err(), Fault::Tls("TLS_NOT_TLS"));
}

/// Random bytes never panic either side.
#[test]
fn fuzz_random_records() {
    let mut next = crate::testing::xorshift(0x7150_0000_0001);
    let (cert, key, _, _) = self_signed().unwrap();
    let server = server_config(vec![cert], key, 0).unwrap();
    for round in 0..200 {
        let n = (next() % 300) as usize;
        let mut bytes: Vec<u8> = (0..n).map(|_| next() as u8).collect();
        if round % 2 == 0 && n > 5 {
            bytes[0] = 22;
            bytes[1] = 3;
            bytes[2] = 3;
        }
        let mut s = Session::server(&server).unwrap();
        let (mut plain, mut out) = (Vec::new(), Vec::new());
        let _ = s.feed(&mut bytes, &mut plain, &mut out);
    }
}

#[test]
fn a_session_at_rest_is_its_keys() {
    // Two traffic secrets of up to 48 bytes, two sequence numbers.
    assert_eq!(std::mem::size_of::<Session>(), 128);
}

#[test]
fn a_resuming_client_keeps_the_whole_connection() {
    let (cert, key, _, _) = self_signed().unwrap();
    let server = server_config(vec![cert.clone()], key, 1).unwrap();
    let client = client_setup(Trust::Roots(vec![cert]), "localhost", &[], true).unwrap();
    let (mut c, mut s) = (Session::client(&client).unwrap(), Session::server(&server).unwrap());
    let (rc, _, _) = converse(&mut c, &mut s);
    assert!(rc.unwrap().ready);
    assert!(!c.is_compact() && s.is_compact());
    let mut wire = Vec::new();
    s.send(b"x", &mut wire).unwrap();
    let mut plain = Vec::new();
    c.feed(&mut wire, &mut plain, &mut Vec::new()).unwrap();
    assert_eq!(plain, b"x", "a full client reads what a compact server sends");
}

/// The wire bytes of one failure: the alert, then nothing more, whatever
/// comes after (rustls must never be asked to send a second fatal alert).
#[test]
fn a_failure_sends_one_alert_and_ends_the_session() {
    let (_, mut s) = pair(true);
    let (mut plain, mut out) = (Vec::new(), Vec::new());
    let mut junk = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    assert!(s.feed(&mut junk, &mut plain, &mut out).is_err());
    assert!(is_alert_record(&out), "one plaintext alert: {out:?}");
    assert_eq!(s.feed(&mut Vec::new(), &mut plain, &mut out).unwrap_err(), Fault::Tls("TLS_OTHER"));
    out.clear();
    assert!(s.feed(&mut b"\x16\x03\x03\x00\x01x".to_vec(), &mut plain, &mut out).is_err());
    assert!(out.is_empty(), "no second alert");
}

/// RFC 8446, 6.1: each side answers close_notify with its own, both at
/// rest (keys only) and in rustls' hands (a resuming client).
#[test]
fn close_notify_is_answered() {
    for resume in [false, true] {
        let (cert, key, _, _) = self_signed().unwrap();
        let server = server_config(vec![cert.clone()], key, 1).unwrap();
        let client = client_setup(Trust::Roots(vec![cert]), "localhost", &[], resume).unwrap();
        let (mut c, mut s) = (Session::client(&client).unwrap(), Session::server(&server).unwrap());
        let (rc, rs, _) = converse(&mut c, &mut s);
        assert!(rc.unwrap().ready && rs.unwrap().ready);
        let (mut bye, mut plain, mut answer) = (Vec::new(), Vec::new(), Vec::new());
        s.close(&mut bye);
        let p = c.feed(&mut bye, &mut plain, &mut answer).unwrap();
        assert!(p.peer_closed, "resume {resume}");
        assert!(!answer.is_empty(), "the client answers (resume {resume})");
        let p = s.feed(&mut answer, &mut plain, &mut Vec::new());
        assert!(p.unwrap().peer_closed, "the server reads the answer as close_notify (resume {resume})");
        let mut more = Vec::new();
        c.close(&mut more);
        assert!(more.is_empty(), "one close_notify, not two");
    }
}

/// A KeyUpdate (RFC 8446, 4.6.3) from a peer that asks for one back: the
/// side at rest follows it, answers with its own, and data flows both ways
/// under the new keys (it used to end the connection, with no alert).
#[test]
fn a_key_update_is_followed_and_answered_at_rest() {
    let (cert, key, _, _) = self_signed().unwrap();
    let server = server_config(vec![cert.clone()], key, 1).unwrap();
    let client = client_setup(Trust::Roots(vec![cert]), "localhost", &[], true).unwrap();
    let (mut c, mut s) = (Session::client(&client).unwrap(), Session::server(&server).unwrap());
    let (rc, rs, _) = converse(&mut c, &mut s);
    assert!(rc.unwrap().ready && rs.unwrap().ready && s.is_compact());
    for round in 0..3 {
        // The client (rustls whole) updates its keys and asks for the server's.
        let Session::Full(f) = &mut c else { panic!("the resuming client is whole") };
        let Conn::Client(conn) = &mut f.conn else { panic!() };
        let Ok(ConnectionState::WriteTraffic(w)) = conn.process_tls_records(&mut []).state else { panic!() };
        w.refresh_traffic_keys().unwrap();
        let mut wire = Vec::new();
        c.send(b"after the update", &mut wire).unwrap();
        let (mut plain, mut answer) = (Vec::new(), Vec::new());
        let p = s.feed(&mut wire, &mut plain, &mut answer).unwrap();
        assert_eq!((p.used, plain.as_slice()), (wire.len(), &b"after the update"[..]), "round {round}");
        assert!(!answer.is_empty(), "the server's own KeyUpdate (round {round})");
        s.send(b"back", &mut answer).unwrap();
        plain.clear();
        let p = c.feed(&mut answer, &mut plain, &mut Vec::new()).unwrap();
        assert_eq!((p.used, plain.as_slice()), (answer.len(), &b"back"[..]), "round {round}");
    }
}

/// Nonsense where a post-handshake message belongs is refused with an
/// alert, not taken for a KeyUpdate.
#[test]
fn a_bad_post_handshake_message_is_refused_with_an_alert() {
    let (mut c, mut s) = pair(true);
    let (rc, rs, _) = converse(&mut c, &mut s);
    assert!(rc.unwrap().ready && rs.unwrap().ready);
    let Session::Compact(k) = &mut c else { panic!("at rest") };
    let mut wire = Vec::new();
    k.seal_for_tests(22, &[24, 0, 0, 1, 7], &mut wire);
    let (mut plain, mut out) = (Vec::new(), Vec::new());
    assert_eq!(s.feed(&mut wire, &mut plain, &mut out).unwrap_err(), Fault::Tls("TLS_PEER_MISBEHAVED"));
    assert!(!out.is_empty(), "an alert");
}
