//! What names a connection: the four-tuple, and the protocol beside it.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use serde_json::json;

use super::Ctx;
use super::kit::{self, LISTEN, Sink, Sock, connect_wait, errno};
use super::report::Outcome;
use crate::serve::{Mode, Server, ServerConfig};
use crate::sys::net;

/// One step of the four-tuple experiment: what was tried and what happened.
fn step(to: SocketAddr, bind: &Step, connect: &Step) -> serde_json::Value {
    let show = |r: &Step| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => e.clone(),
    };
    json!({ "to": to.to_string(), "bind": show(bind), "connect": show(connect) })
}

/// What a call did: `Ok` or the errno's name.
type Step = Result<(), String>;

/// Binds a fresh SO_REUSEADDR socket to `local` and connects it to `to`.
/// A failed bind leaves the connect "not tried".
fn bound_connect(local: SocketAddr, to: SocketAddr) -> Result<(Sock, Step, Step), String> {
    let s = Sock::tcp().map_err(|e| format!("socket: {e}"))?;
    net::set_reuseaddr(s.fd()).map_err(|e| format!("SO_REUSEADDR: {e}"))?;
    let bind = net::bind(s.fd(), &local).map_err(|e| errno(&e).to_string());
    let connect = match &bind {
        Ok(()) => connect_wait(s.fd(), &to).map_err(|e| errno(&e).to_string()),
        Err(_) => Err("not tried".to_string()),
    };
    Ok((s, bind, connect))
}

/// four-tuple: one local address and port connects to two destinations,
/// but not twice to the same one.
pub fn four_tuple(_ctx: &Ctx) -> Outcome {
    match try_four_tuple() {
        Ok(o) => o,
        Err(e) => Outcome::skipped(format!("set-up failed: {e}")),
    }
}

fn try_four_tuple() -> Result<Outcome, String> {
    let ip = Ipv4Addr::LOCALHOST;
    let a = Sink::start(ip, 16).map_err(|e| format!("listener: {e}"))?;
    let b = Sink::start(ip, 16).map_err(|e| format!("listener: {e}"))?;
    let (da, db) = (a.addr(), b.addr());
    // The first socket picks a free port; the others reuse it.
    let (s1, bind1, conn1) = bound_connect(kit::v4(ip, 0), da)?;
    let local = net::local_addr(s1.fd()).map_err(|e| format!("getsockname: {e}"))?;
    let (_s2, bind2, conn2) = bound_connect(local, db)?;
    let (_s3, bind3, conn3) = bound_connect(local, da)?;
    let first_two = bind1.is_ok() && conn1.is_ok() && bind2.is_ok() && conn2.is_ok();
    let third_failed = bind3.is_err() || conn3.is_err();
    let third = match (&bind3, &conn3) {
        (Err(e), _) => format!("bind {e}"),
        (Ok(()), Err(e)) => e.clone(),
        (Ok(()), Ok(())) => "connected".into(),
    };
    let ok = |r: &Step| if r.is_ok() { "ok".to_string() } else { "failed".into() };
    let summary = format!(
        "{local} -> :{} {}, -> :{} {}, -> :{} again: {third}",
        da.port(),
        ok(&conn1),
        db.port(),
        ok(&conn2),
        da.port()
    );
    let evidence = json!({
        "local": local.to_string(),
        "first": step(da, &bind1, &conn1),
        "second": step(db, &bind2, &conn2),
        "third": step(da, &bind3, &conn3),
    });
    Ok(Outcome::decide(first_two && third_failed, evidence, summary))
}

/// udp-shares-port: a TCP listener and a UDP socket on one IP and port at
/// once, both answering.
pub fn udp_shares_port(ctx: &Ctx) -> Outcome {
    match try_udp(ctx) {
        Ok(o) => o,
        Err(e) => Outcome::skipped(format!("set-up failed: {e}")),
    }
}

fn try_udp(ctx: &Ctx) -> Result<Outcome, String> {
    // One shard: a single thread serves the TCP listener and the UDP socket.
    let mut server = Server::start(&ServerConfig {
        listen: vec![kit::v4(Ipv4Addr::LOCALHOST, 0)],
        mode: Mode::Echo,
        udp: true,
        max_conns: None,
        max_memory: None,
        shards: 1,
        elastic: false,
        backlog: 16,
    })
    .map_err(|e| e.to_string())?;
    let addr = server.local_addrs()[0];
    let limit = Duration::from_secs(3);

    let tcp = (|| -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect_timeout(&addr, limit)?;
        // Reset on drop: the experiment leaves no TIME_WAIT behind.
        net::set_linger_zero(s.as_raw_fd())?;
        s.set_read_timeout(Some(limit))?;
        s.write_all(b"tcp")?;
        let mut buf = [0u8; 3];
        s.read_exact(&mut buf)?;
        Ok(buf.to_vec())
    })();
    let udp = (|| -> std::io::Result<Vec<u8>> {
        let s = UdpSocket::bind(kit::v4(Ipv4Addr::LOCALHOST, 0))?;
        s.set_read_timeout(Some(limit))?;
        let mut buf = [0u8; 16];
        // A datagram may be lost; try a few times.
        let mut last = std::io::Error::from_raw_os_error(libc::ETIMEDOUT);
        for _ in 0..3 {
            s.send_to(b"udp", addr)?;
            match s.recv_from(&mut buf) {
                Ok((n, _)) => return Ok(buf[..n].to_vec()),
                Err(e) => last = e,
            }
        }
        Err(last)
    })();
    // Both sockets, as the kernel lists them, while they serve.
    let port = addr.port();
    let tcp_listed = kit::tcp_rows(&ctx.fs).iter().any(|r| r.local_port == port && r.state == LISTEN);
    let udp_listed = ["proc/net/udp", "proc/net/udp6"]
        .iter()
        .filter_map(|rel| ctx.fs.read(rel).ok())
        .any(|t| kit::parse_rows(&t).iter().any(|r| r.local_port == port));
    let served = server.poll_wait(Duration::from_millis(300));
    drop(server);

    let show = |r: &std::io::Result<Vec<u8>>| match r {
        Ok(b) => String::from_utf8_lossy(b).into_owned(),
        Err(e) => errno(e).to_string(),
    };
    let tcp_ok = tcp.as_ref().is_ok_and(|b| b == b"tcp");
    let udp_ok = udp.as_ref().is_ok_and(|b| b == b"udp");
    let summary = format!(
        "{addr}: TCP echo {:?}, UDP reply {:?}, both listed in /proc/net: {}",
        show(&tcp),
        show(&udp),
        tcp_listed && udp_listed
    );
    let evidence = json!({
        "address": addr.to_string(),
        "tcp_reply": show(&tcp),
        "udp_reply": show(&udp),
        "tcp_listed": tcp_listed,
        "udp_listed": udp_listed,
        "server_udp_datagrams": served.udp_datagrams,
        "server_tcp_accepted": served.opened,
    });
    Ok(Outcome::decide(tcp_ok && udp_ok && tcp_listed && udp_listed, evidence, summary))
}
