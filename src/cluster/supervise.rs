//! The processes of a rehearsal and everything else it creates, owned by a
//! [`Guard`] that removes them all when dropped: on success, on error
//! midway, on SIGINT. Children are tied to the supervising thread
//! (`crate::sys::child::spawn_tied`), so even a SIGKILL of `tcpmax
//! cluster` kills them; what then remains (namespaces, the temporary
//! directory) is found by name by the next run.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use super::netns;
use crate::error::{Error, Result};
use crate::sys::child::{self, SIGKILL};

/// Lines of a child's stderr kept for error messages.
const KEEP_LINES: usize = 20;

/// One child process running inside a namespace.
#[derive(Debug)]
pub struct Proc {
    /// What it is (`serve b1`, `haproxy 2`, `load`).
    pub name: String,
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    tail: VecDeque<String>,
    exited: Option<ExitStatus>,
}

impl Proc {
    /// Its pid (the same inside and outside the namespace: `ip netns exec`
    /// execs the program in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lines written to stdout since the last call.
    pub fn stdout_lines(&mut self) -> Vec<String> {
        self.stdout.try_iter().collect()
    }

    /// Lines written to stderr since the last call (the last ones are also
    /// kept for [`Proc::tail`]).
    pub fn stderr_lines(&mut self) -> Vec<String> {
        let lines: Vec<String> = self.stderr.try_iter().collect();
        for l in &lines {
            if self.tail.len() == KEEP_LINES {
                self.tail.pop_front();
            }
            self.tail.push_back(l.clone());
        }
        lines
    }

    /// The next stdout line, waiting up to `limit`.
    pub fn next_stdout(&mut self, limit: Duration) -> Option<String> {
        self.stdout.recv_timeout(limit).ok()
    }

    /// The last stderr lines seen, joined.
    pub fn tail(&mut self) -> String {
        self.stderr_lines();
        self.tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// `NAME WHAT:` and its last stderr lines, for an error.
    pub fn failure(&mut self, what: &str) -> String {
        let tail = self.tail();
        format!("{} {what}:\n{tail}", self.name)
    }

    /// The exit status once it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Sends `sig`, waits up to `limit` for the exit, then SIGKILL.
    pub fn stop(&mut self, sig: i32, limit: Duration) -> Option<ExitStatus> {
        if self.exited().is_some() {
            return self.exited;
        }
        let _ = child::signal(self.pid(), sig);
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return self.exited;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        self.exited = self.child.wait().ok();
        self.exited
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn lines(r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// What a cleanup removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    /// Processes stopped.
    pub processes: usize,
    /// Namespaces deleted.
    pub namespaces: Vec<String>,
    /// Problems met (each a sentence).
    pub problems: Vec<String>,
}

/// Everything a run created; dropped, it removes all of it.
#[derive(Debug)]
pub struct Guard {
    /// The children, in start order.
    pub procs: Vec<Proc>,
    /// Namespaces created, in creation order.
    pub namespaces: Vec<String>,
    /// The temporary directory.
    pub tmp: Option<PathBuf>,
    cleaned: bool,
}

impl Guard {
    /// An empty guard; `tmp` is created now.
    pub fn new(tmp: PathBuf) -> Result<Guard> {
        std::fs::create_dir_all(&tmp).map_err(|e| Error::os(format!("creating {}", tmp.display()), e))?;
        Ok(Guard { procs: Vec::new(), namespaces: Vec::new(), tmp: Some(tmp), cleaned: false })
    }

    /// Starts `program ARGS` inside `netns` with `env` added; its index.
    pub fn spawn(
        &mut self,
        name: &str,
        netns: &str,
        program: &OsStr,
        args: &[String],
        env: &[(String, String)],
    ) -> Result<usize> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns]).arg(program).args(args);
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = child::spawn_tied(&mut cmd).map_err(|e| Error::os(format!("starting {name} in {netns}"), e))?;
        let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            return Err(Error::os(format!("starting {name}"), std::io::Error::other("no pipes")));
        };
        self.procs.push(Proc {
            name: name.into(),
            child,
            stdout: lines(out),
            stderr: lines(err),
            tail: VecDeque::new(),
            exited: None,
        });
        Ok(self.procs.len() - 1)
    }

    /// Stops every process (SIGKILL: their state is not needed any more),
    /// deletes every namespace and the temporary directory. Idempotent.
    pub fn cleanup(&mut self) -> Removed {
        let mut removed = Removed::default();
        if self.cleaned {
            return removed;
        }
        self.cleaned = true;
        for p in &mut self.procs {
            if p.exited().is_none() {
                p.stop(SIGKILL, Duration::from_secs(5));
                removed.processes += 1;
            }
        }
        self.procs.clear();
        for ns in self.namespaces.drain(..).rev() {
            match netns::remove(&ns) {
                Ok(n) => {
                    removed.processes += n;
                    removed.namespaces.push(ns);
                }
                Err(e) => removed.problems.push(format!("removing namespace {ns}: {e}")),
            }
        }
        if let Some(tmp) = self.tmp.take()
            && let Err(e) = std::fs::remove_dir_all(&tmp)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            removed.problems.push(format!("removing {}: {e}", tmp.display()));
        }
        removed
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let r = self.cleanup();
        for p in r.problems {
            eprintln!("tcpmax: cleanup: {p}");
        }
    }
}

/// The temporary directory of run `pid`.
pub fn tmp_dir(pid: u32) -> PathBuf {
    std::env::temp_dir().join(format!("{}{pid}-cluster", super::topology::PREFIX))
}
