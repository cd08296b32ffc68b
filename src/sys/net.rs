//! Sockets: creation (always `SOCK_NONBLOCK | SOCK_CLOEXEC`), options, and the
//! hot-path calls of the event loop (accept4, read, write, close).

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use super::syscall;

/// `IP_LOCAL_PORT_RANGE` (Linux 6.3+), not yet in every libc release.
const IP_LOCAL_PORT_RANGE: libc::c_int = 51;

/// Socket kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SOCK_STREAM, TCP.
    Tcp,
    /// SOCK_DGRAM, UDP.
    Udp,
}

/// Creates a non-blocking, close-on-exec socket for `addr`'s family.
pub fn socket(addr: &SocketAddr, kind: Kind) -> io::Result<RawFd> {
    let domain = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    let ty = match kind {
        Kind::Tcp => libc::SOCK_STREAM,
        Kind::Udp => libc::SOCK_DGRAM,
    } | libc::SOCK_NONBLOCK
        | libc::SOCK_CLOEXEC;
    syscall!(socket(domain, ty, 0))
}

/// [`socket`], owned: closed when dropped.
pub fn socket_owned(addr: &SocketAddr, kind: Kind) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let fd = socket(addr, kind)?;
    // SAFETY: socket() just returned this descriptor and nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Closes a descriptor, ignoring errors (Linux frees it even on EINTR).
pub fn close(fd: RawFd) {
    let _ = syscall!(close(fd));
}

fn setsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and its exact size is passed.
    syscall!(setsockopt(
        fd,
        level,
        name,
        (&value as *const libc::c_int).cast(),
        mem::size_of::<libc::c_int>() as libc::socklen_t
    ))?;
    Ok(())
}

fn getsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live and `len` holds the buffer's size.
    syscall!(getsockopt(fd, level, name, (&mut value as *mut libc::c_int).cast(), &mut len))?;
    Ok(value)
}

/// `SO_REUSEADDR`.
pub fn set_reuseaddr(fd: RawFd) -> io::Result<()> {
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)
}

/// `SO_REUSEPORT`: every shard binds its own listener on the same address.
pub fn set_reuseport(fd: RawFd) -> io::Result<()> {
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)
}

/// `IP_BIND_ADDRESS_NO_PORT`: bind(ip, 0) picks no port until connect, so
/// one local port can serve many destinations.
pub fn set_bind_address_no_port(fd: RawFd) -> io::Result<()> {
    setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1)
}

/// `IP_LOCAL_PORT_RANGE` (Linux 6.3+): narrows the ephemeral range for this
/// socket. Returns the error on kernels without it (ENOPROTOOPT).
pub fn set_local_port_range(fd: RawFd, lo: u16, hi: u16) -> io::Result<()> {
    let packed = ((hi as u32) << 16 | lo as u32) as libc::c_int;
    setsockopt_int(fd, libc::IPPROTO_IP, IP_LOCAL_PORT_RANGE, packed)
}

/// `SO_LINGER {on, 0}`: close() then sends RST and leaves no TIME_WAIT.
pub fn set_linger_zero(fd: RawFd) -> io::Result<()> {
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: `l` is a live linger struct and its exact size is passed.
    syscall!(setsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_LINGER,
        (&l as *const libc::linger).cast(),
        mem::size_of::<libc::linger>() as libc::socklen_t
    ))?;
    Ok(())
}

/// One classic BPF instruction: (code, jump-if-true, jump-if-false, k).
pub type BpfInsn = (u16, u8, u8, u32);

/// `SO_ATTACH_REUSEPORT_CBPF`: the program picks, for each new connection,
/// the index of the listener in the `SO_REUSEPORT` group (an index out of
/// range falls back to the kernel's hash). Attached through any listener of
/// the group, it applies to the whole group.
pub fn attach_reuseport_cbpf(fd: RawFd, program: &[BpfInsn]) -> io::Result<()> {
    let mut insns: Vec<libc::sock_filter> =
        program.iter().map(|&(code, jt, jf, k)| libc::sock_filter { code, jt, jf, k }).collect();
    let len = u16::try_from(insns.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let prog = libc::sock_fprog { len, filter: insns.as_mut_ptr() };
    // SAFETY: `prog` points at `insns`, which lives until the call returns; the
    // kernel copies the program and keeps no pointer to it.
    syscall!(setsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_ATTACH_REUSEPORT_CBPF,
        (&prog as *const libc::sock_fprog).cast(),
        mem::size_of::<libc::sock_fprog>() as libc::socklen_t
    ))?;
    Ok(())
}

/// `TCP_NODELAY`: pings leave at once.
pub fn set_nodelay(fd: RawFd) -> io::Result<()> {
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)
}

/// Reads and clears `SO_ERROR`: 0 once a non-blocking connect succeeded.
pub fn take_error(fd: RawFd) -> io::Result<i32> {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ERROR)
}

/// Reads the descriptor's status flags (`O_NONBLOCK`) and descriptor flags
/// (`FD_CLOEXEC`), for tests that check sockets are created right.
#[cfg(test)]
pub fn fd_flags(fd: RawFd) -> io::Result<(bool, bool)> {
    let fl = syscall!(fcntl(fd, libc::F_GETFL))?;
    let fdfl = syscall!(fcntl(fd, libc::F_GETFD))?;
    Ok((fl & libc::O_NONBLOCK != 0, fdfl & libc::FD_CLOEXEC != 0))
}

/// A socket address in kernel layout.
struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

fn to_raw(addr: &SocketAddr) -> RawAddr {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>().write(sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>().write(sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    RawAddr { storage, len: len as libc::socklen_t }
}

fn from_raw(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// bind(2).
pub fn bind(fd: RawFd, addr: &SocketAddr) -> io::Result<()> {
    let raw = to_raw(addr);
    // SAFETY: `raw.storage` holds a valid sockaddr of length `raw.len`.
    syscall!(bind(fd, (&raw.storage as *const libc::sockaddr_storage).cast(), raw.len))?;
    Ok(())
}

/// Binds a client socket to `ip` with no port (IP_BIND_ADDRESS_NO_PORT).
pub fn bind_ip_no_port(fd: RawFd, ip: IpAddr) -> io::Result<()> {
    set_bind_address_no_port(fd)?;
    bind(fd, &SocketAddr::new(ip, 0))
}

/// listen(2).
pub fn listen(fd: RawFd, backlog: i32) -> io::Result<()> {
    syscall!(listen(fd, backlog))?;
    Ok(())
}

/// Starts a non-blocking connect. `Ok(true)`: connected at once; `Ok(false)`:
/// in progress (wait for writability, then `take_error`).
pub fn connect(fd: RawFd, addr: &SocketAddr) -> io::Result<bool> {
    let raw = to_raw(addr);
    // SAFETY: `raw.storage` holds a valid sockaddr of length `raw.len`.
    match syscall!(connect(fd, (&raw.storage as *const libc::sockaddr_storage).cast(), raw.len)) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(false),
        Err(e) => Err(e),
    }
}

/// accept4 with `SOCK_NONBLOCK | SOCK_CLOEXEC`; `Ok(None)` on EAGAIN.
pub fn accept(fd: RawFd) -> io::Result<Option<RawFd>> {
    let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: null address pointers ask the kernel not to report the peer.
    match syscall!(accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), flags)) {
        Ok(c) => Ok(Some(c)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// The local address of a socket.
pub fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` is writable for `len` bytes.
    syscall!(getsockname(fd, (&mut storage as *mut libc::sockaddr_storage).cast(), &mut len))?;
    from_raw(&storage).ok_or_else(|| io::Error::from_raw_os_error(libc::EAFNOSUPPORT))
}

/// The outcome of a non-blocking read or write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    /// That many bytes moved (for a read, 0 is end of stream).
    Done(usize),
    /// EAGAIN: nothing to do until the next readiness event.
    WouldBlock,
}

/// read(2) on a non-blocking descriptor.
#[inline]
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<Io> {
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        match syscall!(read(fd, buf.as_mut_ptr().cast(), buf.len())) {
            Ok(n) => return Ok(Io::Done(n as usize)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Io::WouldBlock),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// send(2) with MSG_NOSIGNAL (a vanished peer is EPIPE, not SIGPIPE).
#[inline]
pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<Io> {
    loop {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
        match syscall!(send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL)) {
            Ok(n) => return Ok(Io::Done(n as usize)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Io::WouldBlock),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// recvfrom(2) on a non-blocking UDP socket; `None` on EAGAIN.
pub fn recv_from(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>> {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `buf` is writable for its length and `storage` for `len` bytes.
    let res = syscall!(recvfrom(
        fd,
        buf.as_mut_ptr().cast(),
        buf.len(),
        0,
        (&mut storage as *mut libc::sockaddr_storage).cast(),
        &mut len
    ));
    match res {
        Ok(n) => Ok(from_raw(&storage).map(|a| (n as usize, a))),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// sendto(2) on a UDP socket; `Ok(false)` on EAGAIN (the datagram is dropped,
/// as UDP may).
pub fn send_to(fd: RawFd, buf: &[u8], addr: &SocketAddr) -> io::Result<bool> {
    let raw = to_raw(addr);
    // SAFETY: `buf` is readable for its length; `raw` is a valid sockaddr.
    let res = syscall!(sendto(
        fd,
        buf.as_ptr().cast(),
        buf.len(),
        libc::MSG_NOSIGNAL,
        (&raw.storage as *const libc::sockaddr_storage).cast(),
        raw.len
    ));
    match res {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

/// A blocking `std` listener on `addr` with an explicit backlog (std's own
/// is fixed at 128), for tests and experiments that want plain std sockets.
pub fn std_listener(addr: &SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    use std::os::fd::FromRawFd;
    let fd = socket(addr, Kind::Tcp)?;
    let setup = || -> io::Result<()> {
        set_reuseaddr(fd)?;
        bind(fd, addr)?;
        listen(fd, backlog)
    };
    setup().inspect_err(|_| close(fd))?;
    // SAFETY: `fd` is a listening socket this function just created and owns;
    // the TcpListener takes that ownership and closes it on drop.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    listener.set_nonblocking(false)?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        for a in ["127.0.0.1:9000", "[::1]:443", "0.0.0.0:0"] {
            let addr: SocketAddr = a.parse().expect("literal");
            let raw = to_raw(&addr);
            assert_eq!(from_raw(&raw.storage), Some(addr));
        }
    }

    #[test]
    fn sockets_are_nonblocking_and_cloexec() {
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("literal");
        for kind in [Kind::Tcp, Kind::Udp] {
            let fd = socket(&addr, kind).expect("socket");
            assert_eq!(fd_flags(fd).expect("fcntl"), (true, true));
            close(fd);
        }
    }
}
