//! Linux capabilities of the calling thread: capget(2) and capset(2).
//!
//! Capabilities belong to a thread, not to the process: a set changed here
//! changes only the caller's credentials, and they end with the thread. The
//! raw syscalls are used (not libcap, not glibc's set*id broadcast) for
//! exactly that reason.

use std::io;

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const VERSION_3: u32 = 0x2008_0522;

/// `CAP_NET_BIND_SERVICE`: bind ports below `net.ipv4.ip_unprivileged_port_start`.
pub const CAP_NET_BIND_SERVICE: u32 = 10;

#[repr(C)]
struct Header {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The capability sets of one thread, one bit per capability.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    /// What the kernel checks.
    pub effective: u64,
    /// What the thread may put into `effective`.
    pub permitted: u64,
    /// What survives execve.
    pub inheritable: u64,
}

impl Caps {
    /// True when `cap` is in the effective set.
    pub fn has_effective(&self, cap: u32) -> bool {
        self.effective & (1 << cap) != 0
    }

    /// The same sets with `cap` removed from the effective set only (the
    /// thread may raise it again, since it stays permitted).
    pub fn without_effective(self, cap: u32) -> Caps {
        Caps { effective: self.effective & !(1 << cap), ..self }
    }
}

fn split(v: u64) -> (u32, u32) {
    (v as u32, (v >> 32) as u32)
}

/// The capability sets of the calling thread.
pub fn get() -> io::Result<Caps> {
    let mut hdr = Header { version: VERSION_3, pid: 0 };
    let mut data = [Data::default(); 2];
    // SAFETY: `hdr` is a live header asking for version 3, which writes
    // exactly two `Data` structs, the length of `data`; pid 0 is the caller.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut hdr as *mut Header, data.as_mut_ptr()) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    let join = |lo: u32, hi: u32| u64::from(lo) | u64::from(hi) << 32;
    Ok(Caps {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
    })
}

/// Sets the capability sets of the calling thread (and of no other thread).
pub fn set(caps: Caps) -> io::Result<()> {
    let mut hdr = Header { version: VERSION_3, pid: 0 };
    let (e0, e1) = split(caps.effective);
    let (p0, p1) = split(caps.permitted);
    let (i0, i1) = split(caps.inheritable);
    let data = [
        Data { effective: e0, permitted: p0, inheritable: i0 },
        Data { effective: e1, permitted: p1, inheritable: i1 },
    ];
    // SAFETY: `hdr` is a live version-3 header naming the calling thread
    // (pid 0) and `data` holds the two `Data` structs version 3 reads.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut Header, data.as_ptr()) };
    if rc == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_calling_threads_sets() {
        let caps = get().expect("capget");
        assert_eq!(caps.effective & !caps.permitted, 0, "effective is a subset of permitted");
        let dropped = caps.without_effective(CAP_NET_BIND_SERVICE);
        assert!(!dropped.has_effective(CAP_NET_BIND_SERVICE));
        assert_eq!(dropped.permitted, caps.permitted);
    }
}
