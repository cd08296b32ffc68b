//! What each errno means during a load run, and what to change.
//!
//! A load run counts its failures by errno name (the names of
//! `crate::sys::errno_name`). The report prints each name with its
//! [`Explanation`]: the meaning in the context of many concurrent
//! connections, not the libc one-liner, and the concrete fix. A name not in
//! the table gets [`GENERIC`]. A connect timeout has several causes; when
//! the run read the kernel's drop counters before and after, [`name_drops`]
//! names the one that dropped the SYNs.

use crate::procfs::drops::Drops;
use crate::units::group;

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

/// The limit that dropped the SYNs of connects that timed out, named from
/// the drop counters of this machine read before and after the run
/// ([`Drops`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Named {
    /// `conntrack table`, `SYN queue`, `accept backlog`, or `firewall`
    /// (no counter moved).
    pub limit: &'static str,
    /// What happened, with the counters that say so.
    pub meaning: String,
    /// What to change.
    pub fix: String,
}

/// Names what dropped the SYNs (for `ETIMEDOUT`) from the counters read
/// before and after a run: the limit whose counters rose the most (the
/// conntrack table, which drops before TCP sees the SYN, on a tie; a table
/// at its max counts though no drop was counted yet); a firewall or the
/// far side when none rose. None when no counter could be read: the
/// generic explanation stays.
pub fn name_drops(before: &Drops, after: &Drops) -> Option<Named> {
    if before.is_empty() || after.is_empty() {
        return None;
    }
    let rise = |a: Option<u64>, b: Option<u64>| a.zip(b).map_or(0, |(a, b)| b.saturating_sub(a));
    let ct_drop = rise(before.conntrack_drop, after.conntrack_drop);
    let ct_early = rise(before.conntrack_early_drop, after.conntrack_early_drop);
    let ct_insert = rise(before.conntrack_insert_failed, after.conntrack_insert_failed);
    let full = after.conntrack_count.zip(after.conntrack_max).filter(|&(c, m)| m > 0 && c >= m);
    let reqq = rise(before.reqq_full_drop, after.reqq_full_drop);
    let cookies = rise(before.reqq_full_do_cookies, after.reqq_full_do_cookies);
    let overflows = rise(before.listen_overflows, after.listen_overflows);
    let listen_drops = rise(before.listen_drops, after.listen_drops);

    let ct_weight = ct_drop.saturating_add(ct_early).saturating_add(ct_insert).max(u64::from(full.is_some()));
    let candidates =
        [("conntrack table", ct_weight), ("SYN queue", reqq), ("accept backlog", overflows.max(listen_drops))];
    let most = candidates.iter().map(|c| c.1).max().unwrap_or(0);
    let Some(&(limit, _)) = candidates.iter().find(|c| c.1 > 0 && c.1 == most) else {
        return Some(Named {
            limit: "firewall",
            meaning: format!(
                "the SYNs or their replies were dropped, and no counter on this machine counted it during the run \
                 (ListenOverflows, ListenDrops, TCPReqQFullDrop of /proc/net/netstat and drop, early_drop, \
                 insert_failed of /proc/net/stat/nf_conntrack did not rise{}): a firewall rule dropped them, \
                 or a limit on the far side (a remote server's own counters tell)",
                if cookies > 0 {
                    format!("; {} SYNs were answered with syncookies", group(cookies))
                } else {
                    String::new()
                }
            ),
            fix: "check the rules that drop on the path (nft list ruleset; iptables-save) and the server's counters \
                  (tcpmax doctor there); lower --rate or raise --connect-timeout"
                .into(),
        });
    };
    let conntrack = || {
        let table = match (after.conntrack_count, after.conntrack_max) {
            (Some(c), Some(m)) => {
                format!("nf_conntrack_count {} of nf_conntrack_max {} at the peak", group(c), group(m))
            }
            _ => "nf_conntrack_count unknown".into(),
        };
        format!(
            "{table}; {} packets dropped for want of an entry (drop), {} early_drop, {} insert_failed (/proc/net/stat/nf_conntrack)",
            group(ct_drop),
            group(ct_early),
            group(ct_insert)
        )
    };
    let syn = || format!("TCPReqQFullDrop +{}, TCPReqQFullDoCookies +{}", group(reqq), group(cookies));
    let backlog = || format!("ListenOverflows +{}, ListenDrops +{}", group(overflows), group(listen_drops));
    let also: Vec<String> = [
        ("conntrack table", ct_weight > 0, conntrack()),
        ("SYN queue", reqq > 0 || cookies > 0, syn()),
        ("accept backlog", overflows.max(listen_drops) > 0, backlog()),
    ]
    .into_iter()
    .filter(|(name, moved, _)| *moved && *name != limit)
    .map(|(name, _, what)| format!("{name}: {what}"))
    .collect();
    let also = if also.is_empty() { String::new() } else { format!("; also counted: {}", also.join("; ")) };
    let (meaning, fix) = match limit {
        "conntrack table" => (
            format!(
                "the conntrack table was full: every new connection needs an entry while a NAT or ct rule tracks them, \
                 and SYNs that found no room were dropped ({}){also}",
                conntrack()
            ),
            "sysctl -w net.netfilter.nf_conntrack_max=N above the connections wanted plus those tracked now, \
             or exempt this traffic from tracking (notrack); tcpmax doctor predicts this cap",
        ),
        "SYN queue" => (
            format!("the listener's SYN queue was full and SYNs were dropped ({}, /proc/net/netstat){also}", syn()),
            "raise net.ipv4.tcp_max_syn_backlog and net.core.somaxconn on the server, set net.ipv4.tcp_syncookies=1; \
             lower --rate",
        ),
        _ => (
            format!(
                "the listener's accept backlog was full: the server did not accept fast enough and SYNs (or the \
                 handshakes' last ACKs) were dropped ({}, /proc/net/netstat){also}",
                backlog()
            ),
            "raise net.core.somaxconn and the server's listen backlog, accept faster; lower --rate",
        ),
    };
    Some(Named { limit, meaning, fix: fix.into() })
}

/// The accept queue of a server on this machine, read at the peak (before
/// the teardown), with the kernel's counters of what its full queue dropped
/// during the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct AcceptQueue {
    /// Established connections waiting in the queue: the kernel finished
    /// their handshakes, the server never took them (`rx_queue` of its
    /// LISTEN sockets in /proc/net/tcp{,6}).
    pub waiting: u64,
    /// Connections in SYN_RECV on the server's address: this side holds
    /// them established, the server dropped the handshake's last ACK.
    pub half_open: u64,
    /// `net.core.somaxconn`: the server's backlog is at most this.
    pub somaxconn: Option<u64>,
    /// `ListenOverflows` counted during the run (this namespace).
    pub listen_overflows: u64,
    /// `ListenDrops` counted during the run (this namespace).
    pub listen_drops: u64,
}

impl AcceptQueue {
    /// The queue of the server read from `listener` and the drop counters
    /// read before and after.
    pub fn of(
        listener: crate::procfs::listen::Listener,
        somaxconn: Option<u64>,
        before: &Drops,
        after: &Drops,
    ) -> AcceptQueue {
        let rise = |a: Option<u64>, b: Option<u64>| a.zip(b).map_or(0, |(a, b)| b.saturating_sub(a));
        AcceptQueue {
            waiting: listener.waiting,
            half_open: listener.half_open,
            somaxconn,
            listen_overflows: rise(before.listen_overflows, after.listen_overflows),
            listen_drops: rise(before.listen_drops, after.listen_drops),
        }
    }

    /// Connections held here that the server never accepted.
    pub fn not_accepted(&self) -> u64 {
        self.waiting.saturating_add(self.half_open)
    }

    /// True when the server stopped accepting: connections wait in its
    /// queue and the kernel dropped others because it was full.
    pub fn full(&self) -> bool {
        self.waiting > 0 && self.listen_overflows.max(self.listen_drops) > 0
    }

    /// The first limit when the queue is full: the server stopped
    /// accepting; the fixes are the server's, not the kernel's queues.
    pub fn name(&self) -> Option<Named> {
        if !self.full() {
            return None;
        }
        let backlog = match self.somaxconn {
            Some(m) => format!("; its backlog is at most {}, net.core.somaxconn", group(m)),
            None => String::new(),
        };
        Some(Named {
            limit: "accept queue",
            meaning: format!(
                "the server stopped accepting: its accept queue is full ({} waiting{backlog}; {} half open), \
                 and the kernel dropped the SYNs that came after (ListenOverflows +{}, ListenDrops +{}, \
                 /proc/net/netstat)",
                group(self.waiting),
                group(self.half_open),
                group(self.listen_overflows),
                group(self.listen_drops)
            ),
            fix: "make the server accept again: raise its descriptor limit (RLIMIT_NOFILE, LimitNOFILE=, \
                  worker_rlimit_nofile; its log says `Too many open files`) and its own connection cap \
                  (worker_connections, maxconn, max_clients); a larger backlog or somaxconn only queues more \
                  connections that are never accepted"
                .into(),
        })
    }
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

    /// A fixture root with the drop counters' files.
    struct Counters(std::path::PathBuf);

    impl Counters {
        fn new(tag: &str) -> Counters {
            let root = std::env::temp_dir().join(format!("tcpmax-drops-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            Counters(root)
        }

        fn write(&self, rel: &str, text: &str) {
            let path = self.0.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }

        /// Writes the counters as the kernel does and reads them back.
        fn set(&self, tcpext: [u64; 4], ct: Option<(u64, u64, [u64; 3])>) -> Drops {
            let [overflows, drops, reqq, cookies] = tcpext;
            self.write(
                "proc/net/netstat",
                &format!(
                    "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPReqQFullDoCookies TCPReqQFullDrop\n\
                     TcpExt: 0 {overflows} {drops} {cookies} {reqq}\nIpExt: InNoRoutes\nIpExt: 0\n"
                ),
            );
            if let Some((count, max, [insert_failed, drop, early])) = ct {
                self.write("proc/sys/net/netfilter/nf_conntrack_count", &format!("{count}\n"));
                self.write("proc/sys/net/netfilter/nf_conntrack_max", &format!("{max}\n"));
                // Two CPUs: the counts split between them, `entries` repeated.
                let line = |share: u64| {
                    format!(
                        "{count:08x}  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 {:08x} {:08x} {:08x} 00000000  00000000 00000000 00000000 00000000\n",
                        insert_failed / 2 + share * (insert_failed % 2),
                        drop / 2 + share * (drop % 2),
                        early / 2 + share * (early % 2)
                    )
                };
                self.write(
                    "proc/net/stat/nf_conntrack",
                    &format!(
                        "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n{}{}",
                        line(1),
                        line(0)
                    ),
                );
            }
            Drops::read(&crate::procfs::ProcFs::new(&self.0))
        }
    }

    impl Drop for Counters {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// #17: a run stopped by a full conntrack table names it, with its
    /// counters, not "a full SYN queue or accept backlog, a full conntrack
    /// table, or a firewall".
    #[test]
    fn a_full_conntrack_table_is_named_from_its_counters() {
        let f = Counters::new("conntrack");
        let before = f.set([5, 5, 0, 0], Some((1, 100, [0, 3, 0])));
        let after = f.set([5, 5, 0, 0], Some((100, 100, [0, 1_410, 0])));
        assert_eq!(after.conntrack_drop, Some(1_410));
        assert_eq!(after.conntrack_count, Some(100));
        let n = name_drops(&before, &after).unwrap();
        assert_eq!(n.limit, "conntrack table");
        assert!(n.meaning.contains("nf_conntrack_count 100 of nf_conntrack_max 100 at the peak"), "{}", n.meaning);
        assert!(n.meaning.contains("1,407 packets dropped"), "{}", n.meaning);
        assert!(!n.meaning.contains("or a firewall"), "{}", n.meaning);
        assert!(n.fix.contains("nf_conntrack_max=N"), "{}", n.fix);

        // At its max with no drop counted yet: still the table.
        let after = f.set([5, 5, 0, 0], Some((100, 100, [0, 3, 0])));
        assert_eq!(name_drops(&before, &after).unwrap().limit, "conntrack table");
    }

    #[test]
    fn the_syn_queue_and_the_accept_backlog_are_named_from_theirs() {
        let f = Counters::new("tcp");
        let before = f.set([0, 0, 0, 0], Some((0, 262_144, [0, 0, 0])));
        let after = f.set([0, 0, 40, 2], Some((3, 262_144, [0, 0, 0])));
        let n = name_drops(&before, &after).unwrap();
        assert_eq!(n.limit, "SYN queue");
        assert!(n.meaning.contains("TCPReqQFullDrop +40, TCPReqQFullDoCookies +2"), "{}", n.meaning);
        assert!(n.fix.contains("tcp_max_syn_backlog"), "{}", n.fix);

        // Without the conntrack module the TCP counters still name it.
        let g = Counters::new("tcp-only");
        let before = g.set([10, 12, 0, 0], None);
        let after = g.set([310, 320, 0, 0], None);
        assert_eq!((before.conntrack_max, after.conntrack_drop), (None, None));
        let n = name_drops(&before, &after).unwrap();
        assert_eq!(n.limit, "accept backlog");
        assert!(n.meaning.contains("ListenOverflows +300, ListenDrops +308"), "{}", n.meaning);
        assert!(n.fix.contains("somaxconn"), "{}", n.fix);

        // Two moved: the larger is named, the other said too.
        let before = f.set([10, 12, 0, 0], Some((3, 262_144, [0, 0, 0])));
        let after = f.set([11, 13, 500, 0], Some((3, 262_144, [0, 0, 0])));
        let n = name_drops(&before, &after).unwrap();
        assert_eq!(n.limit, "SYN queue");
        assert!(n.meaning.contains("also counted: accept backlog: ListenOverflows +1"), "{}", n.meaning);
    }

    #[test]
    fn nothing_counted_is_a_firewall_and_nothing_read_stays_generic() {
        let f = Counters::new("quiet");
        let before = f.set([7, 7, 0, 0], Some((0, 262_144, [0, 0, 0])));
        let n = name_drops(&before, &before).unwrap();
        assert_eq!(n.limit, "firewall");
        assert!(n.meaning.contains("no counter on this machine counted it"), "{}", n.meaning);

        let none = Drops::read(&crate::procfs::ProcFs::new("/nonexistent-root"));
        assert!(none.is_empty());
        assert_eq!(name_drops(&none, &before), None);
        assert_eq!(name_drops(&before, &none), None);
    }

    #[test]
    fn only_the_timeout_row_takes_the_named_limit() {
        use crate::engine::stats::Errnos;
        let f = Counters::new("rows");
        let before = f.set([0, 0, 0, 0], Some((0, 100, [0, 0, 0])));
        let after = f.set([0, 0, 0, 0], Some((100, 100, [0, 201, 0])));
        let mut errors = Errnos::default();
        for _ in 0..3 {
            errors.add(libc::ETIMEDOUT);
        }
        errors.add(libc::ECONNREFUSED);
        let rows = crate::load::report::errno_rows(&errors, Some((&before, &after)));
        let row = |name: &str| rows.iter().find(|r| r.errno == name).unwrap();
        assert!(row("ETIMEDOUT").meaning.starts_with("the conntrack table was full"), "{}", row("ETIMEDOUT").meaning);
        assert_eq!(row("ECONNREFUSED").meaning, explain("ECONNREFUSED").meaning);
        let generic = crate::load::report::errno_rows(&errors, None);
        assert_eq!(generic.iter().find(|r| r.errno == "ETIMEDOUT").unwrap().meaning, explain("ETIMEDOUT").meaning);
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
