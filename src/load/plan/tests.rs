//! Unit tests of the address plan, with exact arithmetic.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use super::*;

/// Usable ports of the default range 32768-60999.
const DEFAULT_USABLE: u64 = 28_232;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// `n` destinations 127.0.0.1:9000, :9001, ...
fn dests(n: u16) -> Vec<SocketAddr> {
    (0..n).map(|k| sa(&format!("127.0.0.1:{}", 9000 + k))).collect()
}

/// `n` sources 127.0.0.1, 127.0.0.2, ...
fn sources(n: u8) -> Vec<IpAddr> {
    (1..=n).map(|k| ip(&format!("127.0.0.{k}"))).collect()
}

fn refused(e: Error) -> (String, String) {
    match e {
        Error::Refused { reason, fix } => (reason, fix),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn budget_arithmetic() {
    assert_eq!(PairBudget::default().per_pair(DEFAULT_USABLE), 11_292);
    assert_eq!(PairBudget::Percent(100.0).per_pair(DEFAULT_USABLE), 28_232);
    assert_eq!(PairBudget::Count(20_000).per_pair(DEFAULT_USABLE), 20_000);
    assert_eq!(PairBudget::Count(50_000).per_pair(DEFAULT_USABLE), 28_232);
    assert_eq!(PairBudget::default().per_pair(0), 0);
}

#[test]
fn budget_parsing() {
    assert_eq!("40%".parse(), Ok(PairBudget::Percent(40.0)));
    assert_eq!(" 12.5 % ".parse(), Ok(PairBudget::Percent(12.5)));
    assert_eq!("15k".parse(), Ok(PairBudget::Count(15_000)));
    for bad in ["0", "0%", "150%", "-5%", "abc", "%", ""] {
        assert!(bad.parse::<PairBudget>().is_err(), "{bad:?}");
    }
    assert_eq!(PairBudget::default().to_string(), "40%");
    assert_eq!(PairBudget::Count(11_292).to_string(), "11,292");
}

#[test]
fn even_spread_larger_pairs_first() {
    let p = plan(10, &dests(1), &sources(3), DEFAULT_USABLE, PairBudget::default()).unwrap();
    let counts: Vec<u64> = p.pairs.iter().map(|p| p.count).collect();
    assert_eq!(counts, [4, 3, 3]);
    assert_eq!((p.count, p.sources, p.destinations), (10, 3, 1));
    assert_eq!((p.per_pair_budget, p.max_per_pair()), (11_292, 4));
}

#[test]
fn pairs_are_destinations_outer_sources_inner() {
    let p = plan(4, &dests(2), &sources(2), DEFAULT_USABLE, PairBudget::default()).unwrap();
    let order: Vec<_> = p.pairs.iter().map(|p| (p.source, p.dest)).collect();
    let (s1, s2, d1, d2) = (ip("127.0.0.1"), ip("127.0.0.2"), dests(2)[0], dests(2)[1]);
    assert_eq!(order, [(Some(s1), d1), (Some(s2), d1), (Some(s1), d2), (Some(s2), d2)]);
}

#[test]
fn exactly_full_fits_one_more_is_refused() {
    let budget = PairBudget::default();
    assert!(plan(22_584, &dests(1), &sources(2), DEFAULT_USABLE, budget).is_ok());
    assert!(plan(22_585, &dests(1), &sources(2), DEFAULT_USABLE, budget).is_err());
}

#[test]
fn hundred_k_from_one_source_to_one_destination_is_refused() {
    let e = plan(100_000, &dests(1), &sources(1), DEFAULT_USABLE, PairBudget::default());
    let (reason, fix) = refused(e.unwrap_err());
    assert_eq!(
        reason,
        "-c 100,000 to 1 destination from 1 source needs 100,000 ports of each (source, destination) pair; the range gives 28,232 per pair and tcpmax uses at most 40% (11,292) to keep connect fast"
    );
    // ceil(100,000 / 11,292) = 9 pairs: 8 more sources or 8 more destinations.
    assert_eq!(fix, "add --source 127.0.0.2-127.0.0.9 (8 more source IPs) or 8 more destination ports");
    let sources9 = sources(9);
    let budget = PairBudget::default();
    assert!(plan(100_000, &dests(1), &sources9, DEFAULT_USABLE, budget).is_ok());
    assert!(plan(100_000, &dests(9), &sources(1), DEFAULT_USABLE, budget).is_ok());
}

#[test]
fn refusal_with_kernel_picked_source_counts_the_replaced_address() {
    let e = plan(100_000, &dests(1), &[], DEFAULT_USABLE, PairBudget::default());
    let (reason, fix) = refused(e.unwrap_err());
    assert!(reason.contains("from 1 source (picked by the kernel)"), "{reason}");
    assert!(fix.starts_with("add --source 127.0.0.1-127.0.0.9 (9 source IPs)"), "{fix}");
}

#[test]
fn refusal_for_non_loopback_and_ipv6_loopback() {
    let t = [sa("10.0.0.5:80"), sa("10.0.0.5:81")];
    let e = plan(50_000, &t, &[ip("10.0.0.1")], DEFAULT_USABLE, PairBudget::default());
    let (reason, fix) = refused(e.unwrap_err());
    assert!(reason.contains("needs 25,000 ports"), "{reason}");
    // ceil(50,000 / 11,292) = 5 pairs; 3 missing: 2 sources (2 each) or 3 ports.
    assert_eq!(
        fix,
        "add 2 more source IPs of this machine with --source (a range or CIDR) or 3 more destination ports"
    );
    let e = plan(20_000, &[sa("[::1]:9000")], &[ip("::1")], DEFAULT_USABLE, PairBudget::default());
    let (_, fix) = refused(e.unwrap_err());
    assert!(fix.contains("::1 is the only IPv6 loopback address"), "{fix}");
    assert!(fix.ends_with("or 1 more destination port"), "{fix}");
}

#[test]
fn refusal_with_a_count_budget() {
    let budget = PairBudget::Count(20_000);
    let (reason, _) = refused(plan(30_000, &dests(1), &[], DEFAULT_USABLE, budget).unwrap_err());
    assert!(reason.ends_with("tcpmax uses at most 20,000 to keep connect fast"), "{reason}");
    let budget = PairBudget::Count(50_000);
    let (reason, _) = refused(plan(30_000, &dests(1), &[], DEFAULT_USABLE, budget).unwrap_err());
    assert!(reason.contains("at most 28,232 (50,000 asked)"), "{reason}");
}

#[test]
fn empty_range_refuses_with_the_sysctl() {
    let (_, fix) = refused(plan(1, &dests(1), &[], 0, PairBudget::default()).unwrap_err());
    assert!(fix.contains("ip_local_port_range"), "{fix}");
}

#[test]
fn one_source_may_carry_more_than_65535_over_several_destinations() {
    let budget = PairBudget::Count(20_000);
    let p = plan(80_000, &dests(4), &sources(1), DEFAULT_USABLE, budget).unwrap();
    assert_eq!(p.pairs.len(), 4);
    assert!(p.pairs.iter().all(|x| x.count == 20_000));
    assert_eq!((p.sources, p.destinations), (1, 4));
    let p = plan(100_000, &dests(9), &sources(1), DEFAULT_USABLE, PairBudget::default());
    assert_eq!(p.unwrap().max_per_pair(), 11_112);
}

#[test]
fn families_pair_only_with_their_own() {
    let t = [sa("127.0.0.1:9000"), sa("[::1]:9000")];
    let s = [ip("127.0.0.2"), ip("::1"), ip("127.0.0.2")];
    let p = plan(3, &t, &s, DEFAULT_USABLE, PairBudget::default()).unwrap();
    let got: Vec<_> = p.pairs.iter().map(|x| (x.source, x.dest)).collect();
    assert_eq!(got, [(Some(s[0]), t[0]), (Some(s[1]), t[1])]);
    let e = plan(3, &t[..1], &[ip("::1")], DEFAULT_USABLE, PairBudget::default());
    assert!(matches!(e, Err(Error::Input(_))));
    let e = plan(3, &[], &[], DEFAULT_USABLE, PairBudget::default());
    assert!(matches!(e, Err(Error::Input(_))));
}

#[test]
fn auto_sources_for_a_million_to_one_loopback_destination() {
    let budget = PairBudget::default();
    let s = auto_loopback_sources(1_000_000, &dests(1), DEFAULT_USABLE, budget);
    // ceil(1,000,000 / 11,292) = 89.
    assert_eq!(s.len(), 89);
    assert_eq!((s[0], s[88]), (ip("127.0.0.1"), ip("127.0.0.89")));
    let p = plan(1_000_000, &dests(1), &s, DEFAULT_USABLE, budget).unwrap();
    assert_eq!(p.max_per_pair(), 11_236);
    assert!(plan(1_000_000, &dests(1), &s[..88], DEFAULT_USABLE, budget).is_err());
    // Four destination ports need a quarter of the sources.
    assert_eq!(auto_loopback_sources(1_000_000, &dests(4), DEFAULT_USABLE, budget).len(), 23);
    assert_eq!(auto_loopback_sources(10, &dests(1), DEFAULT_USABLE, budget).len(), 1);
}

#[test]
fn auto_sources_only_for_loopback() {
    let budget = PairBudget::default();
    let remote = [sa("127.0.0.1:9000"), sa("10.0.0.1:9000")];
    assert!(auto_loopback_sources(1_000, &remote, DEFAULT_USABLE, budget).is_empty());
    assert!(auto_loopback_sources(1_000, &[], DEFAULT_USABLE, budget).is_empty());
    let v6 = [sa("[::1]:9000")];
    assert_eq!(auto_loopback_sources(1_000_000, &v6, DEFAULT_USABLE, budget), [ip("::1")]);
    let both = [sa("127.9.9.9:9000"), sa("[::1]:9000")];
    let s = auto_loopback_sources(30_000, &both, DEFAULT_USABLE, budget);
    // 3 pairs needed, ::1 carries one: two IPv4 sources.
    assert_eq!(s, [ip("127.0.0.1"), ip("127.0.0.2"), ip("::1")]);
    assert!(plan(30_000, &both, &s, DEFAULT_USABLE, budget).is_ok());
}

/// Every pair gets exactly its count from `pair_of`, consecutive indices
/// differ in pair, and out-of-range indices have none.
#[test]
fn pair_of_gives_exact_counts() {
    let budget = PairBudget::Percent(100.0);
    for (count, s, d) in [(10, 1, 1), (10, 3, 1), (7, 2, 3), (1_000, 5, 7), (5, 3, 3), (0, 2, 2)] {
        let p = plan(count, &dests(d), &sources(s), DEFAULT_USABLE, budget).unwrap();
        let mut seen: HashMap<(Option<IpAddr>, SocketAddr), u64> = HashMap::new();
        let mut last = None;
        for i in 0..count {
            let pair = p.pair_of(i).unwrap();
            *seen.entry(pair).or_default() += 1;
            if p.pairs.len() > 1 {
                assert_ne!(last, Some(pair), "index {i}");
            }
            last = Some(pair);
        }
        for x in &p.pairs {
            let got = seen.get(&(x.source, x.dest)).copied().unwrap_or(0);
            assert_eq!(got, x.count, "{count} over {s}x{d}");
        }
        assert_eq!(p.pair_of(count), None);
        assert_eq!(p.pairs.iter().map(|x| x.count).sum::<u64>(), count);
    }
}

#[test]
fn render_shows_totals_budget_and_first_pairs() {
    let s = sources(89);
    let p = plan(1_000_000, &dests(1), &s, DEFAULT_USABLE, PairBudget::default()).unwrap();
    let text = render(&p);
    assert!(
        text.starts_with("1,000,000 connections over 89 (source, destination) pairs: 89 sources × 1 destination\n"),
        "{text}"
    );
    assert!(text.contains("at most 11,236 per pair; budget 40% (11,292) of 28,232 usable local ports"), "{text}");
    assert!(text.contains("  127.0.0.1 -> 127.0.0.1:9000  11,236\n"), "{text}");
    assert!(text.ends_with("  ... 84 more\n"), "{text}");
    let p = plan(5, &dests(1), &[], DEFAULT_USABLE, PairBudget::default()).unwrap();
    assert!(render(&p).contains("(kernel) -> 127.0.0.1:9000  5"));
}

#[test]
fn plan_serialises() {
    let p = plan(3, &dests(1), &sources(1), DEFAULT_USABLE, PairBudget::default()).unwrap();
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["pairs"][0]["source"], "127.0.0.1");
    assert_eq!(v["pairs"][0]["dest"], "127.0.0.1:9000");
    assert_eq!(v["per_pair_budget"], 11_292);
    assert_eq!(v["budget"]["percent"], 40.0);
}

#[test]
fn usable_local_ports_reads_range_minus_reserved() {
    let root = std::env::temp_dir().join(format!("tcpmax-load-plan-{}", std::process::id()));
    let dir = root.join("proc/sys/net/ipv4");
    std::fs::create_dir_all(&dir).unwrap();
    let fs = ProcFs::new(&root);
    assert!(usable_local_ports(&fs).is_err());
    std::fs::write(dir.join("ip_local_port_range"), "32768\t60999\n").unwrap();
    assert_eq!(usable_local_ports(&fs).unwrap(), DEFAULT_USABLE);
    std::fs::write(dir.join("ip_local_reserved_ports"), "40000-40009,8080\n").unwrap();
    assert_eq!(usable_local_ports(&fs).unwrap(), DEFAULT_USABLE - 10);
    std::fs::write(dir.join("ip_local_reserved_ports"), "nonsense\n").unwrap();
    assert!(usable_local_ports(&fs).is_err());
    std::fs::write(dir.join("ip_local_port_range"), "60999 32768\n").unwrap();
    assert!(usable_local_ports(&fs).is_err());
    let _ = std::fs::remove_dir_all(&root);
}
