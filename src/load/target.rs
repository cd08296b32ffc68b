//! Addresses on the command line: the targets of `tcpmax load` and the
//! listen addresses of `tcpmax serve`.
//!
//! An address is `IPV4:PORT`, `[IPV6]:PORT` or `HOST:PORT`. A host name is
//! resolved once, when the command line is read (std `ToSocketAddrs`, so
//! `/etc/hosts` and the system resolver); every address it resolves to is
//! kept, and [`choose`] states which ones a load uses. Something that looks
//! like an IPv4 address but is not one (`300.1.1.1`) is refused, never
//! looked up. A target's port must not be 0; a listen address's port 0 picks
//! a free port.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use crate::error::Error;

const EXAMPLES: &str = "examples: 127.0.0.1:9000, [::1]:9000, localhost:9000";

/// An address from the command line and what it resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host as written, without brackets (`localhost`, `127.0.0.1`, `::1`).
    pub host: String,
    /// Every address it resolved to, without duplicates, in resolver order;
    /// exactly one for an IP address.
    pub addrs: Vec<SocketAddr>,
}

impl Target {
    /// True when the host was a name rather than an IP address.
    pub fn is_name(&self) -> bool {
        self.host.parse::<IpAddr>().is_err()
    }
}

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Target {
        Target { host: addr.ip().to_string(), addrs: vec![addr] }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.host)
    }
}

/// Parses a load target: a port of 0 is refused (nothing listens there).
pub fn parse_target(s: &str) -> Result<Target, String> {
    parse(s, false)
}

/// Parses a listen address: port 0 picks a free port.
pub fn parse_listen(s: &str) -> Result<Target, String> {
    parse(s, true)
}

fn parse(s: &str, port_zero: bool) -> Result<Target, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err(format!("an empty address: give HOST:PORT ({EXAMPLES})"));
    }
    let (host, port) = split(t)?;
    let port = parse_port(port, port_zero)?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Target { host: host.to_string(), addrs: vec![SocketAddr::new(ip, port)] });
    }
    if host.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("`{host}` is not an IPv4 address: four numbers of 0-255 ({EXAMPLES})"));
    }
    if !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')) {
        return Err(format!("`{host}` is not a host name or an IP address ({EXAMPLES})"));
    }
    let resolved = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{host}`: {e}; give an IP address instead ({EXAMPLES})"))?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for a in resolved {
        if !addrs.contains(&a) {
            addrs.push(a);
        }
    }
    if addrs.is_empty() {
        return Err(format!("`{host}` resolved to no address; give an IP address instead ({EXAMPLES})"));
    }
    Ok(Target { host: host.to_string(), addrs })
}

/// Splits `host:port` and `[v6]:port`.
fn split(t: &str) -> Result<(&str, &str), String> {
    if let Some(rest) = t.strip_prefix('[') {
        let Some((v6, port)) = rest.split_once("]:") else {
            return Err(format!("`{t}` has no port after the IPv6 address ({EXAMPLES})"));
        };
        if v6.parse::<Ipv6Addr>().is_err() {
            return Err(format!("`{v6}` is not an IPv6 address ({EXAMPLES})"));
        }
        return Ok((v6, port));
    }
    let Some((host, port)) = t.rsplit_once(':') else {
        return Err(format!("`{t}` has no port: give HOST:PORT ({EXAMPLES})"));
    };
    if host.contains(':') {
        return Err(format!("`{t}`: write an IPv6 address in brackets before its port, like [::1]:9000"));
    }
    if host.is_empty() {
        return Err(format!("`{t}` has no host before the port ({EXAMPLES})"));
    }
    Ok((host, port))
}

fn parse_port(p: &str, zero: bool) -> Result<u16, String> {
    let range = if zero { "0-65535 (0 picks a free port)" } else { "1-65535" };
    match p.parse::<u16>() {
        Ok(0) if !zero => {
            Err("port 0 is not a destination: give the port the server listens on (example: 127.0.0.1:9000)".into())
        }
        Ok(port) => Ok(port),
        Err(_) => Err(format!("`{p}` is not a port: ports are {range}")),
    }
}

/// The destinations a load connects to, and a line for each target given
/// by name saying what it resolved to and which addresses are used.
///
/// With `--source` addresses, a name's addresses of a family no source has
/// are left out (an IPv4 source cannot reach an IPv6 destination); a name
/// with none left is [`Error::Input`]. Addresses given as IPs are kept as
/// they are: the plan refuses them when no source can reach them.
pub fn choose(targets: &[Target], sources: &[IpAddr]) -> Result<(Vec<SocketAddr>, Vec<String>), Error> {
    let (has_v4, has_v6) = (sources.iter().any(IpAddr::is_ipv4), sources.iter().any(IpAddr::is_ipv6));
    let reachable = |a: &SocketAddr| sources.is_empty() || if a.is_ipv4() { has_v4 } else { has_v6 };
    let mut dests = Vec::new();
    let mut notes = Vec::new();
    for t in targets {
        if !t.is_name() {
            dests.extend(&t.addrs);
            continue;
        }
        let used: Vec<SocketAddr> = t.addrs.iter().copied().filter(reachable).collect();
        let list = |v: &[SocketAddr]| v.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>().join(", ");
        if used.is_empty() {
            return Err(Error::Input(format!(
                "{} resolved to {} only, and no --source has that family; add a --source of it or give an address",
                t.host,
                list(&t.addrs)
            )));
        }
        let how = match (used.len(), t.addrs.len()) {
            (1, 1) => "using it".to_string(),
            (2, 2) => "using both".to_string(),
            (u, n) if u == n => format!("using all {n}"),
            _ => format!("using {} (the family of the --source addresses)", list(&used)),
        };
        notes.push(format!("{} resolved to {}; {how}", t.host, list(&t.addrs)));
        dests.extend(used);
    }
    Ok((dests, notes))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const LO4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn literals() {
        assert_eq!(
            parse_target("127.0.0.1:9000"),
            Ok(Target { host: "127.0.0.1".into(), addrs: vec![addr("127.0.0.1:9000")] })
        );
        assert_eq!(parse_target(" [::1]:80 ").map(|t| t.addrs), Ok(vec![addr("[::1]:80")]));
        assert!(!parse_target("10.0.0.1:1").is_ok_and(|t| t.is_name()));
        assert_eq!(parse_listen("127.0.0.1:0").map(|t| t.addrs), Ok(vec![addr("127.0.0.1:0")]));
    }

    #[test]
    fn bad_addresses_and_ports() {
        let e = |s: &str| parse_target(s).unwrap_err();
        assert!(e("300.1.1.1:80").contains("`300.1.1.1` is not an IPv4 address"), "{}", e("300.1.1.1:80"));
        assert!(e("1.2.3:80").contains("not an IPv4 address"));
        assert_eq!(e("127.0.0.1:99999"), "`99999` is not a port: ports are 1-65535");
        assert!(e("127.0.0.1:-1").contains("is not a port"));
        assert!(e("127.0.0.1:0").starts_with("port 0 is not a destination"));
        assert!(e("127.0.0.1").contains("has no port"));
        assert!(e("::1:80").contains("in brackets"));
        assert!(e("[::g]:80").contains("not an IPv6 address"));
        assert!(e("[::1]").contains("no port"));
        assert!(e(":80").contains("no host"));
        assert!(e("").contains("empty"));
        assert!(e("a b:80").contains("not a host name"));
        assert!(parse_listen("127.0.0.1:99999").unwrap_err().contains("0 picks a free port"));
    }

    // Only loopback names are ever resolved by the tests.
    #[test]
    fn localhost_resolves_to_loopback() {
        let t = parse_target("localhost:9000").unwrap();
        assert_eq!(t.host, "localhost");
        assert!(t.is_name());
        assert!(!t.addrs.is_empty());
        assert!(t.addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 9000), "{:?}", t.addrs);
        assert!(parse_target("localhost:0").is_err());
        assert_eq!(parse_listen("localhost:0").map(|t| t.addrs.iter().all(|a| a.port() == 0)), Ok(true));
    }

    fn both() -> Target {
        Target { host: "localhost".into(), addrs: vec![addr("127.0.0.1:9000"), addr("[::1]:9000")] }
    }

    #[test]
    fn choice_is_stated() {
        let (dests, notes) = choose(&[both()], &[]).unwrap();
        assert_eq!(dests, both().addrs);
        assert_eq!(notes, ["localhost resolved to 127.0.0.1, ::1; using both"]);

        let one = Target { host: "box".into(), addrs: vec![addr("127.0.0.1:1")] };
        assert_eq!(choose(&[one], &[]).unwrap().1, ["box resolved to 127.0.0.1; using it"]);

        // IPv4 sources only: the IPv6 address is left out, and said so.
        let (dests, notes) = choose(&[both()], &[LO4]).unwrap();
        assert_eq!(dests, [addr("127.0.0.1:9000")]);
        assert_eq!(
            notes,
            ["localhost resolved to 127.0.0.1, ::1; using 127.0.0.1 (the family of the --source addresses)"]
        );

        // Literals pass through without a note.
        let lit = Target::from(addr("[::1]:7"));
        assert_eq!(choose(&[lit], &[LO4]).unwrap(), (vec![addr("[::1]:7")], vec![]));

        // A name with no address of a source's family.
        let v6 = Target { host: "six".into(), addrs: vec![addr("[::1]:9")] };
        let err = choose(&[v6], &[LO4]).unwrap_err();
        assert!(err.is_input() && err.to_string().contains("six resolved to ::1 only"), "{err}");
    }
}
