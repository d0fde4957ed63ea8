//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554):
//! SCRAM users managed with Kafka's own tools. Clients salt the password
//! themselves; the broker derives and stores the keys, never the password.

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};

use super::{cluster_refused, str_bytes};
use crate::common::KafkaError;
use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::Operation;
use crate::security::scram::{Credential, MAX_ITERATIONS, MIN_ITERATIONS, Mechanism};

/// DescribeUserScramCredentials: needs DESCRIBE on the cluster.
pub async fn describe(
    broker: &Broker,
    ctx: &ConnContext,
    req: DescribeUserScramCredentialsRequest,
    _version: i16,
) -> DescribeUserScramCredentialsResponse {
    let mut resp = DescribeUserScramCredentialsResponse::default();
    if !ctx.may_on_cluster(broker, Operation::Describe).await {
        let e = cluster_refused(ctx, Operation::Describe);
        resp.error_code = e.code.code();
        resp.error_message = Some(str_bytes(e.message));
        return resp;
    }
    let all = match broker.credentials.list().await {
        Ok(all) => all,
        Err(e) => {
            let e = KafkaError::from(e);
            resp.error_code = e.code.code();
            resp.error_message = Some(str_bytes(e.message));
            return resp;
        }
    };
    let mut by_user: BTreeMap<String, Vec<CredentialInfo>> = BTreeMap::new();
    for (user, mechanism, iterations) in all {
        let mut info = CredentialInfo::default();
        info.mechanism = mechanism.code();
        info.iterations = iterations;
        by_user.entry(user).or_default().push(info);
    }
    let result = |user: &str, infos: Option<&Vec<CredentialInfo>>, dup: bool| {
        let mut r = DescribeUserScramCredentialsResult::default();
        r.user = str_bytes(user);
        let fail = |r: &mut DescribeUserScramCredentialsResult, code: ResponseError, msg: &str| {
            r.error_code = code.code();
            r.error_message = Some(str_bytes(msg));
        };
        match infos {
            _ if dup => fail(
                &mut r,
                ResponseError::DuplicateResource,
                "the user is named more than once",
            ),
            None => fail(
                &mut r,
                ResponseError::ResourceNotFound,
                "the user has no SCRAM credentials",
            ),
            Some(infos) => r.credential_infos = infos.clone(),
        }
        r
    };
    match req.users.filter(|u| !u.is_empty()) {
        None => {
            resp.results = by_user
                .iter()
                .map(|(u, infos)| result(u, Some(infos), false))
                .collect();
        }
        Some(users) => {
            let mut seen = HashSet::new();
            let dups: HashSet<&str> = users
                .iter()
                .map(|u| u.name.as_str())
                .filter(|u| !seen.insert(*u))
                .collect();
            let mut reported = HashSet::new();
            for u in &users {
                let name = u.name.as_str();
                if reported.insert(name) {
                    resp.results
                        .push(result(name, by_user.get(name), dups.contains(name)));
                }
            }
        }
    }
    resp
}

/// One user's requested changes.
#[derive(Default)]
struct Changes {
    delete: Vec<Mechanism>,
    upsert: Vec<Credential>,
    error: Option<(ResponseError, String)>,
}

/// AlterUserScramCredentials: needs ALTER on the cluster.
pub async fn alter(
    broker: &Broker,
    ctx: &ConnContext,
    req: AlterUserScramCredentialsRequest,
    _version: i16,
) -> AlterUserScramCredentialsResponse {
    let allowed = ctx.may_on_cluster(broker, Operation::Alter).await;
    let mut users: BTreeMap<String, Changes> = BTreeMap::new();
    let mut touched: HashSet<(String, i8)> = HashSet::new();
    let note = |c: &mut Changes, code: ResponseError, msg: String| {
        c.error.get_or_insert((code, msg));
    };
    for d in &req.deletions {
        let c = users.entry(d.name.to_string()).or_default();
        if !touched.insert((d.name.to_string(), d.mechanism)) {
            note(c, ResponseError::DuplicateResource, dup_message());
        }
        match Mechanism::from_code(d.mechanism) {
            Some(m) => c.delete.push(m),
            None => note(
                c,
                ResponseError::UnsupportedSaslMechanism,
                bad_mechanism(d.mechanism),
            ),
        }
    }
    for u in &req.upsertions {
        let c = users.entry(u.name.to_string()).or_default();
        if !touched.insert((u.name.to_string(), u.mechanism)) {
            note(c, ResponseError::DuplicateResource, dup_message());
        }
        let Some(m) = Mechanism::from_code(u.mechanism) else {
            note(
                c,
                ResponseError::UnsupportedSaslMechanism,
                bad_mechanism(u.mechanism),
            );
            continue;
        };
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&u.iterations) {
            note(
                c,
                ResponseError::UnacceptableCredential,
                format!(
                    "{} iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}, not {}",
                    m.name(),
                    u.iterations
                ),
            );
            continue;
        }
        if u.salt.is_empty() || u.salted_password.is_empty() {
            note(
                c,
                ResponseError::UnacceptableCredential,
                "the salt and the salted password must not be empty".into(),
            );
            continue;
        }
        c.upsert.push(Credential::from_salted(
            m,
            u.salt.to_vec(),
            u.iterations,
            &u.salted_password,
        ));
    }
    let mut resp = AlterUserScramCredentialsResponse::default();
    for (user, changes) in users {
        let mut r = AlterUserScramCredentialsResult::default();
        r.user = str_bytes(user.clone());
        let outcome = match changes.error {
            _ if !allowed => {
                let e = cluster_refused(ctx, Operation::Alter);
                Err((e.code, e.message))
            }
            _ if user.is_empty() => Err((
                ResponseError::UnacceptableCredential,
                "the user name must not be empty".to_string(),
            )),
            Some(e) => Err(e),
            None => apply(broker, &user, changes.delete, changes.upsert).await,
        };
        if let Err((code, msg)) = outcome {
            r.error_code = code.code();
            r.error_message = Some(str_bytes(msg));
        } else {
            tracing::info!(target: "sluice::audit", user, by = %ctx.principal(), "SCRAM credentials changed");
        }
        resp.results.push(r);
    }
    resp
}

async fn apply(
    broker: &Broker,
    user: &str,
    delete: Vec<Mechanism>,
    upsert: Vec<Credential>,
) -> Result<(), (ResponseError, String)> {
    let store = |e| {
        let e = KafkaError::from(e);
        (e.code, e.message)
    };
    for m in &delete {
        if broker
            .credentials
            .get(user, *m)
            .await
            .map_err(store)?
            .is_none()
        {
            return Err((
                ResponseError::ResourceNotFound,
                format!("user '{user}' has no {} credential to delete", m.name()),
            ));
        }
    }
    for m in delete {
        broker.credentials.delete(user, m).await.map_err(store)?;
    }
    for c in &upsert {
        broker.credentials.upsert(user, c).await.map_err(store)?;
    }
    Ok(())
}

fn dup_message() -> String {
    "a user and mechanism appear more than once in the request".into()
}

fn bad_mechanism(code: i8) -> String {
    format!("unknown SCRAM mechanism {code}; known: 1 (SCRAM-SHA-256), 2 (SCRAM-SHA-512)")
}
