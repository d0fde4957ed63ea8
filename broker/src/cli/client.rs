//! A small Kafka client used by the `sluice topics` / `sluice groups`
//! commands: one connection, one request at a time, typed with the same
//! protocol crate as the broker.

use anyhow::{Context, bail};
use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Client {
    stream: TcpStream,
    next_id: i32,
}

impl Client {
    pub async fn connect(addr: &str) -> anyhow::Result<Client> {
        let stream = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            TcpStream::connect(addr),
        )
        .await
        .with_context(|| format!("timed out connecting to {addr}"))?
        .with_context(|| {
            format!(
                "cannot connect to a broker at {addr} (is `sluice serve` running? set --bootstrap)"
            )
        })?;
        stream.set_nodelay(true)?;
        let mut client = Client { stream, next_id: 1 };
        if let Some(login) = SaslLogin::from_env()? {
            client.authenticate(&login).await.with_context(|| {
                format!(
                    "SASL {} login to {addr} as '{}'",
                    login.mechanism, login.user
                )
            })?;
        }
        Ok(client)
    }

    /// SaslHandshake and SaslAuthenticate, for brokers whose listener
    /// wants SASL.
    async fn authenticate(&mut self, login: &SaslLogin) -> anyhow::Result<()> {
        use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
        let mut hs = SaslHandshakeRequest::default();
        hs.mechanism = StrBytes::from_string(login.mechanism.clone());
        let resp = self.send(&hs, 1).await?;
        if resp.error_code != 0 {
            let offered: Vec<&str> = resp.mechanisms.iter().map(|m| m.as_str()).collect();
            bail!(
                "the broker does not offer {} (it offers: {})",
                login.mechanism,
                offered.join(", ")
            );
        }
        let mut exchange = ClientExchange::new(login)?;
        let mut token = exchange.first();
        loop {
            let mut req = SaslAuthenticateRequest::default();
            req.auth_bytes = token.into();
            let resp = self.send(&req, 1).await?;
            if resp.error_code != 0 {
                bail!(
                    "{}",
                    resp.error_message
                        .as_deref()
                        .unwrap_or("authentication failed")
                );
            }
            match exchange.next(&resp.auth_bytes)? {
                Some(t) => token = t,
                None => return Ok(()),
            }
        }
    }

    /// Sends `req` at `version` and returns the decoded response.
    pub async fn send<R: Request>(&mut self, req: &R, version: i16) -> anyhow::Result<R::Response> {
        let key = ApiKey::try_from(R::KEY).map_err(|_| anyhow::anyhow!("unknown api key"))?;
        let mut header = RequestHeader::default();
        header.request_api_key = R::KEY;
        header.request_api_version = version;
        header.correlation_id = self.next_id;
        header.client_id = Some(StrBytes::from_static_str("sluice-cli"));
        self.next_id += 1;
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header.encode(&mut buf, key.request_header_version(version))?;
        req.encode(&mut buf, version)?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf).await?;
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .await
            .context("the broker closed the connection")?;
        let len = i32::from_be_bytes(len);
        if !(0..=256 * 1024 * 1024).contains(&len) {
            bail!("bad response length {len}");
        }
        let mut body = vec![0u8; len as usize];
        self.stream.read_exact(&mut body).await?;
        let mut body = bytes::Bytes::from(body);
        let rh = ResponseHeader::decode(&mut body, R::Response::header_version(version))?;
        if rh.correlation_id != header.correlation_id {
            bail!(
                "response for request {} arrived out of order",
                rh.correlation_id
            );
        }
        let resp = R::Response::decode(&mut body, version)?;
        if body.has_remaining() {
            tracing::debug!(left = body.remaining(), "response had trailing bytes");
        }
        Ok(resp)
    }
}

/// SASL credentials for the commands, from `SLUICE_SASL_MECHANISM`
/// (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512), `SLUICE_SASL_USERNAME` and
/// `SLUICE_SASL_PASSWORD`.
pub struct SaslLogin {
    pub mechanism: String,
    pub user: String,
    password: String,
}

impl SaslLogin {
    fn from_env() -> anyhow::Result<Option<SaslLogin>> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let Some(mechanism) = var("SLUICE_SASL_MECHANISM") else {
            return Ok(None);
        };
        let (Some(user), Some(password)) =
            (var("SLUICE_SASL_USERNAME"), var("SLUICE_SASL_PASSWORD"))
        else {
            bail!(
                "SLUICE_SASL_MECHANISM is set: set SLUICE_SASL_USERNAME and SLUICE_SASL_PASSWORD too"
            );
        };
        Ok(Some(SaslLogin {
            mechanism: mechanism.to_ascii_uppercase(),
            user,
            password,
        }))
    }
}

/// The client side of a PLAIN or SCRAM exchange.
enum ClientExchange {
    Plain(Vec<u8>),
    Scram {
        mechanism: crate::security::scram::Mechanism,
        password: String,
        nonce: String,
        first_bare: String,
        /// After the server's first message: the signature to expect.
        server_signature: Option<Vec<u8>>,
    },
}

impl ClientExchange {
    fn new(login: &SaslLogin) -> anyhow::Result<ClientExchange> {
        use base64::Engine as _;
        if login.mechanism == "PLAIN" {
            return Ok(ClientExchange::Plain(
                format!("\0{}\0{}", login.user, login.password).into_bytes(),
            ));
        }
        let Some(mechanism) = crate::security::scram::Mechanism::from_name(&login.mechanism) else {
            bail!(
                "unknown SASL mechanism '{}' (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)",
                login.mechanism
            );
        };
        let nonce = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 24]>());
        let user = login.user.replace('=', "=3D").replace(',', "=2C");
        Ok(ClientExchange::Scram {
            mechanism,
            password: login.password.clone(),
            first_bare: format!("n={user},r={nonce}"),
            nonce,
            server_signature: None,
        })
    }

    fn first(&self) -> Vec<u8> {
        match self {
            ClientExchange::Plain(token) => token.clone(),
            ClientExchange::Scram { first_bare, .. } => format!("n,,{first_bare}").into_bytes(),
        }
    }

    /// The answer to the server's token, or `None` when the exchange is over.
    fn next(&mut self, server: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let ClientExchange::Scram {
            mechanism,
            password,
            nonce,
            first_bare,
            server_signature,
        } = self
        else {
            return Ok(None);
        };
        let text =
            std::str::from_utf8(server).context("the server's SCRAM message is not UTF-8")?;
        if let Some(expected) = server_signature {
            let got = text
                .strip_prefix("v=")
                .and_then(|v| b64.decode(v).ok())
                .context("the server's final SCRAM message has no signature")?;
            if got != *expected {
                bail!("the broker's SCRAM signature is wrong: it does not know this user's key");
            }
            return Ok(None);
        }
        let attr = |k: &str| {
            text.split(',')
                .find_map(|a| a.strip_prefix(k))
                .map(str::to_owned)
        };
        let (Some(r), Some(salt), Some(iterations)) = (attr("r="), attr("s="), attr("i=")) else {
            bail!("malformed SCRAM server message");
        };
        if !r.starts_with(nonce.as_str()) {
            bail!("the broker's SCRAM nonce does not extend ours");
        }
        let salt = b64.decode(salt).context("the SCRAM salt is not base64")?;
        let iterations: i32 = iterations.parse().context("the SCRAM iteration count")?;
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = mechanism.hmac(&salted, &[b"Client Key"]);
        let stored_key = mechanism.hash(&client_key);
        let without_proof = format!("c=biws,r={r}");
        let auth_message = format!("{first_bare},{text},{without_proof}");
        let signature = mechanism.hmac(&stored_key, &[auth_message.as_bytes()]);
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = mechanism.hmac(&salted, &[b"Server Key"]);
        *server_signature = Some(mechanism.hmac(&server_key, &[auth_message.as_bytes()]));
        Ok(Some(
            format!("{without_proof},p={}", b64.encode(proof)).into_bytes(),
        ))
    }
}

/// Partitions from a ConsumerProtocolAssignment: (topic, partitions).
pub fn parse_assignment(data: &[u8]) -> Vec<(String, Vec<i32>)> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Some(head)
    }
    let mut b = data;
    let mut out = Vec::new();
    let parse = |b: &mut &[u8], out: &mut Vec<(String, Vec<i32>)>| -> Option<()> {
        take(b, 2)?;
        let topics = i32::from_be_bytes(take(b, 4)?.try_into().ok()?);
        for _ in 0..topics.max(0) {
            let len = i16::from_be_bytes(take(b, 2)?.try_into().ok()?).max(0) as usize;
            let name = String::from_utf8_lossy(take(b, len)?).into_owned();
            let n = i32::from_be_bytes(take(b, 4)?.try_into().ok()?);
            let mut parts = Vec::new();
            for _ in 0..n.max(0) {
                parts.push(i32::from_be_bytes(take(b, 4)?.try_into().ok()?));
            }
            out.push((name, parts));
        }
        Some(())
    };
    let _ = parse(&mut b, &mut out);
    out
}

/// Renders rows as an aligned text table with a header line.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:<w$}", c, w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(headers.to_vec());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    if rows.is_empty() {
        out.push_str("(none)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_consumer_assignment() {
        let mut b = BytesMut::new();
        b.put_i16(0);
        b.put_i32(1);
        b.put_i16(3);
        b.put_slice(b"abc");
        b.put_i32(2);
        b.put_i32(0);
        b.put_i32(5);
        b.put_i32(-1);
        assert_eq!(parse_assignment(&b), vec![("abc".to_string(), vec![0, 5])]);
        assert!(parse_assignment(&[1]).is_empty());
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONGER\nxyz  1\n");
    }
}
