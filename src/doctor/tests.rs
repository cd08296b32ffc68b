//! Unit tests of the doctor arithmetic on fixture trees written to a
//! temporary directory.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A fixture root, removed on drop.
struct Fixture {
    root: PathBuf,
}

impl Fixture {
    fn empty() -> Fixture {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("tcpmax-doctor-unit-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        Fixture { root }
    }

    /// 16 GiB (14 GiB really free), slab objects summing to 3,400 B, ports
    /// 10000-10999 with 2 reserved inside, RLIMIT_NOFILE 1024/4096,
    /// RLIMIT_NPROC 2000, conntrack not loaded, no capabilities.
    fn standard() -> Fixture {
        let f = Fixture::empty();
        f.write(
            "proc/self/limits",
            "Limit                     Soft Limit           Hard Limit           Units\n\
             Max processes             2000                 2000                 processes\n\
             Max open files            1024                 4096                 files\n",
        );
        f.write("proc/self/status", "Name:\ttcpmax\nCapEff:\t0000000000000000\n");
        f.write(
            "proc/meminfo",
            "MemTotal:       16777216 kB\nMemFree:        12582912 kB\nMemAvailable:   14680064 kB\n\
             Buffers:               0 kB\nCached:          2097152 kB\nShmem:                 0 kB\n",
        );
        f.write(
            "proc/slabinfo",
            "slabinfo - version: 2.1\n# name <active_objs> <num_objs> <objsize> ...\n\
             TCPv6 13 13 2200 13 8 : tunables 0 0 0 : slabdata 1 1 0\n\
             TCP 26 26 2000 13 8 : tunables 0 0 0 : slabdata 2 2 0\n\
             sock_inode_cache 76 76 800 19 4 : tunables 0 0 0 : slabdata 4 4 0\n\
             filp 399 399 200 21 1 : tunables 0 0 0 : slabdata 19 19 0\n\
             dentry 10 10 200 21 1 : tunables 0 0 0 : slabdata 1 1 0\n\
             eventpoll_epi 256 256 128 32 1 : tunables 0 0 0 : slabdata 8 8 0\n\
             eventpoll_pwq 256 256 72 56 1 : tunables 0 0 0 : slabdata 8 8 0\n",
        );
        for (name, value) in [
            ("fs.nr_open", "1048576"),
            ("fs.file-max", "1000000"),
            ("fs.file-nr", "1000\t0\t1000000"),
            ("fs.epoll.max_user_watches", "3000000"),
            ("net.ipv4.ip_local_port_range", "10000\t10999"),
            ("net.ipv4.ip_local_reserved_ports", "8080,10100,10500\n"),
            ("net.ipv4.ip_unprivileged_port_start", "1024"),
            ("net.ipv4.tcp_mem", "100 200 300"),
            ("net.ipv4.tcp_rmem", "4096 131072 6291456"),
            ("net.ipv4.tcp_wmem", "4096 16384 4194304"),
            ("net.core.somaxconn", "4096"),
            ("net.ipv4.tcp_max_syn_backlog", "2048"),
            ("net.ipv4.tcp_syncookies", "1"),
            ("net.ipv4.tcp_max_tw_buckets", "131072"),
            ("net.ipv4.tcp_tw_reuse", "2"),
            ("net.ipv4.tcp_fin_timeout", "60"),
            ("kernel.pid_max", "4194304"),
            ("kernel.threads-max", "100000"),
        ] {
            f.sysctl(name, value);
        }
        f
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn sysctl(&self, name: &str, value: &str) {
        self.write(&ProcFs::sysctl_rel(name), &format!("{value}\n"));
    }

    fn remove(&self, rel: &str) {
        std::fs::remove_file(self.root.join(rel)).unwrap();
    }

    fn report(&self) -> Report {
        diagnose(&ProcFs::new(&self.root))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn row<'a>(r: &'a Report, name: &str) -> &'a Limit {
    r.limits.iter().find(|l| l.name == name).unwrap()
}

fn roles(server: u64, client: u64, loopback: u64) -> Roles<Option<u64>> {
    Roles { server: Some(server), client: Some(client), loopback: Some(loopback) }
}

#[test]
fn standard_fixture_arithmetic() {
    let r = Fixture::standard().report();
    // Slab-page shares: TCP 8x4096/13 = 2520, sock_inode_cache 4x4096/19 = 862,
    // filp 200, dentry 200, eventpoll_epi 128, eventpoll_pwq 4096/56 = 73.
    assert_eq!(r.kernel_bytes_per_socket, 3_983);
    assert_eq!(r.kernel_bytes_source, BytesSource::Slab);
    assert_eq!(r.kernel_bytes_caches[0], probe::CacheCost { name: "TCP", bytes: 2520, source: "slabinfo" });
    assert_eq!(r.kernel_bytes_caches.iter().map(|c| c.bytes).sum::<u64>(), 3_983);
    assert_eq!(r.tcpv6_object_bytes, Some(2520));
    // (4096 - 64) per table x min(2000, 100000, 4194304) tables.
    assert_eq!(row(&r, "RLIMIT_NOFILE").allows, roles(8_064_000, 8_064_000, 4_032_000));
    // 1,000,000 - 1,000 in use.
    assert_eq!(row(&r, "fs.file-max").allows, roles(999_000, 999_000, 499_500));
    assert_eq!(row(&r, "fs.epoll.max_user_watches").allows, roles(3_000_000, 3_000_000, 1_500_000));
    // (14 GiB - 16 GiB / 10) / 3,983.
    assert_eq!(row(&r, "memory").allows, roles(3_342_806, 3_342_806, 1_671_403));
    // 1,000 ports minus 10100 and 10500 (8080 is outside the range).
    let ports = row(&r, "net.ipv4.ip_local_port_range");
    assert_eq!(ports.allows, Roles { server: None, client: Some(998), loopback: None });
    assert!(ports.note.as_deref().unwrap().contains("per (source IP, destination)"));
    assert_eq!(row(&r, "net.core.somaxconn").allows, Roles::default());
    assert_eq!(r.ceiling, roles(999_000, 998, 499_500));
    assert_eq!(r.binding.server.as_deref(), Some("fs.file-max"));
    assert_eq!(r.binding.client.as_deref(), Some("net.ipv4.ip_local_port_range"));
    assert_eq!(r.binding.loopback.as_deref(), Some("fs.file-max"));
    assert_eq!(row(&r, "fs.file-max").binds, vec![Role::Server, Role::Loopback]);
    assert!(r.notes.iter().any(|n| n.contains("lacks CAP_SYS_ADMIN")));
    assert!(r.notes.iter().any(|n| n.contains("TCPv6 cache: 2520 B")));
}

#[test]
fn hard_limit_needs_cap_sys_resource() {
    let r = Fixture::standard().report();
    let fix = row(&r, "RLIMIT_NOFILE").fix.as_deref().unwrap();
    assert!(fix.contains("LimitNOFILE=1048576"), "{fix}");
    assert!(fix.contains("needs CAP_SYS_RESOURCE"), "{fix}");

    let f = Fixture::standard();
    f.write("proc/self/status", "CapEff:\t0000000001000000\n");
    let r = f.report();
    let fix = row(&r, "RLIMIT_NOFILE").fix.as_deref().unwrap();
    assert!(!fix.contains("needs CAP_SYS_RESOURCE"), "{fix}");
    assert!(fix.contains("ulimit -n 1048576"), "{fix}");
}

/// The `sysctl -w NAME=VALUE` changes a fix names: (name, numbers).
fn sysctl_changes(fix: &str) -> Vec<(String, Vec<u64>)> {
    fix.split("sysctl -w ")
        .skip(1)
        .filter_map(|rest| {
            let (name, value) = rest.split_once('=')?;
            let value = value
                .strip_prefix('"')
                .map_or_else(|| value.split([';', ' ']).next().unwrap_or(""), |v| v.split('"').next().unwrap_or(""));
            let nums = value.split_whitespace().map(|n| n.parse().unwrap()).collect();
            Some((name.to_string(), nums))
        })
        .collect()
}

/// Every fix of `r` changes its row's value, and raises it: a switch is
/// only ever turned on, a range only widened, a count or size only raised.
fn assert_fixes_change_something(r: &Report) {
    for l in &r.limits {
        let Some(fix) = &l.fix else { continue };
        for (name, to) in sysctl_changes(fix) {
            if name != l.name {
                continue;
            }
            match &l.value {
                Some(Value::Number(now)) => assert!(to[0] > *now, "{name}: fix {fix} does not raise {now}"),
                Some(Value::Buffer { min, default, max }) => {
                    let now = [*min, *default, *max];
                    assert_ne!(to, now, "{name}: fix {fix} repeats the value");
                    assert!(to.iter().zip(now).all(|(t, n)| *t >= n), "{name}: fix {fix} lowers {now:?}");
                }
                Some(Value::Range { low, high }) => {
                    assert!(to[0] <= *low && to[1] >= *high, "{name}: fix {fix} narrows {low}-{high}");
                    assert_ne!((to[0], to[1]), (*low, *high), "{name}: fix {fix} repeats the value");
                }
                _ => {}
            }
        }
    }
}

/// #18: a fix equal to the value now (tcp_syncookies=1 at 1,
/// ip_unprivileged_port_start=1024 at 1024, the tcp_wmem in place) or lower
/// than it (tcp_rmem's max 33554432 to 6291456, epoll watches down to what
/// memory allows) is never given.
#[test]
fn no_fix_repeats_or_lowers_the_value() {
    let f = Fixture::standard();
    let r = f.report();
    assert_fixes_change_something(&r);
    for name in [
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
        "net.ipv4.tcp_tw_reuse",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_mem",
        "kernel.pid_max",
    ] {
        assert_eq!(row(&r, name).fix, None, "{name}");
    }
    f.sysctl("net.ipv4.tcp_rmem", "4096 131072 33554432");
    f.sysctl("fs.epoll.max_user_watches", "100000000");
    f.sysctl("fs.file-max", "9223372036854775807");
    f.sysctl("net.ipv4.ip_local_port_range", "1024 65535");
    let r = f.report();
    assert_fixes_change_something(&r);
    for name in ["net.ipv4.tcp_rmem", "fs.epoll.max_user_watches", "fs.file-max"] {
        assert_eq!(row(&r, name).fix, None, "{name}");
    }
    assert_eq!(row(&r, "net.ipv4.ip_local_port_range").fix.as_deref(), Some("more source IPs or destination ports"));
    // Below the kernel's defaults, the fixes raise: each field to at
    // least its default, the switch on.
    f.sysctl("net.ipv4.tcp_wmem", "4096 8192 8388608");
    f.sysctl("net.ipv4.tcp_syncookies", "0");
    f.sysctl("net.core.somaxconn", "128");
    f.sysctl("fs.epoll.max_user_watches", "1000");
    let r = f.report();
    assert_fixes_change_something(&r);
    assert_eq!(row(&r, "net.ipv4.tcp_wmem").fix.as_deref(), Some("sysctl -w net.ipv4.tcp_wmem=\"4096 16384 8388608\""));
    assert_eq!(row(&r, "net.ipv4.tcp_syncookies").fix.as_deref(), Some("sysctl -w net.ipv4.tcp_syncookies=1"));
    assert_eq!(row(&r, "net.core.somaxconn").fix.as_deref(), Some("sysctl -w net.core.somaxconn=65535"));
    assert!(row(&r, "fs.epoll.max_user_watches").fix.is_some());
}

/// #18: RLIMIT_NOFILE's figure is the product of the sharding, and says
/// so: per fd table times the shards.
#[test]
fn nofile_says_the_sharding_beside_its_figure() {
    let r = Fixture::standard().report();
    let note = row(&r, "RLIMIT_NOFILE").note.clone().unwrap();
    // (4096 - 64) x 2000 shards (RLIMIT_NPROC).
    assert!(note.contains("8,064,000 = 4,032 descriptors per fd table (64 kept free) × 2,000 shards"), "{note}");
    assert!(note.contains("caps one shard, not the machine"), "{note}");
}

#[test]
fn cap_sys_admin_is_exempt_from_file_max() {
    let f = Fixture::standard();
    f.write("proc/self/status", "CapEff:\t0000000000200000\n");
    let r = f.report();
    assert_eq!(row(&r, "fs.file-max").allows, Roles::default());
    assert!(row(&r, "fs.file-max").note.as_deref().unwrap().contains("999,000"));
    assert_eq!(r.ceiling, roles(3_000_000, 998, 1_500_000));
    assert_eq!(r.binding.server.as_deref(), Some("fs.epoll.max_user_watches"));

    f.sysctl("fs.epoll.max_user_watches", "10000000");
    let r = f.report();
    assert_eq!(r.ceiling, roles(3_342_806, 998, 1_671_403));
    assert_eq!(r.binding.loopback.as_deref(), Some("memory"));
}

/// The report of `f` with the tracking evidence given (the fixture root
/// runs neither the experiment nor the rules tools).
fn report_with(f: &Fixture, tracking: tracking::Tracking) -> Report {
    let mut p = Probe::read(&ProcFs::new(&f.root));
    p.tracking = tracking;
    predict_report(&p)
}

fn evidence(tracked: bool, why: &str) -> Result<tracking::Evidence, String> {
    Ok(tracking::Evidence { tracked, why: why.into() })
}

fn rules(nft: &str) -> Result<tracking::Rules, String> {
    let (tracking, notrack) = tracking::nft_rules(nft);
    Ok(tracking::Rules { tracking, notrack, read: vec!["nft".into()], unread: vec![] })
}

const NAT_RULE: &str = "table ip nat {\n\tchain post {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\toifname \"eth0\" masquerade\n\t}\n}\n";

#[test]
fn entries_now_cap_every_role_less_those_in_use() {
    let f = Fixture::standard();
    f.sysctl("net.netfilter.nf_conntrack_max", "65536");
    f.sysctl("net.netfilter.nf_conntrack_count", "10");
    let r = f.report();
    // No experiment, no rules under a fixture root: the entries in the
    // table now say something tracks; they take room.
    assert_eq!(row(&r, "net.netfilter.nf_conntrack_max").allows, roles(65_526, 65_526, 65_526));
    assert_eq!(r.ceiling, roles(65_526, 998, 65_526));
    assert_eq!(r.binding.loopback.as_deref(), Some("net.netfilter.nf_conntrack_max"));
}

/// #17: a NAT rule tracks every new connection, so nf_conntrack_max caps
/// them while the table is still empty.
#[test]
fn an_empty_table_caps_when_a_rule_tracks() {
    let f = Fixture::standard();
    f.sysctl("net.netfilter.nf_conntrack_max", "65536");
    f.sysctl("net.netfilter.nf_conntrack_count", "0");
    let by_rules = tracking::Tracking { experiment: Err("not run".into()), rules: rules(NAT_RULE) };
    let r = report_with(&f, by_rules);
    let ct = row(&r, "net.netfilter.nf_conntrack_max");
    assert_eq!(ct.allows, roles(65_536, 65_536, 65_536));
    assert_eq!(r.ceiling, roles(65_536, 998, 65_536));
    assert_eq!(r.binding.server.as_deref(), Some("net.netfilter.nf_conntrack_max"));
    let note = ct.note.as_deref().unwrap();
    assert!(note.contains("new connections are tracked"), "{note}");
    assert!(note.contains("masquerade"), "{note}");

    // The experiment alone says the same.
    let by_experiment = tracking::Tracking {
        experiment: evidence(true, "one loopback connection was listed"),
        rules: Err("nft not found".into()),
    };
    let r = report_with(&f, by_experiment);
    assert_eq!(row(&r, "net.netfilter.nf_conntrack_max").allows, roles(65_536, 65_536, 65_536));
    assert!(
        row(&r, "net.netfilter.nf_conntrack_max").note.as_deref().unwrap().contains("rules unknown: nft not found")
    );
}

#[test]
fn loopback_exempt_by_notrack_still_caps_other_traffic() {
    let f = Fixture::standard();
    f.sysctl("net.netfilter.nf_conntrack_max", "65536");
    f.sysctl("net.netfilter.nf_conntrack_count", "0");
    let nft = format!("{NAT_RULE}table ip raw {{\n\tchain pre {{\n\t\tiifname \"lo\" notrack\n\t}}\n}}\n");
    let t = tracking::Tracking { experiment: evidence(false, "not listed"), rules: rules(&nft) };
    let r = report_with(&f, t);
    let ct = row(&r, "net.netfilter.nf_conntrack_max");
    assert_eq!(ct.allows, Roles { server: Some(65_536), client: Some(65_536), loopback: None });
    let note = ct.note.as_deref().unwrap();
    assert!(note.contains("loopback is not tracked but other traffic is"), "{note}");
    assert!(note.contains("1 notrack rule(s)"), "{note}");
}

#[test]
fn untracked_or_unknown_or_not_loaded_does_not_cap() {
    let f = Fixture::standard();
    // Not loaded: cannot cap, said so.
    let r = f.report();
    let ct = row(&r, "net.netfilter.nf_conntrack_max");
    assert_eq!(ct.allows, Roles::default());
    assert!(ct.note.as_deref().unwrap().contains("not loaded"), "{:?}", ct.note);

    f.sysctl("net.netfilter.nf_conntrack_max", "65536");
    f.sysctl("net.netfilter.nf_conntrack_count", "0");
    // Loaded, nothing says whether connections are tracked.
    let r = f.report();
    let ct = row(&r, "net.netfilter.nf_conntrack_max");
    assert_eq!(ct.allows, Roles::default());
    let note = ct.note.as_deref().unwrap();
    assert!(note.starts_with("unknown whether new connections are tracked"), "{note}");
    assert!(note.contains("live machine"), "{note}");

    // Loaded, the experiment and the rules say no.
    let t = tracking::Tracking {
        experiment: evidence(false, "not listed"),
        rules: rules("table inet f {\n\tchain c {\n\t\ttcp dport 80 accept\n\t}\n}\n"),
    };
    let r = report_with(&f, t);
    let ct = row(&r, "net.netfilter.nf_conntrack_max");
    assert_eq!(ct.allows, Roles::default());
    assert!(ct.note.as_deref().unwrap().starts_with("module loaded, new connections not tracked"), "{:?}", ct.note);
}

#[test]
fn default_bytes_without_slab_information() {
    let f = Fixture::standard();
    f.remove("proc/slabinfo");
    let r = f.report();
    assert_eq!(r.kernel_bytes_per_socket, probe::DEFAULT_BYTES_PER_SOCKET);
    assert_eq!(r.kernel_bytes_source, BytesSource::Default);
    assert!(r.kernel_bytes_caches.is_empty());
    assert_eq!(row(&r, "memory").allows, roles(3_170_094, 3_170_094, 1_585_047));
}

#[test]
fn merged_caches_come_from_sys_kernel_slab() {
    let f = Fixture::standard();
    f.write("proc/slabinfo", "slabinfo - version: 2.1\nTCP 26 26 2000 13 8 : tunables 0 0 0\n");
    f.write("sys/kernel/slab/filp/slab_size", "200\n");
    let r = f.report();
    // TCP 2520 (8 pages / 13) + filp 200 + defaults 832 + 192 + 128 + 64.
    assert_eq!(r.kernel_bytes_per_socket, 2520 + 200 + 832 + 192 + 128 + 64);
    let cache = |name| r.kernel_bytes_caches.iter().find(|c| c.name == name).unwrap();
    assert_eq!((cache("filp").bytes, cache("filp").source), (200, "sys/kernel/slab"));
    assert_eq!((cache("dentry").bytes, cache("dentry").source), (192, "default"));
    let text = render::render(&r, true);
    assert!(text.contains("filp 200 (sys/kernel/slab) + dentry 192 (default)"), "{text}");
}

#[test]
fn empty_root_is_unknown_not_a_panic() {
    let r = Fixture::empty().report();
    assert_eq!(r.ceiling, Roles::default());
    assert_eq!(r.binding, Roles::default());
    assert_eq!(r.kernel_bytes_source, BytesSource::Default);
    let memory = row(&r, "memory");
    assert!(memory.is_unknown());
    assert!(memory.note.as_deref().unwrap().starts_with("unknown: "));
    assert!(r.notes.iter().any(|n| n.starts_with("unknown, skipped: ") && n.contains("memory")), "{:?}", r.notes);
    assert!(r.notes.iter().any(|n| n.starts_with("capabilities unknown")));
    assert!(render::render(&r, true).contains("(no known limit)"));
}

#[test]
fn malformed_files_are_unknown() {
    let f = Fixture::standard();
    f.write("proc/self/limits", "Max open files  lots  more  files\n");
    f.write("proc/meminfo", "MemTotal: many kB\n");
    f.sysctl("net.ipv4.ip_local_port_range", "60999 32768");
    f.sysctl("net.ipv4.ip_local_reserved_ports", "80-x");
    f.sysctl("fs.epoll.max_user_watches", "");
    f.write("proc/slabinfo", "garbage\n\n TCP\n");
    let r = f.report();
    for name in ["RLIMIT_NOFILE", "memory", "net.ipv4.ip_local_port_range", "fs.epoll.max_user_watches", "RLIMIT_NPROC"]
    {
        let l = row(&r, name);
        assert!(l.is_unknown(), "{name}");
        assert_eq!(l.allows, Roles::default(), "{name}");
        assert!(l.note.as_deref().unwrap().starts_with("unknown: "), "{name}");
    }
    assert_eq!(r.kernel_bytes_per_socket, probe::DEFAULT_BYTES_PER_SOCKET);
    assert_eq!(r.ceiling.server, Some(999_000));
    assert_eq!(r.ceiling.client, Some(999_000));

    // A bad reserved list alone keeps the range, with the reason noted.
    let f = Fixture::standard();
    f.sysctl("net.ipv4.ip_local_reserved_ports", "80-x");
    let r = f.report();
    let ports = row(&r, "net.ipv4.ip_local_port_range");
    assert_eq!(ports.allows.client, Some(1000));
    assert!(ports.note.as_deref().unwrap().contains("reserved ports unknown"));
}

#[test]
fn unlimited_hard_limit_counts_as_nr_open() {
    let f = Fixture::standard();
    f.write("proc/self/limits", "Max processes unlimited unlimited processes\nMax open files 1024 unlimited files\n");
    let r = f.report();
    // (1048576 - 64) x min(threads-max 100000, pid_max 4194304).
    let total = (1_048_576 - 64) * 100_000;
    assert_eq!(row(&r, "RLIMIT_NOFILE").allows, roles(total, total, total / 2));
}

#[test]
fn values_are_numbers_with_units() {
    let r = Fixture::standard().report();
    let nofile = row(&r, "RLIMIT_NOFILE");
    assert_eq!(nofile.value, Some(Value::SoftHard { soft: Some(1024), hard: Some(4096) }));
    assert_eq!(nofile.unit, Some(Unit::Descriptors));
    let ports = row(&r, "net.ipv4.ip_local_port_range");
    assert_eq!(ports.value, Some(Value::Range { low: 10_000, high: 10_999 }));
    assert_eq!(row(&r, "net.ipv4.tcp_mem").value, Some(Value::Pressure { low: 100, pressure: 200, high: 300 }));
    assert_eq!(row(&r, "net.ipv4.tcp_mem").unit, Some(Unit::Pages));
    let rmem = row(&r, "net.ipv4.tcp_rmem");
    assert_eq!(rmem.value, Some(Value::Buffer { min: 4096, default: 131_072, max: 6_291_456 }));
    assert_eq!(row(&r, "net.ipv4.tcp_syncookies").unit, None);
    let Some(Value::Memory(m)) = row(&r, "memory").value else { panic!("memory value") };
    assert_eq!((m.total, m.free, m.really_free), (16 << 30, 12 << 30, 14 << 30));
    assert_eq!(m.usable, m.really_free - m.margin);
    assert_eq!(row(&r, "memory").unit, Some(Unit::Bytes));

    let json = serde_json::to_value(&r).unwrap();
    let nofile = &json["limits"][0];
    assert_eq!(nofile["value"], serde_json::json!({ "soft": 1024, "hard": 4096 }));
    assert_eq!(nofile["unit"], "descriptors");

    // The table keeps the human forms.
    let text = render::render(&r, true);
    assert!(text.contains("1,024 / 4,096"), "{text}");
    assert!(text.contains("16.0 GiB total"), "{text}");
    assert!(text.contains("10000 10999"), "{text}");
    assert!(text.contains("100 200 300"), "{text}");
}

#[test]
fn unlimited_is_null_and_odd_sysctls_are_unknown() {
    let f = Fixture::standard();
    f.write("proc/self/limits", "Max processes unlimited unlimited processes\nMax open files 1024 unlimited files\n");
    f.sysctl("net.ipv4.tcp_mem", "100 200");
    let r = f.report();
    assert_eq!(row(&r, "RLIMIT_NOFILE").value, Some(Value::SoftHard { soft: Some(1024), hard: None }));
    let json = serde_json::to_value(row(&r, "RLIMIT_NPROC")).unwrap();
    assert_eq!(json["value"], serde_json::json!({ "soft": null, "hard": null }));
    assert!(render::render(&r, true).contains("unlimited / unlimited"));
    let mem = row(&r, "net.ipv4.tcp_mem");
    assert!(mem.is_unknown());
    assert!(mem.note.as_deref().unwrap().contains("expected three integers"), "{:?}", mem.note);
}

#[test]
fn table_marks_binding_rows() {
    let text = render::render(&Fixture::standard().report(), true);
    let line = text.lines().find(|l| l.starts_with("fs.file-max")).unwrap();
    assert!(line.starts_with("fs.file-max *"), "{line}");
    assert!(line.contains("*999,000"), "{line}");
    assert!(text.contains("bound by net.ipv4.ip_local_port_range"));
}

#[test]
fn reserved_ports_inside_range() {
    assert_eq!(usable_ports(10_000, 10_999, &[]), 1000);
    assert_eq!(usable_ports(10_000, 10_999, &[(10_000, 10_000)]), 999);
    assert_eq!(usable_ports(10_000, 10_999, &[(8080, 8080), (10_500, 10_501)]), 998);
    // Overlapping and straddling entries count once.
    assert_eq!(usable_ports(10_000, 10_999, &[(9_990, 10_009), (10_005, 10_019)]), 980);
    assert_eq!(usable_ports(32_768, 60_999, &[]), 28_232);
}

#[test]
fn margins() {
    assert_eq!(margin(16 << 30), (16u64 << 30) / 10);
    assert_eq!(margin(1 << 30), 256 << 20);
}

#[test]
fn a_cgroup_limit_binds_before_the_machine() {
    let f = Fixture::standard();
    f.write("proc/self/cgroup", "0::/pod/app\n");
    f.write("proc/self/mountinfo", "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
    f.write("sys/fs/cgroup/pod/app/memory.max", "max\n");
    f.write("sys/fs/cgroup/pod/app/memory.current", "1000\n");
    f.write("sys/fs/cgroup/pod/memory.max", "536870912\n");
    f.write("sys/fs/cgroup/pod/memory.current", "104857600\n");
    f.write("sys/fs/cgroup/pod/memory.stat", "inactive_file 52428800\n");
    let r = f.report();
    let c = row(&r, "cgroup memory");
    // (512 MiB - 50 MiB working set - 51.2 MiB margin) / 3,400 B.
    let usable = (512u64 << 20) - (50 << 20) - (512 << 20) / 10;
    assert_eq!(c.allows.server, Some(usable / r.kernel_bytes_per_socket));
    assert_eq!(r.binding.server.as_deref(), Some("cgroup memory"));
    assert!(c.note.as_deref().unwrap().contains("cgroup /pod memory.max 512.0 MiB"), "{:?}", c.note);

    // No limit anywhere: informational.
    f.write("sys/fs/cgroup/pod/memory.max", "max\n");
    let r = f.report();
    let c = row(&r, "cgroup memory");
    assert_eq!(c.allows, Roles::default());
    assert_eq!(c.value, None);
    assert!(c.note.as_deref().unwrap().contains("no memory limit"), "{:?}", c.note);
    // #18: no limit to raise, so no "raise the container's memory limit";
    // and an absent limit is not an unknown one.
    assert_eq!(c.fix, None);
    assert!(!c.is_unknown());
    assert!(!r.notes.iter().any(|n| n.contains("cgroup memory")), "{:?}", r.notes);
}

/// Lines of `text` wider than [`render::WIDTH`].
fn too_wide(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.chars().count() > render::WIDTH).collect()
}

/// #18: the default report is short and leads with the ceiling, the
/// binding limits and their fixes; `--all` has every row; no line passes
/// 100 columns in either.
#[test]
fn short_by_default_every_row_with_all_and_100_columns() {
    let f = Fixture::standard();
    let mut reports = vec![f.report()];
    // A long note (conntrack's evidence) and an unknown row.
    f.sysctl("net.netfilter.nf_conntrack_max", "262144");
    f.sysctl("net.netfilter.nf_conntrack_count", "5");
    f.remove("proc/meminfo");
    reports.push(f.report());
    reports.push(Fixture::empty().report());
    for r in &reports {
        let short = render::render(r, false);
        assert!(short.starts_with("Ceiling"), "{short}");
        assert!(short.lines().count() <= 18, "{} lines:\n{short}", short.lines().count());
        assert!(too_wide(&short).is_empty(), "{:?}", too_wide(&short));
        assert!(short.contains("tcpmax doctor --all"), "{short}");
        let all = render::render(r, true);
        assert!(too_wide(&all).is_empty(), "{:?}", too_wide(&all));
        for l in &r.limits {
            assert!(all.lines().any(|line| line.starts_with(&l.name)), "{} missing:\n{all}", l.name);
        }
    }
    let short = render::render(&reports[0], false);
    // The binding rows, their fixes and the next limit in line.
    assert!(short.contains("fs.file-max binds server and loopback: "), "{short}");
    assert!(short.contains("fix: sysctl -w fs.file-max="), "{short}");
    assert!(short.contains("net.ipv4.ip_local_port_range binds client"), "{short}");
    assert!(short.contains("next in line: "), "{short}");
    // Rows that bind nothing stay in --all.
    assert!(!short.contains("tcp_syncookies"), "{short}");
}
