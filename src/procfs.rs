//! Reading /proc and /sys through a root path, so tests can feed a fixture
//! tree. Every reader returns a [`ReadError`] that names the file; callers
//! decide whether a missing value is "unknown" or an error. [`cgroup`] reads
//! the memory limit and usage of this process's cgroup; [`drops`] the
//! counters of connections the kernel dropped (SYN queue, accept backlog,
//! conntrack); [`listen`] the accept queues of listeners on this machine.

pub mod cgroup;
pub mod drops;
pub mod listen;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why a value could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file does not exist (a kernel without the feature, a container).
    #[error("{0} does not exist")]
    Missing(PathBuf),
    /// The file exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file was read but its content is not what the kernel writes.
    #[error("{path}: {what}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
}

/// A view of /proc and /sys under `root` (`/` on a live machine).
#[derive(Debug, Clone)]
pub struct ProcFs {
    root: PathBuf,
}

impl Default for ProcFs {
    fn default() -> Self {
        ProcFs::new("/")
    }
}

impl ProcFs {
    /// A view rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> ProcFs {
        ProcFs { root: root.into() }
    }

    /// The root path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of `rel` (e.g. `proc/meminfo`) under the root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// Reads a whole file under the root.
    pub fn read(&self, rel: &str) -> Result<String, ReadError> {
        let path = self.path(rel);
        std::fs::read_to_string(&path).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                ReadError::Missing(path)
            } else {
                ReadError::Unreadable { path, source }
            }
        })
    }

    /// The file of a sysctl name: `net.core.somaxconn` ->
    /// `proc/sys/net/core/somaxconn`.
    pub fn sysctl_rel(name: &str) -> String {
        format!("proc/sys/{}", name.replace('.', "/"))
    }

    /// All whitespace-separated integers of a sysctl (`ip_local_port_range`
    /// gives two, `tcp_mem` three).
    pub fn sysctl_values(&self, name: &str) -> Result<Vec<u64>, ReadError> {
        let rel = ProcFs::sysctl_rel(name);
        let text = self.read(&rel)?;
        let values: Result<Vec<u64>, _> = text.split_whitespace().map(str::parse::<u64>).collect();
        match values {
            Ok(v) if !v.is_empty() => Ok(v),
            _ => Err(ReadError::Malformed {
                path: self.path(&rel),
                what: format!("expected integers, found {:?}", text.trim()),
            }),
        }
    }

    /// A sysctl holding one integer.
    pub fn sysctl_u64(&self, name: &str) -> Result<u64, ReadError> {
        let v = self.sysctl_values(name)?;
        if v.len() != 1 {
            return Err(ReadError::Malformed {
                path: self.path(&ProcFs::sysctl_rel(name)),
                what: format!("expected one integer, found {}", v.len()),
            });
        }
        Ok(v[0])
    }

    /// /proc/meminfo, in bytes.
    pub fn meminfo(&self) -> Result<Meminfo, ReadError> {
        let text = self.read("proc/meminfo")?;
        Meminfo::parse(&text).map_err(|what| ReadError::Malformed { path: self.path("proc/meminfo"), what })
    }
}

/// The /proc/meminfo fields tcpmax uses, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Meminfo {
    /// MemTotal.
    pub total: u64,
    /// MemFree.
    pub free: u64,
    /// MemAvailable.
    pub available: u64,
    /// Buffers.
    pub buffers: u64,
    /// Cached (page cache, includes Shmem).
    pub cached: u64,
    /// Shmem.
    pub shmem: u64,
    /// SReclaimable.
    pub slab_reclaimable: u64,
    /// SUnreclaim.
    pub slab_unreclaimable: u64,
}

impl Meminfo {
    /// Parses the text of /proc/meminfo. MemTotal and MemFree are required;
    /// the other fields default to 0 (MemAvailable to MemFree).
    pub fn parse(text: &str) -> Result<Meminfo, String> {
        let mut m = Meminfo::default();
        let (mut have_total, mut have_free, mut have_avail) = (false, false, false);
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(key), Some(val)) = (it.next(), it.next()) else {
                continue;
            };
            let Ok(kb) = val.parse::<u64>() else {
                return Err(format!("bad value on line {line:?}"));
            };
            let bytes = kb.saturating_mul(1024);
            match key {
                "MemTotal:" => (m.total, have_total) = (bytes, true),
                "MemFree:" => (m.free, have_free) = (bytes, true),
                "MemAvailable:" => (m.available, have_avail) = (bytes, true),
                "Buffers:" => m.buffers = bytes,
                "Cached:" => m.cached = bytes,
                "Shmem:" => m.shmem = bytes,
                "SReclaimable:" => m.slab_reclaimable = bytes,
                "SUnreclaim:" => m.slab_unreclaimable = bytes,
                _ => {}
            }
        }
        if !have_total || !have_free {
            return Err("MemTotal or MemFree missing".into());
        }
        if !have_avail {
            m.available = m.free;
        }
        Ok(m)
    }

    /// Memory really free for new sockets, by tcpmax's rule: MemFree plus
    /// the page cache that can be dropped (Buffers + Cached - Shmem).
    ///
    /// MemAvailable also counts half of the reclaimable slab as free, but
    /// while sockets are open their inodes and dentries (sock_inode_cache,
    /// dentry: "reclaimable" slab) are pinned and cannot be reclaimed, so
    /// MemAvailable over-states what is left as connections grow. This rule
    /// counts all slab as used.
    pub fn really_free(&self) -> u64 {
        let cache = (self.buffers + self.cached).saturating_sub(self.shmem);
        self.free.saturating_add(cache).min(self.total)
    }

    /// Memory in use on the machine by the same rule (total - really free).
    pub fn in_use(&self) -> u64 {
        self.total.saturating_sub(self.really_free())
    }
}

impl fmt::Display for Meminfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} total, {} really free",
            crate::units::human_bytes(self.total),
            crate::units::human_bytes(self.really_free())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "MemTotal:       1000 kB\nMemFree:         400 kB\nMemAvailable:    700 kB\nBuffers:          10 kB\nCached:          200 kB\nShmem:            50 kB\nSReclaimable:    100 kB\nSUnreclaim:       20 kB\n";

    #[test]
    fn meminfo_rule() {
        let m = Meminfo::parse(SAMPLE).expect("sample parses");
        assert_eq!(m.total, 1000 * 1024);
        assert_eq!(m.really_free(), (400 + 10 + 200 - 50) * 1024);
        assert_eq!(m.in_use(), (1000 - 560) * 1024);
        assert!(Meminfo::parse("MemFree: 1 kB\n").is_err());
        assert!(Meminfo::parse("MemTotal: x kB\n").is_err());
    }

    #[test]
    fn sysctl_names() {
        assert_eq!(ProcFs::sysctl_rel("net.core.somaxconn"), "proc/sys/net/core/somaxconn");
    }
}
