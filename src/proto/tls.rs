//! TLS 1.3 under any protocol, both sides, on rustls' unbuffered API
//! (`rustls::unbuffered`), sans-IO like the other machines: fed ciphertext,
//! it gives plaintext and the TLS bytes to send.
//!
//! Why the unbuffered API: rustls' buffered connection keeps its read
//! buffer after every read (`DeframerVecBuffer::prepare_read` sizes it to
//! 4 KiB and keeps it while the peer is quiet), so an idle connection would
//! hold 4 KiB of buffer per side. The unbuffered connection holds no I/O
//! buffer: ciphertext is decrypted in place in the caller's read buffer, and
//! an incomplete record waits in the caller's side map like any other
//! protocol's. What stays per connection is rustls' state: the traffic keys
//! and the key schedule, the certificate the server showed, a few flags
//! (measured in `docs/benchmarks.md`).
//!
//! Failures are named for the failure table: an alert by its description
//! (`TLS_ALERT_UNKNOWN_CA`), a certificate by what is wrong with it
//! (`TLS_CERT_UNKNOWN_ISSUER`), and a peer that does not speak TLS at all
//! (`TLS_NOT_TLS`).

use std::sync::Arc;

use rustls::client::UnbufferedClientConnection;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus, WriteTraffic,
};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, Error, ServerConfig, SignatureScheme,
};

use super::Fault;
use super::tls_rest::take_logged;
pub use super::tls_rest::{Keys, Secret, TrafficLog};

/// The biggest TLS record on the wire (16 KiB of plaintext, overhead).
pub const MAX_RECORD: usize = 16 * 1024 + 256;

/// What the client trusts.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The certificates of a PEM file (`--ca`).
    Roots(Vec<CertificateDer<'static>>),
    /// Anything (`--insecure`): the handshake's signature is still checked.
    Insecure,
}

/// Everything a TLS client needs, shared by its connections.
#[derive(Debug, Clone)]
pub struct ClientSetup {
    /// The rustls configuration.
    pub config: Arc<ClientConfig>,
    /// The name sent as SNI and checked in the certificate.
    pub name: ServerName<'static>,
    /// Keep rustls' whole connection to take in session tickets.
    pub resume: bool,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// A client configuration: TLS 1.3, `trust`, `alpn`, session tickets kept
/// for resumption only when `resume`.
pub fn client_setup(trust: Trust, sni: &str, alpn: &[String], resume: bool) -> crate::Result<ClientSetup> {
    let name = ServerName::try_from(sni.to_string())
        .map_err(|_| crate::Error::Input(format!("--sni: `{sni}` is neither a DNS name nor an IP address")))?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| crate::Error::Input(format!("TLS setup: {e}")))?;
    let mut config = match trust {
        Trust::Roots(certs) => {
            let mut roots = rustls::RootCertStore::empty();
            let (_, bad) = roots.add_parsable_certificates(certs);
            if roots.is_empty() || bad > 0 {
                return Err(crate::Error::Input(
                    "--ca: no usable certificate in the file (PEM `BEGIN CERTIFICATE` blocks)".into(),
                ));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Insecure => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCert(provider()))).with_no_client_auth()
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    // The keys are handed over at rest (see `tls_rest`).
    config.enable_secret_extraction = true;
    config.key_log = Arc::new(TrafficLog);
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(ClientSetup { config: Arc::new(config), name, resume })
}

/// A server configuration: TLS 1.3, one certificate chain; `tickets`
/// session tickets per handshake (stateless, for resumption).
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    tickets: usize,
) -> crate::Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| crate::Error::Input(format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| crate::Error::Input(format!("--tls: the certificate and key do not fit together: {e}")))?;
    config.send_tls13_tickets = tickets;
    config.enable_secret_extraction = true;
    config.key_log = Arc::new(TrafficLog);
    if tickets > 0 {
        config.ticketer =
            ring::Ticketer::new().map_err(|e| crate::Error::Input(format!("TLS session tickets: {e}")))?;
    }
    // Stateless tickets: no per-session cache on the server.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// A self-signed ECDSA P-256 certificate for `localhost` and loopback:
/// (certificate, key), DER.
pub fn self_signed() -> crate::Result<(CertificateDer<'static>, PrivateKeyDer<'static>, String, String)> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let ck = rcgen::generate_simple_self_signed(names)
        .map_err(|e| crate::Error::Input(format!("generating a self-signed certificate: {e}")))?;
    let key = PrivateKeyDer::try_from(ck.key_pair.serialize_der())
        .map_err(|e| crate::Error::Input(format!("the generated key: {e}")))?;
    Ok((ck.cert.der().clone(), key, ck.cert.pem(), ck.key_pair.serialize_pem()))
}

/// Where a server's certificate comes from (`serve --tls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// A certificate generated at start (ECDSA P-256, for localhost and
    /// loopback); its PEM is written out for clients' `--ca`
    /// ([`crate::files::server_tls`]).
    SelfSigned,
    /// PEM files: the chain, then the private key.
    Files(std::path::PathBuf, std::path::PathBuf),
}

/// Parses `--tls CERT,KEY` or `--tls self-signed`.
pub fn parse_cert_source(s: &str) -> Result<CertSource, String> {
    if s == "self-signed" {
        return Ok(CertSource::SelfSigned);
    }
    match s.split_once(',') {
        Some((cert, key)) if !cert.is_empty() && !key.is_empty() => Ok(CertSource::Files(cert.into(), key.into())),
        _ => Err(format!("`{s}`: give CERT,KEY (two PEM files) or self-signed")),
    }
}

/// The certificates of PEM bytes; `source` names where they came from.
pub fn certs_from_pem(pem: &[u8], source: &str) -> crate::Result<Vec<CertificateDer<'static>>> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    match certs {
        Ok(c) if !c.is_empty() => Ok(c),
        Ok(_) => Err(crate::Error::Input(format!("{source}: no PEM certificate in it"))),
        Err(e) => Err(crate::Error::Input(format!("{source}: {e}"))),
    }
}

/// The private key of PEM bytes; `source` names where they came from.
pub fn key_from_pem(pem: &[u8], source: &str) -> crate::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| crate::Error::Input(format!("reading a private key from {source}: {e}")))
}

/// `--insecure`: any certificate is accepted; the handshake's signature is
/// still verified with the key it carries.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What one [`Session::feed`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the input used; the rest is an incomplete record to keep.
    pub used: usize,
    /// The handshake is complete (application data may flow).
    pub ready: bool,
    /// The peer sent close_notify.
    pub peer_closed: bool,
}

/// rustls' connection, either side.
enum Conn {
    Client(UnbufferedClientConnection),
    Server(UnbufferedServerConnection),
}

/// A connection in rustls' hands, and whether it is handed over to
/// [`Keys`] once the handshake is over.
#[allow(missing_debug_implementations)] // rustls' connections have no Debug
pub struct Full {
    conn: Conn,
    compact: bool,
    /// The application traffic secrets rustls logged: (client's, server's).
    secrets: [Option<Secret>; 2],
}

/// One TLS connection, client or server: while it handshakes, a pointer
/// to rustls' connection; at rest, its 128 bytes of traffic secrets and
/// sequence numbers inline, so a dense
/// table of sessions holds idle connections with no heap block each (no
/// fragmentation left by the handshakes' freed memory).
pub enum Session {
    /// In rustls' hands: handshaking, or kept whole for resumption.
    Full(Box<Full>),
    /// At rest: the traffic keys and sequence numbers only.
    Compact(Keys),
    /// No session (a free slot), or one that failed.
    Done,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Session::Full(_) => "Session::Full",
            Session::Compact(_) => "Session::Compact",
            Session::Done => "Session::Done",
        })
    }
}

/// Writes into `out` through `f`, growing `out` to the size rustls asks for.
fn encode_into<E>(
    out: &mut Vec<u8>,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, E>,
    need: impl Fn(&E) -> Option<InsufficientSizeError>,
) -> Result<(), E> {
    let at = out.len();
    out.resize(at + 512, 0);
    let n = match f(&mut out[at..]) {
        Ok(n) => n,
        Err(e) => match need(&e) {
            Some(InsufficientSizeError { required_size }) => {
                out.resize(at + required_size, 0);
                f(&mut out[at..])?
            }
            None => {
                out.truncate(at);
                return Err(e);
            }
        },
    };
    out.truncate(at + n);
    Ok(())
}

fn encode_need(e: &EncodeError) -> Option<InsufficientSizeError> {
    match e {
        EncodeError::InsufficientSize(s) => Some(*s),
        _ => None,
    }
}

fn encrypt_need(e: &EncryptError) -> Option<InsufficientSizeError> {
    match e {
        EncryptError::InsufficientSize(s) => Some(*s),
        _ => None,
    }
}

/// One pass of rustls' state machine over `incoming`, for either side (the
/// two connection types share no trait, hence a macro).
macro_rules! drive {
    ($conn:expr, $incoming:expr, $plain:expr, $out:expr) => {{
        let mut p = Progress::default();
        let result: Result<(), Error> = loop {
            let UnbufferedStatus { discard, state } = $conn.process_tls_records(&mut $incoming[p.used..]);
            let mut extra = 0;
            let state = match state {
                Ok(s) => s,
                Err(e) => {
                    p.used += discard;
                    break Err(e);
                }
            };
            match state {
                ConnectionState::ReadTraffic(mut r) => {
                    let mut failed = None;
                    while let Some(rec) = r.next_record() {
                        match rec {
                            Ok(rec) => {
                                extra += rec.discard;
                                $plain.extend_from_slice(rec.payload);
                            }
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    if let Some(e) = failed {
                        p.used += discard + extra;
                        break Err(e);
                    }
                }
                ConnectionState::EncodeTlsData(mut e) => {
                    if let Err(EncodeError::InsufficientSize(_)) = encode_into($out, |b| e.encode(b), encode_need) {
                        break Err(Error::General("TLS record does not fit".into()));
                    }
                }
                ConnectionState::TransmitTlsData(t) => t.done(),
                ConnectionState::BlockedHandshake => {
                    p.used += discard;
                    break Ok(());
                }
                ConnectionState::WriteTraffic(_) => {
                    p.used += discard;
                    p.ready = true;
                    break Ok(());
                }
                ConnectionState::PeerClosed => p.peer_closed = true,
                ConnectionState::Closed => {
                    p.used += discard;
                    p.peer_closed = true;
                    break Ok(());
                }
                _ => {
                    // Early data is never accepted: nothing else to do.
                    p.used += discard;
                    break Ok(());
                }
            }
            p.used += discard + extra;
        };
        (result, p)
    }};
}

/// Runs `f` on the connection's `WriteTraffic` once the handshake is done,
/// handing over any handshake bytes due first (server tickets).
macro_rules! write_traffic {
    ($conn:expr, $out:expr, $f:expr) => {{
        let mut done = Err(Error::HandshakeNotComplete);
        for _ in 0..8 {
            let UnbufferedStatus { state, .. } = $conn.process_tls_records(&mut []);
            match state {
                Ok(ConnectionState::WriteTraffic(mut w)) => {
                    done = encode_into($out, |b| $f(&mut w, b), encrypt_need)
                        .map_err(|e| Error::General(format!("encrypt: {e}")));
                    break;
                }
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    let _ = encode_into($out, |b| e.encode(b), encode_need);
                }
                Ok(ConnectionState::TransmitTlsData(t)) => t.done(),
                Ok(_) => break,
                Err(e) => {
                    done = Err(e);
                    break;
                }
            }
        }
        done
    }};
}

impl Session {
    /// A client connection to `setup.name`; compacted at rest unless it
    /// keeps tickets for resumption.
    pub fn client(setup: &ClientSetup) -> Result<Session, Fault> {
        let conn = UnbufferedClientConnection::new(setup.config.clone(), setup.name.clone())
            .map_err(|e| Fault::Tls(name_of(&e)))?;
        Ok(Session::Full(Box::new(Full { conn: Conn::Client(conn), compact: !setup.resume, secrets: [None; 2] })))
    }

    /// A server connection, compacted at rest.
    pub fn server(config: &Arc<ServerConfig>) -> Result<Session, Fault> {
        let conn = UnbufferedServerConnection::new(config.clone()).map_err(|e| Fault::Tls(name_of(&e)))?;
        Ok(Session::Full(Box::new(Full { conn: Conn::Server(conn), compact: true, secrets: [None; 2] })))
    }

    /// True once only the keys are kept.
    pub fn is_compact(&self) -> bool {
        matches!(self, Session::Compact(_))
    }

    /// Hands the keys over once the handshake is complete and nothing is
    /// left to send.
    fn compact(&mut self) -> Result<(), Fault> {
        let ready = match self {
            Session::Full(f) if f.compact => match &f.conn {
                Conn::Client(c) => !c.is_handshaking(),
                Conn::Server(c) => !c.is_handshaking(),
            },
            _ => false,
        };
        if !ready {
            return Ok(());
        }
        let Session::Full(f) = std::mem::replace(self, Session::Done) else { return Ok(()) };
        let [Some(client), Some(server)] = f.secrets else { return Err(Fault::Tls("TLS_OTHER")) };
        let (tx, rx) = if matches!(f.conn, Conn::Client(_)) { (client, server) } else { (server, client) };
        let secrets = match f.conn {
            // The kernel-TLS hand-over: the secrets are kept, the rest of
            // the connection (made to follow tickets and key updates in
            // the kernel's stead) is dropped.
            Conn::Client(c) => c.dangerous_into_kernel_connection().map(|(s, _)| s),
            Conn::Server(c) => c.dangerous_into_kernel_connection().map(|(s, _)| s),
        }
        .map_err(|e| Fault::Tls(name_of(&e)))?;
        *self = Session::Compact(Keys::new(secrets, tx, rx).ok_or(Fault::Tls("TLS_OTHER"))?);
        Ok(())
    }

    /// Feeds ciphertext (decrypted in place): plaintext goes to `plain`,
    /// TLS bytes to send to `out` (the client's first flight comes from
    /// feeding nothing). On a failure the alert to send, if any, is in `out`;
    /// on the peer's close_notify, ours. Either way the session is then over
    /// (later feeds fail, later closes send nothing).
    pub fn feed(&mut self, incoming: &mut [u8], plain: &mut Vec<u8>, out: &mut Vec<u8>) -> Result<Progress, Fault> {
        let (r, p) = match self {
            Session::Full(f) => {
                take_logged(); // another connection's, if any
                let done = match &mut f.conn {
                    Conn::Client(c) => drive!(c, incoming, plain, out),
                    Conn::Server(c) => drive!(c, incoming, plain, out),
                };
                for (kept, logged) in f.secrets.iter_mut().zip(take_logged()) {
                    *kept = logged.or(*kept);
                }
                done
            }
            Session::Compact(k) => {
                let r = k.feed(incoming, plain, out);
                if r.as_ref().map_or(true, |p| p.peer_closed) {
                    // A failure (its alert is in `out`) or close_notify.
                    if r.is_ok() {
                        k.close(out);
                    }
                    *self = Session::Done;
                }
                return r;
            }
            Session::Done => return Err(Fault::Tls("TLS_OTHER")),
        };
        match r {
            Ok(()) => {
                if p.ready {
                    self.compact()?;
                }
                if p.peer_closed {
                    // RFC 8446, 6.1: close_notify is answered with one
                    // before the connection closes; the session is over.
                    self.close(out);
                    *self = Session::Done;
                }
                Ok(p)
            }
            Err(e) => {
                let at = p.used.min(incoming.len());
                self.flush_alert(&mut incoming[at..], out);
                Err(Fault::Tls(name_of(&e)))
            }
        }
    }

    /// After a failure: the alert rustls queued, into `out`; the session
    /// is then done, so no later feed can make rustls send a second fatal
    /// alert (RFC 8446, 6.2: the connection is over).
    ///
    /// rustls queues its alert last and hands out what is queued before it
    /// reads any more input, so the records are taken up to the alert and
    /// no further: one more pass would read the offending bytes again and
    /// raise a second alert (rustls asserts against it in debug builds).
    fn flush_alert(&mut self, rest: &mut [u8], out: &mut Vec<u8>) {
        if let Session::Full(f) = self {
            for _ in 0..4 {
                let at = out.len();
                let more = match &mut f.conn {
                    Conn::Client(c) => flush_one(c.process_tls_records(rest), out),
                    Conn::Server(c) => flush_one(c.process_tls_records(rest), out),
                };
                if !more || is_alert_record(&out[at..]) {
                    break;
                }
            }
        }
        *self = Session::Done;
    }

    /// Encrypts `plain` into `out`.
    pub fn send(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), Fault> {
        let r = match self {
            Session::Full(f) => match &mut f.conn {
                Conn::Client(c) => write_traffic!(c, out, |w: &mut WriteTraffic<'_, _>, b| w.encrypt(plain, b)),
                Conn::Server(c) => write_traffic!(c, out, |w: &mut WriteTraffic<'_, _>, b| w.encrypt(plain, b)),
            },
            Session::Compact(k) => return k.send(plain, out),
            Session::Done => return Err(Fault::Tls("TLS_OTHER")),
        };
        r.map_err(|e| Fault::Tls(name_of(&e)))
    }

    /// Puts close_notify into `out`.
    pub fn close(&mut self, out: &mut Vec<u8>) {
        let _ = match self {
            Session::Full(f) => match &mut f.conn {
                Conn::Client(c) => write_traffic!(c, out, |w: &mut WriteTraffic<'_, _>, b| w.queue_close_notify(b)),
                Conn::Server(c) => write_traffic!(c, out, |w: &mut WriteTraffic<'_, _>, b| w.queue_close_notify(b)),
            },
            Session::Compact(k) => {
                k.close(out);
                Ok(())
            }
            Session::Done => Ok(()),
        };
    }
}

/// Encodes one pending record after a failure; true if there may be more.
fn flush_one<Data>(s: UnbufferedStatus<'_, '_, Data>, out: &mut Vec<u8>) -> bool {
    match s.state {
        Ok(ConnectionState::EncodeTlsData(mut e)) => encode_into(out, |b| e.encode(b), encode_need).is_ok(),
        Ok(ConnectionState::TransmitTlsData(t)) => {
            t.done();
            true
        }
        _ => false,
    }
}

/// True for one alert record: a plaintext one (type 21, two bytes), or an
/// encrypted one (type 23 holding two bytes, a content type and a 16-byte
/// tag: no handshake message is that short).
fn is_alert_record(r: &[u8]) -> bool {
    match r {
        [21, 3, _, 0, 2, _, _] => true,
        [23, 3, 3, 0, 19, ..] => r.len() == 24,
        _ => false,
    }
}

/// The failure-table name of a rustls error.
pub fn name_of(e: &Error) -> &'static str {
    match e {
        Error::AlertReceived(a) => alert_name(*a),
        Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => "TLS_CERT_UNKNOWN_ISSUER",
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "TLS_CERT_WRONG_NAME"
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "TLS_CERT_EXPIRED",
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => "TLS_CERT_NOT_YET_VALID",
            CertificateError::BadSignature => "TLS_CERT_BAD_SIGNATURE",
            _ => "TLS_CERT_INVALID",
        },
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } | Error::InappropriateHandshakeMessage { .. } => {
            "TLS_NOT_TLS"
        }
        Error::PeerIncompatible(_) => "TLS_PEER_INCOMPATIBLE",
        Error::PeerMisbehaved(_) => "TLS_PEER_MISBEHAVED",
        Error::NoApplicationProtocol => "TLS_NO_ALPN",
        Error::DecryptError => "TLS_DECRYPT_ERROR",
        Error::NoCertificatesPresented => "TLS_NO_CERTIFICATE",
        _ => "TLS_OTHER",
    }
}

/// The failure-table name of an alert.
pub fn alert_name(a: AlertDescription) -> &'static str {
    match a {
        AlertDescription::HandshakeFailure => "TLS_ALERT_HANDSHAKE_FAILURE",
        AlertDescription::BadCertificate => "TLS_ALERT_BAD_CERTIFICATE",
        AlertDescription::UnsupportedCertificate => "TLS_ALERT_UNSUPPORTED_CERTIFICATE",
        AlertDescription::CertificateExpired => "TLS_ALERT_CERTIFICATE_EXPIRED",
        AlertDescription::CertificateUnknown => "TLS_ALERT_CERTIFICATE_UNKNOWN",
        AlertDescription::UnknownCA => "TLS_ALERT_UNKNOWN_CA",
        AlertDescription::ProtocolVersion => "TLS_ALERT_PROTOCOL_VERSION",
        AlertDescription::DecodeError => "TLS_ALERT_DECODE_ERROR",
        AlertDescription::DecryptError => "TLS_ALERT_DECRYPT_ERROR",
        AlertDescription::IllegalParameter => "TLS_ALERT_ILLEGAL_PARAMETER",
        AlertDescription::InternalError => "TLS_ALERT_INTERNAL_ERROR",
        AlertDescription::UnrecognisedName => "TLS_ALERT_UNRECOGNISED_NAME",
        AlertDescription::NoApplicationProtocol => "TLS_ALERT_NO_APPLICATION_PROTOCOL",
        AlertDescription::UnexpectedMessage => "TLS_ALERT_UNEXPECTED_MESSAGE",
        AlertDescription::AccessDenied => "TLS_ALERT_ACCESS_DENIED",
        AlertDescription::CertificateRequired => "TLS_ALERT_CERTIFICATE_REQUIRED",
        AlertDescription::InsufficientSecurity => "TLS_ALERT_INSUFFICIENT_SECURITY",
        _ => "TLS_ALERT_OTHER",
    }
}

/// What a TLS failure means and its fix, for [`super::explain`].
pub fn explain(name: &str) -> Option<(&'static str, &'static str)> {
    const CA: &str = "give the server's CA with --ca FILE, or --insecure to accept any certificate (for tests)";
    Some(match name {
        "TLS_CERT_UNKNOWN_ISSUER" => ("wrong certificate: the server's certificate is not signed by a trusted CA", CA),
        "TLS_CERT_WRONG_NAME" => (
            "wrong certificate: it is not valid for the name asked (--sni, or the target's host)",
            "give --sni NAME with a name the certificate holds",
        ),
        "TLS_CERT_EXPIRED" => ("wrong certificate: it has expired", "renew the server's certificate"),
        "TLS_CERT_NOT_YET_VALID" => {
            ("wrong certificate: it is not valid yet (check the clocks)", "check the clocks of both machines")
        }
        "TLS_CERT_BAD_SIGNATURE" | "TLS_CERT_INVALID" => ("wrong certificate: it could not be verified", CA),
        "TLS_NOT_TLS" => (
            "the peer does not speak TLS (its bytes are not TLS records)",
            "leave --tls out for a plain server, or point it at a TLS port",
        ),
        "TLS_PEER_INCOMPATIBLE"
        | "TLS_ALERT_PROTOCOL_VERSION"
        | "TLS_ALERT_HANDSHAKE_FAILURE"
        | "TLS_ALERT_INSUFFICIENT_SECURITY" => {
            ("the handshake found nothing in common: tcpmax speaks TLS 1.3 only", "enable TLS 1.3 on the server")
        }
        "TLS_ALERT_BAD_CERTIFICATE"
        | "TLS_ALERT_UNKNOWN_CA"
        | "TLS_ALERT_CERTIFICATE_UNKNOWN"
        | "TLS_ALERT_UNSUPPORTED_CERTIFICATE"
        | "TLS_ALERT_CERTIFICATE_EXPIRED" => (
            "the client refused this server's certificate (its alert)",
            "give the client the CA of this certificate, or a certificate its CA signed",
        ),
        "TLS_ALERT_NO_APPLICATION_PROTOCOL" | "TLS_NO_ALPN" => {
            ("no common application protocol (ALPN)", "give an --alpn the server accepts, or leave it out")
        }
        "TLS_ALERT_UNRECOGNISED_NAME" => {
            ("the server has no certificate for the name sent (SNI)", "give --sni with a name the server serves")
        }
        "TLS_ALERT_CERTIFICATE_REQUIRED" => (
            "the server asks for a client certificate",
            "tcpmax sends none: disable client authentication on the server",
        ),
        n if n.starts_with("TLS_ALERT_") => {
            ("the peer ended the handshake with this TLS alert", "check the peer's log for why")
        }
        n if n.starts_with("TLS_") => ("a TLS failure", "check both ends' TLS settings"),
        _ => return None,
    })
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
