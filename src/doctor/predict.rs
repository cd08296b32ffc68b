//! The arithmetic: one [`Limit`] row per limit read by [`Probe`], then the
//! ceiling per role. The rules are documented on the `doctor` module.

use super::probe::{CAP_SYS_ADMIN, CAP_SYS_RESOURCE, Probe, RLimit, Reading};
use super::{Limit, Memory, Roles, Unit, Value};
use crate::units::{group, human_bytes};

/// Descriptors kept free in each fd table for the process itself.
pub const FD_HEADROOM: u64 = 64;
/// The smallest memory safety margin: 256 MiB.
pub const MIN_MARGIN: u64 = 256 << 20;

/// Builds every row from the readings.
pub fn rows(p: &Probe) -> Vec<Limit> {
    vec![
        nofile(p),
        nr_open(p),
        file_max(p),
        epoll(p),
        memory(p),
        cgroup_memory(p),
        ports(p),
        info_u64(
            "net.ipv4.ip_unprivileged_port_start",
            &p.unprivileged_port_start,
            Some(Unit::Port),
            None,
            "listening below this port needs CAP_NET_BIND_SERVICE; does not limit the count",
        ),
        conntrack(p),
        tcp_mem(p),
        buffer(
            "net.ipv4.tcp_rmem",
            &p.tcp_rmem,
            [4096, 131_072, 6_291_456],
            "receive buffer min/default/max bytes; an idle socket holds no buffer",
        ),
        buffer(
            "net.ipv4.tcp_wmem",
            &p.tcp_wmem,
            [4096, 16_384, 4_194_304],
            "send buffer min/default/max bytes; an idle socket holds no buffer",
        ),
        info_u64(
            "net.core.somaxconn",
            &p.somaxconn,
            Some(Unit::Connections),
            raise("net.core.somaxconn", &p.somaxconn, 65_535),
            "caps the accept queue: limits the connection rate, not the count",
        ),
        info_u64(
            "net.ipv4.tcp_max_syn_backlog",
            &p.syn_backlog,
            Some(Unit::Connections),
            raise("net.ipv4.tcp_max_syn_backlog", &p.syn_backlog, 65_535),
            "half-open connections waiting: limits the connection rate, not the count",
        ),
        info_u64(
            "net.ipv4.tcp_syncookies",
            &p.syncookies,
            None,
            switch_on("net.ipv4.tcp_syncookies", &p.syncookies),
            "1 = cookies when the SYN queue overflows, so bursts are not dropped",
        ),
        info_u64(
            "net.ipv4.tcp_max_tw_buckets",
            &p.tw_buckets,
            Some(Unit::Sockets),
            raise("net.ipv4.tcp_max_tw_buckets", &p.tw_buckets, 262_144),
            "sockets in TIME_WAIT beyond this are destroyed at once; matters for churn, not held connections",
        ),
        info_u64(
            "net.ipv4.tcp_tw_reuse",
            &p.tw_reuse,
            None,
            switch_on("net.ipv4.tcp_tw_reuse", &p.tw_reuse),
            "1 lets outgoing connections reuse TIME_WAIT ports (2 = loopback only)",
        ),
        info_u64(
            "net.ipv4.tcp_fin_timeout",
            &p.fin_timeout,
            Some(Unit::Seconds),
            None,
            "seconds in FIN_WAIT_2; matters for churn, not held connections",
        ),
        nproc(p),
        info_u64(
            "kernel.pid_max",
            &p.pid_max,
            Some(Unit::Pids),
            raise("kernel.pid_max", &p.pid_max, 4_194_304),
            "every thread takes a pid: bounds the shards (fd tables)",
        ),
        info_u64(
            "kernel.threads-max",
            &p.threads_max,
            Some(Unit::Threads),
            raise("kernel.threads-max", &p.threads_max, 4_194_304),
            "bounds the shards (one thread per fd table)",
        ),
    ]
}

/// The ceiling per role and the name of the row that binds it: the smallest
/// non-null `allows`, first row winning a tie. Marks `binds` on that row.
pub fn ceiling(rows: &mut [Limit]) -> (Roles<Option<u64>>, Roles<Option<String>>) {
    let mut ceiling = Roles::default();
    let mut binding = Roles::default();
    for role in super::Role::ALL {
        let best = rows.iter().enumerate().filter_map(|(i, r)| r.allows.get(role).map(|v| (v, i))).min();
        if let Some((v, i)) = best {
            *ceiling.get_mut(role) = Some(v);
            *binding.get_mut(role) = Some(rows[i].name.clone());
            rows[i].binds.push(role);
        }
    }
    (ceiling, binding)
}

/// The most shards (threads, one fd table each): the smallest of
/// RLIMIT_NPROC (soft), kernel.threads-max and kernel.pid_max that is known,
/// 1 when none is.
pub fn max_shards(p: &Probe) -> u64 {
    let nproc = p.nproc.as_ref().ok().and_then(|r| r.soft);
    [nproc, p.threads_max.clone().ok(), p.pid_max.clone().ok()].into_iter().flatten().min().unwrap_or(1).max(1)
}

fn unknown(name: &str, unit: Option<Unit>, why: &str, fix: Option<String>) -> Limit {
    Limit::new(name, None, unit, Roles::default(), fix).with_note(format!("unknown: {why}"))
}

fn same(v: u64) -> Roles<Option<u64>> {
    Roles { server: Some(v), client: Some(v), loopback: Some(v / 2) }
}

fn fmt_limit(v: Option<u64>) -> String {
    v.map_or_else(|| "unlimited".into(), group)
}

fn nofile(p: &Probe) -> Limit {
    const NAME: &str = "RLIMIT_NOFILE";
    const UNIT: Option<Unit> = Some(Unit::Descriptors);
    let generic = "ulimit -n N; LimitNOFILE=N in a systemd unit; `* soft nofile N` in limits.conf";
    let r = match &p.nofile {
        Ok(r) => *r,
        Err(why) => return unknown(NAME, UNIT, why, Some(generic.into())),
    };
    let RLimit { soft, hard } = r;
    let nr_open = p.nr_open.clone().ok();
    let usable_max = hard.or(nr_open).unwrap_or(u64::MAX);
    let per_shard = usable_max.saturating_sub(FD_HEADROOM);
    let shards = max_shards(p);
    let total = per_shard.saturating_mul(shards);
    let mut note = format!(
        "{} soft / {} hard; {} = {} descriptors per fd table ({} kept free) × {} shards: tcpmax spreads sockets over many fd tables (one per thread), so the per-process limit caps one shard, not the machine",
        fmt_limit(soft),
        fmt_limit(hard),
        group(total),
        group(per_shard),
        FD_HEADROOM,
        group(shards)
    );
    let can_raise = p.has_cap(CAP_SYS_RESOURCE);
    // Only raising the hard limit toward fs.nr_open changes anything:
    // tcpmax raises the soft limit to the hard one itself.
    let fix = match (hard, nr_open) {
        (Some(h), Some(n)) if h < n && !can_raise => {
            note.push_str("; the hard limit cannot be raised here (no CAP_SYS_RESOURCE)");
            Some(format!(
                "LimitNOFILE={n} in a systemd unit; `* hard nofile {n}` in limits.conf; `ulimit -n {n}` needs CAP_SYS_RESOURCE to raise the hard limit (not held here)"
            ))
        }
        (Some(h), Some(n)) if h < n => {
            Some(format!("ulimit -n {n}; LimitNOFILE={n} in a systemd unit; `* hard nofile {n}` in limits.conf"))
        }
        (Some(_), None) => Some(generic.into()),
        _ => None,
    };
    Limit::new(NAME, Some(Value::SoftHard { soft, hard }), UNIT, same(total), fix).with_note(note)
}

fn nr_open(p: &Probe) -> Limit {
    info_u64(
        "fs.nr_open",
        &p.nr_open,
        Some(Unit::Descriptors),
        None,
        "the highest RLIMIT_NOFILE hard limit the kernel accepts",
    )
}

fn file_max(p: &Probe) -> Limit {
    const NAME: &str = "fs.file-max";
    const UNIT: Option<Unit> = Some(Unit::Files);
    let used = p.file_nr.clone().unwrap_or(0);
    let fix = sysctl_raise(NAME, p.file_max.clone().ok(), memory_sockets(p).map(|s| s.saturating_add(used)));
    let max = match &p.file_max {
        Ok(v) => *v,
        Err(why) => return unknown(NAME, UNIT, why, fix),
    };
    let free = max.saturating_sub(used);
    let mut note = format!("system-wide open files; {} in use (fs.file-nr)", group(used));
    if p.file_nr.is_err() {
        note = "system-wide open files; in use unknown (fs.file-nr unreadable), 0 assumed".into();
    }
    if p.has_cap(CAP_SYS_ADMIN) {
        note.push_str(&format!(
            "; not enforced for a process with CAP_SYS_ADMIN (held here), so it binds nothing; unprivileged it would allow {} (loopback {})",
            group(free),
            group(free / 2)
        ));
        return Limit::new(NAME, Some(Value::Number(max)), UNIT, Roles::default(), fix).with_note(note);
    }
    note.push_str("; processes with CAP_SYS_ADMIN are exempt");
    Limit::new(NAME, Some(Value::Number(max)), UNIT, same(free), fix).with_note(note)
}

/// The sockets memory allows, when known: the value the sysctl fixes aim at
/// so that memory binds instead.
pub fn memory_sockets(p: &Probe) -> Option<u64> {
    let m = p.meminfo.as_ref().ok()?;
    let usable = m.really_free().saturating_sub(margin(m.total));
    Some(usable / p.socket_cost.bytes.max(1))
}

/// `sysctl -w NAME=TARGET` when it raises `current` (`N` when the target
/// is unknown); `None` when the value already reaches it: a fix that
/// changes nothing or lowers the value is no fix.
fn sysctl_raise(name: &str, current: Option<u64>, target: Option<u64>) -> Option<String> {
    match (current, target) {
        (Some(c), Some(t)) if c >= t => None,
        (_, Some(t)) => Some(format!("sysctl -w {name}={t}")),
        (_, None) => Some(format!("sysctl -w {name}=N")),
    }
}

/// [`sysctl_raise`] of a reading.
fn raise(name: &str, current: &Reading<u64>, target: u64) -> Option<String> {
    sysctl_raise(name, current.clone().ok(), Some(target))
}

/// `sysctl -w NAME=1` for a switch that is off (0); `None` when it is on
/// (1, or another mode that is on, such as 2).
fn switch_on(name: &str, current: &Reading<u64>) -> Option<String> {
    match current {
        Ok(v) if *v != 0 => None,
        _ => Some(format!("sysctl -w {name}=1")),
    }
}

fn epoll(p: &Probe) -> Limit {
    const NAME: &str = "fs.epoll.max_user_watches";
    const UNIT: Option<Unit> = Some(Unit::Watches);
    let fix = sysctl_raise(NAME, p.epoll_watches.clone().ok(), memory_sockets(p));
    match &p.epoll_watches {
        Ok(v) => Limit::new(NAME, Some(Value::Number(*v)), UNIT, same(*v), fix)
            .with_note("per user: one watch per socket registered in epoll, over all processes; the fix raises it to the sockets memory allows"),
        Err(why) => unknown(NAME, UNIT, why, fix),
    }
}

/// The memory margin kept free: max(10% of MemTotal, 256 MiB).
pub fn margin(total: u64) -> u64 {
    (total / 10).max(MIN_MARGIN)
}

fn memory(p: &Probe) -> Limit {
    const NAME: &str = "memory";
    const UNIT: Option<Unit> = Some(Unit::Bytes);
    const FIX: &str =
        "add memory or run more machines behind a load balancer; see `tcpmax bench` for the measured cost";
    let m = match &p.meminfo {
        Ok(m) => *m,
        Err(why) => return unknown(NAME, UNIT, why, Some(FIX.into())),
    };
    let bytes = p.socket_cost.bytes.max(1);
    let usable = m.really_free().saturating_sub(margin(m.total));
    let sockets = usable / bytes;
    let value = Value::Memory(Memory {
        total: m.total,
        available: m.available,
        free: m.free,
        really_free: m.really_free(),
        margin: margin(m.total),
        usable,
    });
    let note = format!(
        "MemAvailable {}, MemFree {}; {} really free - {} margin = {}, at {} B per idle socket",
        human_bytes(m.available),
        human_bytes(m.free),
        human_bytes(m.really_free()),
        human_bytes(margin(m.total)),
        human_bytes(usable),
        group(bytes)
    );
    Limit::new(NAME, Some(value), UNIT, same(sockets), Some(FIX.into())).with_note(note)
}

fn cgroup_memory(p: &Probe) -> Limit {
    const NAME: &str = "cgroup memory";
    const FIX: &str =
        "raise the container's memory limit (Kubernetes resources.limits.memory, docker --memory, systemd MemoryMax=)";
    let c = match &p.cgroup {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Limit::new(NAME, None, Some(Unit::Bytes), Roles::default(), None)
                .with_note("no memory controller for this process: the machine's memory applies");
        }
        Err(why) => return unknown(NAME, Some(Unit::Bytes), why, None),
    };
    let Some(limit) = c.limit else {
        let note = format!("cgroup {} has no memory limit ({}): the machine's memory applies", c.path, c.limit_file());
        return Limit::new(NAME, None, Some(Unit::Bytes), Roles::default(), None).with_note(note);
    };
    let bytes = p.socket_cost.bytes.max(1);
    let ws = c.working_set();
    let usable = limit.saturating_sub(ws).saturating_sub(limit / 10);
    let note = format!(
        "cgroup {} {} {}: working set {} (usage {} minus inactive page cache {}); {} - {} - 10% margin = {}, at {} B per idle socket; the kernel charges socket memory to the cgroup and its OOM killer acts at the limit",
        c.path,
        c.limit_file(),
        human_bytes(limit),
        human_bytes(ws),
        human_bytes(c.usage),
        human_bytes(c.inactive_file),
        human_bytes(limit),
        human_bytes(ws),
        human_bytes(usable),
        group(bytes)
    );
    Limit::new(NAME, Some(Value::Number(limit)), Some(Unit::Bytes), same(usable / bytes), Some(FIX.into()))
        .with_note(note)
}

/// Ports of `lo..=hi` minus the reserved ports inside it.
pub fn usable_ports(lo: u64, hi: u64, reserved: &[(u64, u64)]) -> u64 {
    let mut inside: Vec<(u64, u64)> = reserved
        .iter()
        .filter_map(|&(a, b)| {
            let (a, b) = (a.max(lo), b.min(hi));
            (a <= b).then_some((a, b))
        })
        .collect();
    inside.sort_unstable();
    let mut taken = 0;
    let mut next = lo;
    for (a, b) in inside {
        let a = a.max(next);
        if a <= b {
            taken += b - a + 1;
            next = b + 1;
        }
    }
    (hi - lo + 1).saturating_sub(taken)
}

fn ports(p: &Probe) -> Limit {
    const NAME: &str = "net.ipv4.ip_local_port_range";
    const UNIT: Option<Unit> = Some(Unit::Port);
    const MORE: &str = "more source IPs or destination ports";
    let (lo, hi) = match &p.port_range {
        Ok(r) => *r,
        Err(why) => return unknown(NAME, UNIT, why, Some(MORE.into())),
    };
    // Widen to 1024-65535 only where that widens the range.
    let fix = if lo > 1024 || hi < 65_535 {
        let (wlo, whi) = (lo.min(1024), hi.max(65_535));
        format!("sysctl -w {NAME}=\"{wlo} {whi}\"; {MORE}")
    } else {
        MORE.to_string()
    };
    let (reserved, reserved_note) = match &p.reserved_ports {
        Ok(r) => (r.clone(), String::new()),
        Err(why) => (Vec::new(), format!("; reserved ports unknown ({why})")),
    };
    let n = usable_ports(lo, hi, &reserved);
    let in_range = (hi - lo + 1) - n;
    let note = format!(
        "{} ports per (source IP, destination), {} of the range reserved{reserved_note}; client: per destination; server: a listening port uses no ephemeral port; loopback: {} per pair, but `tcpmax load` spreads over many source IPs of 127.0.0.0/8 and destinations, so ports do not cap it overall",
        group(n),
        group(in_range),
        group(n)
    );
    let allows = Roles { server: None, client: Some(n), loopback: None };
    Limit::new(NAME, Some(Value::Range { low: lo, high: hi }), UNIT, allows, Some(fix)).with_note(note)
}

fn conntrack(p: &Probe) -> Limit {
    const NAME: &str = "net.netfilter.nf_conntrack_max";
    const UNIT: Option<Unit> = Some(Unit::Entries);
    let fix = sysctl_raise(NAME, p.conntrack_max.clone().ok(), memory_sockets(p)).map(|s| {
        format!(
            "{s}; or exempt this traffic from tracking (an nftables `notrack` rule, iptables -t raw -j CT --notrack)"
        )
    });
    let max = match (&p.conntrack_max, &p.conntrack_count) {
        (Ok(v), _) => *v,
        (Err(_), Err(_)) => {
            return Limit::new(NAME, None, UNIT, Roles::default(), None).with_note(
                "the nf_conntrack module is not loaded (no nf_conntrack_max, no nf_conntrack_count): conntrack cannot cap connections",
            );
        }
        (Err(why), Ok(_)) => return unknown(NAME, UNIT, why, fix),
    };
    let (count, count_note) = match &p.conntrack_count {
        Ok(c) => (*c, format!("{} in use now", group(*c))),
        Err(why) => (0, format!("in use unknown ({why}), 0 assumed")),
    };
    let room = max.saturating_sub(count);
    let (loopback, other) = tracked(p, count);
    let evidence = evidence(p, count);
    let allows = Roles {
        server: other.unwrap_or(false).then_some(room),
        client: other.unwrap_or(false).then_some(room),
        loopback: loopback.unwrap_or(false).then_some(room),
    };
    let cap = format!(
        "one entry per connection (one for both ends on loopback): {} free of {} ({count_note})",
        group(room),
        group(max)
    );
    let note = match (loopback, other) {
        (Some(true), Some(true)) => format!("new connections are tracked ({evidence}); {cap}"),
        (Some(false), Some(true)) => {
            format!("loopback is not tracked but other traffic is ({evidence}): caps server and client; {cap}")
        }
        (None, Some(true)) => {
            format!("other traffic is tracked, loopback unknown ({evidence}): caps server and client; {cap}")
        }
        (Some(true), _) => format!("loopback connections are tracked ({evidence}); {cap}"),
        (Some(false), _) | (None, Some(false)) => format!(
            "module loaded, new connections not tracked ({evidence}): no cap; a NAT or ct rule would make it cap each role at {}",
            group(room)
        ),
        (None, None) => format!(
            "unknown whether new connections are tracked ({evidence}): if a NAT or ct rule tracks them, it caps each role at {}",
            group(room)
        ),
    };
    Limit::new(NAME, Some(Value::Number(max)), UNIT, allows, fix).with_note(note)
}

/// Whether new connections are tracked: (loopback, server and client),
/// `None` when unknown. Loopback: the experiment, else the rules. Other
/// traffic: tracked when the rules or the experiment say so (a `notrack`
/// rule for `lo` can hide tracking from the experiment, never show it);
/// untracked when the rules, else the experiment, say so. Without either,
/// entries in the table now mean something tracks.
pub fn tracked(p: &Probe, count: u64) -> (Option<bool>, Option<bool>) {
    let experiment = p.tracking.experiment.as_ref().ok().map(|e| e.tracked);
    let rules = p.tracking.rules.as_ref().ok().map(|r| r.tracks());
    let now = (count > 0).then_some(true);
    let loopback = experiment.or(rules).or(now);
    let other = match (rules, experiment) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), _) | (None, Some(false)) => Some(false),
        (None, None) => now,
    };
    (loopback, other)
}

/// The evidence for the note: the experiment's, the rules', the count.
fn evidence(p: &Probe, count: u64) -> String {
    let experiment = match &p.tracking.experiment {
        Ok(e) => e.why.clone(),
        Err(why) => format!("experiment not run: {why}"),
    };
    let rules = match &p.tracking.rules {
        Ok(r) => r.summary(),
        Err(why) => format!("rules unknown: {why}"),
    };
    format!("{experiment}; {rules}; nf_conntrack_count {}", group(count))
}

fn tcp_mem(p: &Probe) -> Limit {
    const NAME: &str = "net.ipv4.tcp_mem";
    match p.tcp_mem.as_ref().map_err(Clone::clone).and_then(|v| three(v)) {
        Ok([low, pressure, high]) => {
            Limit::new(NAME, Some(Value::Pressure { low, pressure, high }), Some(Unit::Pages), Roles::default(), None)
                .with_note("pages of buffer memory in flight over all TCP sockets, not idle sockets")
        }
        Err(why) => unknown(NAME, Some(Unit::Pages), &why, None),
    }
}

fn nproc(p: &Probe) -> Limit {
    const NAME: &str = "RLIMIT_NPROC";
    const FIX: &str = "ulimit -u N; or LimitNPROC=N in the systemd unit";
    match &p.nproc {
        Ok(r) => {
            // Raising it changes the shards only when it is the bound.
            let others = [p.threads_max.clone().ok(), p.pid_max.clone().ok()].into_iter().flatten().min();
            let fix = match (r.soft, others) {
                (Some(s), Some(o)) if s < o => Some(FIX.to_string()),
                (Some(_), None) => Some(FIX.to_string()),
                _ => None,
            };
            let value = Value::SoftHard { soft: r.soft, hard: r.hard };
            let note = format!(
                "threads per user: with threads-max and pid_max bounds the shards, here {}",
                group(max_shards(p))
            );
            Limit::new(NAME, Some(value), Some(Unit::Threads), Roles::default(), fix).with_note(note)
        }
        Err(why) => unknown(NAME, Some(Unit::Threads), why, Some(FIX.into())),
    }
}

fn info_u64(name: &str, r: &Reading<u64>, unit: Option<Unit>, fix: Option<String>, note: &str) -> Limit {
    match r {
        Ok(v) => Limit::new(name, Some(Value::Number(*v)), unit, Roles::default(), fix).with_note(note),
        Err(why) => unknown(name, unit, why, fix),
    }
}

/// A `tcp_rmem`/`tcp_wmem` row: min, default and max bytes. The fix raises
/// each value below the kernel's `default` (the sizes it boots with) and
/// never lowers one; none when no value is below.
fn buffer(name: &str, r: &Reading<Vec<u64>>, default: [u64; 3], note: &str) -> Limit {
    let unit = Some(Unit::Bytes);
    let text = |v: [u64; 3]| format!("sysctl -w {name}=\"{} {} {}\"", v[0], v[1], v[2]);
    match r.as_ref().map_err(Clone::clone).and_then(|v| three(v)) {
        Ok(now) => {
            let [min, default_now, max] = now;
            let target = [min.max(default[0]), default_now.max(default[1]), max.max(default[2])];
            let fix = (target != now).then(|| text(target));
            let value = Value::Buffer { min, default: default_now, max };
            Limit::new(name, Some(value), unit, Roles::default(), fix).with_note(note)
        }
        Err(why) => unknown(name, unit, &why, Some(text(default))),
    }
}

/// The three values of a sysctl that has three.
fn three(v: &[u64]) -> Result<[u64; 3], String> {
    <[u64; 3]>::try_from(v).map_err(|_| format!("expected three integers, found {v:?}"))
}
