//! Building and removing the rehearsal network with iproute2 (`ip`): the
//! namespaces, the bridge, one veth link per host, the addresses; finding
//! and removing what an earlier run left behind.

use std::io::Write;
use std::process::{Command, Stdio};

use super::topology::{self, BRIDGE, Topology};
use crate::error::{Error, Result};
use crate::sys::child::{self, SIGKILL};

/// Runs `ip ARGS` and returns its stdout; an error names the command and
/// quotes `ip`'s message.
pub fn ip(args: &[&str]) -> Result<String> {
    ip_with_input(args, None)
}

fn ip_with_input(args: &[&str], input: Option<&str>) -> Result<String> {
    let what = format!("ip {}", args.join(" "));
    let mut cmd = Command::new("ip");
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().map_err(|e| Error::os(format!("running `{what}`"), e))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).map_err(|e| Error::os(format!("feeding `{what}`"), e))?;
    }
    let out = child.wait_with_output().map_err(|e| Error::os(format!("running `{what}`"), e))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(Error::os(format!("`{what}` failed: {msg}"), std::io::Error::other(msg.clone())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a batch of `ip` commands (one per line) inside namespace `netns`
/// (the root namespace for `None`).
fn batch(netns: Option<&str>, lines: &[String]) -> Result<()> {
    let mut args = Vec::new();
    if let Some(ns) = netns {
        args.extend(["-n", ns]);
    }
    args.extend(["-b", "-"]);
    ip_with_input(&args, Some(&(lines.join("\n") + "\n"))).map(|_| ())
}

/// Every network namespace's name.
pub fn list() -> Result<Vec<String>> {
    let text = ip(&["netns", "list"])?;
    Ok(text.lines().filter_map(|l| l.split_whitespace().next().map(str::to_string)).collect())
}

/// True when `pid` is a running `tcpmax cluster`.
pub fn is_live_run(pid: u32) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let tcpmax = args.first().is_some_and(|a| a.ends_with(b"tcpmax"));
    tcpmax && args.iter().any(|a| *a == b"cluster")
}

/// Namespaces of earlier runs whose `tcpmax cluster` is no longer running
/// (killed with SIGKILL, or by a crash), grouped by run.
pub fn leftovers(names: &[String], me: u32) -> Vec<(u32, Vec<String>)> {
    let mut runs: Vec<(u32, Vec<String>)> = Vec::new();
    for n in names {
        let Some(run) = topology::run_of(n) else { continue };
        if run == me || is_live_run(run) {
            continue;
        }
        match runs.iter_mut().find(|(r, _)| *r == run) {
            Some((_, v)) => v.push(n.clone()),
            None => runs.push((run, vec![n.clone()])),
        }
    }
    runs
}

/// Kills every process inside `netns` and deletes it; the number of
/// processes killed.
pub fn remove(netns: &str) -> Result<usize> {
    let pids = ip(&["netns", "pids", netns]).unwrap_or_default();
    let mut killed = 0;
    for pid in pids.split_whitespace().filter_map(|p| p.parse::<u32>().ok()) {
        if child::signal(pid, SIGKILL).is_ok() {
            killed += 1;
        }
    }
    // A namespace disappears once its last process is gone; the name goes now.
    ip(&["netns", "del", netns])?;
    Ok(killed)
}

/// Picks `x` for 10.213.x.0/24 that overlaps no address and no route of
/// this machine and no address of another run's namespace; starts at the
/// run's pid so concurrent runs spread out.
pub fn pick_subnet(run: u32, others: &[String]) -> Result<u8> {
    let mut text = ip(&["-o", "-4", "addr", "show"])?;
    text.push_str(&ip(&["-4", "route", "show", "table", "all"])?);
    for ns in others.iter().filter(|n| n.starts_with(topology::PREFIX)) {
        text.push_str(&ip(&["-n", ns, "-o", "-4", "addr", "show"]).unwrap_or_default());
    }
    let cidrs = topology::cidrs_in(&text);
    (0..=255u32)
        .map(|i| ((run + i) % 256) as u8)
        .find(|&x| topology::subnet_free(x, &cidrs))
        .ok_or_else(|| Error::Input("every 10.213.x.0/24 is in use on this machine; free one of them".into()))
}

/// Creates the namespaces `names`, first checking that none is taken.
/// Each name is pushed to `created` as soon as it exists, for the cleanup.
pub fn add(names: &[String], created: &mut Vec<String>) -> Result<()> {
    let existing = list()?;
    if let Some(taken) = names.iter().find(|n| existing.contains(n)) {
        return Err(Error::Input(format!(
            "network namespace {taken} already exists; remove it with `ip netns del {taken}`"
        )));
    }
    for ns in names {
        ip(&["netns", "add", ns])?;
        created.push(ns.clone());
    }
    Ok(())
}

/// Wires the namespaces of `t` (already added): the bridge in the switch
/// namespace, one veth link per host with its end `eth0` in the host, the
/// hosts' addresses, every link up.
pub fn wire(t: &Topology) -> Result<()> {
    let mut sw =
        vec![format!("link add {BRIDGE} type bridge"), format!("link set {BRIDGE} up"), "link set lo up".into()];
    for h in &t.hosts {
        sw.push(format!("link add {} type veth peer name eth0 netns {}", h.port, h.netns));
        sw.push(format!("link set {} master {BRIDGE} up", h.port));
    }
    batch(Some(&t.switch), &sw)?;
    for h in &t.hosts {
        let mut lines: Vec<String> = h.addrs.iter().map(|a| format!("addr add {a}/24 dev eth0")).collect();
        lines.push("link set lo up".into());
        lines.push("link set eth0 up".into());
        batch(Some(&h.netns), &lines)?;
    }
    Ok(())
}

/// What a namespace's own settings allow, read inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inside {
    /// `ulimit -Hn` of a process started there (RLIMIT_NOFILE hard).
    pub nofile: u64,
    /// Usable local ports (`ip_local_port_range` minus reserved ports).
    pub usable_ports: u64,
}

/// Reads [`Inside`] by running a shell in `netns`.
pub fn inside(netns: &str) -> Result<Inside> {
    let script =
        "ulimit -Hn; cat /proc/sys/net/ipv4/ip_local_port_range; cat /proc/sys/net/ipv4/ip_local_reserved_ports";
    let text = ip(&["netns", "exec", netns, "sh", "-c", script])?;
    parse_inside(&text).ok_or_else(|| {
        Error::os(
            format!("reading limits inside {netns}"),
            std::io::Error::other(format!("unexpected output {text:?}")),
        )
    })
}

fn parse_inside(text: &str) -> Option<Inside> {
    let mut lines = text.lines();
    let nofile = match lines.next()?.trim() {
        "unlimited" => u64::MAX,
        n => n.parse().ok()?,
    };
    let range: Vec<u64> = lines.next()?.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    let [lo, hi] = range[..] else { return None };
    let reserved = crate::doctor::probe::parse_port_list(lines.next().unwrap_or("")).ok()?;
    Some(Inside { nofile, usable_ports: crate::doctor::usable_ports(lo, hi, &reserved) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_figures() {
        assert_eq!(parse_inside("20000\n32768\t60999\n\n"), Some(Inside { nofile: 20_000, usable_ports: 28_232 }));
        assert_eq!(parse_inside("unlimited\n1000 1999\n1000-1099\n").map(|i| i.usable_ports), Some(900));
        assert_eq!(parse_inside("x\n"), None);
        assert_eq!(parse_inside("5\n1\n"), None);
    }

    #[test]
    fn leftovers_skip_live_runs_and_foreign_names() {
        let me = std::process::id();
        let names: Vec<String> =
            [format!("tcpmax-{me}-b1"), "tcpmax-999999999-b1".into(), "tcpmax-999999999-sw".into(), "other".into()]
                .into();
        let found = leftovers(&names, me);
        assert_eq!(found, vec![(999_999_999, vec!["tcpmax-999999999-b1".to_string(), "tcpmax-999999999-sw".into()])]);
    }
}
