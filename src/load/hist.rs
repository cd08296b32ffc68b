//! The latency histograms of a load report, carried whole so that reports
//! of many agents merge exactly: each HDR histogram is serialized with the
//! `hdrhistogram` crate's V2 format (uncompressed) and encoded as base64
//! (standard alphabet, padded). A merge decodes them, adds them bucket by
//! bucket and reads the percentiles of the sum: the same figures one
//! histogram fed every sample would give, never an average of percentiles.

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

/// Decodes what [`encode`] wrote, with 64-bit counts (sums of many agents
/// do not overflow). The error says what is wrong with the text.
pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = STANDARD.decode(text.trim()).map_err(|e| format!("not base64 ({e})"))?;
    // The header's payload length must fit in what is there: a damaged or
    // hostile length would otherwise be allocated before it is read.
    let payload = bytes.get(4..8).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
    match payload {
        Some(n) if n <= bytes.len() => {}
        _ => return Err("not a V2 HDR histogram (the header is cut short or its length is wrong)".into()),
    }
    Deserializer::new().deserialize(&mut bytes.as_slice()).map_err(|e| format!("not a V2 HDR histogram ({e})"))
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
