//! DescribeClientQuotas (KIP-546): the stored quotas of the entities a
//! filter matches.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{DescribeClientQuotasRequest, DescribeClientQuotasResponse};

use super::str_bytes;
use crate::common::KafkaError;
use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::policy::quotas::{CLIENT_ID, Entity, IP, USER};
use crate::security::acl::Operation;

const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_ANY: i8 = 2;

/// What one filter component asks of an entity's `type` slot.
enum Want {
    Exact(String),
    Default,
    Any,
}

fn filter(req: &DescribeClientQuotasRequest) -> Result<Vec<(String, Want)>, KafkaError> {
    let invalid = |m: String| KafkaError::new(ResponseError::InvalidRequest, m);
    let mut out: Vec<(String, Want)> = Vec::new();
    for c in &req.components {
        let t = c.entity_type.to_string();
        if ![USER, CLIENT_ID, IP].contains(&t.as_str()) {
            return Err(invalid(format!(
                "unknown quota entity type '{t}' (expected user, client-id or ip)"
            )));
        }
        if out.iter().any(|(seen, _)| *seen == t) {
            return Err(invalid(format!(
                "entity type '{t}' appears twice in the filter"
            )));
        }
        let want = match (c.match_type, &c._match) {
            (MATCH_EXACT, Some(name)) => Want::Exact(name.to_string()),
            (MATCH_EXACT, None) => {
                return Err(invalid(format!("an exact match on '{t}' needs a name")));
            }
            (MATCH_DEFAULT, _) => Want::Default,
            (MATCH_ANY, _) => Want::Any,
            (other, _) => return Err(invalid(format!("unknown match type {other}"))),
        };
        out.push((t, want));
    }
    Ok(out)
}

fn matches(entity: &Entity, wanted: &[(String, Want)], strict: bool) -> bool {
    let slots_match = wanted.iter().all(|(t, want)| match (want, entity.get(t)) {
        (Want::Exact(name), Some(Some(n))) => n == name,
        (Want::Default, Some(None)) => true,
        (Want::Any, Some(_)) => true,
        _ => false,
    });
    slots_match && (!strict || entity.keys().all(|t| wanted.iter().any(|(w, _)| w == t)))
}

pub async fn handle(
    broker: &Broker,
    ctx: &ConnContext,
    req: DescribeClientQuotasRequest,
    _version: i16,
) -> DescribeClientQuotasResponse {
    let mut resp = DescribeClientQuotasResponse::default();
    let result = async {
        if !ctx.may_on_cluster(broker, Operation::DescribeConfigs).await {
            return Err(super::cluster_refused(ctx, Operation::DescribeConfigs));
        }
        let wanted = filter(&req)?;
        let table = broker.quotas.all().await?;
        Ok(table
            .entries
            .values()
            .filter(|(entity, values)| !values.is_empty() && matches(entity, &wanted, req.strict))
            .map(|(entity, values)| {
                let mut e = EntryData::default();
                e.entity = entity
                    .iter()
                    .map(|(t, n)| {
                        let mut d = EntityData::default();
                        d.entity_type = str_bytes(t.clone());
                        d.entity_name = n.clone().map(str_bytes);
                        d
                    })
                    .collect();
                e.values = values
                    .iter()
                    .map(|(k, v)| {
                        let mut d = ValueData::default();
                        d.key = str_bytes(k.clone());
                        d.value = *v;
                        d
                    })
                    .collect();
                e
            })
            .collect::<Vec<_>>())
    }
    .await;
    match result {
        Ok(entries) => resp.entries = Some(entries),
        Err(e) => {
            resp.error_code = e.code.code();
            resp.error_message = Some(str_bytes(e.message));
            resp.entries = None;
        }
    }
    resp
}
