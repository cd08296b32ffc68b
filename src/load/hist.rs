//! The latency histograms of a load report, carried whole so that reports
//! of many agents merge exactly: each HDR histogram is serialized with the
//! `hdrhistogram` crate's V2 format (uncompressed) and encoded as base64
//! (standard alphabet, padded). A merge decodes them, adds them bucket by
//! bucket and reads the percentiles of the sum: the same figures one
//! histogram fed every sample would give, never an average of percentiles.
//!
//! Reports come from outside: [`decode`] and [`decode_bytes`] check every
//! length a histogram's bytes claim before allocating it (see
//! [`decode_bytes`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2Serializer};
use hdrhistogram::{Counter, Histogram};
use serde::{Deserialize, Serialize};

use crate::engine::samples::Hists;
use crate::error::Error;

/// The histograms of a run, V2-serialized and base64-encoded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histograms {
    /// Connect latency in microseconds.
    pub connect_us: String,
    /// Ping (or message) round-trip time in microseconds.
    pub rtt_us: String,
}

impl Histograms {
    /// Encodes a run's histograms.
    pub fn of(h: &Hists) -> crate::Result<Histograms> {
        Ok(Histograms { connect_us: encode(&h.connect_us)?, rtt_us: encode(&h.rtt_us)? })
    }
}

/// One histogram as base64 of its V2 serialization.
pub fn encode<T: Counter>(h: &Histogram<T>) -> crate::Result<String> {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut bytes)
        .map_err(|e| Error::os("serializing a latency histogram", std::io::Error::other(e.to_string())))?;
    Ok(STANDARD.encode(bytes))
}

/// The V2 cookie of an uncompressed histogram.
const V2_COOKIE: u32 = 0x1c84_9313;
/// The V2 cookie of a zlib-compressed one (what other HdrHistogram tools
/// may write; tcpmax writes the uncompressed form).
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9314;
/// Bytes of a V2 header: cookie, payload length, normalizing offset,
/// significant figures, lowest, highest, integer-to-double ratio.
const HEADER: usize = 40;
/// The widest histogram a report may carry: values up to 2^40 (12 days in
/// microseconds; tcpmax records up to 100 s), 3 significant figures (what
/// tcpmax writes). Its counts take at most 32 x 1,024 slots: 256 KiB as `u64`.
pub const MAX_HIGHEST: u64 = 1 << 40;
/// Significant figures a report's histogram may have.
pub const MAX_DIGITS: u32 = 3;
/// The longest payload such a histogram can have: every slot a counter of
/// at most 9 bytes.
pub const MAX_PAYLOAD: usize = 32 * 1024 * 9;
/// The longest base64 text of a histogram: the payload and its header.
pub const MAX_TEXT: usize = (HEADER + MAX_PAYLOAD).div_ceil(3) * 4;

/// Decodes what [`encode`] wrote, with 64-bit counts (sums of many agents
/// do not overflow). The error says what is wrong with the text.
pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
    let text = text.trim();
    if text.len() > MAX_TEXT {
        return Err(format!("{} bytes of text, longer than any histogram tcpmax reads ({MAX_TEXT})", text.len()));
    }
    let bytes = STANDARD.decode(text).map_err(|e| format!("not base64 ({e})"))?;
    decode_bytes(&bytes)
}

/// Decodes a V2 HDR histogram, plain or zlib-compressed, from its bytes.
/// Every length the bytes claim is checked against what they hold before
/// anything is allocated: the payload must be there whole, the bounds and
/// precision within what a report carries, and a compressed one is
/// inflated through a cap, never to the size its header claims. Both
/// `tcpmax merge` and `tcpmax report` read histograms through here.
pub fn decode_bytes(bytes: &[u8]) -> Result<Histogram<u64>, String> {
    let u32_at = |b: &[u8], at: usize| b.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let bad = |why: &str| format!("not a V2 HDR histogram ({why})");
    match u32_at(bytes, 0) {
        Some(V2_COOKIE) => plain(bytes),
        Some(V2_COMPRESSED_COOKIE) => {
            let len = u32_at(bytes, 4).ok_or_else(|| bad("the header is cut short"))? as usize;
            let Some(deflated) = bytes.get(8..).filter(|rest| len <= rest.len()) else {
                return Err(bad(&format!("its header claims {len} compressed bytes, {} are there", bytes.len() - 8)));
            };
            let cap = (HEADER + MAX_PAYLOAD) as u64;
            let mut inflated = Vec::new();
            std::io::Read::read_to_end(
                &mut std::io::Read::take(flate2::read::ZlibDecoder::new(&deflated[..len]), cap + 1),
                &mut inflated,
            )
            .map_err(|e| bad(&format!("its zlib stream is damaged: {e}")))?;
            if inflated.len() as u64 > cap {
                return Err(bad(&format!("it inflates past {cap} bytes, more than any histogram tcpmax reads")));
            }
            if u32_at(&inflated, 0) != Some(V2_COOKIE) {
                return Err(bad("the compressed bytes are not a V2 histogram"));
            }
            plain(&inflated)
        }
        Some(_) => Err(bad("unknown cookie")),
        None => Err(bad("the header is cut short")),
    }
}

/// An uncompressed V2 histogram, header checked first.
fn plain(bytes: &[u8]) -> Result<Histogram<u64>, String> {
    let bad = |why: String| format!("not a V2 HDR histogram ({why})");
    let Some(header) = bytes.get(..HEADER) else {
        return Err(bad(format!("the header is cut short: {} of {HEADER} bytes", bytes.len())));
    };
    let u32_at = |at: usize| u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[at..at + 8]);
        u64::from_be_bytes(b)
    };
    let (payload, digits, low, high) = (u32_at(4) as usize, u32_at(12), u64_at(16), u64_at(24));
    let there = bytes.len() - HEADER;
    if payload > there {
        return Err(bad(format!("its header claims a payload of {payload} bytes, {there} are there")));
    }
    if payload > MAX_PAYLOAD {
        return Err(bad(format!("a payload of {payload} bytes, more than any histogram tcpmax reads ({MAX_PAYLOAD})")));
    }
    if digits > MAX_DIGITS || low == 0 || high > MAX_HIGHEST || high < low.saturating_mul(2) {
        return Err(bad(format!(
            "bounds {low} to {high} with {digits} significant figures; tcpmax reads 1 to at most {MAX_HIGHEST} \
             with up to {MAX_DIGITS}"
        )));
    }
    Deserializer::new().deserialize(&mut &bytes[..HEADER + payload]).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::samples::new_hist;

    #[test]
    fn round_trip_keeps_every_bucket() {
        let mut h = new_hist();
        let mut next = crate::testing::xorshift(7);
        for _ in 0..50_000 {
            h.saturating_record(1 + next() % 2_000_000);
        }
        h.saturating_record(crate::engine::samples::HIST_MAX_US);
        let back = decode(&encode(&h).unwrap()).unwrap();
        assert_eq!(back.len(), h.len());
        assert_eq!((back.min(), back.max()), (h.min(), h.max()));
        for q in [0.0, 0.25, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0] {
            assert_eq!(back.value_at_quantile(q), h.value_at_quantile(q), "q {q}");
        }
        let empty = decode(&encode(&new_hist()).unwrap()).unwrap();
        assert!(empty.is_empty());
    }

    /// A 40-byte header claiming `payload` bytes, with tcpmax's bounds.
    fn header(cookie: u32, payload: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(cookie.to_be_bytes());
        b.extend(payload.to_be_bytes());
        b.extend(0u32.to_be_bytes());
        b.extend(3u32.to_be_bytes());
        b.extend(1u64.to_be_bytes());
        b.extend(crate::engine::samples::HIST_MAX_US.to_be_bytes());
        b.extend(1f64.to_be_bytes());
        b
    }

    fn zlib(bytes: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut z, bytes).unwrap();
        z.finish().unwrap()
    }

    #[test]
    fn a_claimed_length_is_checked_before_it_is_allocated() {
        // #17: 40 bytes claiming a 4 GiB payload made `report` allocate it.
        let err = decode(&STANDARD.encode(header(V2_COOKIE, u32::MAX))).unwrap_err();
        assert!(err.contains("claims a payload of 4294967295 bytes, 0 are there"), "{err}");
        // The same inside a zlib stream (cookie 0x1c849314).
        let inner = zlib(&header(V2_COOKIE, u32::MAX));
        let mut outer = V2_COMPRESSED_COOKIE.to_be_bytes().to_vec();
        outer.extend((inner.len() as u32).to_be_bytes());
        outer.extend(&inner);
        let err = decode(&STANDARD.encode(&outer)).unwrap_err();
        assert!(err.contains("claims a payload of 4294967295 bytes"), "{err}");
        // A compressed length longer than what is there.
        let mut short = outer.clone();
        short[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_bytes(&short).unwrap_err().contains("claims 4294967295 compressed bytes"));
        // A zlib bomb: inflating stops at the cap.
        let mut bomb_plain = header(V2_COOKIE, 64 << 20);
        bomb_plain.resize(40 + (64 << 20), 0);
        let bomb = zlib(&bomb_plain);
        let mut outer = V2_COMPRESSED_COOKIE.to_be_bytes().to_vec();
        outer.extend((bomb.len() as u32).to_be_bytes());
        outer.extend(&bomb);
        assert!(decode_bytes(&outer).unwrap_err().contains("inflates past"));
        // Bounds wider than a report carries would size the counts array.
        let mut wide = header(V2_COOKIE, 0);
        wide[24..32].copy_from_slice(&u64::MAX.to_be_bytes());
        wide[12..16].copy_from_slice(&5u32.to_be_bytes());
        assert!(decode_bytes(&wide).unwrap_err().contains("bounds 1 to 18446744073709551615"));
        // A well-formed compressed histogram is read.
        let mut h = new_hist();
        h.saturating_record(1234);
        let mut plain = Vec::new();
        V2Serializer::new().serialize(&h, &mut plain).unwrap();
        let inner = zlib(&plain);
        let mut outer = V2_COMPRESSED_COOKIE.to_be_bytes().to_vec();
        outer.extend((inner.len() as u32).to_be_bytes());
        outer.extend(&inner);
        assert_eq!(decode_bytes(&outer).unwrap().max(), h.max());
    }

    #[test]
    fn the_widest_histogram_fits_the_caps() {
        let mut h = Histogram::<u64>::new_with_bounds(1, MAX_HIGHEST, MAX_DIGITS as u8).unwrap();
        let mut next = crate::testing::xorshift(5);
        for _ in 0..200_000 {
            h.record_n(1 + next() % MAX_HIGHEST, u64::MAX >> 16).unwrap();
        }
        let text = encode(&h).unwrap();
        assert!(text.len() <= MAX_TEXT, "{} > {MAX_TEXT}", text.len());
        assert_eq!(decode(&text).unwrap().len(), h.len());
    }

    #[test]
    fn damaged_text_is_an_error_not_a_panic() {
        let good = encode(&new_hist()).unwrap();
        for bad in ["", "!!!", "AAAA", &good[..good.len() / 2], "/////////////////////w=="] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        let mut next = crate::testing::xorshift(11);
        let raw = STANDARD.decode(&good).unwrap();
        for _ in 0..2_000 {
            let mut b = raw.clone();
            let i = (next() % b.len() as u64) as usize;
            b[i] ^= (next() % 255 + 1) as u8;
            let _ = decode(&STANDARD.encode(&b));
        }
    }
}
