//! Ping frames: 16 bytes, echoed by the server, reassembled from partial
//! reads by a pure parser (no sockets: unit-tested and fuzzable).
//!
//! Layout, little-endian: `b"TMXP"`, a u32 sequence number, a u64 send time
//! in nanoseconds on the sender's clock. The frame carries its own send time,
//! so the sender keeps no per-ping state.

/// Length of one ping frame.
pub const PING_LEN: usize = 16;

const MAGIC: [u8; 4] = *b"TMXP";

/// A decoded ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ping {
    /// Sequence number.
    pub seq: u32,
    /// Send time, nanoseconds on the sender's clock.
    pub sent_ns: u64,
}

/// A frame that is not a ping: the peer is not an echo server of pings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a ping frame (bad magic)")]
pub struct BadFrame;

/// Encodes a ping.
pub fn encode(p: Ping) -> [u8; PING_LEN] {
    let mut b = [0u8; PING_LEN];
    b[..4].copy_from_slice(&MAGIC);
    b[4..8].copy_from_slice(&p.seq.to_le_bytes());
    b[8..].copy_from_slice(&p.sent_ns.to_le_bytes());
    b
}

/// Decodes one complete frame.
pub fn decode(b: &[u8; PING_LEN]) -> Result<Ping, BadFrame> {
    if b[..4] != MAGIC {
        return Err(BadFrame);
    }
    let mut seq = [0u8; 4];
    seq.copy_from_slice(&b[4..8]);
    let mut t = [0u8; 8];
    t.copy_from_slice(&b[8..]);
    Ok(Ping { seq: u32::from_le_bytes(seq), sent_ns: u64::from_le_bytes(t) })
}

/// The bytes of a frame received so far (kept only between partial reads).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Partial {
    buf: [u8; PING_LEN],
    len: u8,
}

impl Partial {
    /// True when no byte of a frame is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Feeds `bytes` (any split), calling `on_frame` for every complete
    /// frame. Returns the number of bad frames met; bytes of a bad frame are
    /// dropped and parsing goes on at the next frame boundary.
    pub fn feed(&mut self, mut bytes: &[u8], mut on_frame: impl FnMut(Ping)) -> usize {
        let mut bad = 0;
        while !bytes.is_empty() {
            let have = self.len as usize;
            let take = (PING_LEN - have).min(bytes.len());
            self.buf[have..have + take].copy_from_slice(&bytes[..take]);
            self.len += take as u8;
            bytes = &bytes[take..];
            if self.len as usize == PING_LEN {
                match decode(&self.buf) {
                    Ok(p) => on_frame(p),
                    Err(BadFrame) => bad += 1,
                }
                self.len = 0;
            }
        }
        bad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let p = Ping { seq: 7, sent_ns: 123_456_789 };
        assert_eq!(decode(&encode(p)), Ok(p));
        assert_eq!(decode(&[0; PING_LEN]), Err(BadFrame));
    }

    #[test]
    fn reassembles_any_split() {
        let frames: Vec<u8> = (0..5).flat_map(|i| encode(Ping { seq: i, sent_ns: u64::from(i) * 10 })).collect();
        for split in 1..=frames.len() {
            let mut part = Partial::default();
            let mut got = vec![];
            for chunk in frames.chunks(split) {
                assert_eq!(part.feed(chunk, |p| got.push(p.seq)), 0);
            }
            assert_eq!(got, vec![0, 1, 2, 3, 4], "split {split}");
            assert!(part.is_empty());
        }
    }

    #[test]
    fn garbage_is_counted_not_fatal() {
        let mut part = Partial::default();
        let mut bytes = vec![0xAB; PING_LEN];
        bytes.extend_from_slice(&encode(Ping { seq: 1, sent_ns: 2 }));
        bytes.extend_from_slice(&[1, 2, 3]);
        let mut got = vec![];
        assert_eq!(part.feed(&bytes, |p| got.push(p)), 1);
        assert_eq!(got, vec![Ping { seq: 1, sent_ns: 2 }]);
        assert!(!part.is_empty());
    }

    /// A deterministic fuzz pass: random bytes in random splits never panic
    /// and every 16 bytes give exactly one frame, good or bad.
    #[test]
    fn fuzz_random_bytes() {
        let mut next = crate::testing::xorshift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..200 {
            let n = (next() % 200) as usize;
            let bytes: Vec<u8> = (0..n).map(|_| next() as u8).collect();
            let mut part = Partial::default();
            let (mut good, mut bad, mut off) = (0, 0, 0);
            while off < n {
                let step = 1 + (next() % 40) as usize;
                let end = (off + step).min(n);
                bad += part.feed(&bytes[off..end], |_| good += 1);
                off = end;
            }
            assert_eq!(good + bad, n / PING_LEN);
        }
    }
}
