//! `--source` values: one address, an inclusive range or a CIDR block.
//!
//! - `127.0.0.2`, `::1`: one address.
//! - `127.0.0.2-127.0.0.40`: every address from the first to the last,
//!   both included; both ends of the same family, the first not above the
//!   last.
//! - `127.0.1.0/24`: the block. Host bits given in the address are cleared
//!   (`127.0.1.7/24` is `127.0.1.0/24`). An IPv4 block with a prefix below
//!   31 leaves out its network and broadcast addresses; `/31` has two usable
//!   addresses and `/32` one (RFC 3021). IPv6 blocks give every address.
//!
//! A spec, and a whole list of specs, expands to at most [`MAX_SOURCES`]
//! addresses; more is refused before anything is expanded.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::error::Error;
use crate::units::group;

/// The most source addresses one run takes (a /12 of IPv4).
pub const MAX_SOURCES: u64 = 1 << 20;

const EXAMPLES: &str = "examples: 127.0.0.2, 127.0.0.2-127.0.0.40, 127.0.1.0/24, ::1";

/// One `--source` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceSpec {
    /// A single address.
    One(IpAddr),
    /// Every address from the first to the last, both included.
    Range(IpAddr, IpAddr),
    /// A CIDR block: its network address (host bits clear) and prefix length.
    Cidr(IpAddr, u8),
}

impl SourceSpec {
    /// How many addresses the spec expands to (`::/0`, all of IPv6,
    /// saturates at `u128::MAX`).
    pub fn size(&self) -> u128 {
        let (_, first, last) = self.bounds();
        (last - first).saturating_add(1)
    }

    /// The addresses of the spec, in ascending order.
    pub fn addrs(&self) -> impl Iterator<Item = IpAddr> + use<> {
        let (v6, first, last) = self.bounds();
        (first..=last).map(move |n| from_u128(v6, n))
    }

    /// Family (true for IPv6) and the first and last address as integers.
    fn bounds(&self) -> (bool, u128, u128) {
        match *self {
            SourceSpec::One(ip) => (ip.is_ipv6(), to_u128(ip), to_u128(ip)),
            SourceSpec::Range(lo, hi) => (lo.is_ipv6(), to_u128(lo), to_u128(hi)),
            SourceSpec::Cidr(net, prefix) => {
                let bits = family_bits(net);
                let first = to_u128(net);
                let last = first | (full(bits) & !mask(bits, prefix));
                if net.is_ipv4() && prefix < 31 { (false, first + 1, last - 1) } else { (net.is_ipv6(), first, last) }
            }
        }
    }
}

impl FromStr for SourceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<SourceSpec, String> {
        let t = s.trim();
        let spec = if let Some((addr, prefix)) = t.split_once('/') {
            parse_cidr(s, addr, prefix)?
        } else if let Some((lo, hi)) = t.split_once('-') {
            parse_range(s, lo, hi)?
        } else {
            SourceSpec::One(parse_ip(s, t)?)
        };
        if spec.size() > u128::from(MAX_SOURCES) {
            return Err(format!("`{s}` expands to more than {} addresses, the most one run takes", group(MAX_SOURCES)));
        }
        Ok(spec)
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::One(ip) => write!(f, "{ip}"),
            SourceSpec::Range(lo, hi) => write!(f, "{lo}-{hi}"),
            SourceSpec::Cidr(net, prefix) => write!(f, "{net}/{prefix}"),
        }
    }
}

/// Expands `--source` values, in order, into distinct addresses (the first
/// occurrence of an address keeps its place).
pub fn expand_sources(specs: &[SourceSpec]) -> Result<Vec<IpAddr>, Error> {
    let total = specs.iter().fold(0u128, |sum, spec| sum.saturating_add(spec.size()));
    if total > u128::from(MAX_SOURCES) {
        return Err(Error::Input(format!(
            "the --source values expand to more than {} addresses, the most one run takes",
            group(MAX_SOURCES)
        )));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for ip in specs.iter().flat_map(SourceSpec::addrs) {
        if seen.insert(ip) {
            out.push(ip);
        }
    }
    Ok(out)
}

fn parse_ip(original: &str, text: &str) -> Result<IpAddr, String> {
    text.trim().parse().map_err(|_| format!("`{original}` is not a source address ({EXAMPLES})"))
}

fn parse_range(original: &str, lo: &str, hi: &str) -> Result<SourceSpec, String> {
    let (lo, hi) = (parse_ip(original, lo)?, parse_ip(original, hi)?);
    if lo.is_ipv4() != hi.is_ipv4() {
        return Err(format!("`{original}`: both ends of a range must be IPv4 or both IPv6"));
    }
    if to_u128(lo) > to_u128(hi) {
        return Err(format!("`{original}`: the range runs backwards; write the lower address first"));
    }
    Ok(SourceSpec::Range(lo, hi))
}

fn parse_cidr(original: &str, addr: &str, prefix: &str) -> Result<SourceSpec, String> {
    let ip = parse_ip(original, addr)?;
    let bits = family_bits(ip);
    let prefix: u8 = prefix
        .trim()
        .parse()
        .ok()
        .filter(|&p| u32::from(p) <= bits)
        .ok_or_else(|| format!("`{original}`: the prefix length must be 0 to {bits}"))?;
    let net = from_u128(ip.is_ipv6(), to_u128(ip) & mask(bits, prefix));
    Ok(SourceSpec::Cidr(net, prefix))
}

fn family_bits(ip: IpAddr) -> u32 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// All ones over `bits` bits.
fn full(bits: u32) -> u128 {
    u128::MAX >> (128 - bits)
}

/// The network mask of `prefix` over `bits` bits.
fn mask(bits: u32, prefix: u8) -> u128 {
    u128::MAX.checked_shl(bits - u32::from(prefix)).unwrap_or(0) & full(bits)
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address of integer `n`; for IPv4 `n` fits 32 bits by construction.
fn from_u128(v6: bool, n: u128) -> IpAddr {
    if v6 { IpAddr::V6(Ipv6Addr::from(n)) } else { IpAddr::V4(Ipv4Addr::from(n as u32)) }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn source_specs_parse() {
        let one = |s: &str| s.parse::<SourceSpec>().unwrap();
        let all = |s: &str| one(s).addrs().collect::<Vec<_>>();
        assert_eq!(all("127.0.0.2"), [ip("127.0.0.2")]);
        assert_eq!(all(" ::1 "), [ip("::1")]);
        assert_eq!(all("127.0.0.2-127.0.0.4").len(), 3);
        assert_eq!(all("127.0.0.9-127.0.0.9"), [ip("127.0.0.9")]);
        assert_eq!(all("fd00::1-fd00::3"), [ip("fd00::1"), ip("fd00::2"), ip("fd00::3")]);
        let c24 = all("127.0.1.0/24");
        assert_eq!((c24.len(), c24[0], c24[253]), (254, ip("127.0.1.1"), ip("127.0.1.254")));
        assert_eq!(all("127.0.1.7/24"), c24);
        assert_eq!(all("10.0.0.7/32"), [ip("10.0.0.7")]);
        assert_eq!(all("10.0.0.7/31"), [ip("10.0.0.6"), ip("10.0.0.7")]);
        assert_eq!(all("10.0.0.4/30"), [ip("10.0.0.5"), ip("10.0.0.6")]);
        assert_eq!(all("fd00::/126").len(), 4);
        assert_eq!(one("127.0.1.7/24").to_string(), "127.0.1.0/24");
        assert_eq!(one("127.0.0.2-127.0.0.4").to_string(), "127.0.0.2-127.0.0.4");
        assert_eq!(one("127.0.0.0/12").size(), 1_048_574);
    }

    #[test]
    fn bad_source_specs_are_errors() {
        for bad in [
            "",
            "-",
            "/",
            "garbage",
            "127.0.0.256",
            "127.0.0.2-",
            "-127.0.0.2",
            "127.0.0.1/",
            "127.0.0.1/33",
            "::1/129",
            "127.0.0.1/-1",
            "127.0.0.1/x",
            "1.2.3.4/24/1",
            "1.2.3.4-1.2.3.5-1.2.3.6",
            "10.0.0.1-::1",
            "::1-10.0.0.1",
            "127.0.0.9-127.0.0.2",
            "10.0.0.0/8",
            "::/64",
            "::/0",
            "0.0.0.0/0",
        ] {
            assert!(bad.parse::<SourceSpec>().is_err(), "{bad:?}");
        }
        let e = "127.0.0.9-127.0.0.2".parse::<SourceSpec>().unwrap_err();
        assert!(e.contains("backwards"), "{e}");
        let e = "10.0.0.1-::1".parse::<SourceSpec>().unwrap_err();
        assert!(e.contains("IPv4 or both IPv6"), "{e}");
        let e = "10.0.0.0/8".parse::<SourceSpec>().unwrap_err();
        assert!(e.contains("1,048,576"), "{e}");
    }

    /// Random strings of address characters never panic the parser, and what
    /// parses stays within the cap.
    #[test]
    fn source_spec_fuzz_never_panics() {
        const ALPHABET: &[u8] = b"0123456789abcdef.:/-x ";
        let mut next = crate::testing::xorshift(0x2545_f491_4f6c_dd1d);
        for _ in 0..20_000 {
            let len = (next() % 20) as usize;
            let s: String = (0..len).map(|_| char::from(ALPHABET[(next() % ALPHABET.len() as u64) as usize])).collect();
            if let Ok(spec) = s.parse::<SourceSpec>() {
                assert!(spec.size() >= 1 && spec.size() <= u128::from(MAX_SOURCES), "{s:?}");
            }
        }
    }

    #[test]
    fn expansion_is_ordered_and_distinct() {
        let specs: Vec<SourceSpec> =
            ["127.0.0.3", "127.0.0.1-127.0.0.4", "::1", "127.0.0.2"].iter().map(|s| s.parse().unwrap()).collect();
        let got = expand_sources(&specs).unwrap();
        let want: Vec<IpAddr> =
            ["127.0.0.3", "127.0.0.1", "127.0.0.2", "127.0.0.4", "::1"].iter().map(|s| ip(s)).collect();
        assert_eq!(got, want);
        let big: SourceSpec = "127.0.0.0/12".parse().unwrap();
        assert!(matches!(expand_sources(&[big, big]), Err(Error::Input(_))));
        assert!(expand_sources(&[]).unwrap().is_empty());
    }
}
