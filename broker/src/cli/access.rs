//! `sluice users …` and `sluice acls …`: SCRAM users
//! (DescribeUserScramCredentials / AlterUserScramCredentials) and ACLs
//! (DescribeAcls / CreateAcls / DeleteAcls) over the Kafka protocol, as
//! Kafka's own tools manage them. A password is salted here, in the
//! command; only the salted form travels to the broker.

use anyhow::{Context, bail};
use clap::Subcommand;
use kafka_protocol::messages::{self as m};

use clap::Args;

use crate::cli::client::{Client, table};
use crate::cli::{HttpTarget, Target, check, http_request, out, s};
use crate::security::acl::{self, CLUSTER_NAME, Operation, PatternType, Permission, ResourceType};
use crate::security::scram::{MAX_ITERATIONS, MIN_ITERATIONS, Mechanism};

#[derive(Debug, Subcommand)]
pub enum UsersCmd {
    /// List SCRAM users with their mechanisms and iteration counts.
    List(Target),
    /// Create a user or change their password; the password is read from
    /// the first line of standard input.
    Set {
        name: String,
        /// Write to this metadata store directly instead of asking a broker
        /// (e.g. `sqlite://sluice-data/metadata.db`): how the first admin is
        /// made before any broker lets anyone in.
        #[arg(long, value_name = "URL")]
        metadata_url: Option<String>,
        /// SCRAM-SHA-256, SCRAM-SHA-512 or both (one credential each).
        #[arg(long, default_value = "both")]
        mechanism: String,
        #[arg(long, default_value_t = 8192)]
        iterations: i32,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a user's credentials.
    Delete {
        name: String,
        /// SCRAM-SHA-256, SCRAM-SHA-512 or both.
        #[arg(long, default_value = "both")]
        mechanism: String,
        #[command(flatten)]
        target: Target,
    },
}

fn mechanisms(spec: &str) -> anyhow::Result<Vec<Mechanism>> {
    if spec.eq_ignore_ascii_case("both") {
        return Ok(Mechanism::ALL.to_vec());
    }
    match Mechanism::from_name(&spec.to_ascii_uppercase()) {
        Some(m) => Ok(vec![m]),
        None => bail!("unknown mechanism '{spec}': use SCRAM-SHA-256, SCRAM-SHA-512 or both"),
    }
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("no password on standard input (e.g. `echo \"$PASSWORD\" | sluice users set NAME`)");
    }
    Ok(password)
}

pub async fn users(cmd: UsersCmd) -> anyhow::Result<()> {
    match cmd {
        UsersCmd::List(target) => {
            let mut c = Client::connect(&target.bootstrap).await?;
            let resp = c
                .send(&m::DescribeUserScramCredentialsRequest::default(), 0)
                .await?;
            check(resp.error_code, resp.error_message.as_ref(), "list users")?;
            let mut rows = Vec::new();
            for r in &resp.results {
                check(
                    r.error_code,
                    r.error_message.as_ref(),
                    &format!("user {}", r.user),
                )?;
                for info in &r.credential_infos {
                    let name = Mechanism::from_code(info.mechanism)
                        .map(|m| m.name().to_string())
                        .unwrap_or_else(|| format!("mechanism {}", info.mechanism));
                    rows.push(vec![r.user.to_string(), name, info.iterations.to_string()]);
                }
            }
            out(&table(&["USER", "MECHANISM", "ITERATIONS"], &rows));
        }
        UsersCmd::Set {
            name,
            metadata_url,
            mechanism,
            iterations,
            target,
        } => {
            let mechs = mechanisms(&mechanism)?;
            if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
                bail!("--iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}");
            }
            let password = read_password()?;
            if let Some(url) = metadata_url {
                let meta = crate::store::meta::MetaStore::connect(&url)
                    .await
                    .with_context(|| format!("cannot open the metadata store at {url}"))?;
                let store = crate::security::scram::Credentials::new(meta);
                for mech in mechs {
                    let c = crate::security::scram::Credential::from_password(
                        mech, &password, iterations,
                    );
                    store.upsert(&name, &c).await?;
                }
                out(&format!("user '{name}' set in {url}\n"));
                return Ok(());
            }
            let mut req = m::AlterUserScramCredentialsRequest::default();
            for mech in mechs {
                let salt: [u8; 24] = rand::random();
                let salted = mech.salted_password(password.as_bytes(), &salt, iterations);
                let mut u =
                    m::alter_user_scram_credentials_request::ScramCredentialUpsertion::default();
                u.name = s(name.clone());
                u.mechanism = mech.code();
                u.iterations = iterations;
                u.salt = salt.to_vec().into();
                u.salted_password = salted.into();
                req.upsertions.push(u);
            }
            alter(&target, &req, &name).await?;
            out(&format!("user '{name}' set\n"));
        }
        UsersCmd::Delete {
            name,
            mechanism,
            target,
        } => {
            let mut req = m::AlterUserScramCredentialsRequest::default();
            for mech in mechanisms(&mechanism)? {
                let mut d =
                    m::alter_user_scram_credentials_request::ScramCredentialDeletion::default();
                d.name = s(name.clone());
                d.mechanism = mech.code();
                req.deletions.push(d);
            }
            alter(&target, &req, &name).await?;
            out(&format!("user '{name}' deleted\n"));
        }
    }
    Ok(())
}

async fn alter(
    target: &Target,
    req: &m::AlterUserScramCredentialsRequest,
    name: &str,
) -> anyhow::Result<()> {
    let mut c = Client::connect(&target.bootstrap).await?;
    let resp = c.send(req, 0).await?;
    for r in &resp.results {
        check(
            r.error_code,
            r.error_message.as_ref(),
            &format!("user {name}"),
        )?;
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum AclsCmd {
    /// List ACLs (all, or those on one resource).
    List {
        #[command(flatten)]
        resource: ResourceArgs,
        /// Only this principal's ACLs.
        #[arg(long)]
        principal: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Add ACLs: one per operation.
    Add {
        #[command(flatten)]
        rule: RuleArgs,
        #[command(flatten)]
        target: Target,
    },
    /// Remove the ACLs that match exactly.
    Remove {
        #[command(flatten)]
        rule: RuleArgs,
        #[command(flatten)]
        target: Target,
    },
}

/// Which resource: one of --topic, --group, --transactional-id, --cluster.
#[derive(Debug, Clone, Args)]
pub struct ResourceArgs {
    #[arg(long, group = "resource")]
    topic: Option<String>,
    #[arg(long, group = "resource")]
    group: Option<String>,
    #[arg(long, group = "resource")]
    transactional_id: Option<String>,
    #[arg(long, group = "resource")]
    cluster: bool,
    /// The name is a prefix: the ACL covers every resource it starts.
    #[arg(long)]
    prefixed: bool,
}

impl ResourceArgs {
    fn resource(&self) -> Option<(ResourceType, String)> {
        if let Some(t) = &self.topic {
            Some((ResourceType::Topic, t.clone()))
        } else if let Some(g) = &self.group {
            Some((ResourceType::Group, g.clone()))
        } else if let Some(x) = &self.transactional_id {
            Some((ResourceType::TransactionalId, x.clone()))
        } else if self.cluster {
            Some((ResourceType::Cluster, CLUSTER_NAME.to_string()))
        } else {
            None
        }
    }

    fn pattern(&self) -> PatternType {
        if self.prefixed {
            PatternType::Prefixed
        } else {
            PatternType::Literal
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct RuleArgs {
    #[command(flatten)]
    resource: ResourceArgs,
    /// Allow this principal (e.g. User:alice, User:*).
    #[arg(long, group = "who", value_name = "PRINCIPAL")]
    allow: Option<String>,
    /// Deny this principal.
    #[arg(long, group = "who", value_name = "PRINCIPAL")]
    deny: Option<String>,
    /// READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS,
    /// ALTER_CONFIGS, IDEMPOTENT_WRITE, CLUSTER_ACTION or ALL (repeatable).
    #[arg(long = "operation", required = true)]
    operations: Vec<String>,
    /// The client address the ACL applies to.
    #[arg(long, default_value = "*")]
    host: String,
}

impl RuleArgs {
    fn acls(&self) -> anyhow::Result<Vec<acl::Acl>> {
        let Some((rtype, name)) = self.resource.resource() else {
            bail!("name the resource: --topic, --group, --transactional-id or --cluster");
        };
        let (permission, principal) = match (&self.allow, &self.deny) {
            (Some(p), None) => (Permission::Allow, p.clone()),
            (None, Some(p)) => (Permission::Deny, p.clone()),
            _ => bail!("say whom the ACL is for: --allow PRINCIPAL or --deny PRINCIPAL"),
        };
        self.operations
            .iter()
            .map(|op| {
                let operation = Operation::parse(op)
                    .ok_or_else(|| anyhow::anyhow!("unknown operation '{op}'"))?;
                acl::new_acl(
                    rtype.code(),
                    &name,
                    self.resource.pattern().code(),
                    &principal,
                    &self.host,
                    operation.code(),
                    permission.code(),
                )
                .map_err(anyhow::Error::msg)
            })
            .collect()
    }
}

pub async fn acls(cmd: AclsCmd) -> anyhow::Result<()> {
    match cmd {
        AclsCmd::List {
            resource,
            principal,
            target,
        } => {
            let mut req = m::DescribeAclsRequest::default();
            match resource.resource() {
                Some((rtype, name)) => {
                    req.resource_type_filter = rtype.code();
                    req.resource_name_filter = Some(s(name));
                    req.pattern_type_filter = if resource.prefixed {
                        PatternType::Prefixed.code()
                    } else {
                        acl::MATCH
                    };
                }
                None => {
                    req.resource_type_filter = acl::ANY;
                    req.resource_name_filter = None;
                    req.pattern_type_filter = acl::ANY;
                }
            }
            // The protocol crate's defaults are empty strings, which match
            // nothing: null means any.
            req.principal_filter = principal.map(s);
            req.host_filter = None;
            req.operation = acl::ANY;
            req.permission_type = acl::ANY;
            let mut c = Client::connect(&target.bootstrap).await?;
            let resp = c.send(&req, 1).await?;
            check(resp.error_code, resp.error_message.as_ref(), "list ACLs")?;
            let name = |code: i8, f: fn(i8) -> Option<&'static str>| {
                f(code).map_or_else(|| code.to_string(), str::to_string)
            };
            let mut rows = Vec::new();
            for r in &resp.resources {
                for a in &r.acls {
                    rows.push(vec![
                        name(r.resource_type, |c| {
                            ResourceType::from_code(c).map(|x| x.name())
                        }),
                        name(r.pattern_type, |c| {
                            PatternType::from_code(c).map(|x| x.name())
                        }),
                        r.resource_name.to_string(),
                        a.principal.to_string(),
                        a.host.to_string(),
                        name(a.operation, |c| Operation::from_code(c).map(|x| x.name())),
                        name(a.permission_type, |c| {
                            Permission::from_code(c).map(|x| x.name())
                        }),
                    ]);
                }
            }
            out(&table(
                &[
                    "RESOURCE",
                    "PATTERN",
                    "NAME",
                    "PRINCIPAL",
                    "HOST",
                    "OPERATION",
                    "PERMISSION",
                ],
                &rows,
            ));
        }
        AclsCmd::Add { rule, target } => {
            let mut req = m::CreateAclsRequest::default();
            for a in rule.acls()? {
                let mut c = m::create_acls_request::AclCreation::default();
                c.resource_type = a.resource_type.code();
                c.resource_name = s(a.resource_name);
                c.resource_pattern_type = a.pattern.code();
                c.principal = s(a.principal);
                c.host = s(a.host);
                c.operation = a.operation.code();
                c.permission_type = a.permission.code();
                req.creations.push(c);
            }
            let mut c = Client::connect(&target.bootstrap).await?;
            let resp = c.send(&req, 1).await?;
            for r in &resp.results {
                check(r.error_code, r.error_message.as_ref(), "add ACL")?;
            }
            out(&format!("{} ACL(s) added\n", resp.results.len()));
        }
        AclsCmd::Remove { rule, target } => {
            let mut req = m::DeleteAclsRequest::default();
            for a in rule.acls()? {
                let mut f = m::delete_acls_request::DeleteAclsFilter::default();
                f.resource_type_filter = a.resource_type.code();
                f.resource_name_filter = Some(s(a.resource_name));
                f.pattern_type_filter = a.pattern.code();
                f.principal_filter = Some(s(a.principal));
                f.host_filter = Some(s(a.host));
                f.operation = a.operation.code();
                f.permission_type = a.permission.code();
                req.filters.push(f);
            }
            let mut c = Client::connect(&target.bootstrap).await?;
            let resp = c.send(&req, 1).await?;
            let mut removed = 0;
            for r in &resp.filter_results {
                check(r.error_code, r.error_message.as_ref(), "remove ACL")?;
                removed += r.matching_acls.len();
            }
            out(&format!("{removed} ACL(s) removed\n"));
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum PurposesCmd {
    /// List purpose grants: those made here and those of the policy file.
    List(HttpTarget),
    /// Let a principal declare a purpose (one the policy file names).
    Grant {
        principal: String,
        purpose: String,
        #[command(flatten)]
        target: HttpTarget,
    },
    /// Take back a grant made with `grant`.
    Revoke {
        principal: String,
        purpose: String,
        #[command(flatten)]
        target: HttpTarget,
    },
}

/// `sluice purposes …`, over the broker's HTTP admin API (credentials from
/// `SLUICE_HTTP_TOKEN` or `SLUICE_HTTP_USER`/`SLUICE_HTTP_PASSWORD`).
pub async fn purposes(cmd: PurposesCmd) -> anyhow::Result<()> {
    let body = |principal: &str, purpose: &str| {
        serde_json::json!({"principal": principal, "purpose": purpose}).to_string()
    };
    let (method, target, body) = match &cmd {
        PurposesCmd::List(target) => ("GET", target, String::new()),
        PurposesCmd::Grant {
            principal,
            purpose,
            target,
        } => ("POST", target, body(principal, purpose)),
        PurposesCmd::Revoke {
            principal,
            purpose,
            target,
        } => ("DELETE", target, body(principal, purpose)),
    };
    let (status, answer) = http_request(&target.http, method, "/admin/grants", &body).await?;
    if status != 200 {
        bail!("the broker answered HTTP {status}: {}", answer.trim());
    }
    let PurposesCmd::List(_) = cmd else {
        out(&answer);
        return Ok(());
    };
    let v: serde_json::Value = serde_json::from_str(&answer)
        .map_err(|e| anyhow::anyhow!("unexpected answer from the broker: {e}"))?;
    let mut rows = Vec::new();
    for (source, key) in [("admin", "stored"), ("policy file", "file")] {
        if let Some(map) = v[key].as_object() {
            for (principal, purposes) in map {
                for p in purposes.as_array().into_iter().flatten() {
                    rows.push(vec![
                        principal.clone(),
                        p.as_str().unwrap_or("").to_string(),
                        source.to_string(),
                    ]);
                }
            }
        }
    }
    out(&table(&["PRINCIPAL", "PURPOSE", "GRANTED BY"], &rows));
    if v["file"].is_null() && v["stored"].as_object().is_none_or(|m| m.is_empty()) {
        eprintln!("no grants: any principal may declare any purpose");
    }
    Ok(())
}
