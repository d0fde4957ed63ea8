//! Authentication on the HTTP interfaces (schema registry, Iceberg REST
//! catalog, SQL, admin) with `--http-auth`: HTTP basic with a SCRAM user's
//! password, or a bearer token, each naming the same `User:NAME`
//! principals as Kafka's SASL. Handlers find the caller in the request's
//! [`Caller`] extension (`User:ANONYMOUS` with authentication off).
//!
//! Bearer tokens are made by `POST /admin/tokens` and kept as their
//! SHA-256 only; a token is shown once, when it is made.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::security::scram::Credentials;
use crate::security::settings::Security;
use crate::store::meta::{MetaStore, Result};

/// Who sent an HTTP request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Arc<str>,
    pub ip: IpAddr,
}

/// Paths that answer without credentials with `--http-open-health`.
const HEALTH_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// What the middleware checks callers against.
#[derive(Clone)]
pub struct HttpAuth {
    pub settings: Arc<Security>,
    pub credentials: Credentials,
    /// Where bearer tokens are kept.
    pub meta: MetaStore,
}

/// The middleware: admits the request with its [`Caller`], or answers 401.
pub async fn authenticate(State(auth): State<HttpAuth>, mut req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
    let security = &auth.settings;
    let open = !security.http_auth
        || (security.http_open_health && HEALTH_PATHS.contains(&req.uri().path()));
    let principal: Arc<str> = if open {
        crate::security::ANONYMOUS.into()
    } else {
        match identify(&auth, req.headers().get(header::AUTHORIZATION)).await {
            Ok(p) => p.into(),
            Err(why) => {
                metrics::counter!("sluice_http_auth_failures_total").increment(1);
                tracing::info!(%ip, path = req.uri().path(), reason = %why, "HTTP request refused");
                let mut resp = (StatusCode::UNAUTHORIZED, format!("{why}\n")).into_response();
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"sluice\", Bearer"),
                );
                return resp;
            }
        }
    };
    req.extensions_mut().insert(Caller { principal, ip });
    next.run(req).await
}

/// The principal an `Authorization` header proves, or why it proves none.
async fn identify(
    auth: &HttpAuth,
    value: Option<&HeaderValue>,
) -> std::result::Result<String, String> {
    let Some(value) = value else {
        return Err(
            "credentials required: HTTP basic (a Sluice user's name and password) or a bearer token"
                .into(),
        );
    };
    let value = value
        .to_str()
        .map_err(|_| "the Authorization header is not text")?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = B64
            .decode(rest)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or("malformed basic credentials (expected base64 of user:password)")?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or("malformed basic credentials (expected user:password)")?;
        return match auth.credentials.verify_password(user, password).await {
            Ok(true) => Ok(format!("User:{user}")),
            Ok(false) => Err(format!("invalid user name or password for '{user}'")),
            Err(e) => Err(format!("the credential store is unavailable: {e}")),
        };
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        return match Tokens::new(auth.meta.clone()).principal(rest).await {
            Ok(Some(p)) => Ok(p),
            Ok(None) => Err("unknown or revoked bearer token".into()),
            Err(e) => Err(format!("the token store is unavailable: {e}")),
        };
    }
    Err(format!(
        "unsupported authorization scheme '{scheme}' (use Basic or Bearer)"
    ))
}

/// A token as listed: never the token itself.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenInfo {
    /// The first 12 hex digits of the token's SHA-256, to name it by.
    pub id: String,
    pub principal: String,
    pub created_ms: i64,
}

/// The bearer tokens in the metadata store.
pub struct Tokens {
    meta: MetaStore,
}

const ID_LEN: usize = 12;

fn digest(token: &str) -> String {
    use std::fmt::Write as _;
    Sha256::digest(token.as_bytes())
        .iter()
        .fold(String::with_capacity(64), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

impl Tokens {
    pub fn new(meta: MetaStore) -> Tokens {
        Tokens { meta }
    }

    /// Makes a token for `principal`: (its id, the token).
    pub async fn create(&self, principal: &str) -> Result<(String, String)> {
        let raw: [u8; 32] = rand::random();
        let token = format!("sluice_{}", URL_SAFE_NO_PAD.encode(raw));
        let hash = digest(&token);
        sqlx::query(
            "INSERT INTO http_tokens (token_sha256, principal, created_ms) VALUES ($1, $2, $3)",
        )
        .bind(&hash)
        .bind(principal)
        .bind(now_ms())
        .execute(self.meta.pool())
        .await?;
        Ok((hash[..ID_LEN].to_owned(), token))
    }

    pub async fn principal(&self, token: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT principal FROM http_tokens WHERE token_sha256 = $1")
            .bind(digest(token))
            .fetch_optional(self.meta.pool())
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    pub async fn list(&self) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query(
            "SELECT token_sha256, principal, created_ms FROM http_tokens ORDER BY created_ms, 1",
        )
        .fetch_all(self.meta.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| TokenInfo {
                id: r.get::<String, _>(0)[..ID_LEN].to_owned(),
                principal: r.get(1),
                created_ms: r.get(2),
            })
            .collect())
    }

    /// Revokes the tokens whose id is `id`; how many there were.
    pub async fn revoke(&self, id: &str) -> Result<u64> {
        if id.len() != ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(0);
        }
        let done = sqlx::query("DELETE FROM http_tokens WHERE token_sha256 LIKE $1")
            .bind(format!("{}%", id.to_ascii_lowercase()))
            .execute(self.meta.pool())
            .await?;
        Ok(done.rows_affected())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
