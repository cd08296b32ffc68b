//! Unit tests of the agent options: parsing, the start check, the index
//! and the share each agent runs.

use std::ffi::OsString;
use std::net::IpAddr;

use clap::Parser;

use super::*;
use crate::cli::{Cli, Command};

/// Parses `tcpmax load ARGS...` into the load and agent options.
fn parse(args: &[&str]) -> CommandLine {
    let all = ["tcpmax", "load"].iter().chain(args).copied();
    match Cli::try_parse_from(all).unwrap().command {
        Command::Load(cmd) => cmd,
        other => panic!("not load: {other:?}"),
    }
}

fn resolve(args: &[&str], env: Option<&str>) -> crate::Result<Resolved> {
    let cmd = parse(args);
    cmd.agent.resolve(crate::load::run::Spec::from(&cmd.load), env.map(OsString::from), SystemTime::now())
}

fn input_error(r: crate::Result<Resolved>) -> String {
    match r {
        Err(Error::Input(why)) => why,
        other => panic!("expected an input error, got {other:?}"),
    }
}

#[test]
fn start_at_parses_rfc3339_and_unix_seconds() {
    let at = |s: &str| parse_start_at(s).map(unix_ms);
    assert_eq!(at("2030-01-02T03:04:05Z"), Ok(1_893_553_445_000));
    assert_eq!(at("2030-01-02T03:04:05.250Z"), Ok(1_893_553_445_250));
    assert_eq!(at("2030-01-02T03:04:05+00:00"), Ok(1_893_553_445_000));
    assert_eq!(at("1893553445"), Ok(1_893_553_445_000));
    assert_eq!(at(" 1893553445.5 "), Ok(1_893_553_445_500));
    assert_eq!(at("1893553445.123456789"), Ok(1_893_553_445_123));
    for bad in [
        "",
        "now",
        "1893553445.",
        ".5",
        "1.2.3",
        "-5",
        "1893553445.1234567890",
        "99999999999999",
        "2030-01-02 03:04:05",
        "2030-01-02T03:04:05+01:00",
        "2030-13-02T03:04:05Z",
    ] {
        let e = parse_start_at(bad).unwrap_err();
        assert!(e.contains("RFC 3339"), "{bad:?}: {e}");
    }
}

#[test]
fn start_at_fuzz_never_panics() {
    const ALPHABET: &[u8] = b"0123456789-:.TZ+ ";
    let mut next = crate::testing::xorshift(0x51a7_7a75);
    for _ in 0..20_000 {
        let len = (next() % 30) as usize;
        let s: String = (0..len).map(|_| char::from(ALPHABET[(next() % ALPHABET.len() as u64) as usize])).collect();
        let _ = parse_start_at(&s);
    }
}

#[test]
fn a_start_in_the_past_is_refused_with_the_reason() {
    let now = UNIX_EPOCH + Duration::from_secs(1_893_553_445);
    assert!(check_start(now - Duration::from_millis(900), now).is_ok());
    assert!(check_start(now + Duration::from_secs(60), now).is_ok());
    let Err(Error::Input(why)) = check_start(now - Duration::from_secs(5), now) else { panic!("not refused") };
    assert!(why.contains("2030-01-02T03:04:00.000Z passed 5.0 s ago"), "{why}");
    assert!(why.contains("in the future"), "{why}");
    let Err(Error::Input(why)) = check_start(now + Duration::from_secs(3 * 86_400), now) else { panic!() };
    assert!(why.contains("milliseconds"), "{why}");
}

#[test]
fn a_run_without_agents_is_agent_zero_of_one() {
    let r = resolve(&["127.0.0.1:9000", "-c", "30k", "--ping-rate", "1%"], Some("3")).unwrap();
    assert_eq!((r.info.index, r.info.whole.agents, r.info.index_from.as_str()), (0, 1, "single"));
    assert_eq!((r.info.share.count, r.info.share.ping_rate, r.info.whole.ping_rate), (30_000, 300, 300));
    assert_eq!(r.spec.count, 30_000);
    assert!(r.spec.sources.is_empty() && r.sources.is_none());
}

#[test]
fn the_index_comes_from_the_flag_or_the_job() {
    let base = ["10.0.0.1:9000", "-c", "400k", "--agents", "4"];
    let flag = [&base[..], &["--agent-index", "2"]].concat();
    let r = resolve(&flag, Some("1")).unwrap();
    assert_eq!((r.info.index, r.info.index_from.as_str()), (2, "--agent-index"));
    let r = resolve(&base, Some(" 1\n")).unwrap();
    assert_eq!((r.info.index, r.info.index_from.as_str()), (1, "JOB_COMPLETION_INDEX"));
    let why = input_error(resolve(&base, None));
    assert!(why.contains("JOB_COMPLETION_INDEX is not set") && why.contains("--agent-index I (0 to 3)"), "{why}");
    let why = input_error(resolve(&base, Some("two")));
    assert!(why.contains("JOB_COMPLETION_INDEX=\"two\" is not an agent index"), "{why}");
    let why = input_error(resolve(&base, Some("4")));
    assert!(why.contains("agent index 4 (from JOB_COMPLETION_INDEX) is out of range for --agents 4"), "{why}");
    let why = input_error(resolve(&["10.0.0.1:9000", "--agents", "0", "--agent-index", "0"], None));
    assert!(why.contains("at least 1"), "{why}");
    // --agent-index alone, or --quiet with no JSON to print, is a usage error of clap's.
    assert!(Cli::try_parse_from(["tcpmax", "load", "10.0.0.1:9000", "--agent-index", "1"]).is_err());
    assert!(Cli::try_parse_from(["tcpmax", "load", "10.0.0.1:9000", "--quiet"]).is_err());
    assert!(Cli::try_parse_from(["tcpmax", "load", "10.0.0.1:9000", "--quiet", "--json", "-"]).is_ok());
}

#[test]
fn shares_of_connections_rate_and_pings_add_up() {
    let mut sums = (0, 0, 0);
    for i in 0..3 {
        let index = i.to_string();
        let args = ["10.0.0.1:9000", "-c", "10", "--rate", "100", "--ping-rate", "5", "--agents", "3"];
        let r = resolve(&[&args[..], &["--agent-index", &index]].concat(), None).unwrap();
        let s = &r.info.share;
        assert_eq!((r.spec.count, r.spec.rate, r.spec.ping_rate.of(0)), (s.count, s.rate, s.ping_rate));
        assert_eq!(s.first, sums.0);
        sums = (sums.0 + s.count, sums.1 + s.rate.unwrap(), sums.2 + s.ping_rate);
        assert_eq!((r.info.whole.count, r.info.whole.rate, r.info.whole.ping_rate), (10, Some(100), 5));
        // Not loopback: the host's own address, picked by the kernel.
        assert!(r.spec.sources.is_empty());
    }
    assert_eq!(sums, (10, 100, 5));
    let why = input_error(resolve(&["10.0.0.1:9000", "-c", "3", "--agents", "4", "--agent-index", "0"], None));
    assert!(why.contains("-c 3 over --agents 4"), "{why}");
    let args = ["10.0.0.1:9000", "--rate", "3", "--agents", "4", "--agent-index", "0"];
    assert!(input_error(resolve(&args, None)).contains("--rate 3 over --agents 4"));
}

#[test]
fn destinations_rotate_by_the_agents_offset() {
    let args = ["10.0.0.1:1,10.0.0.1:2,10.0.0.1:3", "-c", "10", "--agents", "2", "--agent-index", "1"];
    let r = resolve(&args, None).unwrap();
    // Agent 1 starts at the plan's connection 5: 5 mod 3 = 2.
    let ports: Vec<u16> = r.spec.targets.iter().flat_map(|t| t.addrs.iter()).map(|a| a.port()).collect();
    assert_eq!(ports, [3, 1, 2]);
    let whole: Vec<u16> = r.info.whole.targets.iter().map(|t| t.port()).collect();
    assert_eq!(whole, [1, 2, 3]);
}

#[test]
fn agents_on_one_loopback_host_take_disjoint_sources() {
    let mut ranges: Vec<(IpAddr, IpAddr)> = Vec::new();
    for i in 0..4 {
        let index = i.to_string();
        let args = ["127.0.0.1:9000", "-c", "400k", "--agents", "4", "--agent-index", &index, "--pair-budget", "10k"];
        let r = resolve(&args, None).unwrap();
        let range = r.sources.unwrap();
        assert!(matches!(r.spec.sources[..], [SourceSpec::Range(lo, hi)] if (lo, hi) == range));
        ranges.push(range);
    }
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(ranges[0], (ip("127.0.0.1"), ip("127.0.0.10")));
    assert_eq!(ranges[3], (ip("127.0.0.31"), ip("127.0.0.40")));
    // Explicit sources are the host's own: passed on as given.
    let args = ["127.0.0.1:9000", "-c", "1k", "--agents", "2", "--agent-index", "1", "--source", "127.0.9.1"];
    let r = resolve(&args, None).unwrap();
    assert!(r.sources.is_none());
    assert!(matches!(r.spec.sources[..], [SourceSpec::One(_)]));
}

#[test]
fn start_at_goes_into_the_whole_plan() {
    let at = SystemTime::now() + Duration::from_secs(30);
    let stamp = humantime::format_rfc3339_millis(at).to_string();
    let r = resolve(&["10.0.0.1:9000", "--agents", "2", "--agent-index", "0", "--start-at", &stamp], None).unwrap();
    assert_eq!(r.info.whole.start_at_unix_ms, Some(unix_ms(at)));
    let past = humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(10)).to_string();
    assert!(input_error(resolve(&["10.0.0.1:9000", "--start-at", &past], None)).contains("passed"));
}

#[test]
fn waiting_ends_at_the_instant() {
    let past = SystemTime::now() - Duration::from_millis(500);
    assert_eq!(wait_until(past), Waited::Started);
    let at = SystemTime::now() + Duration::from_millis(150);
    assert_eq!(wait_until(at), Waited::Started);
    assert!(SystemTime::now() >= at);
}
