//! Files the user names or is handed, at the edge of the library (the TLS
//! machines in [`crate::proto::tls`] read and write none).
//!
//! - Certificates and keys (`serve --tls CERT,KEY`, `load --ca`): regular
//!   files only, at most [`MAX_PEM`] bytes, read through `take` so a file
//!   that grows while read is still bounded. `/dev/zero` or `/dev/urandom`
//!   is refused at once with one line, not read for ever.
//! - The self-signed certificate of `serve --tls self-signed`, written for
//!   clients' `--ca`: in a directory of its own created with a random name
//!   and mode 0700 (mkdir fails on anything already there, a planted link
//!   included), the file created new with mode 0600, both removed at exit
//!   (normal, error, first or second signal).

use std::fs::{DirBuilder, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};
use crate::proto::tls::{self, CertSource};

/// The largest certificate or key file read (a system CA bundle is about
/// 200 KiB).
pub const MAX_PEM: u64 = 1024 * 1024;

/// The bytes of `path`, which must be a regular file of at most `cap`
/// bytes; `what` names it in the one-line refusal.
pub fn read_capped(path: &Path, cap: u64, what: &str) -> Result<Vec<u8>> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| Error::Input(format!("{what} {shown}: {e}")))?;
    let meta = file.metadata().map_err(|e| Error::Input(format!("{what} {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(Error::Input(format!("{what} {shown}: not a regular file (give a PEM file)")));
    }
    let mut bytes = Vec::new();
    file.take(cap + 1).read_to_end(&mut bytes).map_err(|e| Error::Input(format!("{what} {shown}: {e}")))?;
    if meta.len() > cap || bytes.len() as u64 > cap {
        return Err(Error::Input(format!(
            "{what} {shown}: larger than {} KiB, not a PEM file of this kind",
            cap / 1024
        )));
    }
    Ok(bytes)
}

/// The certificates of a PEM file (`--ca`, a chain).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    tls::certs_from_pem(&read_capped(path, MAX_PEM, "certificates")?, &path.display().to_string())
}

/// The private key of a PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    tls::key_from_pem(&read_capped(path, MAX_PEM, "private key")?, &path.display().to_string())
}

/// The server's TLS configuration (`tickets` session tickets per
/// handshake) and, for a generated certificate, the file it was written
/// to, removed when the returned guard is dropped.
pub fn server_tls(source: &CertSource, tickets: usize) -> Result<(Arc<ServerConfig>, Option<TempPem>)> {
    match source {
        CertSource::Files(cert, key) => Ok((tls::server_config(read_certs(cert)?, read_key(key)?, tickets)?, None)),
        CertSource::SelfSigned => {
            let (cert, key, pem, _) = tls::self_signed()?;
            let file = TempPem::write(&pem)?;
            Ok((tls::server_config(vec![cert], key, tickets)?, Some(file)))
        }
    }
}

/// A PEM file in a private directory of its own, both removed on drop
/// and, for an exit on a second signal, by [`crate::interrupt`].
#[derive(Debug)]
pub struct TempPem {
    dir: PathBuf,
    path: PathBuf,
}

impl TempPem {
    /// Writes `pem` to `cert.pem` in a new directory `tcpmax-<random>` of
    /// the temporary directory.
    pub fn write(pem: &str) -> Result<TempPem> {
        let mut name = [0u8; 12];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut name)
            .map_err(|_| Error::Input("no randomness for a temporary directory's name".into()))?;
        let hex: String = name.iter().map(|b| format!("{b:02x}")).collect();
        let dir = std::env::temp_dir().join(format!("tcpmax-{hex}"));
        // mkdir creates it or fails: a file, a directory or a link already
        // there (another user's) is never used.
        DirBuilder::new().mode(0o700).create(&dir).map_err(|e| Error::os(format!("creating {}", dir.display()), e))?;
        let path = dir.join("cert.pem");
        let guard = TempPem { dir, path };
        crate::interrupt::remove_at_exit(&guard.path, &guard.dir);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&guard.path)
            .map_err(|e| Error::os(format!("creating {}", guard.path.display()), e))?;
        file.write_all(pem.as_bytes()).map_err(|e| Error::os(format!("writing {}", guard.path.display()), e))?;
        Ok(guard)
    }

    /// Where the PEM is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempPem {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn devices_and_big_files_are_refused_at_once() {
        for dev in ["/dev/zero", "/dev/urandom"] {
            let e = read_capped(Path::new(dev), MAX_PEM, "private key").unwrap_err();
            assert!(e.is_input() && e.to_string().contains("not a regular file"), "{e}");
        }
        let big = TempPem::write(&"x".repeat(2048)).unwrap();
        let e = read_capped(big.path(), 1024, "certificates").unwrap_err();
        assert!(e.is_input() && e.to_string().contains("larger than 1 KiB"), "{e}");
        assert_eq!(read_capped(big.path(), 4096, "certificates").unwrap().len(), 2048);
    }

    #[test]
    fn the_temporary_pem_is_private_new_and_removed() {
        let (a, b) = (TempPem::write("one").unwrap(), TempPem::write("two").unwrap());
        assert_ne!(a.path(), b.path(), "random names");
        let dir = a.path().parent().unwrap().to_path_buf();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(a.path()).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(a.path()).unwrap(), "one");
        drop(a);
        assert!(!dir.exists(), "removed with its directory");
    }
}
