//! What each errno means during a load run, and what to change.
//!
//! A load run counts its failures by errno name (the names of
//! `crate::sys::errno_name`). The report prints each name with its
//! [`Explanation`]: the meaning in the context of many concurrent
//! connections, not the libc one-liner, and the concrete fix. A name not in
//! the table gets [`GENERIC`].

/// What an errno means for a load run and what to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Explanation {
    /// What happened.
    pub meaning: &'static str,
    /// What to change.
    pub fix: &'static str,
}

/// The explanation of an errno the table does not know.
pub const GENERIC: Explanation = Explanation {
    meaning: "an error tcpmax has no explanation for",
    fix: "look the errno up in errno(3) and connect(2); report it with the command line if it repeats",
};

/// Every errno name with an explanation, in the order of the table.
pub fn known() -> impl Iterator<Item = &'static str> {
    TABLE.iter().map(|(name, _)| *name)
}

/// The explanation of `errno_name` (`EADDRNOTAVAIL`), or of a protocol
/// failure counted in the same table ([`crate::proto::explain`]), or
/// [`GENERIC`].
pub fn explain(errno_name: &str) -> Explanation {
    lookup(errno_name)
        .or_else(|| crate::proto::explain(errno_name).map(|(meaning, fix)| Explanation { meaning, fix }))
        .unwrap_or(GENERIC)
}

/// The explanation of `errno_name`, None when the table does not know it.
pub fn lookup(errno_name: &str) -> Option<Explanation> {
    TABLE.iter().find(|(name, _)| *name == errno_name).map(|(_, e)| *e)
}

const fn e(meaning: &'static str, fix: &'static str) -> Explanation {
    Explanation { meaning, fix }
}

const TABLE: &[(&str, Explanation)] = &[
    (
        "EADDRNOTAVAIL",
        e(
            "no local port left for a (source IP, destination) pair: its share of ip_local_port_range is used up",
            "add source IPs (--source 127.0.0.2-127.0.0.40 on loopback) or destination ports, or widen net.ipv4.ip_local_port_range",
        ),
    ),
    (
        "EADDRINUSE",
        e(
            "binding the source address collided with a socket already holding that address and port",
            "give distinct --source addresses; check that nothing else binds them; a repeat is a tcpmax bug to report",
        ),
    ),
    (
        "ECONNREFUSED",
        e(
            "the destination answered with RST: nothing listens there, or its accept backlog overflowed",
            "check the server is up on that port; raise net.core.somaxconn and the server's listen backlog; slow down with --rate",
        ),
    ),
    (
        "ETIMEDOUT",
        e(
            "the SYN or its reply was dropped: a full SYN queue or accept backlog, a full conntrack table, or a firewall",
            "raise net.ipv4.tcp_max_syn_backlog and net.core.somaxconn on the server, check nf_conntrack_count against nf_conntrack_max, check firewalls; lower --rate or raise --connect-timeout",
        ),
    ),
    (
        "ECONNRESET",
        e(
            "the server reset an established connection: its admission control shed it, it ran out of a resource, or it crashed",
            "read the server's log and limits (tcpmax doctor on the server); lower the load",
        ),
    ),
    (
        "ECONNABORTED",
        e(
            "the connection was aborted before tcpmax used it, usually a reset during the handshake",
            "same as ECONNRESET: check the server and lower --rate",
        ),
    ),
    (
        "EPIPE",
        e(
            "tcpmax wrote to a connection the server had already closed",
            "check why the server closes connections (idle timeout, admission control); same as ECONNRESET",
        ),
    ),
    (
        "EMFILE",
        e(
            "one fd table is full (RLIMIT_NOFILE); tcpmax spreads sockets over shards sized to the limit, so a shard was over-filled",
            "report it as a tcpmax bug with the command line; meanwhile use more shards so each carries less",
        ),
    ),
    (
        "ENFILE",
        e(
            "the machine-wide file limit fs.file-max is reached",
            "sysctl -w fs.file-max=N with N above the connections wanted plus what runs already",
        ),
    ),
    (
        "ENOSPC",
        e(
            "epoll refused another watch: fs.epoll.max_user_watches of this user is reached",
            "sysctl -w fs.epoll.max_user_watches=N with N above the connections wanted",
        ),
    ),
    (
        "ENOMEM",
        e(
            "the kernel could not allocate memory for another socket",
            "hold fewer connections or add memory; check net.ipv4.tcp_mem and tcpmax doctor's memory row",
        ),
    ),
    (
        "ENOBUFS",
        e(
            "the kernel ran out of buffer memory for sockets",
            "hold fewer connections or add memory; check net.ipv4.tcp_mem and the socket buffer sizes",
        ),
    ),
    (
        "ENETUNREACH",
        e(
            "no route to the destination's network from this source",
            "check the destination address and `ip route get DEST from SOURCE`",
        ),
    ),
    (
        "EHOSTUNREACH",
        e(
            "the destination host is unreachable (no ARP/NDP answer, or an ICMP host-unreachable)",
            "check the destination is up and reachable from each source IP",
        ),
    ),
    (
        "EPROTO",
        e(
            "the peer sent bytes that are not echoes of tcpmax's pings",
            "point tcpmax load at tcpmax serve or an echo server, or send a payload the server answers with --message",
        ),
    ),
    (
        "EAGAIN",
        e(
            "the kernel had no resource for the operation right now: for a TCP connect, no free local port on some kernels; for a held connection, its send buffer stayed full (64 KiB more waiting: the server does not read what it makes tcpmax answer)",
            "for connects, as EADDRNOTAVAIL: more source IPs or destinations, or slow down with --rate; for held connections, make the server read its socket",
        ),
    ),
    (
        "EINVAL",
        e(
            "the kernel rejected an argument: a source of the wrong family for the destination, or an option this kernel lacks",
            "check --source and destination families; report it with the command line and uname -r",
        ),
    ),
    (
        "EPERM",
        e(
            "a firewall rule on this machine rejected the connection",
            "check iptables/nftables rules for the destination",
        ),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::errno_name;

    const LISTED: &[(i32, &str)] = &[
        (libc::EADDRNOTAVAIL, "EADDRNOTAVAIL"),
        (libc::EADDRINUSE, "EADDRINUSE"),
        (libc::ECONNREFUSED, "ECONNREFUSED"),
        (libc::ETIMEDOUT, "ETIMEDOUT"),
        (libc::ECONNRESET, "ECONNRESET"),
        (libc::ECONNABORTED, "ECONNABORTED"),
        (libc::EPIPE, "EPIPE"),
        (libc::EMFILE, "EMFILE"),
        (libc::ENFILE, "ENFILE"),
        (libc::ENOSPC, "ENOSPC"),
        (libc::ENOMEM, "ENOMEM"),
        (libc::ENOBUFS, "ENOBUFS"),
        (libc::ENETUNREACH, "ENETUNREACH"),
        (libc::EHOSTUNREACH, "EHOSTUNREACH"),
        (libc::EPROTO, "EPROTO"),
        (libc::EAGAIN, "EAGAIN"),
        (libc::EINVAL, "EINVAL"),
        (libc::EPERM, "EPERM"),
    ];

    #[test]
    fn every_listed_errno_is_explained() {
        for &(code, name) in LISTED {
            assert_eq!(errno_name(code), name, "errno {code}");
            let e = lookup(name).unwrap_or_else(|| panic!("{name} not explained"));
            assert!(!e.meaning.is_empty() && !e.fix.is_empty(), "{name}");
        }
    }

    #[test]
    fn table_names_are_errno_names_and_unique() {
        let names: Vec<_> = known().collect();
        assert_eq!(names.len(), LISTED.len());
        for name in &names {
            assert!(LISTED.iter().any(|(_, n)| n == name), "{name} untested");
            assert_eq!(names.iter().filter(|n| *n == name).count(), 1, "{name}");
        }
    }

    #[test]
    fn unknown_names_get_the_generic_explanation() {
        assert_eq!(explain("EOTHER"), GENERIC);
        assert_eq!(explain(""), GENERIC);
        assert_eq!(lookup("ENOTANERRNO"), None);
        assert!(explain("EMFILE").meaning.contains("fd table"));
        assert!(explain("ENOSPC").fix.contains("max_user_watches"));
    }
}
