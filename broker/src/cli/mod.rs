//! Operator commands: `sluice topics …` and `sluice groups …` speak the
//! Kafka protocol to a running broker, like any other admin tool;
//! `sluice table …` asks the broker's HTTP address for table maintenance.
//! Also here: `users`, `acls` and `purposes` ([`access`]), `quotas`
//! ([`quotas`]), `transactions` ([`transactions`]), `sql`, `sluice gateway`, and the small Kafka client the
//! commands share ([`client`]).
//!
//! May use: `policy` (the gateway's validator and redactor), `security`
//! (SCRAM salting, ACL and mechanism types) and `store` (`users set
//! --metadata-url` writes credentials straight to the metadata store).
//!
//! Contract: commands reach a broker only through its public interfaces
//! (Kafka protocol, HTTP), or for `users set --metadata-url` the metadata
//! store itself; a password is salted here and only the salted form leaves.

pub mod access;
pub mod client;
pub mod quotas;
pub mod transactions;

use std::collections::BTreeMap;

use anyhow::bail;
use clap::{Args, Subcommand};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{self as m, GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::cli::client::{Client, parse_assignment, table};

#[derive(Debug, Clone, Args)]
pub struct Target {
    /// A broker's Kafka address.
    #[arg(
        long,
        short = 'b',
        env = "SLUICE_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap: String,
}

#[derive(Debug, Subcommand)]
pub enum TopicsCmd {
    /// List topics with partition and record counts.
    List(Target),
    /// Show a topic's partitions (offsets) and configuration.
    Describe {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, short = 'p', default_value_t = 1)]
        partitions: i32,
        /// Topic config, KEY=VALUE (repeatable).
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
        configs: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a topic and its data.
    Delete {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Set or remove topic config overrides.
    AlterConfig {
        name: String,
        /// KEY=VALUE to set (repeatable).
        #[arg(long, value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// KEY to reset to the default (repeatable).
        #[arg(long, value_name = "KEY")]
        delete: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupsCmd {
    /// List consumer groups.
    List(Target),
    /// Show a group's members and per-partition committed offsets and lag.
    Describe {
        group: String,
        #[command(flatten)]
        target: Target,
    },
}

/// Writes to stdout; a closed pipe (e.g. `| head`) just ends the output.
pub(crate) fn out(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().write_all(text.as_bytes());
}

pub(crate) fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

pub(crate) fn check(code: i16, msg: Option<&StrBytes>, what: &str) -> anyhow::Result<()> {
    if code == 0 {
        return Ok(());
    }
    let name = ResponseError::try_from_code(code)
        .map(|e| format!("{e:?}"))
        .unwrap_or_default();
    match msg {
        Some(m) if !m.is_empty() => bail!("{what}: {name}: {m}"),
        _ => bail!("{what}: {name} (error code {code})"),
    }
}

fn split_kv(items: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => bail!("'{kv}' is not KEY=VALUE"),
        })
        .collect()
}

async fn metadata(
    c: &mut Client,
    topics: Option<Vec<String>>,
) -> anyhow::Result<m::MetadataResponse> {
    let mut req = m::MetadataRequest::default();
    req.topics = topics.map(|ts| {
        ts.into_iter()
            .map(|t| {
                let mut x = m::metadata_request::MetadataRequestTopic::default();
                x.name = Some(TopicName(s(t)));
                x
            })
            .collect()
    });
    c.send(&req, 12).await
}

/// (log start, high watermark) for each partition of each topic.
async fn offsets(
    c: &mut Client,
    topics: &[(String, i32)],
) -> anyhow::Result<BTreeMap<(String, i32), (i64, i64)>> {
    let mut out = BTreeMap::new();
    for ts in [-2i64, -1] {
        let mut req = m::ListOffsetsRequest::default();
        req.replica_id = m::BrokerId(-1);
        for (name, parts) in topics {
            let mut t = m::list_offsets_request::ListOffsetsTopic::default();
            t.name = TopicName(s(name.clone()));
            for p in 0..*parts {
                let mut lp = m::list_offsets_request::ListOffsetsPartition::default();
                lp.partition_index = p;
                lp.timestamp = ts;
                t.partitions.push(lp);
            }
            req.topics.push(t);
        }
        let resp = c.send(&req, 5).await?;
        for t in resp.topics {
            for p in t.partitions {
                let e = out
                    .entry((t.name.to_string(), p.partition_index))
                    .or_insert((-1, -1));
                if ts == -2 {
                    e.0 = p.offset;
                } else {
                    e.1 = p.offset;
                }
            }
        }
    }
    Ok(out)
}

/// Each partition's last stable offset (ListOffsets latest, read_committed).
async fn stable_ends(
    c: &mut Client,
    topics: &[(String, i32)],
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let mut req = m::ListOffsetsRequest::default();
    req.replica_id = m::BrokerId(-1);
    req.isolation_level = 1;
    for (name, parts) in topics {
        let mut t = m::list_offsets_request::ListOffsetsTopic::default();
        t.name = TopicName(s(name.clone()));
        for p in 0..*parts {
            let mut lp = m::list_offsets_request::ListOffsetsPartition::default();
            lp.partition_index = p;
            lp.timestamp = -1;
            t.partitions.push(lp);
        }
        req.topics.push(t);
    }
    let resp = c.send(&req, 5).await?;
    Ok(resp
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| p.error_code == 0)
                .map(|p| ((t.name.to_string(), p.partition_index), p.offset))
        })
        .collect())
}

pub async fn topics(cmd: TopicsCmd) -> anyhow::Result<()> {
    match cmd {
        TopicsCmd::List(target) => {
            let mut c = Client::connect(&target.bootstrap).await?;
            let md = metadata(&mut c, None).await?;
            let list: Vec<(String, i32)> = md
                .topics
                .iter()
                .map(|t| {
                    (
                        t.name.as_ref().map(|n| n.to_string()).unwrap_or_default(),
                        t.partitions.len() as i32,
                    )
                })
                .collect();
            let offs = offsets(&mut c, &list).await?;
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|(name, parts)| {
                    let records: i64 = (0..*parts)
                        .map(|p| {
                            offs.get(&(name.clone(), p))
                                .map_or(0, |(lo, hi)| (hi - lo).max(0))
                        })
                        .sum();
                    vec![name.clone(), parts.to_string(), records.to_string()]
                })
                .collect();
            out(&table(&["TOPIC", "PARTITIONS", "RECORDS"], &rows));
        }
        TopicsCmd::Describe { name, target } => {
            let mut c = Client::connect(&target.bootstrap).await?;
            let mut req = m::MetadataRequest::default();
            let mut x = m::metadata_request::MetadataRequestTopic::default();
            x.name = Some(TopicName(s(name.clone())));
            req.topics = Some(vec![x]);
            req.allow_auto_topic_creation = false;
            let md = c.send(&req, 12).await?;
            let Some(t) = md.topics.first() else {
                bail!("no answer for topic '{name}'")
            };
            check(t.error_code, None, &format!("topic '{name}'"))?;
            let parts = t.partitions.len() as i32;
            out(&format!(
                "Topic: {name}  id: {}  partitions: {parts}\n\n",
                t.topic_id
            ));
            let offs = offsets(&mut c, &[(name.clone(), parts)]).await?;
            let rows: Vec<Vec<String>> = offs
                .iter()
                .map(|((_, p), (lo, hi))| {
                    vec![
                        p.to_string(),
                        lo.to_string(),
                        hi.to_string(),
                        (hi - lo).max(0).to_string(),
                    ]
                })
                .collect();
            out(&table(
                &["PARTITION", "LOG START", "HIGH WATERMARK", "RECORDS"],
                &rows,
            ));
            let mut dreq = m::DescribeConfigsRequest::default();
            let mut r = m::describe_configs_request::DescribeConfigsResource::default();
            r.resource_type = 2;
            r.resource_name = s(name.clone());
            // All keys (the default is an empty list, which asks for none).
            r.configuration_keys = None;
            dreq.resources.push(r);
            let cfg = c.send(&dreq, 1).await?;
            if let Some(res) = cfg.results.first() {
                check(
                    res.error_code,
                    res.error_message.as_ref(),
                    "describe configs",
                )?;
                let rows: Vec<Vec<String>> = res
                    .configs
                    .iter()
                    .map(|e| {
                        vec![
                            e.name.to_string(),
                            e.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                            if e.config_source == 1 {
                                "topic override"
                            } else {
                                "default"
                            }
                            .to_string(),
                        ]
                    })
                    .collect();
                out("
");
                out(&table(&["CONFIG", "VALUE", "SOURCE"], &rows));
            }
        }
        TopicsCmd::Create {
            name,
            partitions,
            configs,
            target,
        } => {
            let mut c = Client::connect(&target.bootstrap).await?;
            let mut req = m::CreateTopicsRequest::default();
            let mut t = m::create_topics_request::CreatableTopic::default();
            t.name = TopicName(s(name.clone()));
            t.num_partitions = partitions;
            t.replication_factor = -1;
            for (k, v) in split_kv(&configs)? {
                let mut cfg = m::create_topics_request::CreatableTopicConfig::default();
                cfg.name = s(k);
                cfg.value = Some(s(v));
                t.configs.push(cfg);
            }
            req.topics.push(t);
            req.timeout_ms = 30_000;
            let resp = c.send(&req, 5).await?;
            for r in resp.topics {
                check(
                    r.error_code,
                    r.error_message.as_ref(),
                    &format!("create topic '{name}'"),
                )?;
            }
            out(&format!(
                "Created topic {name} with {partitions} partition(s).\n"
            ));
        }
        TopicsCmd::Delete { name, target } => {
            let mut c = Client::connect(&target.bootstrap).await?;
            let mut req = m::DeleteTopicsRequest::default();
            req.topic_names.push(TopicName(s(name.clone())));
            req.timeout_ms = 30_000;
            let resp = c.send(&req, 5).await?;
            for r in resp.responses {
                check(
                    r.error_code,
                    r.error_message.as_ref(),
                    &format!("delete topic '{name}'"),
                )?;
            }
            out(&format!("Deleted topic {name}.\n"));
        }
        TopicsCmd::AlterConfig {
            name,
            set,
            delete,
            target,
        } => {
            if set.is_empty() && delete.is_empty() {
                bail!("nothing to change: give --set KEY=VALUE and/or --delete KEY");
            }
            let mut c = Client::connect(&target.bootstrap).await?;
            let mut req = m::IncrementalAlterConfigsRequest::default();
            let mut r = m::incremental_alter_configs_request::AlterConfigsResource::default();
            r.resource_type = 2;
            r.resource_name = s(name.clone());
            for (k, v) in split_kv(&set)? {
                let mut a = m::incremental_alter_configs_request::AlterableConfig::default();
                a.name = s(k);
                a.config_operation = 0;
                a.value = Some(s(v));
                r.configs.push(a);
            }
            for k in delete {
                let mut a = m::incremental_alter_configs_request::AlterableConfig::default();
                a.name = s(k);
                a.config_operation = 1;
                r.configs.push(a);
            }
            req.resources.push(r);
            let resp = c.send(&req, 0).await?;
            for r in resp.responses {
                check(
                    r.error_code,
                    r.error_message.as_ref(),
                    &format!("alter config of '{name}'"),
                )?;
            }
            out(&format!("Updated config of topic {name}.\n"));
        }
    }
    Ok(())
}

/// The Kafka addresses of every live broker, as Metadata lists them.
async fn broker_addrs(bootstrap: &str) -> anyhow::Result<Vec<String>> {
    let mut c = Client::connect(bootstrap).await?;
    let mut req = m::MetadataRequest::default();
    req.topics = Some(Vec::new());
    let md = c.send(&req, 9).await?;
    Ok(md
        .brokers
        .iter()
        .map(|b| format!("{}:{}", b.host, b.port))
        .collect())
}

/// A connection to the broker coordinating `group`.
async fn coordinator(bootstrap: &str, group: &str) -> anyhow::Result<Client> {
    let mut c = Client::connect(bootstrap).await?;
    let mut req = m::FindCoordinatorRequest::default();
    req.key = s(group.to_string());
    let resp = c.send(&req, 3).await?;
    check(
        resp.error_code,
        resp.error_message.as_ref(),
        &format!("find the coordinator of '{group}'"),
    )?;
    Client::connect(&format!("{}:{}", resp.host, resp.port)).await
}

pub async fn groups(cmd: GroupsCmd) -> anyhow::Result<()> {
    match cmd {
        GroupsCmd::List(target) => {
            // Each broker lists the groups it coordinates.
            let mut rows: Vec<Vec<String>> = Vec::new();
            for addr in broker_addrs(&target.bootstrap).await? {
                let mut c = Client::connect(&addr).await?;
                let resp = c.send(&m::ListGroupsRequest::default(), 4).await?;
                check(resp.error_code, None, "list groups")?;
                let ids: Vec<GroupId> = resp.groups.iter().map(|g| g.group_id.clone()).collect();
                if ids.is_empty() {
                    continue;
                }
                let mut dreq = m::DescribeGroupsRequest::default();
                dreq.groups = ids;
                let desc = c.send(&dreq, 4).await?;
                rows.extend(desc.groups.iter().map(|g| {
                    vec![
                        g.group_id.to_string(),
                        g.group_state.to_string(),
                        g.protocol_type.to_string(),
                        g.protocol_data.to_string(),
                        g.members.len().to_string(),
                    ]
                }));
            }
            rows.sort();
            out(&table(
                &["GROUP", "STATE", "TYPE", "ASSIGNOR", "MEMBERS"],
                &rows,
            ));
        }
        GroupsCmd::Describe { group, target } => {
            let mut c = coordinator(&target.bootstrap, &group).await?;
            let mut dreq = m::DescribeGroupsRequest::default();
            dreq.groups = vec![GroupId(s(group.clone()))];
            let desc = c.send(&dreq, 4).await?;
            let Some(g) = desc.groups.first() else {
                bail!("no answer for group '{group}'")
            };
            // Kafka describes a group it does not know as Dead with no
            // members (newer versions answer GROUP_ID_NOT_FOUND).
            if g.error_code == ResponseError::GroupIdNotFound.code()
                || (g.error_code == 0 && g.group_state.as_str() == "Dead" && g.members.is_empty())
            {
                bail!("consumer group '{group}' does not exist");
            }
            check(g.error_code, None, &format!("group '{group}'"))?;
            println!(
                "Group: {group}  state: {}  assignor: {}  members: {}\n",
                g.group_state,
                g.protocol_data,
                g.members.len()
            );
            let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
            let mut members: Vec<Vec<String>> = Vec::new();
            for mem in &g.members {
                let mut assigned = 0;
                for (t, ps) in parse_assignment(&mem.member_assignment) {
                    for p in ps {
                        assigned += 1;
                        owner.insert((t.clone(), p), mem.member_id.to_string());
                    }
                }
                members.push(vec![
                    mem.member_id.to_string(),
                    mem.client_id.to_string(),
                    mem.client_host.to_string(),
                    assigned.to_string(),
                ]);
            }
            members.sort();
            out(&table(
                &["MEMBER ID", "CLIENT ID", "HOST", "PARTITIONS"],
                &members,
            ));
            out("\n");
            let mut oreq = m::OffsetFetchRequest::default();
            oreq.group_id = GroupId(s(group.clone()));
            oreq.topics = None;
            let offs = c.send(&oreq, 7).await?;
            check(offs.error_code, None, "fetch offsets")?;
            let mut committed: BTreeMap<(String, i32), i64> = BTreeMap::new();
            for t in &offs.topics {
                for p in &t.partitions {
                    committed.insert((t.name.to_string(), p.partition_index), p.committed_offset);
                }
            }
            for k in owner.keys() {
                committed.entry(k.clone()).or_insert(-1);
            }
            let mut per_topic: BTreeMap<String, i32> = BTreeMap::new();
            for (t, p) in committed.keys() {
                let e = per_topic.entry(t.clone()).or_insert(0);
                *e = (*e).max(p + 1);
            }
            let list: Vec<(String, i32)> = per_topic.into_iter().collect();
            let ends = offsets(&mut c, &list).await?;
            let stable = stable_ends(&mut c, &list).await?;
            let rows: Vec<Vec<String>> = committed
                .iter()
                .map(|((t, p), off)| {
                    let end = ends.get(&(t.clone(), *p)).map_or(-1, |e| e.1);
                    let stable = stable.get(&(t.clone(), *p)).copied().unwrap_or(end);
                    // Against the last stable offset: where a read_committed
                    // consumer stops (the end itself unless a transaction
                    // is open).
                    let lag = if *off >= 0 && stable >= 0 {
                        (stable - off).max(0).to_string()
                    } else {
                        "-".into()
                    };
                    vec![
                        t.clone(),
                        p.to_string(),
                        if *off >= 0 {
                            off.to_string()
                        } else {
                            "-".into()
                        },
                        end.to_string(),
                        stable.to_string(),
                        lag,
                        owner
                            .get(&(t.clone(), *p))
                            .cloned()
                            .unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            out(&table(
                &[
                    "TOPIC",
                    "PARTITION",
                    "COMMITTED",
                    "END",
                    "STABLE",
                    "LAG",
                    "MEMBER",
                ],
                &rows,
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Args)]
pub struct HttpTarget {
    /// A broker's HTTP address (`--http-addr` of `sluice serve`).
    #[arg(long, env = "SLUICE_HTTP_ADDR", default_value = "127.0.0.1:8181")]
    pub http: String,
}

#[derive(Debug, Subcommand)]
pub enum TableCmd {
    /// Show a topic table's columns, the schema versions that brought each
    /// in (and retired it), and its snapshot totals.
    Describe {
        topic: String,
        #[command(flatten)]
        target: HttpTarget,
    },
    /// Rewrite a topic table's small files into larger ones, and remove
    /// files whose records retention deleted.
    Compact {
        topic: String,
        #[command(flatten)]
        target: HttpTarget,
    },
    /// Expire a topic table's old snapshots and delete the files only they
    /// referred to.
    Expire {
        topic: String,
        /// Snapshots older than this many seconds are expired.
        #[arg(long, default_value_t = 900)]
        max_age_secs: u64,
        /// At least this many recent snapshots are kept.
        #[arg(long, default_value_t = 1)]
        keep: usize,
        #[command(flatten)]
        target: HttpTarget,
    },
}

/// The `Authorization` header line for brokers started with
/// `--http-auth`: a bearer token from `SLUICE_HTTP_TOKEN`, or basic
/// credentials from `SLUICE_HTTP_USER` and `SLUICE_HTTP_PASSWORD`.
fn http_credentials() -> String {
    use base64::Engine as _;
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(token) = var("SLUICE_HTTP_TOKEN") {
        return format!("Authorization: Bearer {token}\r\n");
    }
    match (var("SLUICE_HTTP_USER"), var("SLUICE_HTTP_PASSWORD")) {
        (Some(user), Some(password)) => format!(
            "Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        ),
        _ => String::new(),
    }
}

/// One HTTP/1.1 POST without a client library; returns (status, body).
async fn http_post(addr: &str, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
    http_request(addr, "POST", path, body).await
}

/// One HTTP/1.1 request without a client library; returns (status, body).
pub(crate) async fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| {
        anyhow::anyhow!("cannot reach the broker's HTTP address {addr}: {e} (set --http)")
    })?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{}Content-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        http_credentials(),
        if body.starts_with('{') {
            "application/json"
        } else {
            "text/plain"
        },
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let raw = String::from_utf8_lossy(&raw);
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    Ok((status, body.to_string()))
}

pub async fn tables(cmd: TableCmd) -> anyhow::Result<()> {
    let (addr, path, topic) = match &cmd {
        TableCmd::Describe { topic, target } => return describe_table(topic, target).await,
        TableCmd::Compact { topic, target } => (
            &target.http,
            format!("/admin/tables/{topic}/compact"),
            topic,
        ),
        TableCmd::Expire {
            topic,
            max_age_secs,
            keep,
            target,
        } => (
            &target.http,
            format!("/admin/tables/{topic}/expire?max_age_secs={max_age_secs}&keep={keep}"),
            topic,
        ),
    };
    eprintln!("working on the table of {topic}…");
    let (status, body) = http_post(addr, &path, "").await?;
    if status != 200 {
        bail!("the broker answered HTTP {status}: {}", body.trim());
    }
    let v: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| anyhow::anyhow!("unexpected answer from the broker: {e}"))?;
    let field = |k: &str| v[k].as_u64().unwrap_or(0).to_string();
    let rows: Vec<Vec<String>> = match cmd {
        TableCmd::Compact { .. } => vec![
            vec!["data files before".into(), field("files_before")],
            vec!["small files rewritten".into(), field("files_removed")],
            vec!["files written".into(), field("files_added")],
            vec!["rows rewritten".into(), field("rows_rewritten")],
            vec![
                "files removed by retention".into(),
                field("files_dropped_by_retention"),
            ],
        ],
        TableCmd::Expire { .. } => vec![
            vec!["snapshots before".into(), field("snapshots_before")],
            vec!["snapshots after".into(), field("snapshots_after")],
        ],
        TableCmd::Describe { .. } => vec![],
    };
    println!("table of topic {topic}");
    print!("{}", table(&["", "COUNT"], &rows));
    Ok(())
}

/// `sluice table describe`: the table's facts, then one row per column
/// with the schema versions that brought it in and retired it.
async fn describe_table(topic: &str, target: &HttpTarget) -> anyhow::Result<()> {
    use sluice_lakehouse::describe::TableDescription;
    let (status, body) =
        http_request(&target.http, "GET", &format!("/admin/tables/{topic}"), "").await?;
    if status != 200 {
        bail!("the broker answered HTTP {status}: {}", body.trim());
    }
    let d: TableDescription = serde_json::from_str(&body)
        .map_err(|e| anyhow::anyhow!("unexpected answer from the broker: {e}"))?;
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let subject = |part: &str, message: &Option<String>, version: Option<i32>| {
        message.as_ref().map(|m| {
            format!(
                "{m} (subject {topic}-{part}, version {})",
                or_dash(version.map(|v| v.to_string()))
            )
        })
    };
    let facts = vec![
        vec!["table".into(), d.table.clone()],
        vec!["location".into(), d.location.clone()],
        vec!["partitioning".into(), d.partitioning.clone()],
        vec![
            "value".into(),
            subject("value", &d.value_message, d.value_schema_version)
                .unwrap_or_else(|| "bytes only (no schema)".into()),
        ],
        vec![
            "key".into(),
            subject("key", &d.key_message, d.key_schema_version)
                .unwrap_or_else(|| "bytes only (no schema)".into()),
        ],
        vec!["snapshots".into(), d.snapshots.to_string()],
        vec!["records".into(), or_dash(d.records.map(|r| r.to_string()))],
        vec![
            "data files".into(),
            or_dash(d.data_files.map(|f| f.to_string())),
        ],
    ];
    for fact in &facts {
        println!("{:<13}{}", fact[0], fact[1]);
    }
    println!();
    let version = |v: Option<i32>| or_dash(v.map(|v| format!("v{v}")));
    let rows: Vec<Vec<String>> = d
        .columns
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.type_name.clone(),
                c.id.to_string(),
                if c.required { "yes" } else { "no" }.into(),
                version(c.since),
                version(c.retired),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["COLUMN", "TYPE", "ID", "REQUIRED", "ADDED IN", "RETIRED IN"],
            &rows
        )
    );
    println!("(versions of value.* columns are of subject {topic}-value, of key.* of {topic}-key)");
    Ok(())
}

/// `sluice sql`: runs a read-only query over the topic tables on a running
/// broker and prints the rows as a table.
pub async fn sql(
    statement: &str,
    purpose: Option<&str>,
    target: &HttpTarget,
) -> anyhow::Result<()> {
    let path = match purpose {
        Some(p) => format!("/sql?purpose={p}"),
        None => "/sql".to_owned(),
    };
    let (status, body) = http_post(&target.http, &path, statement).await?;
    if status != 200 {
        bail!("query failed: {}", body.trim());
    }
    let v: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| anyhow::anyhow!("unexpected answer from the broker: {e}"))?;
    let columns: Vec<String> = v["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c.as_str().unwrap_or("").to_string())
        .collect();
    let rows: Vec<Vec<String>> = v["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            r.as_array()
                .into_iter()
                .flatten()
                .map(|c| c.as_str().unwrap_or("").to_string())
                .collect()
        })
        .collect();
    let headers: Vec<&str> = columns.iter().map(String::as_str).collect();
    print!("{}", table(&headers, &rows));
    let more = if v["truncated"].as_bool() == Some(true) {
        " (more rows matched; add a LIMIT or narrow the query)"
    } else {
        ""
    };
    eprintln!("{} row(s){more}", rows.len());
    Ok(())
}

/// `sluice gateway`: a Kafka proxy in front of any Kafka-compatible cluster
/// that validates produced records against a schema registry and applies
/// purpose policies to fetched records.
#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    /// Bootstrap address of the upstream Kafka-compatible cluster.
    #[arg(long, env = "SLUICE_GATEWAY_UPSTREAM", value_name = "HOST:PORT")]
    pub upstream: String,
    /// The gateway's bootstrap listener; upstream node N is served on port
    /// (advertised port + 1 + N) of the same host.
    #[arg(
        long,
        env = "SLUICE_KAFKA_ADDR",
        default_value = "127.0.0.1:9092",
        value_name = "HOST:PORT"
    )]
    pub kafka_addr: String,
    /// The address given to clients (default: the Kafka address).
    #[arg(long, env = "SLUICE_ADVERTISED_ADDR", value_name = "HOST:PORT")]
    pub advertised_addr: Option<String>,
    /// The Confluent-compatible schema registry that records are checked against.
    #[arg(
        long,
        env = "SLUICE_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081",
        value_name = "URL"
    )]
    pub registry_url: String,
    /// Largest request (or upstream response) accepted, in bytes.
    #[arg(long, env = "SLUICE_MAX_REQUEST_BYTES", default_value_t = 104_857_600)]
    pub max_request_bytes: usize,
    /// Field policies (purposes, grants, sensitivity classes), as for
    /// `sluice serve --policy-file`.
    #[arg(long, env = "SLUICE_POLICY_FILE", value_name = "FILE")]
    pub policy_file: Option<std::path::PathBuf>,
    /// Shut down when the process with this id exits (for test harnesses
    /// and supervisors that may die without stopping the gateway).
    #[arg(long, hide = true, value_name = "PID")]
    pub exit_with_parent: Option<u32>,
}

fn split_host_port(addr: &str, what: &str) -> anyhow::Result<(String, u16)> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        bail!("{what} '{addr}' is not HOST:PORT");
    };
    let port = port
        .parse::<u16>()
        .map_err(|e| anyhow::anyhow!("{what} '{addr}': bad port: {e}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("{what} '{addr}' has no host");
    }
    Ok((host.to_owned(), port))
}

/// Runs the gateway until `shutdown` is cancelled.
pub async fn gateway(
    args: GatewayArgs,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    use std::sync::Arc;

    use sluice_schema_registry::{Registry, RemoteStore};

    use crate::policy::gateway_policy::BrokerPolicy;
    use crate::policy::purposes::{Policies, Redactor};
    use crate::policy::validation::Validator;

    split_host_port(&args.upstream, "--upstream")?;
    let kafka_addr = tokio::net::lookup_host(&args.kafka_addr)
        .await
        .map_err(|e| anyhow::anyhow!("--kafka-addr '{}': {e}", args.kafka_addr))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("--kafka-addr '{}' resolves to nothing", args.kafka_addr))?;
    let mut config = sluice_gateway::GatewayConfig::new(kafka_addr, args.upstream.clone());
    if let Some(advertised) = &args.advertised_addr {
        let (host, port) = split_host_port(advertised, "--advertised-addr")?;
        config.advertised_host = host;
        config.advertised_port = port;
    }
    config.max_frame_bytes = args.max_request_bytes;
    let store = RemoteStore::new(&args.registry_url)?;
    tracing::info!(registry = %store.url(), "validating produced records against the registry");
    let validator = Validator::new(Registry::new(Arc::new(store)));
    let policies = Arc::new(Policies::load(args.policy_file.as_deref())?);
    // Redacted batches are cached as in the broker (64 MiB).
    let redactor = Redactor::new(validator.clone(), policies, 64 << 20);
    let policy = BrokerPolicy::new(validator, redactor);
    sluice_gateway::run(config, Arc::new(policy), shutdown).await?;
    Ok(())
}
