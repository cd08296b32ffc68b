//! Waiting on one descriptor with poll(2), for code outside the event loop
//! (experiments, blocking helpers) that must never wait without a bound.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use super::syscall;

/// Readable (or a connection to accept).
pub const READABLE: i16 = libc::POLLIN;
/// Writable (a non-blocking connect finished, well or not).
pub const WRITABLE: i16 = libc::POLLOUT;

/// Waits up to `timeout` for `fd` to be ready for `events`; `Ok(false)` on
/// timeout. Errors and hang-ups count as ready: the next call reports them.
pub fn poll_one(fd: RawFd, events: i16, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd { fd, events, revents: 0 };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    loop {
        // SAFETY: `pfd` is one live pollfd and the count passed is 1.
        match syscall!(poll(&mut pfd, 1, ms)) {
            Ok(n) => return Ok(n > 0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}
