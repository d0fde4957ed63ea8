//! Which records of a refused batch fail, and with what, as librdkafka
//! reports them: Kafka (KIP-467) lists the records at fault in
//! `record_errors`, and librdkafka fails those with INVALID_RECORD and the
//! rest of the batch with _INVALID_DIFFERENT_RECORD. A batch refused as a
//! whole lists none, so every record fails with INVALID_RECORD.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer as _};
use sluice_tests::Broker;
use sluice_tests::orders::{encode_order, frame, register_order_schema};

/// Sends `values` in one batch and returns each record's error code, in
/// send order.
fn send_batch(broker: &Broker, topic: &str, values: &[Vec<u8>]) -> Vec<Option<RDKafkaErrorCode>> {
    // One batch: a long linger, and a flush only after all are queued.
    let producer = broker.producer(&[("linger.ms", "500"), ("retries", "0")]);
    for (i, v) in values.iter().enumerate() {
        producer
            .send(BaseRecord::<(), [u8], usize>::with_opaque_to(topic, i).payload(&v[..]))
            .expect("enqueue");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    let mut reports = producer.context().take();
    assert_eq!(reports.len(), values.len(), "{reports:?}");
    reports.sort_by_key(|d| d.id);
    reports
        .into_iter()
        .map(|d| match d.error {
            None => None,
            Some(KafkaError::MessageProduction(code)) => Some(code),
            Some(other) => panic!("unexpected error {other:?}"),
        })
        .collect()
}

#[test]
fn invalid_records_fail_alone_and_the_rest_as_collateral() {
    let broker = Broker::start();
    let id = register_order_schema(&broker.registry_addr(), "re-orders-value").unwrap();
    broker.create_topic("re-orders", 1, &[]);
    let values: Vec<Vec<u8>> = (0..10)
        .map(|n| frame(id, &encode_order(n, n != 2 && n != 7)))
        .collect();
    let codes = send_batch(&broker, "re-orders", &values);
    let expected: Vec<Option<RDKafkaErrorCode>> = (0..10)
        .map(|n| {
            Some(if n == 2 || n == 7 {
                RDKafkaErrorCode::InvalidRecord
            } else {
                RDKafkaErrorCode::InvalidDifferentRecord
            })
        })
        .collect();
    assert_eq!(codes, expected);
    assert_eq!(broker.watermarks("re-orders", 0), (0, 0), "nothing stored");
}

#[test]
fn a_batch_refused_as_a_whole_fails_every_record_alike() {
    let broker = Broker::start();
    register_order_schema(&broker.registry_addr(), "re-unbound-value").unwrap();
    // The topic names a message the subject does not declare: no record
    // can be checked, and none is more at fault than another.
    broker.create_topic(
        "re-unbound",
        1,
        &[("sluice.value.message.type", "bench.NoSuchMessage")],
    );
    let values: Vec<Vec<u8>> = (0..5).map(|n| encode_order(n, true)).collect();
    let codes = send_batch(&broker, "re-unbound", &values);
    assert_eq!(codes, vec![Some(RDKafkaErrorCode::InvalidRecord); 5]);
    assert!(
        broker.log().contains("has no such message"),
        "the broker says why"
    );
}
