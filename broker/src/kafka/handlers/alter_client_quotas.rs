//! AlterClientQuotas (KIP-546): set or remove quotas of user, client-id
//! and ip entities, each entry checked and applied on its own.

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_client_quotas_request::EntryData as RequestEntry;
use kafka_protocol::messages::alter_client_quotas_response::{EntityData, EntryData};
use kafka_protocol::messages::{AlterClientQuotasRequest, AlterClientQuotasResponse};

use super::str_bytes;
use crate::common::KafkaError;
use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::policy::quotas::{self, Entity};
use crate::security::acl::Operation;

async fn alter(
    broker: &Broker,
    entry: &RequestEntry,
    validate_only: bool,
) -> Result<(), KafkaError> {
    let invalid = |m: String| KafkaError::new(ResponseError::InvalidRequest, m);
    let mut entity = Entity::new();
    for e in &entry.entity {
        let t = e.entity_type.to_string();
        if entity
            .insert(t.clone(), e.entity_name.as_ref().map(|n| n.to_string()))
            .is_some()
        {
            return Err(invalid(format!("entity type '{t}' appears twice")));
        }
    }
    quotas::validate_entity(&entity).map_err(invalid)?;
    let mut seen = BTreeSet::new();
    let mut ops = Vec::with_capacity(entry.ops.len());
    for op in &entry.ops {
        let key = op.key.to_string();
        if !seen.insert(key.clone()) {
            return Err(invalid(format!("quota key '{key}' appears twice")));
        }
        if op.remove {
            // A removal names a valid key too; any positive value checks it.
            quotas::validate_value(&entity, &key, 1.0).map_err(invalid)?;
            ops.push((key, None));
        } else {
            quotas::validate_value(&entity, &key, op.value).map_err(invalid)?;
            ops.push((key, Some(op.value)));
        }
    }
    if !validate_only && !ops.is_empty() {
        broker.quotas.alter(&entity, &ops).await?;
        tracing::info!(entity = ?entity, "altered client quotas");
    }
    Ok(())
}

pub async fn handle(
    broker: &Broker,
    ctx: &ConnContext,
    req: AlterClientQuotasRequest,
    _version: i16,
) -> AlterClientQuotasResponse {
    let mut resp = AlterClientQuotasResponse::default();
    let allowed = ctx.may_on_cluster(broker, Operation::AlterConfigs).await;
    for entry in &req.entries {
        let mut r = EntryData::default();
        r.entity = entry
            .entity
            .iter()
            .map(|e| {
                let mut d = EntityData::default();
                d.entity_type = e.entity_type.clone();
                d.entity_name = e.entity_name.clone();
                d
            })
            .collect();
        let outcome = if allowed {
            alter(broker, entry, req.validate_only).await
        } else {
            Err(super::cluster_refused(ctx, Operation::AlterConfigs))
        };
        if let Err(e) = outcome {
            r.error_code = e.code.code();
            r.error_message = Some(str_bytes(e.message));
        }
        resp.entries.push(r);
    }
    resp
}
