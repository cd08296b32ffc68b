//! Whether new connections are tracked by conntrack, so that
//! `nf_conntrack_max` caps them even while the table is empty.
//!
//! The `nf_conntrack` module being loaded tracks nothing by itself: the
//! kernel hooks conntrack into a network namespace only once something there
//! needs it (a NAT rule, a `ct` expression, an iptables `-m conntrack` or
//! `-m state` match, a `CT` target). From then on *every* new connection of
//! the namespace takes an entry, and a SYN that finds the table full is
//! dropped. `nf_conntrack_count` says only what is tracked now: 0 on a
//! quiet machine whose rules will track the next million connections.
//!
//! Two sources of evidence, and why both:
//!
//! - **The experiment** (the live machine only): one loopback connection
//!   between a listener of our own on `127.0.0.1:0` and a client, then a
//!   look for its entry in `/proc/net/nf_conntrack` (by its ports), or, when
//!   that file is absent (`CONFIG_NF_CONNTRACK_PROCFS` off), whether
//!   `nf_conntrack_count` rose while it was open. It asks the kernel itself,
//!   so it needs no privileges and no tool and sees every kind of rule
//!   (legacy, nftables, iptables-nft, a module's own). It answers for
//!   loopback only: a `notrack` rule for `lo` leaves loopback untracked while
//!   other traffic is, and the count can move with other traffic when the
//!   listing is absent. It costs one conntrack entry in TIME_WAIT (two
//!   minutes) when tracking is on.
//! - **The rules**: `nft list ruleset` and `iptables-legacy-save` /
//!   `ip6tables-legacy-save` when those tools exist and may read the rules
//!   (CAP_NET_ADMIN), searched for what makes the kernel track (NAT
//!   statements, `ct` expressions, conntrack and state matches, the `CT`
//!   target) and for `notrack`. They name the rule, and they are the only
//!   evidence for traffic from or to other machines when loopback is not
//!   tracked. A NAT chain or an iptables `nat` table without rules tracks
//!   nothing (measured), so tables alone are not evidence.
//!
//! How the doctor combines them is on the `doctor` module (the
//! `nf_conntrack_max` rule). Under a fixture root neither runs: tests set
//! [`Tracking`] themselves.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::probe::Reading;
use crate::procfs::ProcFs;

/// The longest a rules tool may run.
const TOOL_LIMIT: Duration = Duration::from_secs(3);
/// The most bytes of a ruleset read.
const MAX_RULES_BYTES: u64 = 16 << 20;
/// The most lines of `/proc/net/nf_conntrack` scanned for the experiment's
/// entry (the table's lines beyond are not looked at).
const MAX_LISTING_LINES: usize = 4 << 20;
/// The longest the experiment's connect may take (a full table drops its
/// SYN).
const CONNECT_LIMIT: Duration = Duration::from_secs(1);

/// What one source of evidence says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// True when new connections are tracked.
    pub tracked: bool,
    /// How it was found, for the note.
    pub why: String,
}

/// What the rules say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// The rules that make the kernel track connections (as listed).
    pub tracking: Vec<String>,
    /// `notrack` rules (they may exempt some traffic, loopback often).
    pub notrack: Vec<String>,
    /// The tools whose rules were read.
    pub read: Vec<String>,
    /// The tools that could not be read, with why.
    pub unread: Vec<String>,
}

impl Rules {
    /// True when a rule tracks connections.
    pub fn tracks(&self) -> bool {
        !self.tracking.is_empty()
    }

    /// One line for the note: which rule tracks, or what was searched.
    pub fn summary(&self) -> String {
        let mut s = if let Some(first) = self.tracking.first() {
            let more = self.tracking.len() - 1;
            let more = if more > 0 { format!(" and {more} more") } else { String::new() };
            format!("rules track connections ({}: `{first}`{more})", self.read.join(", "))
        } else {
            format!("no rule tracks connections in {}", self.read.join(", "))
        };
        if !self.notrack.is_empty() {
            s.push_str(&format!("; {} notrack rule(s), e.g. `{}`", self.notrack.len(), self.notrack[0]));
        }
        if !self.unread.is_empty() {
            s.push_str(&format!("; not read: {}", self.unread.join(", ")));
        }
        s
    }
}

/// Everything known about tracking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracking {
    /// The loopback experiment.
    pub experiment: Reading<Evidence>,
    /// The rules.
    pub rules: Reading<Rules>,
}

impl Tracking {
    /// Neither source ran, for `why`.
    pub fn not_run(why: &str) -> Tracking {
        Tracking { experiment: Err(why.into()), rules: Err(why.into()) }
    }

    /// Finds out on the live machine (`fs` rooted at `/`); under another
    /// root, or without the conntrack module, runs nothing and says why.
    pub fn detect(fs: &ProcFs) -> Tracking {
        if fs.root() != std::path::Path::new("/") {
            return Tracking::not_run("only looked at on the live machine (--root is not /)");
        }
        if fs.sysctl_u64("net.netfilter.nf_conntrack_max").is_err() {
            return Tracking::not_run("the nf_conntrack module is not loaded");
        }
        Tracking { experiment: experiment(fs), rules: read_rules(fs) }
    }
}

/// Opens one loopback connection and looks whether the kernel tracked it.
pub fn experiment(fs: &ProcFs) -> Reading<Evidence> {
    let count = || fs.sysctl_u64("net.netfilter.nf_conntrack_count").ok();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("listening on 127.0.0.1: {e}"))?;
    let server = listener.local_addr().map_err(|e| format!("listener address: {e}"))?;
    let before = count();
    let client = match TcpStream::connect_timeout(&server, CONNECT_LIMIT) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            let max = fs.sysctl_u64("net.netfilter.nf_conntrack_max").ok();
            return match (before, max) {
                (Some(c), Some(m)) if c >= m => Ok(Evidence {
                    tracked: true,
                    why: format!(
                        "a loopback connect timed out with nf_conntrack_count {c} at nf_conntrack_max {m}: the table is full"
                    ),
                }),
                _ => Err(format!(
                    "a loopback connect to our own listener timed out after {} s: a firewall drops loopback SYNs?",
                    CONNECT_LIMIT.as_secs()
                )),
            };
        }
        Err(e) => return Err(format!("connecting to our own listener {server}: {e}")),
    };
    let local = client.local_addr().map_err(|e| format!("client address: {e}"))?;
    let during = count();
    let listing = std::fs::File::open(fs.path("proc/net/nf_conntrack")).ok();
    let found = listing.map(|f| listed(BufReader::new(f), local, server));
    drop(client);
    Ok(match (found, before, during) {
        (Some(true), ..) => Evidence {
            tracked: true,
            why: format!("one loopback connection {local} -> {server} was listed in /proc/net/nf_conntrack"),
        },
        (Some(false), ..) => Evidence {
            tracked: false,
            why: format!("one loopback connection {local} -> {server} was not listed in /proc/net/nf_conntrack"),
        },
        (None, Some(b), Some(d)) => Evidence {
            tracked: d > b,
            why: format!("nf_conntrack_count went from {b} to {d} while one loopback connection was open"),
        },
        (None, ..) => return Err("neither /proc/net/nf_conntrack nor nf_conntrack_count readable".into()),
    })
}

/// True when a line of a `/proc/net/nf_conntrack` listing is the entry of
/// the TCP connection `client` -> `server` (its original direction).
pub fn listed(text: impl BufRead, client: SocketAddr, server: SocketAddr) -> bool {
    let want = [
        format!("src={}", client.ip()),
        format!("dst={}", server.ip()),
        format!("sport={}", client.port()),
        format!("dport={}", server.port()),
    ];
    text.lines().take(MAX_LISTING_LINES).map_while(Result::ok).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // The original direction's fields come first: the first of each
        // name is the client's side.
        let first = |prefix: &str| fields.iter().find(|f| f.starts_with(prefix)).copied();
        fields.contains(&"tcp")
            && ["src=", "dst=", "sport=", "dport="].iter().zip(&want).all(|(p, w)| first(p) == Some(w.as_str()))
    })
}

/// Reads the rules of every tool found. The legacy tools run only when
/// their kernel tables exist (`proc/net/ip_tables_names`,
/// `ip6_tables_names`): without a table there is no legacy rule, and the
/// tool is not asked (it could load kernel modules).
pub fn read_rules(fs: &ProcFs) -> Reading<Rules> {
    let mut rules = Rules::default();
    let tools: [(&str, &[&str], Option<&str>); 3] = [
        ("nft", &["list", "ruleset"], None),
        ("iptables-legacy-save", &[], Some("proc/net/ip_tables_names")),
        ("ip6tables-legacy-save", &[], Some("proc/net/ip6_tables_names")),
    ];
    for (tool, args, tables) in tools {
        if let Some(rel) = tables {
            if fs.read(rel).map_or(true, |t| t.trim().is_empty()) {
                rules.read.push(format!("{} (no table)", tool.trim_end_matches("-save")));
                continue;
            }
        }
        match run_tool(tool, args) {
            Ok(text) => {
                let (tracking, notrack) = if tool == "nft" { nft_rules(&text) } else { iptables_rules(&text) };
                rules.tracking.extend(tracking);
                rules.notrack.extend(notrack);
                rules.read.push(tool.to_string());
            }
            Err(ToolError::Missing) => rules.unread.push(format!("{tool} not found")),
            Err(ToolError::Failed(why)) => rules.unread.push(format!("{tool} ({why})")),
        }
    }
    // A rule found tracks for sure; finding none means nothing while a
    // source could not be read.
    if !rules.unread.is_empty() && !rules.tracks() {
        return Err(rules.unread.join("; "));
    }
    Ok(rules)
}

/// Why a tool's output could not be had.
enum ToolError {
    /// Not installed.
    Missing,
    /// It ran and failed, or ran too long.
    Failed(String),
}

/// Runs `tool args` with [`TOOL_LIMIT`]; its stdout.
fn run_tool(tool: &str, args: &[&str]) -> Result<String, ToolError> {
    let mut child = match Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ToolError::Missing),
        Err(e) => return Err(ToolError::Failed(e.to_string())),
    };
    // Read both pipes on their own threads so that a large ruleset cannot
    // fill a pipe and stall the tool until the deadline.
    let pipe = |p: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(p) = p {
                let _ = p.take(MAX_RULES_BYTES).read_to_string(&mut s);
            }
            s
        })
    };
    let out = pipe(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = pipe(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + TOOL_LIMIT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Ok(s),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("ran past {} s and was killed", TOOL_LIMIT.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("waiting for it: {e}"));
            }
        }
    };
    let (out, err) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    match status {
        Ok(s) if s.success() => Ok(out),
        Ok(s) => Err(ToolError::Failed(format!("{s}: {}", err.lines().next().unwrap_or("").trim()))),
        Err(why) => Err(ToolError::Failed(why)),
    }
}

/// The words of a rule line, quotes stripped, lowercase.
fn words(line: &str) -> Vec<String> {
    line.split(|c: char| c.is_whitespace() || c == '"' || c == ',' || c == '{' || c == '}')
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The tracking and notrack rules of an `nft list ruleset` text. A rule
/// tracks when it has a `ct` expression (`ct state`, `ct mark`, ...), a
/// NAT statement (`snat`, `dnat`, `masquerade`, `redirect`), a `ct`
/// helper or zone, or an iptables-nft match or target on conntrack.
pub fn nft_rules(text: &str) -> (Vec<String>, Vec<String>) {
    let (mut tracking, mut notrack) = (Vec::new(), Vec::new());
    for line in text.lines().map(str::trim) {
        let w = words(line);
        let first = w.first().map(String::as_str).unwrap_or("");
        // Declarations, not rules.
        if matches!(
            first,
            "" | "table" | "chain" | "type" | "policy" | "set" | "map" | "elements" | "}" | "flags" | "comment"
        ) {
            continue;
        }
        if w.iter().any(|x| x == "notrack") {
            notrack.push(line.to_string());
            continue;
        }
        let xt = w.windows(3).any(|t| {
            t[0] == "xt"
                && (t[1] == "match" || t[1] == "target")
                && matches!(t[2].as_str(), "conntrack" | "state" | "masquerade" | "snat" | "dnat" | "redirect" | "ct")
        });
        let native = w.iter().any(|x| matches!(x.as_str(), "ct" | "snat" | "dnat" | "masquerade" | "redirect"));
        if xt || native {
            tracking.push(line.to_string());
        }
    }
    (tracking, notrack)
}

/// The tracking and notrack rules of an `iptables-save` text: `-m
/// conntrack`, `-m state`, `--ctstate`, `--state`, and the targets `SNAT`,
/// `DNAT`, `MASQUERADE`, `REDIRECT`, `NETMAP`, `CT` (`CT --notrack` and
/// `NOTRACK` are notrack rules).
pub fn iptables_rules(text: &str) -> (Vec<String>, Vec<String>) {
    let (mut tracking, mut notrack) = (Vec::new(), Vec::new());
    for line in text.lines().map(str::trim).filter(|l| l.starts_with("-A ")) {
        let w: Vec<&str> = line.split_whitespace().collect();
        let after = |flag: &str| w.windows(2).filter(|p| p[0] == flag).map(|p| p[1]).collect::<Vec<_>>();
        let targets = after("-j");
        if targets.contains(&"NOTRACK") || (targets.contains(&"CT") && w.contains(&"--notrack")) {
            notrack.push(line.to_string());
            continue;
        }
        let matches = after("-m");
        let by_match = matches.iter().any(|m| matches!(*m, "conntrack" | "state"))
            || w.iter().any(|x| matches!(*x, "--ctstate" | "--state"));
        let by_target =
            targets.iter().any(|t| matches!(*t, "SNAT" | "DNAT" | "MASQUERADE" | "REDIRECT" | "NETMAP" | "CT"));
        if by_match || by_target {
            tracking.push(line.to_string());
        }
    }
    (tracking, notrack)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NFT: &str = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\
        \t\tct state established,related accept\n\t\ttcp dport 22 accept\n\t}\n}\n\
        table ip nat {\n\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\
        \t\toifname \"eth0\" masquerade\n\t}\n}\n\
        table ip raw {\n\tchain prerouting {\n\t\ttype filter hook prerouting priority raw; policy accept;\n\
        \t\tiifname \"lo\" notrack\n\t}\n}\n";

    #[test]
    fn nft_rules_that_track() {
        let (tracking, notrack) = nft_rules(NFT);
        assert_eq!(tracking, vec!["ct state established,related accept", "oifname \"eth0\" masquerade"]);
        assert_eq!(notrack, vec!["iifname \"lo\" notrack"]);
        // A NAT chain without rules, a plain filter: nothing tracks.
        let quiet = "table ip nat {\n\tchain post {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t}\n}\n\
            table inet f {\n\tchain c {\n\t\ttcp dport 80 counter packets 0 bytes 0 accept\n\t}\n}\n";
        assert_eq!(nft_rules(quiet), (vec![], vec![]));
        // iptables-nft compat expressions; a name containing "ct" is not one.
        let xt = "\t\tmeta l4proto tcp xt match \"conntrack\" counter accept\n\t\tjump ct_chain\n";
        assert_eq!(nft_rules(xt).0, vec!["meta l4proto tcp xt match \"conntrack\" counter accept"]);
        assert!(nft_rules("").0.is_empty());
    }

    #[test]
    fn iptables_rules_that_track() {
        let save = "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o eth0 -j MASQUERADE\nCOMMIT\n\
            *filter\n-A INPUT -m conntrack --ctstate INVALID -j DROP\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n\
            *raw\n-A PREROUTING -i lo -j NOTRACK\n-A OUTPUT -o lo -j CT --notrack\nCOMMIT\n";
        let (tracking, notrack) = iptables_rules(save);
        assert_eq!(
            tracking,
            vec!["-A POSTROUTING -o eth0 -j MASQUERADE", "-A INPUT -m conntrack --ctstate INVALID -j DROP"]
        );
        assert_eq!(notrack.len(), 2);
        // Tables without rules track nothing.
        assert_eq!(iptables_rules("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"), (vec![], vec![]));
    }

    #[test]
    fn the_experiments_entry_is_found_by_its_ports() {
        let c: SocketAddr = "127.0.0.1:59614".parse().unwrap();
        let s: SocketAddr = "127.0.0.1:58787".parse().unwrap();
        let entry = "ipv4     2 tcp      6 432000 ESTABLISHED src=127.0.0.1 dst=127.0.0.1 sport=59614 dport=58787 \
                     src=127.0.0.1 dst=127.0.0.1 sport=58787 dport=59614 [ASSURED] mark=0 zone=0 use=2\n";
        assert!(listed(entry.as_bytes(), c, s));
        // The same ports the other way round are another connection.
        assert!(!listed(entry.as_bytes(), s, c));
        let other = entry.replace("59614", "40000");
        assert!(!listed(other.as_bytes(), c, s));
        assert!(!listed(&b""[..], c, s));
    }

    #[test]
    fn a_fixture_root_runs_nothing() {
        let t = Tracking::detect(&ProcFs::new("/nonexistent-root"));
        assert!(t.experiment.unwrap_err().contains("live machine"));
        assert!(t.rules.is_err());
    }
}
