#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Every JSON output gives numbers as JSON numbers: the reports of `doctor`,
//! `calc` and `prove` (with the machine facts) are walked, and a string that
//! looks like a formatted number ("20,000 soft / 20,000 hard", "23.5 GiB
//! total", "32768 60999", "2^48 = ...") fails the test. Prose fields (notes,
//! fixes, summaries, claims, reasons) and identifiers (kernel release, CPU
//! model, commit, date) may hold any text.

mod common;

use serde_json::Value;

use common::tcpmax;

/// Keys whose strings are prose or identifiers, exempt from the check.
const TEXTUAL: [&str; 11] =
    ["note", "notes", "fix", "summary", "claim", "reason", "source", "kernel", "cpu_model", "commit", "date"];

/// Why `s` looks like a number formatted for people, if it does.
fn formatted(s: &str) -> Option<&'static str> {
    let t = s.trim();
    let b = t.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    if !t.is_empty() && t.parse::<f64>().is_ok() {
        return Some("a number in a string");
    }
    if let Some(p) = t.strip_suffix('%') {
        if p.trim().parse::<f64>().is_ok() {
            return Some("a percentage in a string");
        }
    }
    for i in 0..b.len() {
        if digit(i) && b[i + 1..].starts_with(b",") && (2..5).all(|k| digit(i + k)) && !digit(i + 5) {
            return Some("digits with thousands separators");
        }
        if digit(i) && b.get(i + 1) == Some(&b'^') && digit(i + 2) {
            return Some("a power written out");
        }
    }
    // A leading number followed by a space: "N unit" or "A B".
    let lead = t.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ',' || c == '_')).unwrap_or(t.len());
    if lead > 0 && digit(0) && t[lead..].starts_with(char::is_whitespace) {
        return Some("a number followed by a unit or another number");
    }
    for unit in [" B", " KiB", " MiB", " GiB", " TiB", " kB", " MB", " GB", " ms", " us"] {
        if let Some(at) = t.find(unit) {
            let after = t[at + unit.len()..].chars().next();
            if at > 0 && digit(at - 1) && !after.is_some_and(char::is_alphanumeric) {
                return Some("a size or time with its unit");
            }
        }
    }
    None
}

/// Every string of `v` that looks formatted, with its JSON pointer, except
/// under the keys of [`TEXTUAL`].
fn offenders(v: &Value, path: &str, key: &str, out: &mut Vec<String>) {
    match v {
        Value::String(s) if !TEXTUAL.contains(&key) => {
            if let Some(why) = formatted(s) {
                out.push(format!("{path} = {s:?}: {why}"));
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                offenders(item, &format!("{path}/{i}"), key, out);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                offenders(item, &format!("{path}/{k}"), k, out);
            }
        }
        _ => {}
    }
}

fn assert_numbers(args: &[&str]) -> Value {
    let out = tcpmax(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut bad = Vec::new();
    offenders(&v, "", "", &mut bad);
    assert!(bad.is_empty(), "{args:?} writes formatted numbers as strings:\n{}", bad.join("\n"));
    v
}

#[test]
fn the_detector_knows_formatted_numbers() {
    for s in [
        "20,000 soft / 20,000 hard",
        "23.5 GiB total",
        "32768 60999",
        "4096 131072 6291456",
        "2^48 = 281,474,976,710,656",
        "28,232",
        "20000",
        "1.5",
        "85%",
        "heap 4.1 KiB",
        "took 12 ms",
    ] {
        assert!(formatted(s).is_some(), "{s:?} should count as formatted");
    }
    for s in [
        "127.0.0.1:40855",
        "127.0.0.77",
        "EADDRNOTAVAIL",
        "fs.file-max",
        "net.ipv4.ip_local_port_range",
        "6.18.44-fc-v669",
        "slabinfo",
        "sys/kernel/slab",
        "inputs.client_ips × port_range.size",
        "port_range.high - port_range.low + 1",
        "IP_LOCAL_PORT_RANGE",
        "none",
        "",
    ] {
        assert_eq!(formatted(s), None, "{s:?} is not a formatted number");
    }
    let mut bad = Vec::new();
    let old = serde_json::json!({ "limits": [{ "value": "32768 60999", "note": "28,232 ports" }] });
    offenders(&old, "", "", &mut bad);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].starts_with("/limits/0/value = "), "{bad:?}");
}

#[test]
fn doctor_json_has_numbers_with_units() {
    let v = assert_numbers(&["doctor", "--json", "-"]);
    for limit in v["limits"].as_array().unwrap() {
        assert!(limit.get("unit").is_some(), "{limit}");
        let value = &limit["value"];
        assert!(value.is_null() || value.is_u64() || value.is_object(), "{limit}");
    }
}

#[test]
fn calc_json_has_numbers() {
    assert_numbers(&["calc", "--json", "-"]);
    let v = assert_numbers(&["calc", "--json", "-", "--client-ips", "1k", "--server-ports", "16"]);
    assert_eq!(v["theoretical_server_max_ipv4"]["connections"], 1u64 << 48);
}

#[test]
fn prove_json_and_machine_have_numbers() {
    let v = assert_numbers(&["prove", "--json", "-", "four-tuple", "port-exhaustion", "fd-limit"]);
    let machine = &v["machine"];
    assert!(machine["mem_total_bytes"].is_u64(), "{machine}");
    let range = &machine["port_range"];
    assert!(range.is_null() || (range["low"].is_u64() && range["high"].is_u64()), "{machine}");
}
