//! ListTransactions: Sluice has no transactions yet, so there are none to
//! list. State filters Kafka does not know are reported back, as Kafka does.

use kafka_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse};

/// Kafka's transaction states.
const STATES: &[&str] = &[
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
    "Dead",
    "PrepareEpochFence",
];

pub fn handle(req: ListTransactionsRequest) -> ListTransactionsResponse {
    let mut resp = ListTransactionsResponse::default();
    resp.unknown_state_filters = req
        .state_filters
        .into_iter()
        .filter(|s| !STATES.contains(&s.as_str()))
        .collect();
    resp
}
