#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `tcpmax calc` through the binary: the examples, the JSON schema and the
//! exit code of bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn tcpmax(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tcpmax")).args(args).output().unwrap()
}

fn json(args: &[&str]) -> Value {
    let mut all = vec!["calc", "--json", "-"];
    all.extend_from_slice(args);
    let out = tcpmax(&all);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/calc.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> =
        validator.iter_errors(&value).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:#?}\n{value:#}");
    value
}

/// A root whose port range file is missing, so the default applies.
fn empty_root(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tcpmax-it-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn one_client_ip_one_port_with_the_default_range() {
    let root = empty_root("calc-default");
    let v = json(&["--client-ips", "1", "--server-ports", "1", "--root", root.to_str().unwrap()]);
    assert_eq!(v["port_range"]["low"], 32768);
    assert_eq!(v["port_range"]["high"], 60999);
    assert_eq!(v["port_range"]["size"], 28232);
    assert!(v["port_range"]["source"].as_str().unwrap().starts_with("Linux default"));
    assert_eq!(v["per_pair"]["connections"], 28232);
    assert_eq!(v["total"]["connections"], 28232);
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn sixteen_server_ports_from_one_client_ip() {
    let v = json(&["--server-ports", "16", "--port-range", "32768-60999"]);
    assert_eq!(v["per_pair"]["connections"], 28232);
    assert_eq!(v["per_client_host"]["connections"], 451_712);
    assert_eq!(v["total"]["connections"], 451_712);
    assert_eq!(v["total"]["formula"], "inputs.client_ips × inputs.server_ips × inputs.server_ports × port_range.size");
    assert_eq!(v["inputs"]["server_ports"], 16);
    assert_eq!(v["theoretical_server_max_ipv4"]["connections"], 281_474_976_710_656u64);
    assert_eq!(v["theoretical_server_max_ipv4"]["exponent"], 48);
    assert_eq!(v["theoretical_server_max_ipv6"]["connections"].as_f64(), Some(2f64.powi(144)));
}

#[test]
fn text_output_names_the_formulas() {
    let out = tcpmax(&["calc", "--server-ports", "16", "--port-range", "32768-60999"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("16 server ports × 28,232 ports = 451,712"), "{text}");
    assert!(text.contains("2^48 = 281,474,976,710,656"), "{text}");
    assert!(!text.contains("65,535 myth"), "{text}");
    assert!(text.contains("Why 65,535 is not the limit: tcpmax calc --explain"), "{text}");
    assert!(text.contains("IPv6 2^144 (about 2.2e43)\n"), "{text}");
    let out = tcpmax(&["calc", "--explain", "--port-range", "32768-60999"]);
    assert!(String::from_utf8(out.stdout).unwrap().contains("The 65,535 myth: a port is 16 bits"));
    assert!(text.contains("IP_BIND_ADDRESS_NO_PORT"), "{text}");
}

#[test]
fn bad_input_exits_2() {
    for args in [
        &["--port-range", "60999-32768"][..],
        &["--port-range", "0-100"],
        &["--port-range", "1-70000"],
        &["--port-range", "lots"],
        &["--client-ips", "0"],
        &["--server-ips", "0"],
        &["--server-ports", "0"],
        &["--server-ports", "70000"],
        &["--client-ips", "many"],
    ] {
        let mut all = vec!["calc"];
        all.extend_from_slice(args);
        let out = tcpmax(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("error"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn the_sysctl_form_of_the_port_range() {
    // `sysctl net.ipv4.ip_local_port_range` prints `32768\t60999`.
    for range in ["32768 60999", "32768\t60999", "32768\t60999\n"] {
        let v = json(&["--port-range", range]);
        assert_eq!((v["port_range"]["low"].as_u64(), v["port_range"]["high"].as_u64()), (Some(32768), Some(60999)));
        assert_eq!(v["port_range"]["source"], "--port-range");
    }
}

#[test]
fn reversed_or_empty_port_ranges_exit_2_with_one_line() {
    for (range, cause) in [
        ("60999 32768", "port range 60999-32768 is reversed"),
        ("60999\t32768", "port range 60999-32768 is reversed"),
        ("60999-32768", "port range 60999-32768 is reversed"),
        ("", "the port range is empty"),
        (" \t", "the port range is empty"),
        ("1 2 3", "is not a port range"),
    ] {
        let out = tcpmax(&["calc", "--port-range", range]);
        assert_eq!(out.status.code(), Some(2), "{range:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{range:?}: {err}");
        assert!(err.starts_with("tcpmax: error: ") && err.contains(cause), "{range:?}: {err}");
        assert!(out.stdout.is_empty(), "{range:?}");
    }
}

#[test]
fn per_pair_shows_the_kernel_and_what_load_plans() {
    let v = json(&["--port-range", "32768-60999"]);
    assert_eq!(v["per_pair"]["connections"], 28232);
    assert_eq!(v["load_per_pair"]["connections"], 11292);
    assert_eq!(v["load_pair_budget"]["percent"], 40.0);
    assert_eq!(v["load_per_pair"]["formula"], "floor(port_range.size × load_pair_budget.percent / 100)");
    // A one-port range: load plans nothing there, and the JSON still holds.
    let v = json(&["--port-range", "5000-5000"]);
    assert_eq!((v["per_pair"]["connections"].as_u64(), v["load_per_pair"]["connections"].as_u64()), (Some(1), Some(0)));
    let out = tcpmax(&["calc", "--port-range", "32768-60999"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("28,232 ports: what the kernel allows"), "{text}");
    assert!(text.contains("per pair as `load` plans it        11,292  = 40% of 28,232 ports"), "{text}");
}
