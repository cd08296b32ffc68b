//! SIGINT and SIGTERM, the same way in every subcommand.
//!
//! [`install`] blocks both signals in the calling thread (the main thread,
//! before any other thread starts, so every thread inherits the mask) and
//! starts one watcher thread that waits for them in `sigwaitinfo`: it costs
//! nothing until a signal comes. The first signal sets a flag that every
//! supervisor loop and the shard start-up check, and wakes whoever waits in
//! [`wait`]; the run then stops in order and still writes its report. A
//! second signal exits at once with the conventional code (130 for SIGINT,
//! 143 for SIGTERM): the user asked twice.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::sys::process::{self, SIGINT, SIGTERM};

/// The first signal received (0: none).
static FIRST: AtomicI32 = AtomicI32::new(0);
static WAKE: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());
/// Files (then their directories) to remove before an exit on a second
/// signal, which runs no destructor.
static LEFT_BEHIND: Mutex<Vec<(PathBuf, PathBuf)>> = Mutex::new(Vec::new());

/// Removes `file`, then the directory `dir`, if the process exits on a
/// second signal (the owner removes them on every other exit).
pub fn remove_at_exit(file: &Path, dir: &Path) {
    let mut left = LEFT_BEHIND.lock().unwrap_or_else(|p| p.into_inner());
    left.push((file.to_path_buf(), dir.to_path_buf()));
}

/// Blocks SIGINT and SIGTERM and starts the watcher. Call once, from the
/// main thread, before any other thread starts.
pub fn install() -> std::io::Result<()> {
    process::block_signals(&[SIGINT, SIGTERM])?;
    std::thread::Builder::new().name("signals".into()).stack_size(64 * 1024).spawn(watch)?;
    Ok(())
}

fn watch() {
    loop {
        let Ok(Some(sig)) = process::wait_signal(&[SIGINT, SIGTERM], Duration::from_secs(3600)) else {
            continue;
        };
        if FIRST.compare_exchange(0, sig, Ordering::AcqRel, Ordering::Acquire).is_err() {
            // The second one: the user does not want to wait for the teardown.
            let left = LEFT_BEHIND.lock().unwrap_or_else(|p| p.into_inner());
            for (file, dir) in left.iter() {
                let _ = std::fs::remove_file(file);
                let _ = std::fs::remove_dir(dir);
            }
            std::process::exit(128 + sig);
        }
        let _guard = WAKE.0.lock();
        WAKE.1.notify_all();
    }
}

/// The first signal received, if any.
pub fn requested() -> Option<i32> {
    match FIRST.load(Ordering::Acquire) {
        0 => None,
        s => Some(s),
    }
}

/// Waits up to `limit` for the first signal; returns it if one came.
pub fn wait(limit: Duration) -> Option<i32> {
    let guard = WAKE.0.lock().unwrap_or_else(|p| p.into_inner());
    let _ = WAKE.1.wait_timeout_while(guard, limit, |_| requested().is_none());
    requested()
}

/// The exit code of a run the first signal stopped: 130 for SIGINT (the
/// shell's convention), 0 for SIGTERM (the ordinary way to stop a service).
pub fn exit_code(sig: i32) -> u8 {
    if sig == SIGINT { 130 } else { 0 }
}
