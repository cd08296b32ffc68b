//! Writes of a client connection: what the kernel does not take at once
//! (a full send buffer: the peer reads slower than it makes this side
//! answer, e.g. a server sending pings faster than it reads the pongs) is
//! kept in order and written when the socket is writable again. A torn
//! write is never dropped: the rest of a TLS record or a WebSocket frame
//! would misalign everything after it.

use std::os::fd::RawFd;

use super::ClientShard;
use crate::sys::errno_of;
use crate::sys::net::{self, Io};

/// Bytes kept unsent per connection at most: a peer that lets more pile
/// up does not read at all, and the connection is closed, counted as
/// EAGAIN (its send buffer stayed full).
pub(super) const MAX_UNSENT: usize = 64 * 1024;

impl ClientShard {
    /// Writes `bytes` (whole messages, TLS records included) after what is
    /// queued; what the kernel does not take now is queued. False when the
    /// connection was closed instead (an error, or the queue over its cap).
    pub(super) fn send_raw(&mut self, fd: RawFd, bytes: &[u8]) -> bool {
        if let Some(queue) = self.unsent.get_mut(&fd) {
            if queue.len() + bytes.len() > MAX_UNSENT {
                self.lost(fd, Some(libc::EAGAIN));
                return false;
            }
            queue.extend_from_slice(bytes);
            return true;
        }
        let n = match net::write(fd, bytes) {
            Ok(Io::Done(n)) => n,
            Ok(Io::WouldBlock) => 0,
            Err(e) => {
                self.lost(fd, Some(errno_of(&e)));
                return false;
            }
        };
        self.stats.bytes_out += n as u64;
        let rest = &bytes[n.min(bytes.len())..];
        if rest.is_empty() {
            return true;
        }
        if rest.len() > MAX_UNSENT {
            self.lost(fd, Some(libc::EAGAIN));
            return false;
        }
        // Edge-triggered EPOLLOUT comes when the socket has room again.
        self.unsent.insert(fd, rest.to_vec());
        true
    }

    /// The socket is writable again: writes what was queued.
    pub(super) fn flush_unsent(&mut self, fd: RawFd) {
        let Some(mut queue) = self.unsent.remove(&fd) else { return };
        let n = match net::write(fd, &queue) {
            Ok(Io::Done(n)) => n,
            Ok(Io::WouldBlock) => 0,
            Err(e) => return self.lost(fd, Some(errno_of(&e))),
        };
        self.stats.bytes_out += n as u64;
        if n < queue.len() {
            queue.drain(..n);
            self.unsent.insert(fd, queue);
        }
    }
}
