//! The protocol options of `tcpmax load` (`--ws`, `--mqtt` and theirs),
//! checked and turned into what the engine speaks
//! ([`ClientSpec`]).

use std::path::PathBuf;
use std::time::Duration;

use super::target::Target;
use crate::error::Error;
use crate::proto::{ClientSpec, mqtt, tls, ws};
use crate::units;

/// Protocol options of `tcpmax load`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ProtoArgs {
    /// Speak WebSocket: upgrade at PATH (`/`, `/chat`), then masked ping
    /// frames as the heartbeat and the close handshake at the end.
    #[arg(long, value_name = "PATH", value_parser = parse_path)]
    pub ws: Option<String>,
    /// A header of the WebSocket upgrade request ('Origin: http://x');
    /// repeatable.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = ws::parse_header, requires = "ws")]
    pub headers: Vec<(String, String)>,
    /// Speak MQTT 3.1.1: CONNECT, PINGREQ as the heartbeat, DISCONNECT at
    /// the end.
    #[arg(long, conflicts_with = "ws")]
    pub mqtt: bool,
    /// MQTT client ids are `PREFIX-<n>`, n counting the sessions of the run
    /// (default: `tcpmax-<pid>`, so two runs never take over each other's
    /// sessions).
    #[arg(long, value_name = "PREFIX", requires = "mqtt")]
    pub client_id: Option<String>,
    /// MQTT keepalive (0 for none); the heartbeat rate is raised so that
    /// every session pings within it.
    #[arg(long, default_value = "60s", value_parser = parse_keepalive)]
    pub keepalive: Duration,
    /// MQTT: subscribe each session to TOPIC (QoS 0) once connected.
    #[arg(long, value_name = "TOPIC", requires = "mqtt")]
    pub subscribe: Option<String>,
    /// TLS 1.3 under the protocol (wss with --ws); the TLS handshake is
    /// timed apart from the TCP connect.
    #[arg(long)]
    pub tls: bool,
    /// The name sent as SNI and checked in the certificate (default: the
    /// target's host).
    #[arg(long, value_name = "NAME", requires = "tls")]
    pub sni: Option<String>,
    /// Trust the CA certificates of this PEM file (default: the system's
    /// bundle).
    #[arg(long, value_name = "FILE", requires = "tls", conflicts_with = "insecure")]
    pub ca: Option<PathBuf>,
    /// Accept any server certificate (tests only; the handshake signature is
    /// still checked).
    #[arg(long, requires = "tls")]
    pub insecure: bool,
    /// Offer this ALPN protocol (h2, http/1.1, mqtt); repeatable.
    #[arg(long, value_name = "P", requires = "tls")]
    pub alpn: Vec<String>,
    /// Keep the session tickets servers send and resume with them when
    /// reconnecting.
    #[arg(long, requires = "tls")]
    pub tls_resume: bool,
}

/// Where the system keeps its trusted CAs (Debian, Fedora).
const SYSTEM_CAS: [&str; 2] = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"];

/// `--ws PATH`: an origin-form request target.
fn parse_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{s}` is not a request path: start with / and leave out spaces (examples: /, /chat?room=1)"
        ));
    }
    Ok(s.to_string())
}

/// `--keepalive`: whole seconds, at most 65,535 (MQTT's 16 bits).
fn parse_keepalive(s: &str) -> Result<Duration, String> {
    let d = units::parse_duration(s)?;
    if d.as_secs() > u64::from(u16::MAX) || d.subsec_nanos() != 0 {
        return Err(format!("`{s}`: MQTT keepalive is whole seconds up to 65535 (examples: 60s, 10m, 0 for none)"));
    }
    Ok(d)
}

impl ProtoArgs {
    /// The TLS client setup, when `--tls` is given.
    pub fn tls_setup(&self, targets: &[Target]) -> Result<Option<tls::ClientSetup>, Error> {
        if !self.tls {
            return Ok(None);
        }
        let trust = if self.insecure {
            tls::Trust::Insecure
        } else if let Some(ca) = &self.ca {
            tls::Trust::Roots(crate::files::read_certs(ca)?)
        } else {
            let system = SYSTEM_CAS.iter().map(std::path::Path::new).find(|p| p.exists()).ok_or_else(|| {
                Error::Input("--tls: no system CA bundle here; give --ca FILE, or --insecure for tests".into())
            })?;
            tls::Trust::Roots(crate::files::read_certs(system)?)
        };
        let sni = self.sni.clone().or_else(|| targets.first().map(|t| t.host.clone())).unwrap_or_default();
        tls::client_setup(trust, &sni, &self.alpn, self.tls_resume).map(Some)
    }

    /// What the engine speaks; `targets` give the `Host` of the upgrade.
    /// Byte payloads (`--message`, `--first-message`) belong to bare TCP.
    pub fn spec(&self, targets: &[Target], payloads: bool) -> Result<ClientSpec, Error> {
        let spec = if let Some(path) = &self.ws {
            let host = match (targets.first(), targets.first().and_then(|t| t.addrs.first())) {
                (Some(t), Some(a)) if t.host.contains(':') => format!("[{}]:{}", t.host, a.port()),
                (Some(t), Some(a)) => format!("{}:{}", t.host, a.port()),
                _ => "localhost".into(),
            };
            ClientSpec::Ws(ws::ClientConfig { path: path.clone(), host, headers: self.headers.clone() })
        } else if self.mqtt {
            let prefix = self.client_id.clone().unwrap_or_else(|| format!("tcpmax-{}", std::process::id()));
            if prefix.is_empty() || prefix.len() > 200 {
                return Err(Error::Input("--client-id: give a prefix of 1 to 200 characters".into()));
            }
            ClientSpec::Mqtt(mqtt::ClientConfig {
                client_id_prefix: prefix,
                keepalive_s: self.keepalive.as_secs() as u16,
                subscribe: self.subscribe.clone(),
            })
        } else {
            ClientSpec::Tcp
        };
        if payloads && spec != ClientSpec::Tcp {
            return Err(Error::Input(
                "--message and --first-message send raw bytes over bare TCP; with --ws or --mqtt the heartbeat is the protocol's own ping: leave them out".into(),
            ));
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_become_a_spec() {
        let t: Target = "127.0.0.1:9000".parse::<std::net::SocketAddr>().unwrap().into();
        let ws = ProtoArgs { ws: Some("/chat".into()), ..Default::default() };
        match ws.spec(std::slice::from_ref(&t), false).unwrap() {
            ClientSpec::Ws(c) => assert_eq!((c.path.as_str(), c.host.as_str()), ("/chat", "127.0.0.1:9000")),
            other => panic!("{other:?}"),
        }
        assert!(ws.spec(std::slice::from_ref(&t), true).unwrap_err().to_string().contains("--message"));
        let m = ProtoArgs { mqtt: true, keepalive: Duration::from_secs(30), ..Default::default() };
        match m.spec(&[t], false).unwrap() {
            ClientSpec::Mqtt(c) => {
                assert_eq!(c.keepalive_s, 30);
                assert!(c.client_id_prefix.starts_with("tcpmax-"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(ProtoArgs::default().spec(&[], true).unwrap(), ClientSpec::Tcp);
        assert!(parse_path("chat").is_err());
        assert!(parse_keepalive("70000s").is_err());
        assert_eq!(parse_keepalive("0"), Ok(Duration::ZERO));
    }
}
