//! The one token scheme of the engine: what an epoll event is about.
//!
//! A token is the `u64` epoll hands back with each event. Connections, the
//! most numerous, are their descriptor number with no tag, so the hot path
//! decodes them with one comparison; the few other sources carry a tag in
//! the high half and an index in the low half.

use std::os::fd::RawFd;

const TAG_SHIFT: u32 = 32;
const LOW: u64 = 0xffff_ffff;
const BELL: u64 = 1 << TAG_SHIFT;
const LISTENER: u64 = 2 << TAG_SHIFT;
const UDP: u64 = 3 << TAG_SHIFT;

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// A connection, by descriptor.
    Conn(RawFd),
    /// The shard's doorbell (the supervisor wants something).
    Bell,
    /// Listening socket number `i` of the shard.
    Listener(u32),
    /// UDP socket number `i` of the shard.
    Udp(u32),
}

impl Token {
    /// The `u64` registered with epoll.
    #[inline]
    pub fn encode(self) -> u64 {
        match self {
            Token::Conn(fd) => fd as u32 as u64,
            Token::Bell => BELL,
            Token::Listener(i) => LISTENER | u64::from(i),
            Token::Udp(i) => UDP | u64::from(i),
        }
    }

    /// The token of an event's `u64`.
    #[inline]
    pub fn decode(v: u64) -> Token {
        match v & !LOW {
            0 => Token::Conn((v & LOW) as u32 as RawFd),
            BELL => Token::Bell,
            LISTENER => Token::Listener((v & LOW) as u32),
            _ => Token::Udp((v & LOW) as u32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for t in [Token::Conn(0), Token::Conn(19_999), Token::Bell, Token::Listener(3), Token::Udp(0)] {
            assert_eq!(Token::decode(t.encode()), t);
        }
        assert_eq!(Token::Conn(7).encode(), 7, "a connection's token is its descriptor");
    }
}
