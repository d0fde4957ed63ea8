//! TLS for the SSL and SASL_SSL Kafka listeners (rustls, ring provider),
//! and the principal a client certificate names.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::security::settings::TlsFiles;

/// How long a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The acceptor of the TLS listeners, from the PEM files; errors name the
/// file and what is wrong with it.
pub fn acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("cannot read the TLS certificate {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("invalid PEM in {}", files.cert.display()))?;
    if certs.is_empty() {
        bail!(
            "{} holds no certificate (expected PEM 'BEGIN CERTIFICATE' blocks)",
            files.cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).with_context(|| {
        format!(
            "cannot read a private key (PEM, PKCS#8, PKCS#1 or SEC1) from {}",
            files.key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("cannot read the client CA {}", ca.display()))?
            {
                let cert = cert.with_context(|| format!("invalid PEM in {}", ca.display()))?;
                roots.add(cert).with_context(|| {
                    format!("{} holds an unusable CA certificate", ca.display())
                })?;
            }
            if roots.is_empty() {
                bail!("{} holds no CA certificate", ca.display());
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .with_context(|| format!("cannot verify clients with {}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(certs, key).with_context(|| {
        format!(
            "the key in {} does not match the certificate in {}",
            files.key.display(),
            files.cert.display()
        )
    })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The principal of a verified client certificate, as Kafka's default
/// mapping names it: `User:` and the subject's distinguished name in
/// RFC 2253 form (e.g. `User:CN=alice,OU=billing,O=Example`).
pub fn principal_of(cert: &[u8]) -> Option<String> {
    Some(format!("User:{}", subject_dn(cert)?))
}

/// One DER element: (tag, contents, rest).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

/// The subject of an X.509 certificate (DER) as an RFC 2253 string.
fn subject_dn(cert: &[u8]) -> Option<String> {
    let (SEQUENCE, cert, _) = der(cert)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = der(cert)? else {
        return None;
    };
    let mut rest = tbs;
    // [0] version (optional), serial, signature algorithm, issuer, validity, subject.
    if rest.first() == Some(&0xa0) {
        rest = der(rest)?.2;
    }
    for _ in 0..4 {
        rest = der(rest)?.2;
    }
    let (SEQUENCE, mut rdns, _) = der(rest)? else {
        return None;
    };
    let mut parts = Vec::new();
    while !rdns.is_empty() {
        let (SET, mut set, next) = der(rdns)? else {
            return None;
        };
        rdns = next;
        let mut attrs = Vec::new();
        while !set.is_empty() {
            let (SEQUENCE, attr, next) = der(set)? else {
                return None;
            };
            set = next;
            let (OID, oid, value) = der(attr)? else {
                return None;
            };
            let (_, text, _) = der(value)?;
            let text = String::from_utf8_lossy(text);
            attrs.push(format!("{}={}", attribute_name(oid), escape(&text)));
        }
        parts.push(attrs.join("+"));
    }
    // RFC 2253 writes the most specific name first: the reverse of DER order.
    parts.reverse();
    Some(parts.join(","))
}

fn attribute_name(oid: &[u8]) -> String {
    match oid {
        [0x55, 0x04, 0x03] => "CN".into(),
        [0x55, 0x04, 0x06] => "C".into(),
        [0x55, 0x04, 0x07] => "L".into(),
        [0x55, 0x04, 0x08] => "ST".into(),
        [0x55, 0x04, 0x09] => "STREET".into(),
        [0x55, 0x04, 0x0a] => "O".into(),
        [0x55, 0x04, 0x0b] => "OU".into(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC".into(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID".into(),
        other => dotted(other),
    }
}

/// An OID in dotted form.
fn dotted(oid: &[u8]) -> String {
    let mut out = Vec::new();
    let mut n: u64 = 0;
    for b in oid {
        n = (n << 7) | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            if out.is_empty() {
                let first = (n / 40).min(2);
                out.push(first);
                out.push(n - first * 40);
            } else {
                out.push(n);
            }
            n = 0;
        }
    }
    out.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
}

/// RFC 2253 escaping of an attribute value.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        let edge = (i == 0 && (c == ' ' || c == '#')) || (i + 1 == v.chars().count() && c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name's DER: SEQUENCE of SETs of (OID, UTF8String).
    fn name(rdns: &[(&[u8], &str)]) -> Vec<u8> {
        fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
            let mut out = vec![tag, body.len() as u8];
            out.extend(body);
            out
        }
        let mut seq = Vec::new();
        for (oid, value) in rdns {
            let mut attr = tlv(OID, oid);
            attr.extend(tlv(0x0c, value.as_bytes()));
            seq.extend(tlv(SET, &tlv(SEQUENCE, &attr)));
        }
        let subject = tlv(SEQUENCE, &seq);
        let mut tbs = tlv(0xa0, &tlv(0x02, &[2]));
        tbs.extend(tlv(0x02, &[1]));
        tbs.extend(tlv(SEQUENCE, &[]));
        tbs.extend(tlv(SEQUENCE, &[]));
        tbs.extend(tlv(SEQUENCE, &[]));
        tbs.extend(subject);
        tlv(SEQUENCE, &tlv(SEQUENCE, &tbs))
    }

    #[test]
    fn names_the_subject_as_kafka_does() {
        let cert = name(&[
            (&[0x55, 0x04, 0x06], "DE"),
            (&[0x55, 0x04, 0x0a], "Example, Inc"),
            (&[0x55, 0x04, 0x03], "alice"),
        ]);
        assert_eq!(
            principal_of(&cert).as_deref(),
            Some("User:CN=alice,O=Example\\, Inc,C=DE")
        );
        assert_eq!(principal_of(b"garbage"), None);
        assert_eq!(principal_of(&[]), None);
        assert_eq!(dotted(&[0x2a, 0x86, 0x48]), "1.2.840");
    }
}
