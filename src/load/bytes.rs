//! Payload bytes with escapes, for `--message` and `--first-message`, so a
//! load run can speak any server's first words:
//! `GET / HTTP/1.1\r\nHost: x\r\n\r\n`.
//!
//! # Rules
//!
//! - `\n`, `\r`, `\t`, `\0` and `\\` are newline, carriage return, tab, NUL
//!   and a backslash.
//! - `\xHH` is the byte `HH`: exactly two hex digits, either case.
//! - Any other character stands for its UTF-8 bytes.
//! - Any other escape, a short `\x` or a trailing `\` is an error naming the
//!   character position (1-based) of its backslash and the escape.
//!
//! [`escape`] is the inverse, for showing bytes in reports.

/// Parses `s` into bytes, resolving escapes.
pub fn parse_escaped(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut chars = s.chars().enumerate();
    while let Some((_, c)) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let (pos, esc) = match chars.next() {
            Some(next) => next,
            None => {
                return Err(format!("`{s}`: a trailing `\\` escapes nothing (write `\\\\`)"));
            }
        };
        let byte = match esc {
            'n' => b'\n',
            'r' => b'\r',
            't' => b'\t',
            '0' => 0,
            '\\' => b'\\',
            'x' => hex_byte(s, pos, chars.next(), chars.next())?,
            other => {
                return Err(format!(
                    "`{s}`: unknown escape `\\{other}` at character {pos} (known: \\n \\r \\t \\0 \\\\ \\xHH)"
                ));
            }
        };
        out.push(byte);
    }
    Ok(out)
}

/// The two hex digits of the `\x` whose backslash is character `pos` (1-based).
fn hex_byte(s: &str, pos: usize, hi: Option<(usize, char)>, lo: Option<(usize, char)>) -> Result<u8, String> {
    let digit = |d: Option<(usize, char)>| d.and_then(|(_, c)| c.to_digit(16));
    match (digit(hi), digit(lo)) {
        (Some(h), Some(l)) => Ok((h * 16 + l) as u8),
        _ => {
            let got: String = [hi, lo].iter().flatten().map(|(_, c)| *c).collect();
            Err(format!("`{s}`: `\\x{got}` at character {pos} needs two hex digits (example: \\x0a)"))
        }
    }
}

/// Shows bytes with the escapes [`parse_escaped`] reads: printable ASCII as
/// is, the named escapes, `\xHH` for the rest (non-ASCII bytes included).
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0 => out.push_str("\\0"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_named_escapes() {
        assert_eq!(parse_escaped(r"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(parse_escaped(r"a\tb\0c\\d").unwrap(), b"a\tb\0c\\d");
        assert_eq!(parse_escaped("").unwrap(), b"");
        assert_eq!(parse_escaped("é✓").unwrap(), "é✓".as_bytes());
    }

    #[test]
    fn hex_escapes() {
        assert_eq!(parse_escaped(r"\x00\x7f\xFF\xaB").unwrap(), [0, 0x7f, 0xff, 0xab]);
        assert_eq!(parse_escaped(r"\x414").unwrap(), b"A4");
    }

    #[test]
    fn bad_escapes_name_position_and_escape() {
        let e = parse_escaped(r"ab\x4").unwrap_err();
        assert!(e.contains(r"`\x4`") && e.contains("character 3"), "{e}");
        let e = parse_escaped(r"\x4g").unwrap_err();
        assert!(e.contains(r"`\x4g`") && e.contains("character 1"), "{e}");
        let e = parse_escaped(r"\x").unwrap_err();
        assert!(e.contains("two hex digits"), "{e}");
        let e = parse_escaped(r"é\q").unwrap_err();
        assert!(e.contains(r"`\q`") && e.contains("character 2"), "{e}");
        let e = parse_escaped("abc\\").unwrap_err();
        assert!(e.contains("trailing"), "{e}");
        assert!(parse_escaped(r"\xé1").is_err());
    }

    #[test]
    fn escape_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(parse_escaped(&escape(&all)).unwrap(), all);
        assert_eq!(escape(b"a\r\n\\\x01\xff"), r"a\r\n\\\x01\xff");
    }

    /// Random strings over an alphabet heavy in escape characters never
    /// panic; whatever parses, and every byte string, round-trips.
    #[test]
    fn fuzz_never_panics() {
        const ALPHABET: &[char] = &['\\', 'x', 'n', 'r', 't', '0', 'a', 'F', '9', 'g', 'é', ' '];
        let mut next = crate::testing::xorshift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let len = (next() % 12) as usize;
            let s: String = (0..len).map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize]).collect();
            if let Ok(bytes) = parse_escaped(&s) {
                assert_eq!(parse_escaped(&escape(&bytes)).unwrap(), bytes, "{s:?}");
            }
            let raw: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            assert_eq!(parse_escaped(&escape(&raw)).unwrap(), raw);
        }
    }
}
