//! Process- and thread-level calls: resource limits, fd tables, signals.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use super::syscall;

/// A soft/hard resource limit pair; `u64::MAX` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    /// The limit in force.
    pub soft: u64,
    /// The ceiling an unprivileged process may raise `soft` to.
    pub hard: u64,
}

/// Which resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// RLIMIT_NOFILE: descriptors per fd table.
    NoFile,
    /// RLIMIT_NPROC: tasks per user.
    NProc,
}

fn resource_id(r: Resource) -> libc::__rlimit_resource_t {
    match r {
        Resource::NoFile => libc::RLIMIT_NOFILE,
        Resource::NProc => libc::RLIMIT_NPROC,
    }
}

fn from_rlim(v: libc::rlim_t) -> u64 {
    if v == libc::RLIM_INFINITY { u64::MAX } else { v }
}

/// getrlimit(2).
pub fn getrlimit(r: Resource) -> io::Result<Rlimit> {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `l` is a live, writable rlimit.
    syscall!(getrlimit(resource_id(r), &mut l))?;
    Ok(Rlimit { soft: from_rlim(l.rlim_cur), hard: from_rlim(l.rlim_max) })
}

/// setrlimit(2).
pub fn setrlimit(r: Resource, lim: Rlimit) -> io::Result<()> {
    let to = |v: u64| {
        if v == u64::MAX { libc::RLIM_INFINITY } else { v }
    };
    let l = libc::rlimit { rlim_cur: to(lim.soft), rlim_max: to(lim.hard) };
    // SAFETY: `l` is a live rlimit.
    syscall!(setrlimit(resource_id(r), &l))?;
    Ok(())
}

/// Makes glibc give freed memory back promptly: a thread's heap keeps no
/// spare top (`M_TOP_PAD` 0) and is shrunk once its free top reaches 16 KiB
/// (`M_TRIM_THRESHOLD`). By default each shard's heap keeps up to 128 KiB
/// after a burst, which `malloc_trim` does not reach (it trims only the
/// main heap's top). Only frees of 64 KiB and more trim, so the cost is a
/// syscall per large buffer freed, not per connection.
pub fn return_freed_promptly() {
    // SAFETY: mallopt takes two integers and sets the allocator's tunables
    // under its own lock.
    unsafe {
        libc::mallopt(libc::M_TOP_PAD, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 10);
    }
}

/// Gives the allocator's free pages back to the kernel (glibc's
/// `malloc_trim`, every arena). After a ramp of TLS handshakes, whose
/// transient state is freed once each connection is at rest, the freed
/// pages otherwise stay in the process's RSS.
pub fn trim_heap() {
    // SAFETY: malloc_trim takes no pointer and only walks the allocator's own
    // free lists, under the allocator's locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard one (allowed without privilege)
/// and reads back what the kernel kept.
pub fn raise_nofile() -> io::Result<Rlimit> {
    let l = getrlimit(Resource::NoFile)?;
    if l.soft < l.hard {
        // A hard limit above fs.nr_open is refused; keep the soft one then.
        let _ = setrlimit(Resource::NoFile, Rlimit { soft: l.hard, hard: l.hard });
    }
    getrlimit(Resource::NoFile)
}

/// Gives the calling thread a private fd table holding only `keep` (and
/// stdin/stdout/stderr): `unshare(CLONE_FILES)` then close every other
/// descriptor it inherited. From then on, sockets this thread opens count
/// against its own RLIMIT_NOFILE budget, and the thread's table is freed,
/// closing them all, when the thread exits.
pub fn private_fd_table(keep: &[RawFd]) -> io::Result<()> {
    syscall!(unshare(libc::CLONE_FILES))?;
    let mut keep: Vec<u32> = keep.iter().filter(|&&f| f > 2).map(|&f| f as u32).collect();
    keep.sort_unstable();
    let mut next: u32 = 3;
    for k in keep {
        if k > next {
            close_range(next, k - 1)?;
        }
        next = k + 1;
    }
    close_range(next, u32::MAX)
}

fn close_range(first: u32, last: u32) -> io::Result<()> {
    // SAFETY: close_range only closes descriptors of this thread's private
    // table, none of which is referenced by Rust-owned objects of this thread.
    let res = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    if res == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

fn sigset(signals: &[i32]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain old data; sigemptyset initialises it below.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live sigset_t; the signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
    }
    set
}

/// Blocks `signals` in the calling thread; threads spawned afterwards
/// inherit the mask, so only `wait_signal` ever sees them.
pub fn block_signals(signals: &[i32]) -> io::Result<()> {
    let set = sigset(signals);
    // SAFETY: `set` is initialised; the old mask is not requested.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 { Err(io::Error::from_raw_os_error(rc)) } else { Ok(()) }
}

/// Waits up to `timeout` for one of the blocked `signals`; `None` on timeout.
pub fn wait_signal(signals: &[i32], timeout: Duration) -> io::Result<Option<i32>> {
    let set = sigset(signals);
    let ts =
        libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos() as libc::c_long };
    // SAFETY: `set` and `ts` are live; the siginfo pointer may be null.
    match syscall!(sigtimedwait(&set, std::ptr::null_mut(), &ts)) {
        Ok(sig) => Ok(Some(sig)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// SIGINT.
pub const SIGINT: i32 = libc::SIGINT;
/// SIGTERM.
pub const SIGTERM: i32 = libc::SIGTERM;
