//! Kafka ACLs: the rules, their storage, and the authorizer every handler
//! asks before acting.
//!
//! The rules are Kafka's (`StandardAuthorizer`): super users may do
//! anything; a DENY that matches wins over any ALLOW; an operation is
//! allowed when an ALLOW matches it (READ, WRITE, DELETE and ALTER imply
//! DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS; ALL matches every
//! operation); a resource no ACL names at all is open only with
//! `allow_everyone_if_no_acl_found`. ACLs match a resource by its literal
//! name, the literal wildcard `*`, or a prefix (PREFIXED).

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sqlx::Row;

use crate::security::settings::Security;
use crate::store::meta::{MetaStore, Result};

/// Declares a Kafka enum with its protocol codes and its printed names.
macro_rules! kafka_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $code:literal, $text:literal;)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),* }

        impl $name {
            pub fn code(self) -> i8 {
                match self { $($name::$variant => $code),* }
            }
            pub fn from_code(code: i8) -> Option<$name> {
                match code { $($code => Some($name::$variant),)* _ => None }
            }
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
            pub fn parse(text: &str) -> Option<$name> {
                let t = text.to_ascii_uppercase().replace('-', "_");
                match t.as_str() { $($text => Some($name::$variant),)* _ => None }
            }
        }
    };
}

kafka_enum!(
    /// The resources ACLs protect.
    ResourceType {
        Topic = 2, "TOPIC";
        Group = 3, "GROUP";
        Cluster = 4, "CLUSTER";
        TransactionalId = 5, "TRANSACTIONAL_ID";
    }
);

kafka_enum!(
    PatternType {
        Literal = 3, "LITERAL";
        Prefixed = 4, "PREFIXED";
    }
);

kafka_enum!(
    Operation {
        All = 2, "ALL";
        Read = 3, "READ";
        Write = 4, "WRITE";
        Create = 5, "CREATE";
        Delete = 6, "DELETE";
        Alter = 7, "ALTER";
        Describe = 8, "DESCRIBE";
        ClusterAction = 9, "CLUSTER_ACTION";
        DescribeConfigs = 10, "DESCRIBE_CONFIGS";
        AlterConfigs = 11, "ALTER_CONFIGS";
        IdempotentWrite = 12, "IDEMPOTENT_WRITE";
    }
);

kafka_enum!(
    Permission {
        Deny = 2, "DENY";
        Allow = 3, "ALLOW";
    }
);

impl Operation {
    /// The operation as a verb, for error messages.
    pub fn verb(self) -> &'static str {
        match self {
            Operation::All => "do everything on",
            Operation::Read => "read",
            Operation::Write => "write to",
            Operation::Create => "create",
            Operation::Delete => "delete",
            Operation::Alter => "alter",
            Operation::Describe => "describe",
            Operation::ClusterAction => "run cluster actions on",
            Operation::DescribeConfigs => "describe the configs of",
            Operation::AlterConfigs => "alter the configs of",
            Operation::IdempotentWrite => "write idempotently to",
        }
    }
}

/// Filter codes shared by DescribeAcls and DeleteAcls.
pub const ANY: i8 = 1;
/// Pattern filter MATCH: ACLs that would apply to the named resource.
pub const MATCH: i8 = 2;

/// The one cluster resource's name.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// One ACL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Acl {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern: PatternType,
    pub principal: String,
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl Acl {
    /// Whether this ACL's resource pattern covers the resource `name`.
    fn covers(&self, rtype: ResourceType, name: &str) -> bool {
        self.resource_type == rtype
            && match self.pattern {
                PatternType::Literal => self.resource_name == name || self.resource_name == "*",
                PatternType::Prefixed => name.starts_with(&self.resource_name),
            }
    }

    fn applies_to(&self, principal: &str, host: &str) -> bool {
        (self.principal == principal || self.principal == "User:*")
            && (self.host == host || self.host == "*")
    }
}

/// A DescribeAcls / DeleteAcls filter, in protocol codes.
#[derive(Debug, Clone)]
pub struct Filter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission: i8,
}

impl Filter {
    /// Checks the codes; the error says what is wrong.
    pub fn check(&self) -> std::result::Result<(), String> {
        let known = |code: i8, ok: bool, what: &str| {
            if code == ANY || ok {
                Ok(())
            } else {
                Err(format!("unknown {what} {code} in the filter"))
            }
        };
        known(
            self.resource_type,
            ResourceType::from_code(self.resource_type).is_some(),
            "resource type",
        )?;
        known(
            self.pattern,
            self.pattern == MATCH || PatternType::from_code(self.pattern).is_some(),
            "pattern type",
        )?;
        known(
            self.operation,
            Operation::from_code(self.operation).is_some(),
            "operation",
        )?;
        known(
            self.permission,
            Permission::from_code(self.permission).is_some(),
            "permission",
        )
    }

    pub fn matches(&self, acl: &Acl) -> bool {
        let code_ok = |want: i8, have: i8| want == ANY || want == have;
        let name_ok = match (&self.resource_name, self.pattern) {
            (None, _) => true,
            (Some(n), MATCH) => acl.covers(acl.resource_type, n),
            (Some(n), _) => *n == acl.resource_name,
        };
        let pattern_ok =
            self.pattern == ANY || self.pattern == MATCH || self.pattern == acl.pattern.code();
        code_ok(self.resource_type, acl.resource_type.code())
            && name_ok
            && pattern_ok
            && self.principal.as_ref().is_none_or(|p| *p == acl.principal)
            && self.host.as_ref().is_none_or(|h| *h == acl.host)
            && code_ok(self.operation, acl.operation.code())
            && code_ok(self.permission, acl.permission.code())
    }
}

/// An ACL from CreateAcls, checked; the error says what is wrong.
#[allow(clippy::too_many_arguments)]
pub fn new_acl(
    resource_type: i8,
    resource_name: &str,
    pattern: i8,
    principal: &str,
    host: &str,
    operation: i8,
    permission: i8,
) -> std::result::Result<Acl, String> {
    let rtype = ResourceType::from_code(resource_type)
        .ok_or_else(|| format!("resource type {resource_type} cannot carry ACLs here"))?;
    let pattern = PatternType::from_code(pattern)
        .ok_or_else(|| format!("pattern type {pattern} is not LITERAL (3) or PREFIXED (4)"))?;
    let operation = Operation::from_code(operation)
        .ok_or_else(|| format!("operation {operation} is not one an ACL can name"))?;
    let permission = Permission::from_code(permission)
        .ok_or_else(|| format!("permission {permission} is not ALLOW (3) or DENY (2)"))?;
    if resource_name.is_empty() {
        return Err("the resource name must not be empty".into());
    }
    if rtype == ResourceType::Cluster && resource_name != CLUSTER_NAME {
        return Err(format!(
            "the cluster resource is named '{CLUSTER_NAME}', not '{resource_name}'"
        ));
    }
    match principal.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
        _ => {
            return Err(format!(
                "principal '{principal}' is not TYPE:NAME (e.g. User:alice, User:*)"
            ));
        }
    }
    if host.is_empty() {
        return Err("the host must be an address or '*'".into());
    }
    Ok(Acl {
        resource_type: rtype,
        resource_name: resource_name.to_owned(),
        pattern,
        principal: principal.to_owned(),
        host: host.to_owned(),
        operation,
        permission,
    })
}

/// Whether an ALLOW for `granted` allows `wanted`.
fn implies(granted: Operation, wanted: Operation) -> bool {
    use Operation::*;
    granted == All
        || granted == wanted
        || (wanted == Describe && matches!(granted, Read | Write | Delete | Alter))
        || (wanted == DescribeConfigs && granted == AlterConfigs)
}

/// The decision for one request on one resource.
pub fn decide(
    acls: &[Acl],
    allow_if_none: bool,
    principal: &str,
    host: &str,
    op: Operation,
    rtype: ResourceType,
    name: &str,
) -> bool {
    let mut any = false;
    let mut allowed = false;
    for acl in acls.iter().filter(|a| a.covers(rtype, name)) {
        any = true;
        if !acl.applies_to(principal, host) {
            continue;
        }
        match acl.permission {
            Permission::Deny if acl.operation == Operation::All || acl.operation == op => {
                return false;
            }
            Permission::Deny => {}
            Permission::Allow => allowed |= implies(acl.operation, op),
        }
    }
    allowed || (!any && allow_if_none)
}

/// With other brokers changing ACLs, the rules are read again after this.
const RELOAD_AFTER: Duration = Duration::from_secs(2);

/// The authorizer: the rules, cached from the metadata store.
pub struct Authorizer {
    security: Arc<Security>,
    meta: MetaStore,
    cache: RwLock<Option<(Arc<Vec<Acl>>, Instant)>>,
}

impl Authorizer {
    pub fn new(security: Arc<Security>, meta: MetaStore) -> Authorizer {
        Authorizer {
            security,
            meta,
            cache: RwLock::new(None),
        }
    }

    pub fn enabled(&self) -> bool {
        self.security.acl_authorizer
    }

    /// Whether `principal`, connected from `host`, may do `op` on the
    /// resource. Always true with the authorizer off; false when the rules
    /// cannot be read.
    pub async fn allows(
        &self,
        principal: &str,
        host: IpAddr,
        op: Operation,
        rtype: ResourceType,
        name: &str,
    ) -> bool {
        self.check(principal, host, op, rtype, name, true).await
    }

    /// As [`Authorizer::allows`], for leaving resources out of a listing:
    /// a refusal is not an event worth an audit line (a Metadata request
    /// for all topics would log one per topic, every refresh).
    pub async fn shows(
        &self,
        principal: &str,
        host: IpAddr,
        op: Operation,
        rtype: ResourceType,
        name: &str,
    ) -> bool {
        self.check(principal, host, op, rtype, name, false).await
    }

    async fn check(
        &self,
        principal: &str,
        host: IpAddr,
        op: Operation,
        rtype: ResourceType,
        name: &str,
        audit: bool,
    ) -> bool {
        if !self.enabled() || self.security.is_super_user(principal) {
            return true;
        }
        let acls = match self.acls().await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "cannot read ACLs; denying the request");
                return false;
            }
        };
        let ok = decide(
            &acls,
            self.security.allow_everyone_if_no_acl_found,
            principal,
            &host.to_string(),
            op,
            rtype,
            name,
        );
        if !ok && audit {
            tracing::info!(
                target: "sluice::audit",
                principal,
                %host,
                operation = op.name(),
                resource = %format!("{}:{name}", rtype.name()),
                "denied by ACLs"
            );
            metrics::counter!("sluice_authorization_denials_total").increment(1);
        }
        ok
    }

    /// Whether some ALLOW lets `principal` write to some topic (Kafka 3
    /// lets such principals produce idempotently).
    pub async fn writes_some_topic(&self, principal: &str, host: IpAddr) -> bool {
        if !self.enabled() || self.security.is_super_user(principal) {
            return true;
        }
        let Ok(acls) = self.acls().await else {
            return false;
        };
        let host = host.to_string();
        acls.iter().any(|a| {
            a.resource_type == ResourceType::Topic
                && a.permission == Permission::Allow
                && matches!(a.operation, Operation::Write | Operation::All)
                && a.applies_to(principal, &host)
        })
    }

    /// Every ACL.
    pub async fn acls(&self) -> Result<Arc<Vec<Acl>>> {
        if let Some((acls, at)) = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            && at.elapsed() < RELOAD_AFTER
        {
            return Ok(acls.clone());
        }
        let rows = sqlx::query(
            "SELECT resource_type, resource_name, pattern_type, principal, host, operation, permission
             FROM acls",
        )
        .fetch_all(self.meta.pool())
        .await?;
        let mut acls: Vec<Acl> = rows
            .iter()
            .filter_map(|r| {
                Some(Acl {
                    resource_type: ResourceType::parse(&r.get::<String, _>(0))?,
                    resource_name: r.get(1),
                    pattern: PatternType::parse(&r.get::<String, _>(2))?,
                    principal: r.get(3),
                    host: r.get(4),
                    operation: Operation::parse(&r.get::<String, _>(5))?,
                    permission: Permission::parse(&r.get::<String, _>(6))?,
                })
            })
            .collect();
        acls.sort();
        let acls = Arc::new(acls);
        *self.cache.write().unwrap_or_else(|e| e.into_inner()) =
            Some((acls.clone(), Instant::now()));
        Ok(acls)
    }

    /// Adds an ACL (adding one that exists changes nothing).
    pub async fn create(&self, acl: &Acl) -> Result<()> {
        sqlx::query(
            "INSERT INTO acls (resource_type, resource_name, pattern_type, principal, host, operation, permission)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(acl.resource_type.name())
        .bind(&acl.resource_name)
        .bind(acl.pattern.name())
        .bind(&acl.principal)
        .bind(&acl.host)
        .bind(acl.operation.name())
        .bind(acl.permission.name())
        .execute(self.meta.pool())
        .await?;
        self.invalidate();
        Ok(())
    }

    pub async fn delete(&self, acl: &Acl) -> Result<()> {
        sqlx::query(
            "DELETE FROM acls WHERE resource_type = $1 AND resource_name = $2 AND pattern_type = $3
             AND principal = $4 AND host = $5 AND operation = $6 AND permission = $7",
        )
        .bind(acl.resource_type.name())
        .bind(&acl.resource_name)
        .bind(acl.pattern.name())
        .bind(&acl.principal)
        .bind(&acl.host)
        .bind(acl.operation.name())
        .bind(acl.permission.name())
        .execute(self.meta.pool())
        .await?;
        self.invalidate();
        Ok(())
    }

    fn invalidate(&self) {
        *self.cache.write().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(name: &str, pattern: PatternType, who: &str, op: Operation, perm: Permission) -> Acl {
        Acl {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern,
            principal: who.into(),
            host: "*".into(),
            operation: op,
            permission: perm,
        }
    }

    #[test]
    fn follows_kafkas_rules() {
        use Operation::*;
        use PatternType::*;
        use Permission::*;
        let acls = vec![
            acl("orders", Literal, "User:alice", Read, Allow),
            acl("pay.", Prefixed, "User:*", Write, Allow),
            acl("pay.secret", Literal, "User:bob", All, Deny),
        ];
        let d = |who: &str, op, name: &str| {
            decide(
                &acls,
                false,
                who,
                "127.0.0.1",
                op,
                ResourceType::Topic,
                name,
            )
        };
        assert!(d("User:alice", Read, "orders"));
        // READ implies DESCRIBE, not WRITE.
        assert!(d("User:alice", Describe, "orders"));
        assert!(!d("User:alice", Write, "orders"));
        assert!(!d("User:bob", Read, "orders"));
        // A prefix for everyone, and a DENY that wins over it.
        assert!(d("User:bob", Write, "pay.cards"));
        assert!(!d("User:bob", Write, "pay.secret"));
        assert!(d("User:alice", Write, "pay.secret"));
        // Resources no ACL names: closed, unless configured open.
        assert!(!d("User:alice", Read, "other"));
        assert!(decide(
            &acls,
            true,
            "User:alice",
            "h",
            Read,
            ResourceType::Topic,
            "other"
        ));
        // A resource some ACL names stays closed to others even then.
        assert!(!decide(
            &acls,
            true,
            "User:bob",
            "h",
            Read,
            ResourceType::Topic,
            "orders"
        ));
    }

    #[test]
    fn filters_match_like_kafkas() {
        let a = acl(
            "pay.",
            PatternType::Prefixed,
            "User:bob",
            Operation::Write,
            Permission::Allow,
        );
        let mut f = Filter {
            resource_type: ANY,
            resource_name: Some("pay.cards".into()),
            pattern: MATCH,
            principal: None,
            host: None,
            operation: ANY,
            permission: ANY,
        };
        assert!(f.matches(&a));
        f.pattern = PatternType::Literal.code();
        assert!(!f.matches(&a));
        f.pattern = ANY;
        f.resource_name = Some("pay.".into());
        assert!(f.matches(&a));
        f.principal = Some("User:alice".into());
        assert!(!f.matches(&a));
    }

    #[test]
    fn checks_new_acls() {
        assert!(new_acl(2, "t", 3, "User:a", "*", 3, 3).is_ok());
        assert!(new_acl(4, "other", 3, "User:a", "*", 3, 3).is_err());
        assert!(new_acl(2, "t", 1, "User:a", "*", 3, 3).is_err());
        assert!(new_acl(2, "t", 3, "alice", "*", 3, 3).is_err());
        assert!(new_acl(2, "t", 3, "User:a", "*", 1, 3).is_err());
    }
}
