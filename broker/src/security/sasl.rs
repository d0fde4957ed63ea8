//! The server side of SASL exchanges: PLAIN (RFC 4616) and SCRAM-SHA-256 /
//! SCRAM-SHA-512 (RFC 5802, RFC 7677), as Kafka runs them inside
//! SaslAuthenticate requests.
//!
//! An [`Exchange`] is one authentication attempt on one connection. Each
//! client token goes through [`Exchange::step`], which answers with the next
//! server token or the authenticated user name. A wrong password and an
//! unknown user fail alike, at the same step, with the same message.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use subtle::ConstantTimeEq;

use crate::security::scram::{Credential, Credentials, MIN_ITERATIONS, Mechanism};

/// What one step of an exchange produced.
#[derive(Debug)]
pub enum Step {
    /// Send this token; the client answers with another.
    Continue(Vec<u8>),
    /// The client is `user`; send `token` as the last server message.
    Done { user: String, token: Vec<u8> },
}

/// Why an exchange failed: `message` is for the client (and never says
/// whether the user exists); `detail` is for the broker's log.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub detail: String,
}

impl Failure {
    fn credentials(mechanism: &str, user: &str) -> Failure {
        Failure {
            message: format!(
                "authentication failed: invalid credentials (SASL mechanism {mechanism})"
            ),
            detail: format!("invalid credentials for user '{user}'"),
        }
    }

    fn malformed(mechanism: &str, why: impl Into<String>) -> Failure {
        let why = why.into();
        Failure {
            message: format!("authentication failed: malformed {mechanism} message: {why}"),
            detail: format!("malformed {mechanism} message: {why}"),
        }
    }
}

/// Salts handed out for users that do not exist are derived from this, so
/// they are stable for a user (asking twice reveals nothing) yet unguessable.
static UNKNOWN_USER_SECRET: LazyLock<[u8; 32]> = LazyLock::new(rand::random);

/// One authentication attempt.
pub struct Exchange {
    kind: Kind,
}

enum Kind {
    Plain,
    Scram {
        mechanism: Mechanism,
        state: Box<ScramState>,
    },
}

enum ScramState {
    /// Waiting for client-first-message.
    Start,
    /// Sent server-first-message; waiting for client-final-message.
    Challenged {
        user: String,
        /// None: the user has no credential for this mechanism; the
        /// exchange goes on with made-up parameters and fails at the end.
        credential: Option<Credential>,
        gs2_header: String,
        nonce: String,
        client_first_bare: String,
        server_first: String,
    },
    Finished,
}

impl Exchange {
    /// An exchange for `mechanism` (a name from SaslHandshake), if it is one
    /// this broker knows.
    pub fn start(mechanism: &str) -> Option<Exchange> {
        let kind = match mechanism {
            "PLAIN" => Kind::Plain,
            other => Kind::Scram {
                mechanism: Mechanism::from_name(other)?,
                state: Box::new(ScramState::Start),
            },
        };
        Some(Exchange { kind })
    }

    pub fn mechanism(&self) -> &'static str {
        match &self.kind {
            Kind::Plain => "PLAIN",
            Kind::Scram { mechanism, .. } => mechanism.name(),
        }
    }

    /// Runs one client token through the exchange.
    pub async fn step(&mut self, credentials: &Credentials, token: &[u8]) -> Result<Step, Failure> {
        match &mut self.kind {
            Kind::Plain => plain(credentials, token).await,
            Kind::Scram { mechanism, state } => {
                scram_step(*mechanism, state, credentials, token).await
            }
        }
    }
}

/// `[authzid] NUL authcid NUL passwd`; the authorization identity, when
/// given, must be the user itself.
async fn plain(credentials: &Credentials, token: &[u8]) -> Result<Step, Failure> {
    const M: &str = "PLAIN";
    let text = std::str::from_utf8(token).map_err(|_| Failure::malformed(M, "not UTF-8"))?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Failure::malformed(
            M,
            "expected [authzid] NUL user NUL password",
        ));
    };
    if user.is_empty() || password.is_empty() {
        return Err(Failure::malformed(M, "empty user name or password"));
    }
    if !authzid.is_empty() && authzid != user {
        return Err(Failure {
            message: "authentication failed: the authorization identity must be the user itself"
                .into(),
            detail: format!("user '{user}' asked to act as '{authzid}'"),
        });
    }
    match credentials.verify_password(user, password).await {
        Ok(true) => Ok(Step::Done {
            user: user.to_owned(),
            token: Vec::new(),
        }),
        Ok(false) => Err(Failure::credentials(M, user)),
        Err(e) => Err(store_failure(e)),
    }
}

fn store_failure(e: crate::store::meta::MetaError) -> Failure {
    Failure {
        message: "authentication failed: the credential store is unavailable; try again".into(),
        detail: format!("credential store: {e}"),
    }
}

async fn scram_step(
    mechanism: Mechanism,
    state: &mut ScramState,
    credentials: &Credentials,
    token: &[u8],
) -> Result<Step, Failure> {
    let m = mechanism.name();
    let text = std::str::from_utf8(token).map_err(|_| Failure::malformed(m, "not UTF-8"))?;
    match std::mem::replace(state, ScramState::Finished) {
        ScramState::Start => {
            let first = parse_client_first(text).map_err(|why| Failure::malformed(m, why))?;
            let credential = credentials
                .get(&first.user, mechanism)
                .await
                .map_err(store_failure)?;
            let (salt, iterations) = match &credential {
                Some(c) => (c.salt.clone(), c.iterations),
                None => {
                    let fake = mechanism.hmac(&*UNKNOWN_USER_SECRET, &[first.user.as_bytes()]);
                    (fake[..24.min(fake.len())].to_vec(), MIN_ITERATIONS)
                }
            };
            let server_nonce: [u8; 24] = rand::random();
            let nonce = format!("{}{}", first.nonce, B64.encode(server_nonce));
            let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(&salt));
            let reply = server_first.clone().into_bytes();
            *state = ScramState::Challenged {
                user: first.user,
                credential,
                gs2_header: first.gs2_header,
                nonce,
                client_first_bare: first.bare,
                server_first,
            };
            Ok(Step::Continue(reply))
        }
        ScramState::Challenged {
            user,
            credential,
            gs2_header,
            nonce,
            client_first_bare,
            server_first,
        } => {
            let fin = parse_client_final(text).map_err(|why| Failure::malformed(m, why))?;
            if fin.channel_binding != B64.encode(gs2_header.as_bytes()) {
                return Err(Failure::malformed(
                    m,
                    "channel binding does not match the first message",
                ));
            }
            // RFC 5802 wants the server's nonce back exactly; older
            // librdkafka sends its own nonce in front of it, which Kafka
            // accepts, so the test is Kafka's: the nonce must end with ours.
            if !fin.nonce.ends_with(&nonce) {
                return Err(Failure::malformed(m, "nonce does not match"));
            }
            let Some(credential) = credential else {
                return Err(Failure::credentials(m, &user));
            };
            let auth_message = format!("{client_first_bare},{server_first},{}", fin.without_proof);
            let client_signature =
                mechanism.hmac(&credential.stored_key, &[auth_message.as_bytes()]);
            if fin.proof.len() != client_signature.len() {
                return Err(Failure::credentials(m, &user));
            }
            let client_key: Vec<u8> = fin
                .proof
                .iter()
                .zip(&client_signature)
                .map(|(a, b)| a ^ b)
                .collect();
            if !bool::from(mechanism.hash(&client_key).ct_eq(&credential.stored_key)) {
                return Err(Failure::credentials(m, &user));
            }
            let server_signature =
                mechanism.hmac(&credential.server_key, &[auth_message.as_bytes()]);
            Ok(Step::Done {
                user,
                token: format!("v={}", B64.encode(server_signature)).into_bytes(),
            })
        }
        ScramState::Finished => Err(Failure::malformed(m, "the exchange is already over")),
    }
}

struct ClientFirst {
    gs2_header: String,
    bare: String,
    user: String,
    nonce: String,
}

/// `gs2-header client-first-message-bare`, e.g. `n,,n=alice,r=NONCE`.
fn parse_client_first(text: &str) -> Result<ClientFirst, String> {
    let (cbind, rest) = text.split_once(',').ok_or("no GS2 header")?;
    let (authzid, bare) = rest.split_once(',').ok_or("no GS2 header")?;
    match cbind {
        "n" | "y" => {}
        _ if cbind.starts_with("p=") => {
            return Err("channel binding is not supported".into());
        }
        _ => return Err(format!("bad channel-binding flag '{cbind}'")),
    }
    let gs2_header = format!("{cbind},{authzid},");
    let mut attrs = bare.split(',');
    let user = attrs
        .next()
        .and_then(|a| a.strip_prefix("n="))
        .ok_or("expected n=USER first")?;
    let user = unescape_name(user)?;
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or("expected r=NONCE after the user name")?;
    if nonce.is_empty()
        || !nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err("the client nonce must be printable characters".into());
    }
    for ext in attrs {
        // Kafka's delegation-token extension: Sluice has no delegation tokens.
        if ext.starts_with("tokenauth=") {
            return Err("delegation tokens are not supported".into());
        }
    }
    if let Some(id) = authzid.strip_prefix("a=")
        && unescape_name(id)? != user
    {
        return Err("the authorization identity must be the user itself".into());
    }
    Ok(ClientFirst {
        gs2_header,
        bare: bare.to_owned(),
        user,
        nonce: nonce.to_owned(),
    })
}

/// SCRAM's `saslname`: `=2C` is a comma and `=3D` an equals sign.
fn unescape_name(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("empty user name".into());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err("bad '=' escape in the user name".into()),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

struct ClientFinal {
    channel_binding: String,
    nonce: String,
    proof: Vec<u8>,
    without_proof: String,
}

/// `c=CBIND,r=NONCE[,ext...],p=PROOF`.
fn parse_client_final(text: &str) -> Result<ClientFinal, String> {
    let (without_proof, proof) = text.rsplit_once(",p=").ok_or("no proof (p=)")?;
    let proof = B64
        .decode(proof)
        .map_err(|_| "the proof is not base64".to_string())?;
    let mut attrs = without_proof.split(',');
    let channel_binding = attrs
        .next()
        .and_then(|a| a.strip_prefix("c="))
        .ok_or("expected c= first")?;
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or("expected r= after c=")?;
    Ok(ClientFinal {
        channel_binding: channel_binding.to_owned(),
        nonce: nonce.to_owned(),
        proof,
        without_proof: without_proof.to_owned(),
    })
}

/// Kafka's cap on a frame before SASL authentication
/// (`sasl.server.max.receive.size`): an unauthenticated client cannot make
/// the broker buffer a 100 MB "token".
pub const MAX_UNAUTHENTICATED_FRAME: usize = 512 * 1024;

/// Where a connection on a SASL listener stands.
pub struct Session {
    /// The listener requires SASL.
    required: bool,
    /// After SaslHandshake: the attempt in progress.
    exchange: Option<Exchange>,
    /// After the first successful exchange: who the client is, and the
    /// mechanism it used (re-authentication must keep both).
    user: Option<(String, &'static str)>,
    /// When the session ends unless the client re-authenticates.
    expires: Option<Instant>,
    /// After a v0 SaslHandshake, tokens come as bare frames rather than
    /// inside SaslAuthenticate requests.
    raw_tokens: bool,
}

/// What the connection does after a SASL request's response.
pub type Next = Result<(), String>;

impl Session {
    pub fn new(required: bool) -> Session {
        Session {
            required,
            exchange: None,
            user: None,
            expires: None,
            raw_tokens: false,
        }
    }

    /// Whether the next frame is a bare SASL token (after a v0 handshake).
    pub fn expects_raw_token(&self) -> bool {
        self.raw_tokens && self.exchange.is_some()
    }

    /// The largest frame the client may send now.
    pub fn max_frame(&self, authenticated_max: usize) -> usize {
        if self.required && self.user.is_none() {
            MAX_UNAUTHENTICATED_FRAME.min(authenticated_max)
        } else {
            authenticated_max
        }
    }

    /// Whether the client has authenticated (or needs not).
    pub fn authenticated(&self) -> bool {
        !self.required || self.user.is_some()
    }

    /// Checks that a request of `api` may be served now; the error says
    /// why the connection must close.
    pub fn admit(&self, api: ApiKey) -> Result<(), String> {
        if !self.required || api == ApiKey::ApiVersions {
            return Ok(());
        }
        if self.user.is_none() {
            return Err(format!(
                "{api:?} request before SASL authentication (is the client configured for SASL?)"
            ));
        }
        if self.expires.is_some_and(|t| Instant::now() >= t) {
            return Err("the SASL session expired and the client did not re-authenticate".into());
        }
        Ok(())
    }

    pub fn handshake(
        &mut self,
        enabled: &[String],
        req: SaslHandshakeRequest,
        version: i16,
    ) -> (SaslHandshakeResponse, Next) {
        let mut resp = SaslHandshakeResponse::default();
        resp.mechanisms = enabled
            .iter()
            .map(|m| StrBytes::from_string(m.clone()))
            .collect();
        if !self.required {
            resp.error_code = ResponseError::IllegalSaslState.code();
            return (
                resp,
                Err("SaslHandshake on a listener that does not use SASL".into()),
            );
        }
        let wanted = req.mechanism.as_str();
        let known = enabled.iter().any(|m| m == wanted);
        let Some(exchange) = Exchange::start(wanted).filter(|_| known) else {
            resp.error_code = ResponseError::UnsupportedSaslMechanism.code();
            return (
                resp,
                Err(format!(
                    "client asked for SASL mechanism '{wanted}'; enabled: {}",
                    enabled.join(", ")
                )),
            );
        };
        if let Some((_, used)) = &self.user
            && *used != exchange.mechanism()
        {
            resp.error_code = ResponseError::IllegalSaslState.code();
            return (
                resp,
                Err(format!(
                    "re-authentication with {wanted} after authenticating with {used}"
                )),
            );
        }
        self.exchange = Some(exchange);
        self.raw_tokens = version == 0;
        (resp, Ok(()))
    }

    /// Runs one SaslAuthenticate token. On success, returns the principal
    /// the connection now acts for.
    pub async fn authenticate(
        &mut self,
        credentials: &Credentials,
        lifetime: Option<Duration>,
        req: SaslAuthenticateRequest,
        version: i16,
    ) -> (SaslAuthenticateResponse, Next, Option<String>) {
        let mut resp = SaslAuthenticateResponse::default();
        let fail = |resp: &mut SaslAuthenticateResponse, code: ResponseError, msg: String| {
            resp.error_code = code.code();
            resp.error_message = Some(StrBytes::from_string(msg));
        };
        let Some(exchange) = self.exchange.as_mut() else {
            let msg = "SaslAuthenticate before SaslHandshake".to_string();
            fail(&mut resp, ResponseError::IllegalSaslState, msg.clone());
            return (resp, Err(msg), None);
        };
        let mechanism = exchange.mechanism();
        match exchange.step(credentials, &req.auth_bytes).await {
            Ok(Step::Continue(token)) => {
                resp.auth_bytes = token.into();
                (resp, Ok(()), None)
            }
            Ok(Step::Done { user, token }) => {
                self.exchange = None;
                self.raw_tokens = false;
                if let Some((before, _)) = &self.user
                    && *before != user
                {
                    let msg = format!(
                        "re-authentication as '{user}' on a connection authenticated as '{before}'"
                    );
                    fail(
                        &mut resp,
                        ResponseError::SaslAuthenticationFailed,
                        msg.clone(),
                    );
                    return (resp, Err(msg), None);
                }
                resp.auth_bytes = token.into();
                // Clients before v1 cannot re-authenticate, so their
                // sessions last as long as the connection.
                self.expires = match lifetime {
                    Some(l) if version >= 1 => {
                        resp.session_lifetime_ms = l.as_millis().min(i64::MAX as u128) as i64;
                        Some(Instant::now() + l)
                    }
                    _ => None,
                };
                let principal = format!("User:{user}");
                self.user = Some((user, mechanism));
                (resp, Ok(()), Some(principal))
            }
            Err(f) => {
                self.exchange = None;
                self.raw_tokens = false;
                metrics::counter!("sluice_sasl_failures_total").increment(1);
                fail(
                    &mut resp,
                    ResponseError::SaslAuthenticationFailed,
                    f.message,
                );
                (
                    resp,
                    Err(format!(
                        "SASL {mechanism} authentication failed: {}",
                        f.detail
                    )),
                    None,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_rfc_5802_client_messages() {
        let first = parse_client_first("n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL").unwrap();
        assert_eq!(first.user, "user");
        assert_eq!(first.nonce, "fyko+d2lbbFgONRv9qkxdawL");
        assert_eq!(first.gs2_header, "n,,");
        assert_eq!(first.bare, "n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        let fin = parse_client_final("c=biws,r=abc,p=dHpiYlhzWQ==").unwrap();
        assert_eq!(fin.channel_binding, "biws");
        assert_eq!(fin.nonce, "abc");
        assert_eq!(fin.without_proof, "c=biws,r=abc");
    }

    #[test]
    fn refuses_malformed_client_messages() {
        for bad in [
            "",
            "garbage",
            "n,,r=abc",
            "n,,n=,r=abc",
            "n,,n=a=zz,r=abc",
            "p=tls-unique,,n=a,r=abc",
            "n,,n=a,r=",
            "n,,n=a,r=abc,tokenauth=true",
            "n,a=bob,n=alice,r=abc",
        ] {
            assert!(parse_client_first(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_client_final("c=biws,r=abc").is_err());
        assert!(parse_client_final("c=biws,r=abc,p=***").is_err());
    }

    #[test]
    fn unescapes_user_names() {
        assert_eq!(unescape_name("a=2Cb=3Dc").unwrap(), "a,b=c");
    }
}
