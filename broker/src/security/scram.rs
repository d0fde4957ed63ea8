//! SCRAM credentials (RFC 5802, RFC 7677): derivation, storage in the
//! metadata store, and password checks for SASL/PLAIN and HTTP basic auth.
//!
//! Only the salt, the iteration count, `StoredKey` and `ServerKey` are kept;
//! a stolen copy of the store does not give anyone a password, nor lets
//! them log in (that needs `ClientKey`, which only the password yields).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use sqlx::Row;
use subtle::ConstantTimeEq;

use crate::store::meta::{MetaStore, Result};

/// The SCRAM mechanisms, with their Kafka protocol codes
/// (AlterUserScramCredentials' `mechanism`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    Sha256,
    Sha512,
}

/// Kafka's bounds on the iteration count.
pub const MIN_ITERATIONS: i32 = 4096;
pub const MAX_ITERATIONS: i32 = 16384;

impl Mechanism {
    pub const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    pub fn code(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    pub fn from_code(code: i8) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.code() == code)
    }

    pub fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            // HMAC takes keys of any length.
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
            for p in parts {
                mac.update(p);
            }
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Mechanism::Sha256 => run::<Hmac<Sha256>>(key, parts),
            Mechanism::Sha512 => run::<Hmac<Sha512>>(key, parts),
        }
    }

    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => Sha256::digest(data).to_vec(),
            Mechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// `Hi(password, salt, i)`: PBKDF2 with this HMAC, one block.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: i32) -> Vec<u8> {
        let mut u = self.hmac(password, &[salt, &1u32.to_be_bytes()]);
        let mut out = u.clone();
        for _ in 1..iterations.max(1) {
            u = self.hmac(password, &[&u]);
            for (o, b) in out.iter_mut().zip(&u) {
                *o ^= b;
            }
        }
        out
    }
}

/// What is stored for one user and mechanism.
#[derive(Debug, Clone)]
pub struct Credential {
    pub mechanism: Mechanism,
    pub salt: Vec<u8>,
    pub iterations: i32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl Credential {
    /// The credential of a salted password (what AlterUserScramCredentials
    /// carries: clients salt the password themselves).
    pub fn from_salted(
        mechanism: Mechanism,
        salt: Vec<u8>,
        iterations: i32,
        salted: &[u8],
    ) -> Credential {
        let client_key = mechanism.hmac(salted, &[b"Client Key"]);
        Credential {
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted, &[b"Server Key"]),
            mechanism,
            salt,
            iterations,
        }
    }

    pub fn from_password(mechanism: Mechanism, password: &str, iterations: i32) -> Credential {
        let salt: [u8; 24] = rand::random();
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        Credential::from_salted(mechanism, salt.to_vec(), iterations, &salted)
    }

    /// True when `password` is this credential's password.
    pub fn matches(&self, password: &str) -> bool {
        let salted =
            self.mechanism
                .salted_password(password.as_bytes(), &self.salt, self.iterations);
        let client_key = self.mechanism.hmac(&salted, &[b"Client Key"]);
        let stored = self.mechanism.hash(&client_key);
        bool::from(stored.ct_eq(&self.stored_key))
    }
}

/// The stored credentials, with a short-lived cache of checked passwords so
/// HTTP basic auth does not run PBKDF2 on every request.
#[derive(Clone)]
pub struct Credentials {
    meta: MetaStore,
    /// SHA-256 of `user \0 password` → the password was right.
    checked: moka::sync::Cache<[u8; 32], bool>,
}

/// How long a checked password is trusted before it is checked again (a
/// changed or deleted credential takes effect within it).
const CHECK_CACHE_TTL: Duration = Duration::from_secs(30);

impl Credentials {
    pub fn new(meta: MetaStore) -> Credentials {
        Credentials {
            meta,
            checked: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(CHECK_CACHE_TTL)
                .build(),
        }
    }

    pub async fn get(&self, user: &str, mechanism: Mechanism) -> Result<Option<Credential>> {
        let row = sqlx::query(
            "SELECT salt, iterations, stored_key, server_key FROM scram_credentials
             WHERE user_name = $1 AND mechanism = $2",
        )
        .bind(user)
        .bind(mechanism.name())
        .fetch_optional(self.meta.pool())
        .await?;
        Ok(row.and_then(|r| {
            Some(Credential {
                mechanism,
                salt: B64.decode(r.get::<String, _>(0)).ok()?,
                iterations: r.get::<i64, _>(1) as i32,
                stored_key: B64.decode(r.get::<String, _>(2)).ok()?,
                server_key: B64.decode(r.get::<String, _>(3)).ok()?,
            })
        }))
    }

    /// Every user's mechanisms and iteration counts, by user.
    pub async fn list(&self) -> Result<Vec<(String, Mechanism, i32)>> {
        let rows = sqlx::query(
            "SELECT user_name, mechanism, iterations FROM scram_credentials ORDER BY 1, 2",
        )
        .fetch_all(self.meta.pool())
        .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some((
                    r.get::<String, _>(0),
                    Mechanism::from_name(&r.get::<String, _>(1))?,
                    r.get::<i64, _>(2) as i32,
                ))
            })
            .collect())
    }

    pub async fn upsert(&self, user: &str, c: &Credential) -> Result<()> {
        sqlx::query(
            "INSERT INTO scram_credentials (user_name, mechanism, salt, iterations, stored_key, server_key)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (user_name, mechanism) DO UPDATE SET salt = excluded.salt,
               iterations = excluded.iterations, stored_key = excluded.stored_key,
               server_key = excluded.server_key",
        )
        .bind(user)
        .bind(c.mechanism.name())
        .bind(B64.encode(&c.salt))
        .bind(c.iterations as i64)
        .bind(B64.encode(&c.stored_key))
        .bind(B64.encode(&c.server_key))
        .execute(self.meta.pool())
        .await?;
        self.checked.invalidate_all();
        Ok(())
    }

    /// Deletes one credential; false if there was none.
    pub async fn delete(&self, user: &str, mechanism: Mechanism) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM scram_credentials WHERE user_name = $1 AND mechanism = $2")
                .bind(user)
                .bind(mechanism.name())
                .execute(self.meta.pool())
                .await?;
        self.checked.invalidate_all();
        Ok(done.rows_affected() > 0)
    }

    /// True when `password` is `user`'s password under any of their SCRAM
    /// credentials (SASL/PLAIN and HTTP basic auth check passwords so).
    pub async fn verify_password(&self, user: &str, password: &str) -> Result<bool> {
        let key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0u8])
            .chain_update(password.as_bytes())
            .finalize()
            .into();
        if let Some(ok) = self.checked.get(&key) {
            return Ok(ok);
        }
        let mut found = None;
        for m in Mechanism::ALL {
            if let Some(c) = self.get(user, m).await? {
                found = Some(c);
                break;
            }
        }
        // An unknown user costs the same PBKDF2 as a known one, so the
        // answer's timing does not tell who exists.
        let (c, known) = match found {
            Some(c) => (c, true),
            None => (
                Credential::from_salted(Mechanism::Sha256, vec![0; 24], MIN_ITERATIONS, &[0; 32]),
                false,
            ),
        };
        // PBKDF2 is deliberately slow: off the async threads.
        let password = password.to_owned();
        let matched = tokio::task::spawn_blocking(move || c.matches(&password))
            .await
            .unwrap_or(false);
        let ok = known && matched;
        self.checked.insert(key, ok);
        Ok(ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's SCRAM-SHA-256 example: user "user", password "pencil".
    #[test]
    fn derives_the_rfc_7677_keys() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = Mechanism::Sha256.salted_password(b"pencil", &salt, 4096);
        let c = Credential::from_salted(Mechanism::Sha256, salt, 4096, &salted);
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let server_sig = Mechanism::Sha256.hmac(&c.server_key, &[auth_message.as_bytes()]);
        assert_eq!(
            B64.encode(server_sig),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert!(c.matches("pencil"));
        assert!(!c.matches("pencil "));
    }
}
