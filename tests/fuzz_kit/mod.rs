//! The pieces the fuzz targets of `tests/fuzz.rs` share: the seed corpus,
//! a mutator that makes the stable engine's random bytes useful on
//! structured inputs (JSON, histograms), the allocation bound, and drivers
//! that feed the protocol machines whole and piecewise.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tcpmax::proto::{self, Event, Fault, Machine};

pub mod seeds;

/// The key of the WebSocket client: the seeds' 101 answers carry its
/// accept key.
pub const WS_KEY: [u8; 16] = *b"tcpmax-fuzz-key!";

/// Random inputs per target in an ordinary `cargo test` run (after the
/// corpus): bounded by time so the whole file takes about 15 s on two
/// cores. `BOLERO_RANDOM_TEST_TIME_MS` overrides it for longer runs.
pub const TIME: Duration = Duration::from_millis(2_500);

/// Random inputs at most for a target that opens loopback connections
/// (two an input): well within the ephemeral ports, whose TIME_WAIT
/// entries other tests on the machine share.
/// `BOLERO_RANDOM_ITERATIONS` overrides it.
pub const SOCKET_INPUTS: usize = 1_500;

/// How long a failure is shrunk before it is reported.
pub const SHRINK: Duration = Duration::from_secs(3);

/// The most heap one parse may hold at once: this many times its input...
pub const ALLOC_PER_BYTE: u64 = 64;
/// ...plus this much: room for the real histograms tcpmax writes (1 us to
/// 100 s at 3 significant figures, about 150 KiB each with 64-bit counts).
pub const ALLOC_BASE: u64 = 4 << 20;

/// The address space this test process may take: a parse that asks for
/// gigabytes fails at once (the process aborts, naming the size) instead
/// of filling the machine's memory; [`bounded`] catches the smaller
/// excesses with the input that caused them.
pub const ADDRESS_SPACE: u64 = 8 << 30;

/// Sets [`ADDRESS_SPACE`] as this process's soft limit, once; not under
/// `cargo bolero`, whose sanitizers reserve terabytes of address space.
pub fn guard() {
    if cfg!(fuzzing) {
        return;
    }
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let (soft, hard) = rlimit::Resource::AS.get().unwrap();
        let want = ADDRESS_SPACE.min(hard);
        if want < soft {
            rlimit::Resource::AS.set(want, hard).unwrap();
        }
    });
}

/// The committed seed files of `target` (`tests/__fuzz__/<target>/corpus`),
/// sorted by name.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/__fuzz__").join(target).join("corpus");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths.into_iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Each target's seeds, by its name.
type SeedMap = HashMap<&'static str, &'static [Vec<u8>]>;

/// The seeds of `target`, read once per process.
pub fn cached_seeds(target: &'static str) -> &'static [Vec<u8>] {
    static ALL: OnceLock<Mutex<SeedMap>> = OnceLock::new();
    let mut all = ALL.get_or_init(Default::default).lock().unwrap();
    all.entry(target).or_insert_with(|| Vec::leak(seeds(target)))
}

/// Tokens that break parsers of text: numbers at and past the limits,
/// nesting, escapes, the histogram cookies.
const TOKENS: &[&[u8]] = &[
    b"18446744073709551616",
    b"18446744073709551615",
    b"-1",
    b"1e308",
    b"-0.0",
    b"NaN",
    b"null",
    b"[]",
    b"{}",
    b"[[[[[[[[",
    b"\"",
    b"\\u0000",
    b"\\ud800",
    b"\xff",
    b"\x1c\x84\x93\x13",
    b"\x1c\x84\x93\x14",
    b"\xff\xff\xff\xff",
    b"\x00\x00\x00\x00",
];

/// `seed` changed by `ops`, four bytes an operation: (what, where high,
/// where low, value). A seed fuzzed this way keeps most of its structure,
/// which random bytes never have: the stable engine's substitute for
/// libFuzzer's mutations.
pub fn mutate(seed: &[u8], ops: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for op in ops.chunks_exact(4) {
        let at = usize::from(u16::from_be_bytes([op[1], op[2]])) % (b.len() + 1);
        let v = op[3];
        match op[0] % 8 {
            0 | 1 if at < b.len() => b[at] = v,
            2 => b.insert(at, v),
            3 if at < b.len() => {
                b.remove(at);
            }
            4 => b.truncate(at),
            5 => {
                let end = (at + usize::from(v)).min(b.len());
                let piece = b[at..end].to_vec();
                b.splice(at..at, piece);
            }
            6 => {
                let t = TOKENS[usize::from(v) % TOKENS.len()];
                b.splice(at..at, t.iter().copied());
            }
            7 if at < b.len() => b[at] ^= 1 << (v % 8),
            _ => {}
        }
    }
    b
}

/// The inputs a target tries for one fuzz input: the input itself, and
/// one of `target`'s seeds chosen by its first byte, mutated by the rest.
pub fn variants(target: &'static str, input: &[u8]) -> Vec<Vec<u8>> {
    let seeds = cached_seeds(target);
    let mut v = vec![input.to_vec()];
    if let (Some(&pick), false) = (input.first(), seeds.is_empty()) {
        v.push(mutate(&seeds[usize::from(pick) % seeds.len()], &input[1..]));
    }
    v
}

/// Runs `f`, then asserts the heap it held at its peak (this thread's
/// allocations only) is at most [`ALLOC_PER_BYTE`] times `len` plus
/// [`ALLOC_BASE`]. A panic inside `f` goes on after the measure is closed.
pub fn bounded<R>(what: &str, len: usize, f: impl FnOnce() -> R) -> R {
    let mut out = None;
    let info = allocation_counter::measure(|| {
        out = Some(catch_unwind(AssertUnwindSafe(f)));
    });
    let r = match out {
        Some(Ok(r)) => r,
        Some(Err(p)) => resume_unwind(p),
        None => unreachable!("measure runs its closure"),
    };
    let limit = ALLOC_PER_BYTE * len as u64 + ALLOC_BASE;
    assert!(
        info.bytes_max <= limit,
        "{what}: {} bytes of input held {} bytes of heap at once (limit {limit})",
        len,
        info.bytes_max
    );
    r
}

/// What feeding a machine came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub result: Result<(), Fault>,
    pub out: Vec<u8>,
    pub events: Vec<Event>,
}

/// Feeds `input` to a fresh machine in chunks ending at `cuts` (sorted
/// offsets), as the engine does read by read, until the first fault.
pub fn feed_in<M: Machine>(m: &mut M, start: u8, input: &[u8], cuts: &[usize]) -> Outcome {
    let (mut state, mut partial, mut out, mut events) = (start, Vec::new(), Vec::new(), Vec::new());
    let mut from = 0;
    let mut result = Ok(());
    for &to in cuts.iter().chain(std::iter::once(&input.len())) {
        let to = to.clamp(from, input.len());
        result = proto::feed(m, &mut state, &mut partial, &input[from..to], &mut out, &mut events);
        if let Err(f) = result {
            assert!(proto::explain(f.name()).is_some(), "fault {f:?} is not in the failure table");
            break;
        }
        assert!(partial.len() <= m.cap(state), "{} bytes kept past the cap {}", partial.len(), m.cap(state));
        from = to;
    }
    Outcome { result, out, events }
}

/// The ways one input is cut into reads: whole, at two points the input
/// chooses, and a byte at a time (for inputs short enough that this stays
/// cheap).
pub fn cuttings(input: &[u8]) -> Vec<Vec<usize>> {
    let n = input.len();
    let mut v = vec![vec![]];
    if n > 1 {
        let a = usize::from(input[0]) * n / 256;
        let b = usize::from(input[n - 1]) * n / 256;
        v.push(vec![a.min(b), a.max(b)]);
        v.push(vec![n / 3, 2 * n / 3]);
    }
    if (2..=600).contains(&n) {
        v.push((1..n).collect());
    }
    v
}

/// Feeds `input` to fresh machines made by `make`, cut every way of
/// [`cuttings`]: none may panic, each answer stays within a bound of what
/// came in, and every cutting of an input within the first unit's cap
/// comes to the same outcome as the whole read (past the cap, a header
/// block in one read is taken today: `ws_header_cap`).
pub fn machine<M: Machine>(make: impl Fn() -> M, start: u8, input: &[u8]) {
    let same = input.len() <= make().cap(start);
    let mut whole = None;
    for cuts in cuttings(input) {
        let o = feed_in(&mut make(), start, input, &cuts);
        assert!(o.out.len() <= 2 * input.len() + 512, "{} bytes out for {} in", o.out.len(), input.len());
        match &whole {
            None => whole = Some(o),
            Some(w) if same => assert_eq!(&o, w, "reads cut at {cuts:?} differ from one read"),
            Some(_) => {}
        }
    }
}

/// TLS: one server configuration and one client setup with a self-signed
/// certificate, made once.
pub mod tls {
    use std::sync::{Arc, OnceLock};

    use tcpmax::proto::explain;
    use tcpmax::proto::tls::{self, ClientSetup, MAX_RECORD, Session, Trust};

    pub struct Pki {
        pub server: Arc<rustls::ServerConfig>,
        pub client: ClientSetup,
    }

    pub fn pki() -> &'static Pki {
        static PKI: OnceLock<Pki> = OnceLock::new();
        PKI.get_or_init(|| {
            let (cert, key, _, _) = tls::self_signed().unwrap();
            let server = tls::server_config(vec![cert.clone()], key, 0).unwrap();
            let client = tls::client_setup(Trust::Roots(vec![cert]), "localhost", &[], false).unwrap();
            Pki { server, client }
        })
    }

    /// Feeds `input` to `s` in reads ending at `cuts`, keeping the
    /// incomplete record between reads and dropping a connection whose
    /// pending record passes [`MAX_RECORD`], as the engine does
    /// (`serve/shard.rs`).
    pub fn feed_in(s: &mut Session, input: &[u8], cuts: &[usize]) {
        let (mut buf, mut plain, mut out) = (Vec::new(), Vec::new(), Vec::new());
        let mut from = 0;
        for &to in cuts.iter().chain(std::iter::once(&input.len())) {
            let to = to.clamp(from, input.len());
            buf.extend_from_slice(&input[from..to]);
            from = to;
            match s.feed(&mut buf, &mut plain, &mut out) {
                Ok(p) => {
                    assert!(p.used <= buf.len(), "used {} of {}", p.used, buf.len());
                    buf.drain(..p.used);
                    if buf.len() > MAX_RECORD || p.peer_closed {
                        break;
                    }
                }
                Err(f) => {
                    assert!(explain(f.name()).is_some(), "fault {f:?} is not in the failure table");
                    break;
                }
            }
        }
        assert!(plain.len() <= input.len(), "{} bytes of plaintext from {} of ciphertext", plain.len(), input.len());
        assert!(out.len() <= 4 * input.len() + 16 * 1024, "{} bytes out for {} in", out.len(), input.len());
    }

    /// The wire `c` sends for `input`: segments (split at 0xA5) whose first
    /// byte says what they are: 0, data sealed into records; 1, a
    /// close_notify; 2, data sealed, then one byte of its records damaged;
    /// else raw bytes.
    pub fn records(c: &mut Session, input: &[u8]) -> Vec<u8> {
        let mut wire = Vec::new();
        for seg in input.split(|&b| b == 0xA5) {
            match seg.first() {
                Some(0) => c.send(&seg[1..], &mut wire).unwrap(),
                Some(1) => c.close(&mut wire),
                Some(2) => {
                    let at = wire.len();
                    c.send(&seg[1..], &mut wire).unwrap();
                    let i = at + usize::from(seg.get(1).copied().unwrap_or(0)) % (wire.len() - at);
                    wire[i] ^= 0x40;
                }
                _ => wire.extend_from_slice(seg),
            }
        }
        wire
    }

    /// A client and a server that completed the handshake in memory and
    /// hold only their keys.
    pub fn compact_pair() -> (Session, Session) {
        let p = pki();
        let (mut c, mut s) = (Session::client(&p.client).unwrap(), Session::server(&p.server).unwrap());
        let (mut wire, mut plain) = (Vec::new(), Vec::new());
        c.feed(&mut [], &mut plain, &mut wire).unwrap();
        for _ in 0..4 {
            if wire.is_empty() {
                break;
            }
            let mut back = Vec::new();
            s.feed(&mut wire, &mut plain, &mut back).unwrap();
            wire.clear();
            if !back.is_empty() {
                c.feed(&mut back, &mut plain, &mut wire).unwrap();
            }
        }
        assert!(c.is_compact() && s.is_compact());
        (c, s)
    }
}

/// The two small servers of `serve` that read from a socket: the metrics
/// page and the agent-check port, each started once on a free loopback
/// port, and one exchange with either.
pub mod port {
    use std::io::{Read, Write};
    use std::net::{Shutdown, SocketAddr, TcpStream};
    use std::time::Duration;

    /// No answer within this long is a hang.
    pub const ANSWER: Duration = Duration::from_secs(10);

    /// Connects to `addr`, sends `input` (errors ignored: the server may
    /// answer and close first), ends the sending side and reads the whole
    /// answer. A read error after some bytes (a reset) keeps those bytes.
    pub fn exchange(addr: SocketAddr, input: &[u8]) -> Vec<u8> {
        let mut c = TcpStream::connect_timeout(&addr, ANSWER).unwrap();
        c.set_read_timeout(Some(ANSWER)).unwrap();
        c.set_write_timeout(Some(ANSWER)).unwrap();
        let _ = c.write_all(input);
        let _ = c.shutdown(Shutdown::Write);
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                    panic!("no end of answer within {ANSWER:?} for {} bytes in", input.len())
                }
                Err(_) => break,
            }
        }
        got
    }
}
