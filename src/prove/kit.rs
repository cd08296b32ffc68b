//! Small tools the experiments share: a socket that closes itself, a bounded
//! connect, a listener that accepts and holds in a thread, and what
//! /proc/net/tcp says about ports in use.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::procfs::ProcFs;
use crate::sys::net::{self, Kind};
use crate::sys::wait::{self, READABLE, WRITABLE};
use crate::sys::{errno_name, errno_of};

/// How long any single connect may take on loopback before it counts as
/// failed (ETIMEDOUT).
pub const CONNECT_LIMIT: Duration = Duration::from_secs(3);

/// A TCP socket that resets and closes itself when dropped: no TIME_WAIT
/// and no descriptor is ever left behind, even when an experiment fails
/// midway.
#[derive(Debug)]
pub struct Sock(RawFd);

impl Sock {
    /// A new non-blocking IPv4 TCP socket.
    pub fn tcp() -> io::Result<Sock> {
        net::socket(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), Kind::Tcp).map(Sock)
    }

    /// The descriptor.
    pub fn fd(&self) -> RawFd {
        self.0
    }
}

impl Drop for Sock {
    fn drop(&mut self) {
        let _ = net::set_linger_zero(self.0);
        net::close(self.0);
    }
}

/// Connects and waits (at most [`CONNECT_LIMIT`]) for the handshake.
pub fn connect_wait(fd: RawFd, to: &SocketAddr) -> io::Result<()> {
    if net::connect(fd, to)? {
        return Ok(());
    }
    if !wait::poll_one(fd, WRITABLE, CONNECT_LIMIT)? {
        return Err(io::Error::from_raw_os_error(libc::ETIMEDOUT));
    }
    match net::take_error(fd)? {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// An errno's name for the evidence.
pub fn errno(e: &io::Error) -> &'static str {
    errno_name(errno_of(e))
}

/// A loopback listener whose thread accepts and holds every connection until
/// dropped, then resets them all. Bounded: the thread also stops by itself
/// after [`Sink::LIFETIME`].
#[derive(Debug)]
pub struct Sink {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    /// The longest a sink lives.
    pub const LIFETIME: Duration = Duration::from_secs(120);

    /// Listens on `ip`, a free port, with `backlog`.
    pub fn start(ip: Ipv4Addr, backlog: i32) -> io::Result<Sink> {
        let listener = net::std_listener(&SocketAddr::from((ip, 0)), backlog)?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (s, a) = (stop.clone(), accepted.clone());
        let thread = std::thread::Builder::new().name("prove-sink".into()).spawn(move || {
            let deadline = Instant::now() + Sink::LIFETIME;
            let mut held: Vec<TcpStream> = Vec::new();
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((c, _)) => {
                        held.push(c);
                        a.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        let _ = wait::poll_one(listener.as_raw_fd(), READABLE, Duration::from_millis(20));
                    }
                    // EMFILE and the like: wait instead of spinning.
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            for c in &held {
                let _ = net::set_linger_zero(c.as_raw_fd());
            }
        })?;
        Ok(Sink { addr, stop, accepted, thread: Some(thread) })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One row of /proc/net/tcp or /proc/net/tcp6: local and remote address
/// (IPv4 only; `None` for IPv6) and port, and the TCP state number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Local IPv4 address.
    pub local_ip: Option<Ipv4Addr>,
    /// Local port.
    pub local_port: u16,
    /// Remote IPv4 address.
    pub remote_ip: Option<Ipv4Addr>,
    /// Remote port.
    pub remote_port: u16,
    /// TCP state (1 ESTABLISHED, 10 LISTEN, ...).
    pub state: u8,
}

/// TCP state number of ESTABLISHED in /proc/net/tcp.
pub const ESTABLISHED: u8 = 0x01;
/// TCP state number of LISTEN in /proc/net/tcp.
pub const LISTEN: u8 = 0x0A;

fn parse_addr(field: &str) -> Option<(Option<Ipv4Addr>, u16)> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    // The kernel prints the address's four bytes as one native-endian word.
    let ip =
        (ip.len() == 8).then(|| u32::from_str_radix(ip, 16).ok()).flatten().map(|v| Ipv4Addr::from(v.to_ne_bytes()));
    Some((ip, port))
}

/// Parses the text of /proc/net/tcp or tcp6; malformed lines are skipped.
pub fn parse_rows(text: &str) -> Vec<Row> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut f = line.split_whitespace().skip(1);
            let (local_ip, local_port) = parse_addr(f.next()?)?;
            let (remote_ip, remote_port) = parse_addr(f.next()?)?;
            let state = u8::from_str_radix(f.next()?, 16).ok()?;
            Some(Row { local_ip, local_port, remote_ip, remote_port, state })
        })
        .collect()
}

/// Every TCP socket of this network namespace, IPv4 and IPv6.
pub fn tcp_rows(fs: &ProcFs) -> Vec<Row> {
    let mut rows = Vec::new();
    for rel in ["proc/net/tcp", "proc/net/tcp6"] {
        if let Ok(text) = fs.read(rel) {
            rows.extend(parse_rows(&text));
        }
    }
    rows
}

/// Local ports inside `lo..=hi` held by sockets that existed before an
/// experiment: by any socket, and by listening ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PortUse {
    /// Distinct local ports in the range used by any socket.
    pub any: u64,
    /// Distinct local ports in the range used by a listening socket.
    pub listening: u64,
}

/// Counts the distinct local ports of `rows` inside `lo..=hi`.
pub fn ports_in_use(rows: &[Row], lo: u16, hi: u16) -> PortUse {
    let inside = |r: &&Row| (lo..=hi).contains(&r.local_port);
    let any: BTreeSet<u16> = rows.iter().filter(inside).map(|r| r.local_port).collect();
    let listening: BTreeSet<u16> =
        rows.iter().filter(inside).filter(|r| r.state == LISTEN).map(|r| r.local_port).collect();
    PortUse { any: any.len() as u64, listening: listening.len() as u64 }
}

/// A window of local ports for one experiment and what already uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Window {
    /// First port.
    pub lo: u16,
    /// Last port.
    pub hi: u16,
    /// Ports in `net.ipv4.ip_local_reserved_ports` inside the window.
    pub reserved: u64,
    /// Ports already in use inside the window.
    pub in_use: PortUse,
}

impl Window {
    /// Ports in the window.
    pub fn size(&self) -> u64 {
        u64::from(self.hi - self.lo) + 1
    }

    /// The fewest connects the kernel can allow: ports in use by anyone are
    /// taken away.
    pub fn expected_min(&self) -> u64 {
        self.size().saturating_sub(self.reserved + self.in_use.any)
    }

    /// The most connects the kernel can allow: only listening ports are
    /// surely taken away (a port another connection uses may still be free
    /// for a new destination).
    pub fn expected_max(&self) -> u64 {
        self.size().saturating_sub(self.reserved + self.in_use.listening)
    }
}

/// Picks a window of `size` ports inside the system range `lo..=hi`, the
/// first one starting at a multiple of 1,000 with no port in use or
/// reserved, else the least used one.
pub fn pick_window(range: (u16, u16), size: u16, rows: &[Row], reserved: &[(u64, u64)]) -> Window {
    let (lo, hi) = range;
    let size = size.min(hi - lo + 1).max(1);
    let first = lo.div_ceil(1000).saturating_mul(1000);
    let starts = (first..=hi.saturating_sub(size - 1)).step_by(size as usize).chain([lo]);
    let window = |a: u16| {
        let b = a + (size - 1);
        let free = crate::doctor::usable_ports(u64::from(a), u64::from(b), reserved);
        Window { lo: a, hi: b, reserved: u64::from(size) - free, in_use: ports_in_use(rows, a, b) }
    };
    let mut best: Option<Window> = None;
    for a in starts {
        if u32::from(a) + u32::from(size) - 1 > u32::from(hi) {
            continue;
        }
        let w = window(a);
        if w.reserved + w.in_use.any == 0 {
            return w;
        }
        if best.is_none_or(|b| w.reserved + w.in_use.any < b.reserved + b.in_use.any) {
            best = Some(w);
        }
    }
    best.unwrap_or_else(|| window(lo))
}

/// The system's ephemeral range, `net.ipv4.ip_local_port_range`.
pub fn system_range(fs: &ProcFs) -> Option<(u16, u16)> {
    let v = fs.sysctl_values("net.ipv4.ip_local_port_range").ok()?;
    let (lo, hi) = (u16::try_from(*v.first()?).ok()?, u16::try_from(*v.get(1)?).ok()?);
    (lo <= hi).then_some((lo, hi))
}

/// The reserved ports, `net.ipv4.ip_local_reserved_ports`, as ranges.
pub fn reserved_ports(fs: &ProcFs) -> Vec<(u64, u64)> {
    fs.read(&ProcFs::sysctl_rel("net.ipv4.ip_local_reserved_ports"))
        .ok()
        .and_then(|t| crate::doctor::probe::parse_port_list(&t).ok())
        .unwrap_or_default()
}

/// An IPv4 socket address as `ip:port`.
pub fn v4(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ip), port)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:9C40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 4D00007F:9C41 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
   2: 4D00007F:9C41 0100007F:1F91 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:ABCD 0100007F:9C40 06 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1
garbage
";

    #[test]
    fn parses_proc_net_tcp() {
        let rows = parse_rows(TCP);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].local_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!((rows[0].local_port, rows[0].state), (40_000, LISTEN));
        assert_eq!(rows[1].local_ip, Some(Ipv4Addr::new(127, 0, 0, 77)));
        assert_eq!((rows[1].remote_port, rows[1].state), (8080, ESTABLISHED));
        let six = "header\n   0: 00000000000000000000000001000000:9C42 00000000000000000000000000000000:0000 0A 0\n";
        let rows6 = parse_rows(six);
        assert_eq!((rows6[0].local_ip, rows6[0].local_port), (None, 40_002));
    }

    #[test]
    fn counts_distinct_ports_in_a_range() {
        let rows = parse_rows(TCP);
        // 40000 (listening) and 40001 (two connections); 43981 is outside.
        assert_eq!(ports_in_use(&rows, 40_000, 40_999), PortUse { any: 2, listening: 1 });
        assert_eq!(ports_in_use(&rows, 40_001, 40_001), PortUse { any: 1, listening: 0 });
        assert_eq!(ports_in_use(&rows, 41_000, 41_999), PortUse::default());
    }

    #[test]
    fn picks_a_clean_window() {
        let rows = parse_rows(TCP);
        let w = pick_window((32_768, 60_999), 1000, &rows, &[]);
        assert_eq!((w.lo, w.hi, w.size()), (33_000, 33_999, 1000));
        // 33,000-33,999 reserved and 34,000 busy: the next clean one.
        let busy = [Row { local_ip: None, local_port: 34_000, remote_ip: None, remote_port: 0, state: LISTEN }];
        let w = pick_window((32_768, 60_999), 1000, &busy, &[(33_000, 33_999)]);
        assert_eq!(w.lo, 35_000);
        assert_eq!((w.expected_min(), w.expected_max()), (1000, 1000));
        // Everything used: the least used window, with the bounds shown.
        let w = pick_window((40_000, 40_009), 10, &rows, &[(40_009, 40_009)]);
        assert_eq!((w.lo, w.hi, w.reserved, w.in_use.any, w.in_use.listening), (40_000, 40_009, 1, 2, 1));
        assert_eq!((w.expected_min(), w.expected_max()), (7, 8));
    }
}
