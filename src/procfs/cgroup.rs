//! The memory limit of this process's cgroup, and its usage, read through a
//! [`ProcFs`] root so tests feed fixture trees.
//!
//! # Rules
//!
//! - **Which cgroup.** `proc/self/cgroup` names it: a v1 line whose
//!   controller list holds `memory` wins (a hybrid host mounts the memory
//!   controller on v1 even when a v2 tree exists), else the v2 line `0::PATH`.
//! - **Where its files are.** `proc/self/mountinfo` gives the mount of that
//!   hierarchy (`cgroup` with the `memory` super option, or `cgroup2`); the
//!   directory is the mount point plus the path relative to the mount's root
//!   (inside a container with a cgroup namespace, both are `/`).
//! - **The limit that binds.** Every ancestor up to the mount point may hold
//!   a limit (a Kubernetes pod has one above its containers), so each level
//!   is read: v2 `memory.max` (`max` = none), v1 `memory.limit_in_bytes`
//!   (the kernel's "unlimited" is a value near 2^63; anything at or above
//!   2^60 counts as none). The level with the least room (limit minus
//!   working set) is the one reported.
//! - **Usage.** `memory.current` (v2) or `memory.usage_in_bytes` (v1),
//!   minus the inactive page cache (`inactive_file`, v1 `total_inactive_file`
//!   in `memory.stat`): the working set, as the kubelet counts it, since the
//!   kernel reclaims that cache before it reaches the limit.

use std::path::PathBuf;

use serde::Serialize;

use super::{ProcFs, ReadError};

/// A v1 limit at or above this is the kernel's "unlimited" (`PAGE_COUNTER_MAX`
/// pages, about 2^63 bytes).
pub const V1_UNLIMITED: u64 = 1 << 60;

/// The cgroup hierarchy version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    /// cgroup v1: one hierarchy per controller.
    V1,
    /// cgroup v2: the unified hierarchy.
    V2,
}

/// The memory figures of one cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CgroupMemory {
    /// v1 or v2.
    pub version: Version,
    /// The cgroup's path as `proc/self/cgroup` names it (an ancestor of the
    /// process's own cgroup when the binding limit sits higher).
    pub path: String,
    /// The directory read (under the root).
    pub dir: PathBuf,
    /// The memory limit in bytes; `None` when no level has one.
    pub limit: Option<u64>,
    /// Memory charged to the cgroup, page cache included.
    pub usage: u64,
    /// Inactive page cache, reclaimed before the limit is hit.
    pub inactive_file: u64,
}

impl CgroupMemory {
    /// Usage minus the inactive page cache.
    pub fn working_set(&self) -> u64 {
        self.usage.saturating_sub(self.inactive_file)
    }

    /// The limit's file name, for messages (`memory.max`, `memory.limit_in_bytes`).
    pub fn limit_file(&self) -> &'static str {
        match self.version {
            Version::V1 => "memory.limit_in_bytes",
            Version::V2 => "memory.max",
        }
    }
}

/// Reads the memory cgroup of this process (see the module's rules).
/// `Ok(None)`: no memory controller is mounted for it.
pub fn memory(fs: &ProcFs) -> Result<Option<CgroupMemory>, ReadError> {
    let cgroup = fs.read("proc/self/cgroup")?;
    let mountinfo = fs.read("proc/self/mountinfo")?;
    let Some((version, path)) = own_cgroup(&cgroup) else { return Ok(None) };
    let Some(mount) = find_mount(&mountinfo, version) else { return Ok(None) };
    let rel = relative(&path, &mount.root);
    let mut levels = Vec::new();
    // From the process's own cgroup up to the mount point.
    let mut cur: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
    loop {
        let sub = cur.join("/");
        let dir =
            if sub.is_empty() { mount.point.clone() } else { format!("{}/{sub}", mount.point.trim_end_matches('/')) };
        match read_level(fs, version, &dir)? {
            Some((limit, usage, inactive)) => {
                let shown = join_path(&mount.root, &sub);
                levels.push(CgroupMemory {
                    version,
                    path: shown,
                    dir: fs.path(&dir),
                    limit,
                    usage,
                    inactive_file: inactive,
                });
            }
            // The v2 root has no memory files: nothing above it either.
            None => break,
        }
        if cur.pop().is_none() {
            break;
        }
    }
    let own = levels.first().cloned();
    let tightest = levels
        .into_iter()
        .filter_map(|l| l.limit.map(|lim| (lim.saturating_sub(l.working_set()), l)))
        .min_by_key(|(room, _)| *room)
        .map(|(_, l)| l);
    Ok(tightest.or(own))
}

/// (version, path) of the memory cgroup from the text of `proc/self/cgroup`.
pub fn own_cgroup(text: &str) -> Option<(Version, String)> {
    let mut v2 = None;
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (f.next(), f.next(), f.next()) else { continue };
        if controllers.split(',').any(|c| c == "memory") {
            return Some((Version::V1, path.to_string()));
        }
        if id == "0" && controllers.is_empty() {
            v2 = Some((Version::V2, path.to_string()));
        }
    }
    v2
}

/// A cgroup mount: its root inside the hierarchy and its mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The hierarchy path mounted (field 4 of mountinfo).
    pub root: String,
    /// Where it is mounted (field 5).
    pub point: String,
}

/// The mount of the hierarchy of `version` in the text of `proc/self/mountinfo`.
pub fn find_mount(text: &str, version: Version) -> Option<Mount> {
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 {
            continue;
        }
        let wanted = match version {
            Version::V1 => r[0] == "cgroup" && r[2].split(',').any(|o| o == "memory"),
            Version::V2 => r[0] == "cgroup2",
        };
        if wanted {
            return Some(Mount { root: unescape(l[3]), point: unescape(l[4]) });
        }
    }
    None
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = &s[i + 1..i + 4];
            if let Ok(v) = u8::from_str_radix(oct, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `path` relative to the mount's `root` (`path` itself when outside it).
fn relative(path: &str, root: &str) -> String {
    let root = root.trim_end_matches('/');
    match path.strip_prefix(root) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.to_string(),
        _ => path.to_string(),
    }
}

fn join_path(root: &str, sub: &str) -> String {
    let root = root.trim_end_matches('/');
    if sub.is_empty() { if root.is_empty() { "/".into() } else { root.into() } } else { format!("{root}/{sub}") }
}

/// (limit, usage, inactive_file) of one cgroup directory; `None` when it has
/// no memory files (the v2 root, a controller not enabled).
fn read_level(fs: &ProcFs, version: Version, dir: &str) -> Result<Option<(Option<u64>, u64, u64)>, ReadError> {
    let (limit_file, usage_file, inactive_key) = match version {
        Version::V1 => ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"),
        Version::V2 => ("memory.max", "memory.current", "inactive_file"),
    };
    let limit_rel = format!("{dir}/{limit_file}");
    let limit_text = match fs.read(&limit_rel) {
        Ok(t) => t,
        Err(ReadError::Missing(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let limit = parse_limit(limit_text.trim(), version).ok_or_else(|| ReadError::Malformed {
        path: fs.path(&limit_rel),
        what: format!("bad limit {:?}", limit_text.trim()),
    })?;
    let usage_rel = format!("{dir}/{usage_file}");
    let usage_text = fs.read(&usage_rel)?;
    let usage = usage_text.trim().parse().map_err(|_| ReadError::Malformed {
        path: fs.path(&usage_rel),
        what: format!("bad usage {:?}", usage_text.trim()),
    })?;
    let inactive = fs.read(&format!("{dir}/memory.stat")).ok().and_then(|t| stat_value(&t, inactive_key)).unwrap_or(0);
    Ok(Some((limit, usage, inactive)))
}

/// A limit file's value: `None` for no limit, `Some(None)` when malformed.
fn parse_limit(text: &str, version: Version) -> Option<Option<u64>> {
    if version == Version::V2 && text == "max" {
        return Some(None);
    }
    let v: u64 = text.parse().ok()?;
    Some(if version == Version::V1 && v >= V1_UNLIMITED { None } else { Some(v) })
}

/// The value of `key` in the text of `memory.stat`.
pub fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key { v.trim().parse().ok() } else { None }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static NEXT: AtomicUsize = AtomicUsize::new(0);

    struct Tree(PathBuf);

    impl Tree {
        fn new() -> Tree {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let root = std::env::temp_dir().join(format!("tcpmax-cgroup-unit-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(&root).unwrap();
            Tree(root)
        }
        fn write(&self, rel: &str, text: &str) -> &Tree {
            let p = self.0.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
            self
        }
        fn read(&self) -> Result<Option<CgroupMemory>, ReadError> {
            memory(&ProcFs::new(&self.0))
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const HYBRID_MOUNTS: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

    #[test]
    fn v1_unlimited_is_no_limit() {
        let t = Tree::new();
        t.write("proc/self/cgroup", "4:memory:/svc/a\n0::/\n").write("proc/self/mountinfo", HYBRID_MOUNTS);
        t.write("sys/fs/cgroup/memory/svc/a/memory.limit_in_bytes", "9223372036854771712\n");
        t.write("sys/fs/cgroup/memory/svc/a/memory.usage_in_bytes", "396173312\n");
        t.write("sys/fs/cgroup/memory/svc/memory.limit_in_bytes", "9223372036854771712\n");
        t.write("sys/fs/cgroup/memory/svc/memory.usage_in_bytes", "500000000\n");
        let m = t.read().unwrap().unwrap();
        assert_eq!(m.version, Version::V1);
        assert_eq!(m.path, "/svc/a");
        assert_eq!(m.limit, None);
        assert_eq!(m.usage, 396_173_312);
        assert_eq!(m.limit_file(), "memory.limit_in_bytes");
    }

    #[test]
    fn v1_parent_limit_binds() {
        let t = Tree::new();
        t.write("proc/self/cgroup", "9:name=systemd:/\n4:memory:/pod/c\n").write("proc/self/mountinfo", HYBRID_MOUNTS);
        t.write("sys/fs/cgroup/memory/pod/c/memory.limit_in_bytes", "1073741824\n");
        t.write("sys/fs/cgroup/memory/pod/c/memory.usage_in_bytes", "100000000\n");
        t.write("sys/fs/cgroup/memory/pod/memory.limit_in_bytes", "536870912\n");
        t.write("sys/fs/cgroup/memory/pod/memory.usage_in_bytes", "300000000\n");
        t.write("sys/fs/cgroup/memory/pod/memory.stat", "cache 1\ntotal_inactive_file 50000000\n");
        let m = t.read().unwrap().unwrap();
        assert_eq!(m.path, "/pod");
        assert_eq!(m.limit, Some(512 << 20));
        assert_eq!(m.working_set(), 250_000_000);
    }

    #[test]
    fn v2_in_a_container_namespace() {
        let t = Tree::new();
        t.write("proc/self/cgroup", "0::/\n");
        t.write("proc/self/mountinfo", "600 500 0:30 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw\n");
        t.write("sys/fs/cgroup/memory.max", "268435456\n");
        t.write("sys/fs/cgroup/memory.current", "104857600\n");
        t.write("sys/fs/cgroup/memory.stat", "anon 1\ninactive_file 4857600\nactive_file 7\n");
        let m = t.read().unwrap().unwrap();
        assert_eq!(m.version, Version::V2);
        assert_eq!(m.path, "/");
        assert_eq!(m.limit, Some(256 << 20));
        assert_eq!(m.working_set(), 100_000_000);
        assert_eq!(m.limit_file(), "memory.max");
    }

    #[test]
    fn v2_max_and_root_without_files() {
        let t = Tree::new();
        t.write("proc/self/cgroup", "0::/user.slice/app\n");
        t.write("proc/self/mountinfo", "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        t.write("sys/fs/cgroup/user.slice/app/memory.max", "max\n");
        t.write("sys/fs/cgroup/user.slice/app/memory.current", "4096\n");
        t.write("sys/fs/cgroup/user.slice/memory.max", "max\n");
        t.write("sys/fs/cgroup/user.slice/memory.current", "8192\n");
        let m = t.read().unwrap().unwrap();
        assert_eq!(m.limit, None);
        assert_eq!(m.path, "/user.slice/app");
        assert_eq!(m.usage, 4096);
    }

    #[test]
    fn hybrid_without_memory_controller_and_missing_files() {
        let t = Tree::new();
        t.write("proc/self/cgroup", "1:cpu:/\n").write("proc/self/mountinfo", HYBRID_MOUNTS);
        assert_eq!(t.read().unwrap(), None);
        let t = Tree::new();
        assert!(matches!(t.read(), Err(ReadError::Missing(_))));
        let t = Tree::new();
        t.write("proc/self/cgroup", "0::/x\n").write("proc/self/mountinfo", HYBRID_MOUNTS);
        t.write("sys/fs/cgroup/unified/x/memory.max", "lots\n");
        assert!(matches!(t.read(), Err(ReadError::Malformed { .. })));
    }

    #[test]
    fn parsing_pieces() {
        assert_eq!(own_cgroup("0::/a\n"), Some((Version::V2, "/a".into())));
        assert_eq!(own_cgroup("5:cpu,memory:/b\n0::/a\n"), Some((Version::V1, "/b".into())));
        assert_eq!(own_cgroup("garbage\n"), None);
        assert_eq!(
            find_mount("1 2 0:3 /x /mnt/a\\040b rw - cgroup2 none rw\n", Version::V2).unwrap().point,
            "/mnt/a b"
        );
        assert_eq!(relative("/docker/abc/sub", "/docker/abc"), "/sub");
        assert_eq!(relative("/other", "/docker/abc"), "/other");
        assert_eq!(relative("/", "/"), "/");
        assert_eq!(stat_value("inactive_file 12\nx 1\n", "inactive_file"), Some(12));
        assert_eq!(parse_limit("max", Version::V2), Some(None));
        assert_eq!(parse_limit("9223372036854771712", Version::V1), Some(None));
        assert_eq!(parse_limit("1024", Version::V1), Some(Some(1024)));
        assert_eq!(parse_limit("x", Version::V1), None);
    }
}
