//! epoll(7), edge-triggered, and eventfd(2) to wake a loop from outside.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::syscall;

/// Interest and readiness bits, re-exported so callers need no `libc`.
pub const IN: u32 = libc::EPOLLIN as u32;
/// Writable.
pub const OUT: u32 = libc::EPOLLOUT as u32;
/// Peer closed its write side.
pub const RDHUP: u32 = libc::EPOLLRDHUP as u32;
/// Error condition (always reported).
pub const ERR: u32 = libc::EPOLLERR as u32;
/// Hang-up (always reported).
pub const HUP: u32 = libc::EPOLLHUP as u32;
/// Edge-triggered.
pub const ET: u32 = libc::EPOLLET as u32;

/// One readiness event: the registered token and the ready bits.
pub type Event = libc::epoll_event;

/// A zeroed event buffer slot.
pub fn empty_event() -> Event {
    libc::epoll_event { events: 0, u64: 0 }
}

/// The token of an event.
#[inline]
pub fn token(ev: &Event) -> u64 {
    ev.u64
}

/// The ready bits of an event.
#[inline]
pub fn flags(ev: &Event) -> u32 {
    ev.events
}

/// An epoll instance; closed on drop.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// `epoll_create1(EPOLL_CLOEXEC)`.
    pub fn new() -> io::Result<Epoll> {
        let fd = syscall!(epoll_create1(libc::EPOLL_CLOEXEC))?;
        // SAFETY: epoll_create1 just returned this descriptor; nothing else owns it.
        Ok(Epoll { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Registers `fd` with `interest`, tagged with `token`.
    pub fn add(&self, fd: RawFd, interest: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, interest, token)
    }

    /// Changes the interest of a registered `fd`.
    pub fn modify(&self, fd: RawFd, interest: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, interest, token)
    }

    /// Removes `fd` (closing it also removes it).
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    fn ctl(&self, op: i32, fd: RawFd, interest: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: interest, u64: token };
        // SAFETY: `ev` is a valid epoll_event on our stack for the duration of the call.
        syscall!(epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev))?;
        Ok(())
    }

    /// Waits up to `timeout_ms` (-1 forever) and returns how many slots of
    /// `events` were filled. EINTR counts as zero events.
    pub fn wait(&self, events: &mut [Event], timeout_ms: i32) -> io::Result<usize> {
        let max = events.len().min(i32::MAX as usize) as i32;
        // SAFETY: `events` is a valid, writable buffer of `max` epoll_event slots.
        match syscall!(epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), max, timeout_ms)) {
            Ok(n) => Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// The raw descriptor (to keep it across a table unshare).
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// An eventfd used as a doorbell; closed on drop.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// `eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)`.
    pub fn new() -> io::Result<EventFd> {
        let fd = syscall!(eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC))?;
        // SAFETY: eventfd just returned this descriptor; nothing else owns it.
        Ok(EventFd { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Rings the bell (adds one).
    pub fn notify(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes exactly 8 bytes from a live u64, as eventfd requires.
        match syscall!(write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8)) {
            Ok(_) => Ok(()),
            // The counter is saturated: the bell is already ringing.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Resets the counter after a wake-up.
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads exactly 8 bytes into a live u64; EAGAIN just means it was 0.
        let _ = syscall!(read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8));
    }

    /// The raw descriptor.
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
