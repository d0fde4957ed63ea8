//! The operations endpoint: health, readiness and Prometheus metrics.

use std::time::Duration;

use sluice_tests::{Broker, Rec, orders};

use crate::common::{assert_all_acked, produce_all};

fn get(addr: &str, path: &str) -> (u16, String) {
    orders::http(addr, "GET", path, None).expect("HTTP request")
}

#[test]
fn health_readiness_and_metrics() {
    let broker = Broker::start();
    let http = broker.http_addr();
    assert_eq!(get(&http, "/healthz").0, 200);
    assert_eq!(get(&http, "/readyz").0, 200);

    broker.create_topic("ops", 2, &[]);
    let producer = broker.producer(&[("acks", "all")]);
    let records: Vec<Rec> = (0..300)
        .map(|i| Rec {
            partition: i % 2,
            offset: -1,
            key: None,
            value: Some(vec![b'x'; 100]),
            headers: Vec::new(),
            timestamp: rdkafka::Timestamp::NotAvailable,
        })
        .collect();
    let reports = produce_all(&producer, "ops", &records, Duration::from_secs(30));
    assert_all_acked(&reports, records.len());

    let (status, body) = get(&http, "/metrics");
    assert_eq!(status, 200);
    let line = body
        .lines()
        .find(|l| l.starts_with("sluice_produce_records_total{topic=\"ops\"}"))
        .unwrap_or_else(|| panic!("no produce counter for topic ops in:\n{body}"));
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(value, 300.0, "{line}");
    assert!(
        body.contains("sluice_flush_seconds_bucket"),
        "flush latency histogram missing"
    );
    assert_eq!(get(&http, "/nope").0, 404);
}

#[test]
fn a_port_conflict_names_every_taken_address_and_leaves_no_registration() {
    let mut broker = Broker::start();
    broker.create_topic("ports", 1, &[]);
    broker.terminate();
    // Something else takes both HTTP ports while the broker is down.
    let http = std::net::TcpListener::bind(broker.http_addr()).expect("hold the HTTP port");
    let registry =
        std::net::TcpListener::bind(broker.registry_addr()).expect("hold the registry port");
    let err = match broker.try_restart() {
        Ok(()) => panic!("the broker started on taken ports"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains(&broker.http_addr()) && err.contains(&broker.registry_addr()),
        "the startup error does not name both taken addresses:\n{err}"
    );
    drop(http);
    drop(registry);
    // The failed start left no live registration behind, so the same broker
    // id starts again at once instead of waiting out a session.
    broker
        .try_restart()
        .expect("the broker starts once the ports are free");
    assert!(broker.topics().contains_key("ports"));
    broker.terminate();
}
