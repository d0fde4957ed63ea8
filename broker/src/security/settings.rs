//! Security settings: the Kafka listeners and how each authenticates, TLS
//! files, SASL mechanisms, the ACL authorizer and HTTP authentication.
//!
//! Safe defaults: with nothing configured there is one PLAINTEXT listener
//! on 127.0.0.1 and the startup log says it is unauthenticated. Binding a
//! listener (or an HTTP interface) that does not authenticate to a
//! non-loopback address needs `--allow-insecure-network`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

/// How a Kafka listener protects and authenticates its connections
/// (Kafka's `security.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl Protocol {
    pub fn parse(s: &str) -> Option<Protocol> {
        Some(match s.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Protocol::Plaintext,
            "SSL" => Protocol::Ssl,
            "SASL_PLAINTEXT" => Protocol::SaslPlaintext,
            "SASL_SSL" => Protocol::SaslSsl,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Plaintext => "PLAINTEXT",
            Protocol::Ssl => "SSL",
            Protocol::SaslPlaintext => "SASL_PLAINTEXT",
            Protocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, Protocol::Ssl | Protocol::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(self, Protocol::SaslPlaintext | Protocol::SaslSsl)
    }
}

/// One Kafka listener.
#[derive(Debug, Clone)]
pub struct Listener {
    pub protocol: Protocol,
    pub addr: SocketAddr,
    /// The address given to clients that connect here.
    pub advertised_host: String,
    pub advertised_port: i32,
}

impl Listener {
    /// True when every connection to this listener proves who it is
    /// (SASL, or TLS with client certificates).
    pub fn authenticates(&self, tls: Option<&TlsFiles>) -> bool {
        self.protocol.sasl()
            || (self.protocol == Protocol::Ssl && tls.is_some_and(|t| t.client_ca.is_some()))
    }
}

/// Certificate and key (PEM) of the TLS listeners; with `client_ca`,
/// clients must present a certificate it signed, and a client on an SSL
/// listener is the principal `User:CN=<common name>` of its certificate.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

pub const MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

#[derive(Debug, Clone)]
pub struct Security {
    pub listeners: Vec<Listener>,
    pub tls: Option<TlsFiles>,
    /// SASL mechanisms offered on SASL listeners, in `MECHANISMS` spelling.
    pub sasl_mechanisms: Vec<String>,
    /// How long a SASL session lasts before the client must
    /// re-authenticate (KIP-368); `None`: for the connection's life.
    pub sasl_session_lifetime: Option<Duration>,
    /// Kafka ACLs are enforced on every request.
    pub acl_authorizer: bool,
    /// Principals allowed everything, ACLs or not.
    pub super_users: Vec<String>,
    /// With the authorizer on, a resource with no ACL at all is open to all.
    pub allow_everyone_if_no_acl_found: bool,
    /// The HTTP interfaces (registry, REST catalog, SQL, admin) require
    /// basic or bearer credentials.
    pub http_auth: bool,
    /// `/healthz`, `/readyz` and `/metrics` answer without credentials.
    pub http_open_health: bool,
}

impl Security {
    /// True when some interface authenticates its callers.
    pub fn any_authentication(&self) -> bool {
        self.http_auth
            || self
                .listeners
                .iter()
                .any(|l| l.authenticates(self.tls.as_ref()))
    }

    pub fn is_super_user(&self, principal: &str) -> bool {
        self.super_users.iter().any(|u| u == principal)
    }
}

/// The raw security settings, from flags, environment or config file.
#[derive(Debug, Default, Clone)]
pub struct SecurityInput {
    pub kafka_addr: String,
    pub advertised_addr: Option<String>,
    pub listeners: Option<String>,
    pub advertised_listeners: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub sasl_mechanisms: Option<String>,
    pub sasl_session_lifetime_ms: Option<u64>,
    pub authorizer: Option<String>,
    pub super_users: Option<String>,
    pub allow_everyone_if_no_acl_found: Option<bool>,
    pub http_auth: Option<bool>,
    pub http_open_health: Option<bool>,
    pub allow_insecure_network: Option<bool>,
    pub http_addrs: Vec<(&'static str, SocketAddr)>,
}

/// `PROTOCOL://HOST:PORT` entries separated by commas.
fn parse_listener_list(flag: &str, value: &str) -> anyhow::Result<Vec<(Protocol, String)>> {
    let mut out: Vec<(Protocol, String)> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (proto, addr) = entry.split_once("://").with_context(|| {
            format!(
                "--{flag}: '{entry}' is not PROTOCOL://HOST:PORT (e.g. SASL_SSL://0.0.0.0:9093)"
            )
        })?;
        let protocol = Protocol::parse(proto).with_context(|| {
            format!(
                "--{flag}: unknown protocol '{proto}' (use PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)"
            )
        })?;
        if out.iter().any(|(p, _)| *p == protocol) {
            bail!("--{flag}: {} is listed twice", protocol.name());
        }
        out.push((protocol, addr.to_string()));
    }
    if out.is_empty() {
        bail!("--{flag}: no listener given");
    }
    Ok(out)
}

impl SecurityInput {
    pub fn resolve(self) -> anyhow::Result<Security> {
        let entries = match &self.listeners {
            Some(l) => parse_listener_list("listeners", l)?,
            None => vec![(Protocol::Plaintext, self.kafka_addr.clone())],
        };
        let advertised = match &self.advertised_listeners {
            Some(l) => parse_listener_list("advertised-listeners", l)?,
            None => Vec::new(),
        };
        if let Some((p, _)) = advertised
            .iter()
            .find(|(p, _)| !entries.iter().any(|(q, _)| q == p))
        {
            bail!(
                "--advertised-listeners: {} is not one of --listeners",
                p.name()
            );
        }
        let mut listeners = Vec::new();
        for (i, (protocol, addr)) in entries.iter().enumerate() {
            let bind = crate::common::addr::parse_addr("listeners", addr)?;
            let adv = advertised
                .iter()
                .find(|(p, _)| p == protocol)
                .map(|(_, a)| a.clone())
                .or_else(|| (i == 0).then(|| self.advertised_addr.clone()).flatten())
                .unwrap_or_else(|| addr.clone());
            let (advertised_host, advertised_port) =
                crate::common::addr::split_host_port("advertised-listeners", &adv)?;
            listeners.push(Listener {
                protocol: *protocol,
                addr: bind,
                advertised_host,
                advertised_port,
            });
        }
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert,
                key,
                client_ca: self.tls_client_ca,
            }),
            (None, None) => {
                if self.tls_client_ca.is_some() {
                    bail!("--tls-client-ca needs --tls-cert and --tls-key");
                }
                None
            }
            _ => bail!("--tls-cert and --tls-key go together"),
        };
        if tls.is_none()
            && let Some(l) = listeners.iter().find(|l| l.protocol.tls())
        {
            bail!(
                "the {} listener on {} needs --tls-cert and --tls-key",
                l.protocol.name(),
                l.addr
            );
        }
        let sasl_mechanisms: Vec<String> = match &self.sasl_mechanisms {
            Some(m) => m
                .split(',')
                .map(|s| s.trim().to_ascii_uppercase())
                .filter(|s| !s.is_empty())
                .collect(),
            None => MECHANISMS.iter().map(|m| m.to_string()).collect(),
        };
        if let Some(bad) = sasl_mechanisms
            .iter()
            .find(|m| !MECHANISMS.contains(&m.as_str()))
        {
            bail!(
                "--sasl-mechanisms: unknown mechanism '{bad}' (supported: {})",
                MECHANISMS.join(", ")
            );
        }
        if sasl_mechanisms.is_empty() && listeners.iter().any(|l| l.protocol.sasl()) {
            bail!("--sasl-mechanisms: a SASL listener needs at least one mechanism");
        }
        let super_users: Vec<String> = self
            .super_users
            .as_deref()
            .unwrap_or("")
            // `;` only, as in Kafka: a certificate principal such as
            // `User:CN=alice,O=Example` has commas of its own.
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(bad) = super_users.iter().find(|u| !u.contains(':')) {
            bail!("--super-users: '{bad}' is not a principal such as User:admin");
        }
        if let Some(bad) = super_users.iter().find(|u| u.contains(",User:")) {
            bail!(
                "--super-users: '{bad}' looks like several principals separated by ','; separate principals with ';'"
            );
        }
        let authenticating = listeners.iter().any(|l| l.authenticates(tls.as_ref()));
        let http_auth = self.http_auth.unwrap_or(authenticating);
        let acl_authorizer = match self.authorizer.as_deref() {
            None => authenticating || http_auth,
            Some("acl") => true,
            Some("none") => false,
            Some(other) => bail!("--authorizer: '{other}' is not 'acl' or 'none'"),
        };
        let security = Security {
            sasl_session_lifetime: self
                .sasl_session_lifetime_ms
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis),
            acl_authorizer,
            super_users,
            allow_everyone_if_no_acl_found: self.allow_everyone_if_no_acl_found.unwrap_or(false),
            http_auth,
            http_open_health: self.http_open_health.unwrap_or(false),
            listeners,
            tls,
            sasl_mechanisms,
        };
        if !self.allow_insecure_network.unwrap_or(false) {
            for l in &security.listeners {
                if !l.addr.ip().is_loopback() && !l.authenticates(security.tls.as_ref()) {
                    bail!(
                        "the {} listener on {} would let anyone on the network in without credentials: \
                         use a SASL listener (--listeners SASL_SSL://{}), bind it to 127.0.0.1, \
                         or pass --allow-insecure-network on a trusted network",
                        l.protocol.name(),
                        l.addr,
                        l.addr
                    );
                }
            }
            if !security.http_auth {
                for (what, addr) in &self.http_addrs {
                    if !addr.ip().is_loopback() {
                        bail!(
                            "the {what} on {addr} would answer anyone on the network without credentials: \
                             turn on --http-auth, bind it to 127.0.0.1, or pass --allow-insecure-network \
                             on a trusted network"
                        );
                    }
                }
            }
        }
        Ok(security)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> SecurityInput {
        SecurityInput {
            kafka_addr: "127.0.0.1:9092".into(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_one_loopback_plaintext_listener_without_authorizer() {
        let s = input().resolve().unwrap();
        assert_eq!(s.listeners.len(), 1);
        assert_eq!(s.listeners[0].protocol, Protocol::Plaintext);
        assert!(!s.any_authentication());
        assert!(!s.acl_authorizer);
    }

    #[test]
    fn network_binds_without_authentication_need_the_explicit_flag() {
        let open = SecurityInput {
            kafka_addr: "0.0.0.0:9092".into(),
            ..input()
        };
        let err = open.clone().resolve().unwrap_err().to_string();
        assert!(err.contains("--allow-insecure-network"), "{err}");
        let allowed = SecurityInput {
            allow_insecure_network: Some(true),
            ..open
        };
        allowed.resolve().unwrap();
        let http = SecurityInput {
            http_addrs: vec![("HTTP endpoint", "0.0.0.0:8181".parse().unwrap())],
            ..input()
        };
        assert!(http.resolve().is_err());
    }

    #[test]
    fn sasl_listeners_turn_on_the_authorizer_and_http_auth() {
        let s = SecurityInput {
            listeners: Some("PLAINTEXT://127.0.0.1:9092, SASL_PLAINTEXT://0.0.0.0:9093".into()),
            advertised_listeners: Some("SASL_PLAINTEXT://broker1.example:9093".into()),
            super_users: Some("User:admin; User:ops;User:CN=alice,O=Example".into()),
            ..input()
        }
        .resolve()
        .unwrap();
        assert!(s.is_super_user("User:CN=alice,O=Example"));
        assert!(!s.is_super_user("User:CN=alice"));
        assert_eq!(s.listeners[1].advertised_host, "broker1.example");
        assert_eq!(s.listeners[0].advertised_port, 9092);
        assert!(s.acl_authorizer && s.http_auth);
        assert!(s.is_super_user("User:ops"));
    }

    #[test]
    fn bad_settings_say_what_is_wrong() {
        for (i, want) in [
            (
                SecurityInput {
                    listeners: Some("SSL://127.0.0.1:9093".into()),
                    ..input()
                },
                "--tls-cert",
            ),
            (
                SecurityInput {
                    listeners: Some("KERBEROS://127.0.0.1:9093".into()),
                    ..input()
                },
                "unknown protocol",
            ),
            (
                SecurityInput {
                    sasl_mechanisms: Some("GSSAPI".into()),
                    ..input()
                },
                "GSSAPI",
            ),
            (
                SecurityInput {
                    super_users: Some("admin".into()),
                    ..input()
                },
                "User:admin",
            ),
            (
                SecurityInput {
                    super_users: Some("User:admin,User:ops".into()),
                    ..input()
                },
                "separate principals with ';'",
            ),
        ] {
            let err = i.resolve().unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }
}
