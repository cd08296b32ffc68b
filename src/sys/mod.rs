//! Every syscall and every `unsafe` block of tcpmax, quarantined here.
//!
//! The event loop is the product's core, so its syscalls are thin `libc`
//! wrappers written by hand, as mio does: each one is visible, costs nothing
//! beyond the syscall, and turns `-1` into an `io::Error` at once. The rest of
//! the crate denies `unsafe_code`; every `unsafe` here carries a `// SAFETY:`
//! comment. Descriptors travel as raw `RawFd` integers because the engine
//! indexes its connection table by them; ownership is explicit (`close`).

pub mod caps;
pub mod child;
pub mod epoll;
pub mod net;
pub mod process;
pub mod wait;

/// Calls a libc function and turns a `-1` return into `io::Error::last_os_error()`.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        #[allow(unused_unsafe)]
        // SAFETY: each caller passes arguments that satisfy the libc contract
        // of `$fn`; the macro only checks the return value.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}
pub(crate) use syscall;

/// An errno as a short symbolic name (`ECONNREFUSED`), for reports.
pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ENOSPC => "ENOSPC",
        libc::EPIPE => "EPIPE",
        libc::ENOBUFS => "ENOBUFS",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::ECONNRESET => "ECONNRESET",
        libc::EISCONN => "EISCONN",
        libc::ENOTCONN => "ENOTCONN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EALREADY => "EALREADY",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::EPROTO => "EPROTO",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::ENOPROTOOPT => "ENOPROTOOPT",
        _ => "EOTHER",
    }
}

/// The errno behind an `io::Error`, or 0 when it has none.
pub fn errno_of(err: &std::io::Error) -> i32 {
    err.raw_os_error().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        assert_eq!(super::errno_name(libc::ECONNREFUSED), "ECONNREFUSED");
        assert_eq!(super::errno_name(libc::EADDRNOTAVAIL), "EADDRNOTAVAIL");
        assert_eq!(super::errno_name(9999), "EOTHER");
    }
}
