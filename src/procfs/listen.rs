//! The listening sockets of this network namespace as `/proc/net/tcp` and
//! `/proc/net/tcp6` show them: for a server on this machine, how many
//! established connections wait in its accept queue (the `rx_queue` column
//! of a LISTEN socket is the queue's length) and how many connections are
//! half open (SYN_RECV: the handshake's last ACK not taken in).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::ProcFs;

/// The most lines of one file taken in (a million sockets, both tables).
const MAX_LINES: usize = 4_194_304;

const LISTEN: u8 = 0x0A;
const SYN_RECV: u8 = 0x03;

/// The listener of one address, read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Listener {
    /// Established connections waiting to be accepted, summed over the
    /// LISTEN sockets of the address (several with SO_REUSEPORT).
    pub waiting: u64,
    /// LISTEN sockets found.
    pub sockets: u64,
    /// Connections in SYN_RECV on the address: the server's side of the
    /// handshake is not done (its last ACK dropped by a full queue).
    pub half_open: u64,
}

/// One line of `/proc/net/tcp{,6}`: local address, state, rx_queue.
fn line(l: &str) -> Option<(SocketAddr, u8, u64)> {
    let mut cols = l.split_whitespace();
    let _slot = cols.next()?;
    let local = cols.next()?;
    let _remote = cols.next()?;
    let state = u8::from_str_radix(cols.next()?, 16).ok()?;
    let (_tx, rx) = cols.next()?.split_once(':')?;
    let rx = u64::from_str_radix(rx, 16).ok()?;
    let (ip, port) = local.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(u32::from_str_radix(ip, 16).ok()?.swap_bytes())),
        32 => {
            // Four 32-bit words, each in host (little-endian) order.
            let mut b = [0u8; 16];
            for (i, chunk) in b.chunks_mut(4).enumerate() {
                let w = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&w.swap_bytes().to_be_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some((SocketAddr::new(ip, port), state, rx))
}

/// True when a socket bound to `local` takes connections to `target`: the
/// same port, and the same address or the wildcard of either family.
fn serves(local: SocketAddr, target: SocketAddr) -> bool {
    local.port() == target.port() && (local.ip() == target.ip() || local.ip().is_unspecified())
}

/// The listener of `target` in the text of `/proc/net/tcp` or `tcp6`
/// (`text`), added to `into`.
pub fn scan(text: &str, target: SocketAddr, into: &mut Listener) {
    for l in text.lines().skip(1).take(MAX_LINES) {
        let Some((local, state, rx)) = line(l) else { continue };
        match state {
            LISTEN if serves(local, target) => {
                into.waiting = into.waiting.saturating_add(rx);
                into.sockets += 1;
            }
            SYN_RECV if local == target => into.half_open += 1,
            _ => {}
        }
    }
}

/// The listener of `target` on this machine, None when no LISTEN socket of
/// this namespace takes its connections (a remote server) or the tables
/// could not be read.
pub fn read(fs: &ProcFs, target: SocketAddr) -> Option<Listener> {
    let mut l = Listener::default();
    for file in ["proc/net/tcp", "proc/net/tcp6"] {
        if let Ok(text) = fs.read(file) {
            scan(&text, target, &mut l);
        }
    }
    (l.sockets > 0).then_some(l)
}

/// True when `ip` is an address of this machine: loopback, or one a socket
/// can bind to here.
pub fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:8159 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0        0 4457380 4 0 100 0 0 10 0\n\
   1: 00000000:0050 00000000:0000 0A 00000000:00000011 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n\
   2: 0100007F:8159 0200007F:C000 03 00000000:00000000 02:00000000 00000000     0        0 0 1 0 100 0 0 10 0\n\
   3: 0100007F:8159 0200007F:C001 01 00000000:00000000 00:00000000 00000000     0        0 5 1 0 100 0 0 10 0\n";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue\n\
   0: 00000000000000000000000001000000:8159 00000000000000000000000000000000:0000 0A 00000000:00000002 00:00000000 00000000\n\
   1: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000001 00:00000000 00000000\n";

    #[test]
    fn the_accept_queue_of_a_listener_is_its_rx_queue() {
        let t: SocketAddr = "127.0.0.1:33113".parse().unwrap();
        let mut l = Listener::default();
        scan(TCP, t, &mut l);
        assert_eq!(l, Listener { waiting: 3, sockets: 1, half_open: 1 });
        // The wildcard takes port 80 of every address, v4 and v6.
        let w: SocketAddr = "127.0.0.5:80".parse().unwrap();
        let mut l = Listener::default();
        scan(TCP, w, &mut l);
        scan(TCP6, w, &mut l);
        assert_eq!((l.waiting, l.sockets), (0x11 + 1, 2));
        let six: SocketAddr = "[::1]:33113".parse().unwrap();
        let mut l = Listener::default();
        scan(TCP6, six, &mut l);
        assert_eq!((l.waiting, l.sockets), (2, 1));
        // Garbage lines are skipped, not trusted.
        let mut l = Listener::default();
        scan("h\n0: zz:1 0 0A x:y\n1: 0100007F:8159\n", t, &mut l);
        assert_eq!(l, Listener::default());
    }

    #[test]
    fn a_port_nobody_listens_on_is_none() {
        let none: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(read(&ProcFs::new("/nonexistent-root"), none), None);
        assert!(is_local("127.0.0.9".parse().unwrap()));
        assert!(!is_local("192.0.2.1".parse().unwrap()));
    }
}
