//! `sluice transactions …`: open and finished transactions over the Kafka
//! protocol (ListTransactions, DescribeTransactions), as
//! `kafka-transactions.sh list|describe` shows them.

use anyhow::bail;
use clap::Subcommand;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{self as m, TransactionalId};

use crate::cli::client::{Client, table};
use crate::cli::{Target, check, out, s};

#[derive(Debug, Subcommand)]
pub enum TransactionsCmd {
    /// List transactional ids: producer, epoch, state, partitions and the
    /// age of the open transaction.
    List(Target),
    /// Show one transactional id and the partitions of its transaction.
    Describe {
        transactional_id: String,
        #[command(flatten)]
        target: Target,
    },
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// "1.2s", "3m04s": how long ago `started_ms` was; "-" for no open one.
fn age(started_ms: i64) -> String {
    if started_ms <= 0 {
        return "-".into();
    }
    let ms = (now_ms() - started_ms).max(0);
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

async fn describe(
    c: &mut Client,
    ids: Vec<String>,
) -> anyhow::Result<Vec<m::describe_transactions_response::TransactionState>> {
    let mut req = m::DescribeTransactionsRequest::default();
    req.transactional_ids = ids.into_iter().map(|i| TransactionalId(s(i))).collect();
    Ok(c.send(&req, 0).await?.transaction_states)
}

fn partitions(st: &m::describe_transactions_response::TransactionState) -> usize {
    st.topics.iter().map(|t| t.partitions.len()).sum()
}

pub async fn transactions(cmd: TransactionsCmd) -> anyhow::Result<()> {
    match cmd {
        TransactionsCmd::List(target) => {
            let mut c = Client::connect(&target.bootstrap).await?;
            let listed = c.send(&m::ListTransactionsRequest::default(), 0).await?;
            check(listed.error_code, None, "list transactions")?;
            let ids = listed
                .transaction_states
                .iter()
                .map(|t| t.transactional_id.to_string())
                .collect::<Vec<_>>();
            let mut rows = Vec::new();
            if !ids.is_empty() {
                for st in describe(&mut c, ids).await? {
                    if st.error_code != 0 {
                        continue;
                    }
                    rows.push(vec![
                        st.transactional_id.to_string(),
                        st.producer_id.0.to_string(),
                        st.producer_epoch.to_string(),
                        st.transaction_state.to_string(),
                        partitions(&st).to_string(),
                        age(st.transaction_start_time_ms),
                        format!("{}ms", st.transaction_timeout_ms),
                    ]);
                }
            }
            rows.sort();
            out(&table(
                &[
                    "TRANSACTIONAL ID",
                    "PRODUCER ID",
                    "EPOCH",
                    "STATE",
                    "PARTITIONS",
                    "AGE",
                    "TIMEOUT",
                ],
                &rows,
            ));
        }
        TransactionsCmd::Describe {
            transactional_id,
            target,
        } => {
            let mut c = Client::connect(&target.bootstrap).await?;
            let states = describe(&mut c, vec![transactional_id.clone()]).await?;
            let Some(st) = states.first() else {
                bail!("no answer for transactional id '{transactional_id}'")
            };
            if st.error_code == ResponseError::TransactionalIdNotFound.code() {
                bail!("transactional id '{transactional_id}' does not exist");
            }
            check(
                st.error_code,
                None,
                &format!("transactional id '{transactional_id}'"),
            )?;
            out(&format!(
                "Transactional id: {transactional_id}\nState:            {}\nProducer:         id {} epoch {}\nTimeout:          {}ms\nOpen for:         {}\n\n",
                st.transaction_state,
                st.producer_id.0,
                st.producer_epoch,
                st.transaction_timeout_ms,
                age(st.transaction_start_time_ms),
            ));
            let mut rows = Vec::new();
            for t in &st.topics {
                for p in &t.partitions {
                    rows.push(vec![t.topic.to_string(), p.to_string()]);
                }
            }
            rows.sort();
            out(&table(&["TOPIC", "PARTITION"], &rows));
        }
    }
    Ok(())
}
