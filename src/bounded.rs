//! Reading report files from outside (`tcpmax merge`, `tcpmax report`)
//! within bounds, whatever the file claims (#17).
//!
//! - The file: at most [`MAX_REPORT_BYTES`], checked on its size before a
//!   byte is read and again while reading (a file that grows, a device).
//! - Its bytes, before they are parsed: no JSON string longer than
//!   [`MAX_STRING_BYTES`] ([`Shape`]), so the parser never buffers more.
//! - What they become: every list, map and text a reader keeps is charged
//!   to one budget of [`BUDGET_BYTES`] per file ([`vec()`], [`map`],
//!   [`string`] and their `opt_` forms, used with
//!   `#[serde(deserialize_with = ...)]`): a file of a million empty
//!   samples is refused at the budget, never grown to gigabytes.
//!
//! What the values say is checked too: [`count`], [`seconds`], [`rate`]
//! and [`wall_clock`] refuse what no run can have (2^64 connections, a
//! time of 1e308 s), naming the field.
//!
//! A regular file is scanned, then parsed from disk in a second pass, so
//! its bytes are never held whole in memory.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::marker::PhantomData;
use std::path::Path;

use serde::de::{self, DeserializeOwned, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// The largest report file read: 64 MiB. A bench report of 2M connections
/// is about 100 KB (a sample a second of its ramp and hold, about 500
/// bytes each); the longest timeline a load report keeps (7,200 samples)
/// is about 4 MiB; a merge of a dozen such agents fits.
pub const MAX_REPORT_BYTES: u64 = 64 << 20;

/// The longest JSON string read: the longest histogram text, with room.
pub const MAX_STRING_BYTES: usize = crate::load::hist::MAX_TEXT + 4096;

/// What the kept lists, maps and texts of one file may take once read:
/// 32 MiB (a merge of a dozen agents' longest timelines takes under 4).
pub const BUDGET_BYTES: usize = 32 << 20;

/// Why a report file could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The file could not be opened or read.
    Io(io::Error),
    /// The file is empty or only white space.
    Empty,
    /// The file is larger than [`MAX_REPORT_BYTES`] (its size, or more than
    /// the cap when it could not be known up front).
    TooBig(u64),
    /// A JSON string is longer than [`MAX_STRING_BYTES`].
    Shape(String),
    /// The JSON is damaged, cut short, not of the expected layout, or
    /// holds more than [`BUDGET_BYTES`].
    Json(serde_json::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Empty => write!(f, "it is empty"),
            ReadError::TooBig(n) => write!(
                f,
                "it is {} MiB, larger than the {} MiB of any report tcpmax reads",
                n.div_ceil(1 << 20),
                MAX_REPORT_BYTES >> 20
            ),
            ReadError::Shape(why) => write!(f, "{why}"),
            ReadError::Json(e) => write!(f, "{e}"),
        }
    }
}

/// Scans JSON bytes, in pieces, for a string longer than
/// [`MAX_STRING_BYTES`]; allocates nothing.
#[derive(Debug, Default, Clone)]
pub struct Shape {
    /// True once a byte other than white space was seen.
    pub seen: bool,
    in_string: bool,
    escaped: bool,
    run: usize,
    offset: u64,
}

impl Shape {
    /// Feeds the next piece of the bytes.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        for &b in bytes {
            self.offset += 1;
            if !self.in_string {
                self.seen |= !b.is_ascii_whitespace();
                self.in_string = b == b'"';
                self.run = 0;
                continue;
            }
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
                continue;
            }
            self.run += 1;
            if self.run > MAX_STRING_BYTES {
                return Err(format!(
                    "a string at byte {} is longer than the {} KiB of any text in a report",
                    self.offset - self.run as u64,
                    MAX_STRING_BYTES >> 10
                ));
            }
        }
        Ok(())
    }
}

thread_local! {
    /// Bytes the file being parsed on this thread may still take; `None`
    /// outside [`parse`] and [`read`] (the writers' own types, read back by
    /// tests or other tools, are not charged).
    static BUDGET: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Parses JSON bytes as `T` within the bounds above (the entry point for
/// bytes: tests and fuzzing).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ReadError> {
    if bytes.len() as u64 > MAX_REPORT_BYTES {
        return Err(ReadError::TooBig(bytes.len() as u64));
    }
    let mut shape = Shape::default();
    shape.feed(bytes).map_err(ReadError::Shape)?;
    if !shape.seen {
        return Err(ReadError::Empty);
    }
    within_budget(|| serde_json::from_slice(bytes)).map_err(ReadError::Json)
}

/// Reads the file at `path` as `T` within the bounds above.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T, ReadError> {
    let mut file = File::open(path).map_err(ReadError::Io)?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    if meta.is_dir() {
        return Err(ReadError::Io(io::Error::new(io::ErrorKind::IsADirectory, "it is a directory")));
    }
    if meta.len() > MAX_REPORT_BYTES {
        return Err(ReadError::TooBig(meta.len()));
    }
    if !meta.is_file() {
        // A pipe or a device: read it whole, capped, then parse the bytes.
        let mut bytes = Vec::new();
        (&mut file).take(MAX_REPORT_BYTES + 1).read_to_end(&mut bytes).map_err(ReadError::Io)?;
        return parse(&bytes);
    }
    let mut shape = Shape::default();
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io(e)),
        };
        total += n as u64;
        if total > MAX_REPORT_BYTES {
            return Err(ReadError::TooBig(total));
        }
        shape.feed(&buf[..n]).map_err(ReadError::Shape)?;
    }
    drop(buf);
    if !shape.seen {
        return Err(ReadError::Empty);
    }
    file.rewind().map_err(ReadError::Io)?;
    let reader = BufReader::new(file.take(total));
    within_budget(|| serde_json::from_reader(reader)).map_err(ReadError::Json)
}

/// Runs a parse with a fresh budget on this thread.
fn within_budget<T>(f: impl FnOnce() -> T) -> T {
    let before = BUDGET.with(|b| b.replace(Some(BUDGET_BYTES)));
    let out = f();
    BUDGET.with(|b| b.set(before));
    out
}

/// Takes `bytes` from the budget, or fails the parse (for readers with
/// lists of their own).
pub fn charge<E: de::Error>(bytes: usize) -> Result<(), E> {
    BUDGET.with(|b| match b.get().map(|left| left.checked_sub(bytes)) {
        None => Ok(()),
        Some(Some(left)) => {
            b.set(Some(left));
            Ok(())
        }
        Some(None) => Err(E::custom(format_args!(
            "it holds more samples, causes or names than a report can ({} MiB once read)",
            BUDGET_BYTES >> 20
        ))),
    })
}

struct VecVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for VecVisitor<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = seq.next_element()? {
            charge(size_of::<T>())?;
            out.push(item);
        }
        Ok(out)
    }
}

/// A list, each element charged to the budget.
pub fn vec<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    d.deserialize_seq(VecVisitor(PhantomData))
}

/// The same, optional (`null` or absent is `None`; use with `default`).
pub fn opt_vec<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Vec<T>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(bound = "T: Deserialize<'de>")]
    struct Wrap<T>(#[serde(deserialize_with = "vec")] Vec<T>);
    Ok(Option::<Wrap<T>>::deserialize(d)?.map(|w| w.0))
}

struct MapVisitor<V>(PhantomData<V>);

impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
    type Value = BTreeMap<String, V>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(key) = map.next_key::<Text>()? {
            let value = map.next_value()?;
            // A B-tree entry: the key, the value and about as much again.
            charge(2 * size_of::<(String, V)>())?;
            out.insert(key.0, value);
        }
        Ok(out)
    }
}

/// An object of names, each entry and name charged to the budget.
pub fn map<'de, D: Deserializer<'de>, V: Deserialize<'de>>(d: D) -> Result<BTreeMap<String, V>, D::Error> {
    d.deserialize_map(MapVisitor(PhantomData))
}

/// The same, optional.
pub fn opt_map<'de, D: Deserializer<'de>, V: Deserialize<'de>>(d: D) -> Result<Option<BTreeMap<String, V>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(bound = "V: Deserialize<'de>")]
    struct Wrap<V>(#[serde(deserialize_with = "map")] BTreeMap<String, V>);
    Ok(Option::<Wrap<V>>::deserialize(d)?.map(|w| w.0))
}

/// A text charged to the budget.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text, E> {
                charge(s.len())?;
                Ok(Text(s.to_string()))
            }
        }
        d.deserialize_str(V)
    }
}

/// A text, charged to the budget.
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Text::deserialize(d).map(|t| t.0)
}

/// The same, optional.
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Text>::deserialize(d)?.map(|t| t.0))
}

/// The largest count a report may carry (connections, pings, errors):
/// 2^48, 281 trillion, beyond any run; sums of up to `merge::input::MAX_AGENTS`
/// agents are checked all the same.
pub const MAX_COUNT: u64 = 1 << 48;

/// The longest time a report may carry, in seconds: a year.
pub const MAX_SECONDS: f64 = 366.0 * 86_400.0;

/// The latest wall-clock time a report may carry: the year 2200, in ms
/// since the Unix epoch.
pub const MAX_UNIX_MS: u64 = 7_258_118_400_000;

/// A count no run can pass.
pub fn count(name: &str, v: u64) -> Result<(), String> {
    if v > MAX_COUNT {
        return Err(format!("{name} is {v}, more than any run can count (at most 2^48)"));
    }
    Ok(())
}

/// A duration in seconds: finite, not negative, at most a year.
pub fn seconds(name: &str, v: f64) -> Result<(), String> {
    if !(0.0..=MAX_SECONDS).contains(&v) {
        return Err(format!("{name} is {}, not a time a run can have (0 to {MAX_SECONDS} s)", number(v)));
    }
    Ok(())
}

/// A number as a reader would write it: 1e308 rather than 309 digits.
pub fn number(v: f64) -> String {
    if v != 0.0 && !(1e-3..1e15).contains(&v.abs()) { format!("{v:e}") } else { format!("{v}") }
}

/// A wall-clock time in ms since the Unix epoch, before 2200.
pub fn wall_clock(name: &str, v: u64) -> Result<(), String> {
    if v > MAX_UNIX_MS {
        return Err(format!("{name} is {v}, not a wall-clock time a run can have (before the year 2200)"));
    }
    Ok(())
}

/// A rate per second: finite, not negative, at most [`MAX_COUNT`].
pub fn rate(name: &str, v: f64) -> Result<(), String> {
    if !(0.0..=MAX_COUNT as f64).contains(&v) {
        return Err(format!("{name} is {}, not a rate a run can have", number(v)));
    }
    Ok(())
}

/// Text taken from a report, made safe for a terminal: control characters
/// (escape sequences, carriage returns, new lines) become `\u{..}` escapes,
/// so a hostile errno name or label cannot move the cursor, recolour or
/// retitle the terminal, or split a line. The HTML page escapes on its own.
pub fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars().map(|c| if c.is_control() { c.escape_unicode().to_string() } else { c.to_string() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Doc {
        #[serde(deserialize_with = "vec", default)]
        items: Vec<Item>,
        #[serde(deserialize_with = "opt_string", default)]
        name: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    struct Item {
        #[serde(deserialize_with = "opt_map", default)]
        m: Option<BTreeMap<String, u64>>,
    }

    #[test]
    fn empty_elements_are_charged_until_the_budget_ends() {
        // A million empty objects: 2 MB of text, refused at the budget
        // instead of grown to their size in memory.
        let mut text = String::from("{\"items\": [");
        text.push_str(&"{},".repeat(3_000_000));
        text.push_str("{}]}");
        let err = parse::<Doc>(text.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("holds more samples, causes or names than a report can"), "{err}");
        let ok: Doc = parse(br#"{"items": [{"m": {"EMFILE": 3}}, {}], "name": "x"}"#).unwrap();
        assert_eq!((ok.items.len(), ok.name.as_deref()), (2, Some("x")));
        assert_eq!(ok.items[0].m.as_ref().and_then(|m| m.get("EMFILE")), Some(&3));
    }

    #[test]
    fn long_strings_are_refused_before_parsing() {
        let text = format!("{{\"name\": \"{}\"}}", "a\\\"".repeat(MAX_STRING_BYTES));
        let err = parse::<Doc>(text.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("a string at byte 10 is longer than"), "{err}");
        // In pieces, the same.
        let mut shape = Shape::default();
        let r = text.as_bytes().chunks(7).try_for_each(|c| shape.feed(c));
        assert!(r.is_err());
        let fine = format!("{{\"name\": \"{}\"}}", "a".repeat(1000));
        assert!(parse::<Doc>(fine.as_bytes()).is_ok());
    }

    #[test]
    fn large_files_are_refused_on_their_size() {
        let path = std::env::temp_dir().join(format!("tcpmax-bounded-{}.json", std::process::id()));
        let f = File::create(&path).unwrap();
        f.set_len(3 << 30).unwrap();
        let err = read::<Doc>(&path).unwrap_err().to_string();
        assert_eq!(err, "it is 3072 MiB, larger than the 64 MiB of any report tcpmax reads");
        let _ = std::fs::remove_file(&path);
        assert!(matches!(read::<Doc>(Path::new("/")), Err(ReadError::Io(_))));
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(printable("EMFILE"), "EMFILE");
        assert_eq!(printable("E\u{1b}]0;owned\u{7}X\n"), "E\\u{1b}]0;owned\\u{7}X\\u{a}");
    }
}
