//! CreateAcls, DescribeAcls and DeleteAcls.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};

use super::{cluster_refused, str_bytes};
use crate::common::KafkaError;
use crate::kafka::session::ConnContext;
use crate::node::state::Broker;
use crate::security::acl::{Acl, Filter, Operation, new_acl};

fn disabled() -> KafkaError {
    KafkaError::new(
        ResponseError::SecurityDisabled,
        "no authorizer is configured (start the broker with --authorizer acl)",
    )
}

/// CreateAcls: needs ALTER on the cluster.
pub async fn create(
    broker: &Broker,
    ctx: &ConnContext,
    req: CreateAclsRequest,
    _version: i16,
) -> CreateAclsResponse {
    let allowed = ctx.may_on_cluster(broker, Operation::Alter).await;
    let principal = &*ctx.principal();
    let mut resp = CreateAclsResponse::default();
    for c in req.creations {
        let mut r = AclCreationResult::default();
        let outcome = if !broker.authorizer.enabled() {
            Err(disabled())
        } else if !allowed {
            Err(cluster_refused(ctx, Operation::Alter))
        } else {
            match new_acl(
                c.resource_type,
                &c.resource_name,
                c.resource_pattern_type,
                &c.principal,
                &c.host,
                c.operation,
                c.permission_type,
            ) {
                Err(why) => Err(KafkaError::new(ResponseError::InvalidRequest, why)),
                Ok(acl) => match broker.authorizer.create(&acl).await {
                    Ok(()) => {
                        audit("ACL created", principal, &acl);
                        Ok(())
                    }
                    Err(e) => Err(e.into()),
                },
            }
        };
        if let Err(e) = outcome {
            r.error_code = e.code.code();
            r.error_message = Some(str_bytes(e.message));
        }
        resp.results.push(r);
    }
    resp
}

fn audit(what: &str, by: &str, acl: &Acl) {
    tracing::info!(
        target: "sluice::audit",
        by,
        resource = %format!("{}:{}:{}", acl.resource_type.name(), acl.pattern.name(), acl.resource_name),
        principal = %acl.principal,
        host = %acl.host,
        operation = acl.operation.name(),
        permission = acl.permission.name(),
        "{what}"
    );
}

fn filter_of(
    resource_type: i8,
    resource_name: Option<&str>,
    pattern: i8,
    principal: Option<&str>,
    host: Option<&str>,
    operation: i8,
    permission: i8,
) -> Result<Filter, KafkaError> {
    let f = Filter {
        resource_type,
        resource_name: resource_name.map(str::to_owned),
        pattern,
        principal: principal.map(str::to_owned),
        host: host.map(str::to_owned),
        operation,
        permission,
    };
    f.check()
        .map_err(|why| KafkaError::new(ResponseError::InvalidRequest, why))?;
    Ok(f)
}

async fn matching(broker: &Broker, f: &Filter) -> Result<Vec<Acl>, KafkaError> {
    if !broker.authorizer.enabled() {
        return Err(disabled());
    }
    let all = broker.authorizer.acls().await?;
    Ok(all.iter().filter(|a| f.matches(a)).cloned().collect())
}

/// DescribeAcls: needs DESCRIBE on the cluster.
pub async fn describe(
    broker: &Broker,
    ctx: &ConnContext,
    req: DescribeAclsRequest,
    _version: i16,
) -> DescribeAclsResponse {
    let mut resp = DescribeAclsResponse::default();
    if !ctx.may_on_cluster(broker, Operation::Describe).await {
        let e = cluster_refused(ctx, Operation::Describe);
        resp.error_code = e.code.code();
        resp.error_message = Some(str_bytes(e.message));
        return resp;
    }
    let found = filter_of(
        req.resource_type_filter,
        req.resource_name_filter.as_deref(),
        req.pattern_type_filter,
        req.principal_filter.as_deref(),
        req.host_filter.as_deref(),
        req.operation,
        req.permission_type,
    );
    let found = match found {
        Ok(f) => matching(broker, &f).await,
        Err(e) => Err(e),
    };
    match found {
        Err(e) => {
            resp.error_code = e.code.code();
            resp.error_message = Some(str_bytes(e.message));
        }
        Ok(acls) => {
            let mut by_resource: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
            for a in acls {
                let mut d = AclDescription::default();
                d.principal = str_bytes(a.principal);
                d.host = str_bytes(a.host);
                d.operation = a.operation.code();
                d.permission_type = a.permission.code();
                by_resource
                    .entry((a.resource_type.code(), a.resource_name, a.pattern.code()))
                    .or_default()
                    .push(d);
            }
            resp.resources = by_resource
                .into_iter()
                .map(|((rtype, name, pattern), acls)| {
                    let mut r = DescribeAclsResource::default();
                    r.resource_type = rtype;
                    r.resource_name = str_bytes(name);
                    r.pattern_type = pattern;
                    r.acls = acls;
                    r
                })
                .collect();
        }
    }
    resp
}

/// DeleteAcls: needs ALTER on the cluster.
pub async fn delete(
    broker: &Broker,
    ctx: &ConnContext,
    req: DeleteAclsRequest,
    _version: i16,
) -> DeleteAclsResponse {
    let allowed = ctx.may_on_cluster(broker, Operation::Alter).await;
    let mut resp = DeleteAclsResponse::default();
    let principal = ctx.principal();
    for f in req.filters {
        if !allowed && broker.authorizer.enabled() {
            let e = cluster_refused(ctx, Operation::Alter);
            let mut r = DeleteAclsFilterResult::default();
            r.error_code = e.code.code();
            r.error_message = Some(str_bytes(e.message));
            resp.filter_results.push(r);
            continue;
        }
        resp.filter_results
            .push(delete_one(broker, &principal, &f).await);
    }
    resp
}

async fn delete_one(broker: &Broker, by: &str, f: &DeleteAclsFilter) -> DeleteAclsFilterResult {
    let mut r = DeleteAclsFilterResult::default();
    let found = match filter_of(
        f.resource_type_filter,
        f.resource_name_filter.as_deref(),
        f.pattern_type_filter,
        f.principal_filter.as_deref(),
        f.host_filter.as_deref(),
        f.operation,
        f.permission_type,
    ) {
        Ok(f) => matching(broker, &f).await,
        Err(e) => Err(e),
    };
    let acls = match found {
        Ok(a) => a,
        Err(e) => {
            r.error_code = e.code.code();
            r.error_message = Some(str_bytes(e.message));
            return r;
        }
    };
    for a in acls {
        let mut m = DeleteAclsMatchingAcl::default();
        if let Err(e) = broker.authorizer.delete(&a).await {
            let e = KafkaError::from(e);
            m.error_code = e.code.code();
            m.error_message = Some(str_bytes(e.message));
        } else {
            audit("ACL deleted", by, &a);
        }
        m.resource_type = a.resource_type.code();
        m.resource_name = str_bytes(a.resource_name);
        m.pattern_type = a.pattern.code();
        m.principal = str_bytes(a.principal);
        m.host = str_bytes(a.host);
        m.operation = a.operation.code();
        m.permission_type = a.permission.code();
        r.matching_acls.push(m);
    }
    r
}
