//! `sluice quotas …`: client quotas (DescribeClientQuotas /
//! AlterClientQuotas) over the Kafka protocol, as `kafka-configs
//! --entity-type users/clients` manages them.

use anyhow::bail;
use clap::{Args, Subcommand};
use kafka_protocol::messages::{self as m};

use crate::cli::client::{Client, table};
use crate::cli::{Target, check, out, s};
use crate::policy::quotas::{CLIENT_ID, USER};

/// The entity a quota is for: a user, a client id, or both; either may be
/// the default entity.
#[derive(Debug, Clone, Args)]
pub struct EntityArgs {
    /// The user (principal name without `User:`).
    #[arg(long, value_name = "NAME", conflicts_with = "default_user")]
    pub user: Option<String>,
    /// The default user entity: users without a quota of their own.
    #[arg(long)]
    pub default_user: bool,
    /// The client id.
    #[arg(long, value_name = "ID", conflicts_with = "default_client")]
    pub client_id: Option<String>,
    /// The default client-id entity: client ids without a quota of their own.
    #[arg(long)]
    pub default_client: bool,
}

impl EntityArgs {
    fn entity(&self) -> Vec<(&'static str, Option<String>)> {
        let mut e = Vec::new();
        if self.user.is_some() || self.default_user {
            e.push((USER, self.user.clone()));
        }
        if self.client_id.is_some() || self.default_client {
            e.push((CLIENT_ID, self.client_id.clone()));
        }
        e
    }
}

#[derive(Debug, Subcommand)]
pub enum QuotasCmd {
    /// List client quotas (all, or those of the given entity exactly).
    List {
        #[command(flatten)]
        entity: EntityArgs,
        #[command(flatten)]
        target: Target,
    },
    /// Set quotas of an entity: producer_byte_rate, consumer_byte_rate,
    /// request_percentage, controller_mutation_rate.
    Set {
        #[command(flatten)]
        entity: EntityArgs,
        /// KEY=VALUE (repeatable), e.g. producer_byte_rate=1048576.
        #[arg(required = true, value_name = "KEY=VALUE")]
        quotas: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Remove quotas of an entity.
    Remove {
        #[command(flatten)]
        entity: EntityArgs,
        /// Quota keys to remove.
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
}

fn describe_name(name: &Option<kafka_protocol::protocol::StrBytes>) -> String {
    name.as_ref()
        .map_or_else(|| "<default>".to_string(), |n| n.to_string())
}

async fn alter(
    target: &Target,
    entity: &EntityArgs,
    ops: Vec<(String, Option<f64>)>,
) -> anyhow::Result<()> {
    let parts = entity.entity();
    if parts.is_empty() {
        bail!(
            "name the entity: --user NAME, --default-user, --client-id ID and/or --default-client"
        );
    }
    let mut entry = m::alter_client_quotas_request::EntryData::default();
    for (t, n) in parts {
        let mut e = m::alter_client_quotas_request::EntityData::default();
        e.entity_type = s(t);
        e.entity_name = n.map(s);
        entry.entity.push(e);
    }
    for (key, value) in ops {
        let mut op = m::alter_client_quotas_request::OpData::default();
        op.key = s(key);
        op.remove = value.is_none();
        op.value = value.unwrap_or(0.0);
        entry.ops.push(op);
    }
    let mut req = m::AlterClientQuotasRequest::default();
    req.entries.push(entry);
    let mut c = Client::connect(&target.bootstrap).await?;
    let resp = c.send(&req, 1).await?;
    for e in &resp.entries {
        check(
            e.error_code,
            e.error_message.as_ref(),
            "alter client quotas",
        )?;
    }
    Ok(())
}

pub async fn quotas(cmd: QuotasCmd) -> anyhow::Result<()> {
    match cmd {
        QuotasCmd::List { entity, target } => {
            let mut req = m::DescribeClientQuotasRequest::default();
            let parts = entity.entity();
            req.strict = !parts.is_empty();
            for (t, n) in parts {
                let mut c = m::describe_client_quotas_request::ComponentData::default();
                c.entity_type = s(t);
                c.match_type = if n.is_some() { 0 } else { 1 };
                c._match = n.map(s);
                req.components.push(c);
            }
            let mut c = Client::connect(&target.bootstrap).await?;
            let resp = c.send(&req, 1).await?;
            check(
                resp.error_code,
                resp.error_message.as_ref(),
                "describe client quotas",
            )?;
            let mut rows = Vec::new();
            for entry in resp.entries.unwrap_or_default() {
                let name = |t: &str| {
                    entry
                        .entity
                        .iter()
                        .find(|e| e.entity_type.as_str() == t)
                        .map_or_else(|| "-".to_string(), |e| describe_name(&e.entity_name))
                };
                for v in &entry.values {
                    rows.push(vec![
                        name(USER),
                        name(CLIENT_ID),
                        v.key.to_string(),
                        v.value.to_string(),
                    ]);
                }
            }
            rows.sort();
            out(&table(&["USER", "CLIENT ID", "QUOTA", "VALUE"], &rows));
        }
        QuotasCmd::Set {
            entity,
            quotas,
            target,
        } => {
            let mut ops = Vec::new();
            for kv in &quotas {
                let Some((k, v)) = kv.split_once('=') else {
                    bail!("'{kv}' is not KEY=VALUE");
                };
                let value: f64 = v
                    .parse()
                    .map_err(|_| anyhow::anyhow!("'{v}' is not a number (in '{kv}')"))?;
                ops.push((k.to_string(), Some(value)));
            }
            alter(&target, &entity, ops).await?;
            out("Quotas set.\n");
        }
        QuotasCmd::Remove {
            entity,
            keys,
            target,
        } => {
            alter(
                &target,
                &entity,
                keys.into_iter().map(|k| (k, None)).collect(),
            )
            .await?;
            out("Quotas removed.\n");
        }
    }
    Ok(())
}
