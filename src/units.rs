//! Parsing of human numbers: counts (`10k`, `1M`), durations (`30s`, `2m`),
//! byte sizes (`64KiB`, `2GiB`) and memory limits (`85%` or a byte size).
//!
//! These are clap value parsers: every function returns a message that names
//! the bad input and an example of a good one.

use std::time::Duration;

/// The largest count [`parse_positive_count`] accepts: ten billion. One
/// idle TCP socket costs about 4 KB of kernel memory, so this many would
/// need 40 TB; a larger count is a typo, not a plan.
pub const MAX_COUNT: u64 = 10_000_000_000;

const COUNT_EXAMPLES: &str = "examples: 20000, 10k, 1M";

/// Parses a count with an optional SI suffix: `20000`, `10k`, `1M`, `2m`
/// (`m` is "million" for a count), `1.5M`, `1_000_000`.
pub fn parse_count(s: &str) -> Result<u64, String> {
    let t = s.trim().replace('_', "");
    if t.starts_with('-') {
        return Err(format!("`{s}` is not a count: counts are not negative ({COUNT_EXAMPLES})"));
    }
    let (num, mult) = split_suffix(&t, &[("k", 1e3), ("K", 1e3), ("m", 1e6), ("M", 1e6), ("g", 1e9), ("G", 1e9)])
        .ok_or_else(|| format!("`{s}` is not a count (examples: 20000, 10k, 1M)"))?;
    let v: f64 = num.parse().map_err(|_| format!("`{s}` is not a count (examples: 20000, 10k, 1M)"))?;
    to_u64(v * mult, s)
}

/// Parses a count of at least 1 and at most [`MAX_COUNT`]: connections,
/// rates, shards. Zero, negative and absurd counts are refused with why.
pub fn parse_positive_count(s: &str) -> Result<u64, String> {
    if s.trim().starts_with('-') {
        return Err(format!("`{s}` is not a count: counts are positive ({COUNT_EXAMPLES})"));
    }
    match parse_count(s)? {
        0 => Err(format!("`{s}` is too small: counts are positive, at least 1 ({COUNT_EXAMPLES})")),
        n if n > MAX_COUNT => Err(format!(
            "`{s}` is beyond what any machine holds: counts stop at 10G ({}), about 4 KB of kernel memory per connection",
            group(MAX_COUNT)
        )),
        n => Ok(n),
    }
}

/// The longest duration accepted: 365 days.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// Parses a duration with [`humantime`]: `500ms`, `30s`, `1.5s`, `2m`, `1h`,
/// `1h 30m`; a bare number is seconds (`5`, `0.5`). Negative durations and
/// durations above [`MAX_DURATION`] are refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const EXAMPLES: &str = "examples: 500ms, 30s, 2m, 1h";
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!("`{s}` is negative: a duration must be 0 or more ({EXAMPLES})"));
    }
    let bare = !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.');
    let parsed = if bare { humantime::parse_duration(&format!("{t}s")) } else { humantime::parse_duration(t) };
    let d = parsed.map_err(|e| format!("`{s}` is not a duration: {e} ({EXAMPLES})"))?;
    if d > MAX_DURATION {
        return Err(format!("`{s}` is too long: a duration is at most 365d"));
    }
    Ok(d)
}

/// Parses a byte size: `4096`, `64KiB`, `2GiB`, `1.5GB`, `512k`.
/// Binary suffixes (`KiB`) are powers of 1024, decimal ones (`KB`) of 1000,
/// and a bare `k`/`M`/`G` is taken as binary, as `ulimit` and `free` do.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let err = || format!("`{s}` is not a byte size (examples: 4096, 64KiB, 2GiB)");
    const KI: f64 = 1024.0;
    let table = [
        ("KiB", KI),
        ("MiB", KI * KI),
        ("GiB", KI * KI * KI),
        ("TiB", KI * KI * KI * KI),
        ("KB", 1e3),
        ("kB", 1e3),
        ("MB", 1e6),
        ("GB", 1e9),
        ("TB", 1e12),
        ("k", KI),
        ("K", KI),
        ("M", KI * KI),
        ("G", KI * KI * KI),
        ("T", KI * KI * KI * KI),
        ("B", 1.0),
    ];
    let (num, mult) = split_suffix(t, &table).ok_or_else(err)?;
    let v: f64 = num.parse().map_err(|_| err())?;
    to_u64(v * mult, s)
}

/// A memory limit: a share of the machine's total memory or an absolute size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemoryLimit {
    /// Percent of MemTotal, in (0, 100].
    Percent(f64),
    /// Bytes of memory in use on the machine.
    Bytes(u64),
}

impl MemoryLimit {
    /// The limit in bytes for a machine with `total` bytes of memory.
    pub fn bytes_of(self, total: u64) -> u64 {
        match self {
            MemoryLimit::Percent(p) => (total as f64 * p / 100.0) as u64,
            MemoryLimit::Bytes(b) => b,
        }
    }
}

/// Parses `85%` or a byte size (`20GiB`).
pub fn parse_memory_limit(s: &str) -> Result<MemoryLimit, String> {
    let t = s.trim();
    if let Some(p) = t.strip_suffix('%') {
        let v: f64 = p.trim().parse().map_err(|_| format!("`{s}` is not a percentage (example: 85%)"))?;
        if !(v > 0.0 && v <= 100.0) {
            return Err(format!("`{s}`: a percentage of memory must be in (0, 100]"));
        }
        return Ok(MemoryLimit::Percent(v));
    }
    parse_bytes(t).map(MemoryLimit::Bytes)
}

/// A rate or count that may be given as a share of something: `1%` or `10k`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CountOrPercent {
    /// An absolute number.
    Count(u64),
    /// Percent of a base the caller knows (e.g. the connections held).
    Percent(f64),
}

impl CountOrPercent {
    /// The absolute value against `base`.
    pub fn of(self, base: u64) -> u64 {
        match self {
            CountOrPercent::Count(c) => c,
            CountOrPercent::Percent(p) => (base as f64 * p / 100.0).round() as u64,
        }
    }
}

/// Parses `1%` or a count (`10k`).
pub fn parse_count_or_percent(s: &str) -> Result<CountOrPercent, String> {
    let t = s.trim();
    if let Some(p) = t.strip_suffix('%') {
        let v: f64 = p.trim().parse().map_err(|_| format!("`{s}` is not a percentage (example: 1%)"))?;
        if !(0.0..=100.0).contains(&v) {
            return Err(format!("`{s}`: a percentage must be in [0, 100]"));
        }
        return Ok(CountOrPercent::Percent(v));
    }
    parse_count(t).map(CountOrPercent::Count)
}

/// Formats an integer with thousands separators: `28232` -> `28,232`.
pub fn group(n: impl Into<u128>) -> String {
    let s = n.into().to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Formats a byte count in binary units: `4200` -> `4.1 KiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// Splits a trailing unit from its number; the longest matching suffix wins.
/// No suffix means a multiplier of 1.
fn split_suffix<'a>(s: &'a str, table: &[(&str, f64)]) -> Option<(&'a str, f64)> {
    if s.is_empty() {
        return None;
    }
    let mut best: Option<(&str, f64)> = None;
    for &(suf, mult) in table {
        if let Some(num) = s.strip_suffix(suf) {
            if best.is_none_or(|(b, _)| num.len() < b.len()) {
                best = Some((num, mult));
            }
        }
    }
    let (num, mult) = best.unwrap_or((s, 1.0));
    let num = num.trim();
    if num.is_empty() { None } else { Some((num, mult)) }
}

fn to_u64(v: f64, original: &str) -> Result<u64, String> {
    if !v.is_finite() || v < 0.0 {
        return Err(format!("`{original}` must be a non-negative number"));
    }
    if v > u64::MAX as f64 {
        return Err(format!("`{original}` is too large"));
    }
    if v.fract() != 0.0 {
        return Err(format!("`{original}` is not a whole number"));
    }
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(parse_count("20000"), Ok(20_000));
        assert_eq!(parse_count("10k"), Ok(10_000));
        assert_eq!(parse_count("1M"), Ok(1_000_000));
        assert_eq!(parse_count("2m"), Ok(2_000_000));
        assert_eq!(parse_count("1.5M"), Ok(1_500_000));
        assert_eq!(parse_count("1_000"), Ok(1_000));
        assert!(parse_count("").is_err());
        assert!(parse_count("k").is_err());
        assert!(parse_count("-1").is_err());
        assert!(parse_count("1.5").is_err());
        assert!(parse_count("ten").is_err());
        assert!(parse_count("1e400").is_err());
        assert!(parse_count("-5").unwrap_err().contains("not negative"));
        assert_eq!(parse_count("0"), Ok(0));
    }

    #[test]
    fn positive_counts() {
        assert_eq!(parse_positive_count("1"), Ok(1));
        assert_eq!(parse_positive_count("10k"), Ok(10_000));
        assert_eq!(parse_positive_count("10G"), Ok(MAX_COUNT));
        let neg = parse_positive_count("-5").unwrap_err();
        assert_eq!(neg, "`-5` is not a count: counts are positive (examples: 20000, 10k, 1M)");
        assert!(parse_positive_count(" -1k").unwrap_err().contains("counts are positive"));
        assert!(parse_positive_count("0").unwrap_err().contains("at least 1"));
        assert!(parse_positive_count("0k").unwrap_err().contains("at least 1"));
        let huge = parse_positive_count("100000000000000").unwrap_err();
        assert!(huge.contains("counts stop at 10G (10,000,000,000)"), "{huge}");
        assert!(parse_positive_count("abc").unwrap_err().contains("is not a count"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 10s "), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("365d"), Ok(MAX_DURATION));
    }

    #[test]
    fn bare_numbers_are_seconds() {
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0.25"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn bad_durations_name_the_cause() {
        for bad in ["", "s", "NaNs", "ten seconds", "5 parsecs", "1..5s", "."] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("is not a duration") && e.contains("examples: 500ms"), "{bad}: {e}");
        }
        for bad in ["-1s", "-5", " -0s"] {
            assert!(parse_duration(bad).unwrap_err().contains("negative"), "{bad}");
        }
        for bad in ["366d", "2y", "99999999999999h"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("too long") || e.contains("is not a duration"), "{bad}: {e}");
        }
        assert!(parse_duration("366d").unwrap_err().contains("at most 365d"));
    }

    #[test]
    fn bytes() {
        assert_eq!(parse_bytes("64KiB"), Ok(65_536));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("512k"), Ok(512 * 1024));
        assert!(parse_bytes("12XB").is_err());
    }

    #[test]
    fn memory_limits() {
        assert_eq!(parse_memory_limit("85%"), Ok(MemoryLimit::Percent(85.0)));
        assert_eq!(parse_memory_limit("20GiB"), Ok(MemoryLimit::Bytes(20 << 30)));
        assert!(parse_memory_limit("0%").is_err());
        assert!(parse_memory_limit("101%").is_err());
        assert_eq!(MemoryLimit::Percent(50.0).bytes_of(1000), 500);
    }

    #[test]
    fn percents() {
        assert_eq!(parse_count_or_percent("1%"), Ok(CountOrPercent::Percent(1.0)));
        assert_eq!(parse_count_or_percent("10k"), Ok(CountOrPercent::Count(10_000)));
        assert_eq!(CountOrPercent::Percent(1.0).of(100_000), 1000);
    }

    #[test]
    fn grouping() {
        assert_eq!(group(0u64), "0");
        assert_eq!(group(999u64), "999");
        assert_eq!(group(28232u64), "28,232");
        assert_eq!(group(2_500_000u64), "2,500,000");
        assert_eq!(group(1u128 << 100), "1,267,650,600,228,229,401,496,703,205,376");
        assert_eq!(human_bytes(4200), "4.1 KiB");
        assert_eq!(human_bytes(12), "12 B");
    }
}
