//! Unit tests of the four-tuple arithmetic.

use super::*;

fn topo(c: u64, s: u64, p: u64, range: PortRange) -> Topology {
    Topology { client_ips: c, server_ips: s, server_ports: p, port_range: range }
}

#[test]
fn one_client_one_port() {
    let c = calc(&topo(1, 1, 1, DEFAULT_PORT_RANGE), "test").unwrap();
    assert_eq!(c.per_pair.connections, 28_232);
    assert_eq!(c.per_client_host.connections, 28_232);
    assert_eq!(c.per_server_socket.connections, 28_232);
    assert_eq!(c.total.connections, 28_232);
    assert_eq!(c.per_pair.formula, "port_range.high - port_range.low + 1");
    assert!(
        render(&c, false).contains("= 60999 - 32768 + 1 = 28,232 ports: what the kernel allows\n"),
        "{}",
        render(&c, false)
    );
}

#[test]
fn per_pair_shows_what_load_plans_beside_the_kernel() {
    let c = calc(&topo(1, 1, 1, DEFAULT_PORT_RANGE), "test").unwrap();
    assert_eq!(c.per_pair.connections, 28_232);
    assert_eq!(c.load_per_pair.connections, u128::from(PairBudget::default().per_pair(28_232)));
    assert_eq!(c.load_per_pair.connections, 11_292);
    assert_eq!(c.load_pair_budget, PairBudget::default());
    let text = render(&c, false);
    assert!(text.contains("= 60999 - 32768 + 1 = 28,232 ports: what the kernel allows\n"), "{text}");
    assert!(text.contains("per pair as `load` plans it        11,292  = 40% of 28,232 ports"), "{text}");
    // One port: load plans none on it.
    let c = calc(&topo(1, 1, 1, PortRange::new(5000, 5000).unwrap()), "test").unwrap();
    assert_eq!((c.per_pair.connections, c.load_per_pair.connections), (1, 0));
}

#[test]
fn sixteen_server_ports_from_one_client_ip() {
    let c = calc(&topo(1, 1, 16, DEFAULT_PORT_RANGE), "test").unwrap();
    assert_eq!(c.per_pair.connections, 28_232);
    assert_eq!(c.total.connections, 16 * 28_232);
    assert_eq!(c.total.connections, 451_712);
    assert_eq!(c.total.formula, "inputs.client_ips × inputs.server_ips × inputs.server_ports × port_range.size");
    let text = render(&c, false);
    assert!(text.contains("= 1 client IP × 1 server IP × 16 server ports × 28,232 ports = 451,712\n"), "{text}");
    assert!(text.contains("= 1 client IP × 28,232 ports = 28,232 from these clients\n"), "{text}");
    assert_eq!(c.per_server_socket.connections, 28_232);
}

#[test]
fn many_clients_and_servers() {
    let r = PortRange::new(1024, 65_535).unwrap();
    let c = calc(&topo(100, 4, 8, r), "test").unwrap();
    assert_eq!(c.per_pair.connections, 64_512);
    assert_eq!(c.per_server_socket.connections, 6_451_200);
    assert_eq!(c.total.connections, 100 * 4 * 8 * 64_512);
}

#[test]
fn huge_inputs_do_not_overflow() {
    let r = PortRange::new(1, 65_535).unwrap();
    let c = calc(&topo(u64::MAX, 1, 1, r), "test").unwrap();
    assert_eq!(c.total.connections, u128::from(u64::MAX) * 65_535);
    let err = calc(&topo(u64::MAX, u64::MAX, 65_535, r), "test").unwrap_err();
    assert!(err.is_input());
}

#[test]
fn bad_input_is_an_input_error() {
    for s in ["60999-32768", "0-10", "1-65536", "abc", "100", "1-x", ""] {
        assert!(parse_port_range(s).unwrap_err().is_input(), "{s}");
    }
    assert_eq!(parse_port_range(" 10000 - 10999 ").unwrap().size(), 1000);
}

#[test]
fn the_sysctl_form_is_a_port_range() {
    for s in ["32768 60999", "32768\t60999", "32768\t60999\n", "  32768   60999 "] {
        assert_eq!(parse_port_range(s).unwrap(), DEFAULT_PORT_RANGE, "{s:?}");
    }
    for s in ["60999 32768", "60999\t32768", "", " \t\n", "1 2 3", "32768", "32768 x"] {
        let err = parse_port_range(s).unwrap_err();
        assert!(err.is_input(), "{s:?}");
        assert!(!err.to_string().contains('\n'), "{s:?}: {err}");
    }
    assert!(parse_port_range("60999 32768").unwrap_err().to_string().contains("is reversed"));
    assert!(parse_port_range(" ").unwrap_err().to_string().contains("the port range is empty"));
    for t in [
        topo(0, 1, 1, DEFAULT_PORT_RANGE),
        topo(1, 0, 1, DEFAULT_PORT_RANGE),
        topo(1, 1, 0, DEFAULT_PORT_RANGE),
        topo(1, 1, 65_536, DEFAULT_PORT_RANGE),
    ] {
        assert!(calc(&t, "test").unwrap_err().is_input(), "{t:?}");
    }
}

#[test]
fn theoretical_numbers() {
    assert!(THEORETICAL_IPV4.ends_with(&group(1u128 << 48)));
    assert_eq!(group(1u128 << 48), "281,474,976,710,656");
    let c = calc(&topo(1, 1, 1, DEFAULT_PORT_RANGE), "test").unwrap();
    let v4 = serde_json::to_value(c.theoretical_server_max_ipv4).unwrap();
    assert_eq!(v4, serde_json::json!({ "connections": 281_474_976_710_656u64, "base": 2, "exponent": 48 }));
    let v6 = serde_json::to_value(c.theoretical_server_max_ipv6).unwrap();
    // 2^144 is above u128: a float, exact for a power of two.
    assert_eq!(v6["connections"].as_f64(), Some(2f64.powi(144)));
    assert_eq!((v6["base"].as_u64(), v6["exponent"].as_u64()), (Some(2), Some(144)));
    // 2^144 as a power with its magnitude, not 45 digits.
    assert_eq!(THEORETICAL_IPV6, format!("2^144 (about {:.1e})", 2f64.powi(144)));
    assert!(render(&c, false).contains("IPv6 2^144 (about 2.2e43)\n"));
    // The myth once, on demand: a one-line pointer otherwise.
    assert!(!render(&c, false).contains("The 65,535 myth"));
    assert!(render(&c, false).contains("Why 65,535 is not the limit: tcpmax calc --explain\n"));
    assert!(render(&c, true).contains(MYTH));
}

#[test]
fn range_falls_back_to_the_default() {
    let fs = ProcFs::new("/nonexistent-root-for-tcpmax-test");
    let (r, source) = resolve_range(None, &fs).unwrap();
    assert_eq!(r, DEFAULT_PORT_RANGE);
    assert!(source.starts_with("Linux default"), "{source}");
    let (r, source) = resolve_range(Some("2000-2999"), &fs).unwrap();
    assert_eq!((r.size(), source.as_str()), (1000, "--port-range"));
}
