//! `sluice groups describe` as an operator reads it: members told apart by
//! member id and host, and an unknown group reported as such.

use std::collections::BTreeSet;
use std::time::Duration;

use sluice_tests::{run_with_timeout, sluice_bin};

use crate::groups::{Member, SETTLE_TIMEOUT, start_broker, wait_until};

#[test]
fn describe_shows_member_ids_and_hosts_and_refuses_unknown_groups() {
    let broker = start_broker();
    broker.create_topic("gcli", 2, &[]);
    // Two members with the same client id.
    let a = Member::start(&broker, "gcli-group", "gcli", "twin", &[]);
    let b = Member::start(&broker, "gcli-group", "gcli", "twin", &[]);
    wait_until("both members assigned", SETTLE_TIMEOUT, || {
        let (x, y) = (a.assignment(), b.assignment());
        if x.len() == 1 && y.len() == 1 && x != y {
            Ok(())
        } else {
            Err(format!("{x:?} / {y:?}"))
        }
    });

    let out = crate::lakehouse::sluice_cli(&[
        "groups",
        "describe",
        "gcli-group",
        "-b",
        &broker.bootstrap(),
    ]);
    let members: Vec<Vec<&str>> = out
        .lines()
        .skip_while(|l| !l.starts_with("MEMBER ID"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(members.len(), 2, "two member rows in:\n{out}");
    let ids: BTreeSet<&str> = members.iter().map(|m| m[0]).collect();
    assert_eq!(ids.len(), 2, "distinct member ids in:\n{out}");
    for m in &members {
        assert!(m[0].starts_with("twin-"), "member id {m:?} in:\n{out}");
        assert_eq!(&m[1..], ["twin", "/127.0.0.1", "1"], "row {m:?} in:\n{out}");
    }
    // Each partition's owner is named by member id.
    let owners: BTreeSet<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("TOPIC"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    assert_eq!(owners, ids, "partition owners in:\n{out}");

    let bin = sluice_bin().unwrap();
    let missing = run_with_timeout(
        std::process::Command::new(&bin).args([
            "groups",
            "describe",
            "nosuch",
            "-b",
            &broker.bootstrap(),
        ]),
        None,
        Duration::from_secs(60),
    )
    .unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        !missing.status.success(),
        "describing an unknown group succeeded:\n{}",
        String::from_utf8_lossy(&missing.stdout)
    );
    assert!(
        stderr.contains("consumer group 'nosuch' does not exist"),
        "{stderr}"
    );
    a.close();
    b.close();
}
