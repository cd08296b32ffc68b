//! Child processes tied to their parent: they start with no signal blocked
//! (a parent that blocks SIGINT/SIGTERM for `wait_signal` must not pass that
//! mask on) and get SIGKILL when the thread that spawned them dies, so a
//! supervisor killed with SIGKILL leaves no process behind.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use super::syscall;

/// Spawns `cmd` tied to the calling thread (see the module docs). Spawn from
/// a thread that lives as long as the child should: the death signal
/// follows the spawning thread, not the process.
pub fn spawn_tied(cmd: &mut Command) -> io::Result<Child> {
    // SAFETY: the closure runs in the child between fork and exec and calls
    // only async-signal-safe functions (sigemptyset, sigprocmask, prctl,
    // getppid, kill); it allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the prctl: then nobody would
            // send the signal.
            if libc::getppid() == 1 {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Sends `sig` to process `pid`.
pub fn signal(pid: u32, sig: i32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    if pid <= 0 {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: kill with a positive pid (never a process group or -1) and a
    // signal number from libc.
    syscall!(kill(pid, sig))?;
    Ok(())
}

/// SIGKILL.
pub const SIGKILL: i32 = libc::SIGKILL;
/// SIGINT.
pub const SIGINT: i32 = libc::SIGINT;
/// SIGTERM.
pub const SIGTERM: i32 = libc::SIGTERM;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tied_child_runs_and_takes_signals() {
        let mut child = spawn_tied(Command::new("sleep").arg("30")).unwrap();
        signal(child.id(), SIGTERM).unwrap();
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        // SIGTERM was not blocked in the child, whatever the test thread's mask.
        assert_eq!(status.signal(), Some(SIGTERM));
        assert!(signal(0, SIGTERM).is_err());
    }
}
