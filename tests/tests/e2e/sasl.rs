//! SASL listeners: SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN with kcat
//! (librdkafka), users managed with `sluice users`, and clients that send
//! garbage, oversized tokens or requests before authenticating.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use sluice_tests::{Broker, expect_success, free_port, kcat, run_with_timeout, sluice_bin};

use crate::raw::{Reply, frame, read_reply};

const KCAT_TIMEOUT: Duration = Duration::from_secs(60);

/// A broker with a plaintext listener (the harness's, for local tools) and
/// a SASL_PLAINTEXT one; returns it with the SASL address.
pub(crate) fn sasl_broker(extra: &[&str]) -> (Broker, String) {
    let sasl_addr = format!("127.0.0.1:{}", free_port());
    let mut args = vec![
        "--listeners".to_string(),
        format!("PLAINTEXT://{{kafka}},SASL_PLAINTEXT://{sasl_addr}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (Broker::start_with(&args), sasl_addr)
}

/// `sluice users set NAME` with the password on standard input.
pub(crate) fn set_user(broker: &Broker, name: &str, password: &str) {
    let out = run_with_timeout(
        std::process::Command::new(sluice_bin().unwrap()).args([
            "users",
            "set",
            name,
            "-b",
            &broker.bootstrap(),
        ]),
        Some(format!("{password}\n").as_bytes()),
        Duration::from_secs(60),
    )
    .unwrap();
    expect_success(&format!("sluice users set {name}"), &out);
}

fn sasl_kcat(addr: &str, mechanism: &str, user: &str, password: &str) -> Vec<String> {
    [
        "-b",
        addr,
        "-X",
        "security.protocol=SASL_PLAINTEXT",
        "-X",
        &format!("sasl.mechanisms={mechanism}"),
        "-X",
        &format!("sasl.username={user}"),
        "-X",
        &format!("sasl.password={password}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run_kcat(base: &[String], more: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
    let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
    args.extend(more);
    kcat(&args, stdin, KCAT_TIMEOUT).unwrap()
}

#[test]
fn scram_and_plain_let_the_right_users_in() {
    // Authentication alone: no authorizer.
    let (broker, sasl) = sasl_broker(&["--authorizer", "none"]);
    set_user(&broker, "alice", "alice-secret");
    let listed = crate::lakehouse::sluice_cli(&["users", "list", "-b", &broker.bootstrap()]);
    assert!(
        listed.contains("alice")
            && listed.contains("SCRAM-SHA-256")
            && listed.contains("SCRAM-SHA-512"),
        "{listed}"
    );
    assert!(!listed.contains("alice-secret"), "{listed}");

    let sha256 = sasl_kcat(&sasl, "SCRAM-SHA-256", "alice", "alice-secret");
    let out = run_kcat(&sha256, &["-P", "-t", "sasl-orders"], Some(b"one\ntwo\n"));
    expect_success("kcat -P with SCRAM-SHA-256", &out);

    let sha512 = sasl_kcat(&sasl, "SCRAM-SHA-512", "alice", "alice-secret");
    let out = run_kcat(
        &sha512,
        &["-C", "-t", "sasl-orders", "-o", "beginning", "-e"],
        None,
    );
    let text = expect_success("kcat -C with SCRAM-SHA-512", &out);
    assert_eq!(text.lines().collect::<Vec<_>>(), ["one", "two"], "{text}");

    let plain = sasl_kcat(&sasl, "PLAIN", "alice", "alice-secret");
    let out = run_kcat(&plain, &["-L", "-t", "sasl-orders"], None);
    let text = expect_success("kcat -L with PLAIN", &out);
    assert!(text.contains("sasl-orders"), "{text}");

    // Wrong passwords and unknown users fail alike, with every mechanism.
    for (mechanism, user, password) in [
        ("SCRAM-SHA-256", "alice", "wrong"),
        ("SCRAM-SHA-512", "mallory", "alice-secret"),
        ("PLAIN", "alice", "wrong"),
    ] {
        let creds = sasl_kcat(&sasl, mechanism, user, password);
        let out = run_kcat(&creds, &["-L", "-m", "5"], None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{mechanism} as {user} with a wrong password succeeded:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            stderr.contains("invalid credentials"),
            "{mechanism} as {user}: no authentication error shown:\n{stderr}"
        );
    }
    let log = broker.log();
    assert!(
        log.contains(
            "SASL SCRAM-SHA-256 authentication failed: invalid credentials for user 'alice'"
        ),
        "{}",
        broker.log_tail(40)
    );
    assert!(log.contains("user 'mallory'"), "{}", broker.log_tail(40));

    // The `sluice` commands log in with SASL from the environment.
    let cli = |password: &str| {
        let mut cmd = std::process::Command::new(sluice_bin().unwrap());
        cmd.args(["topics", "list", "-b", &sasl])
            .env("SLUICE_SASL_MECHANISM", "SCRAM-SHA-512")
            .env("SLUICE_SASL_USERNAME", "alice")
            .env("SLUICE_SASL_PASSWORD", password);
        run_with_timeout(&mut cmd, None, Duration::from_secs(60)).unwrap()
    };
    let text = expect_success("sluice topics list over SASL", &cli("alice-secret"));
    assert!(text.contains("sasl-orders"), "{text}");
    let out = cli("wrong");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid credentials"), "{stderr}");

    // A deleted user can no longer log in.
    crate::lakehouse::sluice_cli(&["users", "delete", "alice", "-b", &broker.bootstrap()]);
    let out = run_kcat(&sha256, &["-L", "-m", "5"], None);
    assert!(!out.status.success(), "a deleted user still logged in");
}

fn string(s: &str) -> Vec<u8> {
    let mut out = (s.len() as i16).to_be_bytes().to_vec();
    out.extend(s.as_bytes());
    out
}

fn bytes(b: &[u8]) -> Vec<u8> {
    let mut out = (b.len() as i32).to_be_bytes().to_vec();
    out.extend(b);
    out
}

const SASL_HANDSHAKE: i16 = 17;
const SASL_AUTHENTICATE: i16 = 36;
const METADATA: i16 = 3;

fn error_code(reply: Reply) -> i16 {
    match reply {
        Reply::Frame(f) => i16::from_be_bytes([f[4], f[5]]),
        Reply::Closed => panic!("the broker closed the connection instead of answering"),
    }
}

#[test]
fn bad_sasl_clients_lose_only_their_connection() {
    let (mut broker, sasl) = sasl_broker(&["--authorizer", "none"]);
    set_user(&broker, "alice", "alice-secret");
    let connect = || {
        let s = TcpStream::connect(&sasl).unwrap();
        s.set_nodelay(true).unwrap();
        s
    };

    // Garbage where the SCRAM client-first message belongs.
    let mut s = connect();
    s.write_all(&frame(SASL_HANDSHAKE, 1, 1, &string("SCRAM-SHA-256")))
        .unwrap();
    assert_eq!(error_code(read_reply(&mut s)), 0);
    s.write_all(&frame(
        SASL_AUTHENTICATE,
        0,
        2,
        &bytes(b"\xff\x00not scram at all"),
    ))
    .unwrap();
    assert_eq!(
        error_code(read_reply(&mut s)),
        58,
        "SASL_AUTHENTICATION_FAILED"
    );
    assert!(matches!(read_reply(&mut s), Reply::Closed));

    // A mechanism the broker does not offer.
    let mut s = connect();
    s.write_all(&frame(SASL_HANDSHAKE, 1, 1, &string("GSSAPI")))
        .unwrap();
    assert_eq!(
        error_code(read_reply(&mut s)),
        33,
        "UNSUPPORTED_SASL_MECHANISM"
    );
    assert!(matches!(read_reply(&mut s), Reply::Closed));

    // A request before authenticating.
    let mut s = connect();
    s.write_all(&frame(METADATA, 1, 1, &(-1i32).to_be_bytes()))
        .unwrap();
    assert!(matches!(read_reply(&mut s), Reply::Closed));

    // An oversized token: the frame declares 8 MiB before any authentication.
    let mut s = connect();
    s.write_all(&frame(SASL_HANDSHAKE, 1, 1, &string("PLAIN")))
        .unwrap();
    assert_eq!(error_code(read_reply(&mut s)), 0);
    let mut big = (8i32 << 20).to_be_bytes().to_vec();
    big.extend([0u8; 1024]);
    let _ = s.write_all(&big);
    assert!(matches!(read_reply(&mut s), Reply::Closed));

    // The broker keeps serving authenticated clients.
    broker.assert_running();
    let creds = sasl_kcat(&sasl, "SCRAM-SHA-256", "alice", "alice-secret");
    let out = run_kcat(&creds, &["-L"], None);
    expect_success("kcat -L after the bad clients", &out);

    let log = broker.log();
    for line in [
        "SASL SCRAM-SHA-256 authentication failed: malformed SCRAM-SHA-256 message",
        "client asked for SASL mechanism 'GSSAPI'",
        "Metadata request before SASL authentication",
        "before SASL authentication: frame size 8388608",
    ] {
        assert!(
            log.contains(line),
            "no log line {line:?}:\n{}",
            broker.log_tail(40)
        );
    }
}

const REAUTH_SCRIPT: &str = r#"
import json, sys, time
from confluent_kafka import Consumer, KafkaError, Producer
sasl, topic = sys.argv[1], sys.argv[2]
conf = {'bootstrap.servers': sasl, 'security.protocol': 'SASL_PLAINTEXT',
        'sasl.mechanisms': 'SCRAM-SHA-256', 'sasl.username': 'alice',
        'sasl.password': 'alice-secret'}
p = Producer(conf)
c = Consumer(dict(conf, **{'group.id': 'reauth', 'auto.offset.reset': 'earliest'}))
c.subscribe([topic])
got, errors = [], []
# Produce one record a second for five session lifetimes, over the same
# connections, and read them back as they come.
for i in range(8):
    p.produce(topic, value=b'tick-%d' % i)
    p.flush(10)
    deadline = time.time() + 1
    while time.time() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            if m.error().code() != KafkaError._PARTITION_EOF:
                errors.append(m.error().name())
            continue
        got.append(m.value().decode())
deadline = time.time() + 15
while len(got) < 8 and time.time() < deadline:
    m = c.poll(0.2)
    if m is not None and not m.error():
        got.append(m.value().decode())
c.close()
print(json.dumps({'got': got, 'errors': errors}))
"#;

/// KIP-368: with a session lifetime, clients re-authenticate on their open
/// connections and keep working.
#[test]
fn sessions_are_renewed_by_reauthentication() {
    let (broker, sasl) = sasl_broker(&[
        "--authorizer",
        "none",
        "--sasl-session-lifetime-ms",
        "1500",
        "--http-open-health",
        "true",
        "--group-initial-rebalance-delay-ms",
        "0",
    ]);
    set_user(&broker, "alice", "alice-secret");
    let Some(out) = sluice_tests::run_python(REAUTH_SCRIPT, &[&sasl, "reauth"], KCAT_TIMEOUT)
    else {
        return;
    };
    let text = expect_success("confluent-kafka re-authentication script", &out);
    let v: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("bad script output ({e}): {text}"));
    let want: Vec<String> = (0..8).map(|i| format!("tick-{i}")).collect();
    assert_eq!(
        v["got"],
        serde_json::json!(want),
        "{v}\n{}",
        broker.log_tail(30)
    );
    assert_eq!(v["errors"], serde_json::json!([]), "{v}");
    let log = broker.log();
    assert!(
        !log.contains("SASL session expired"),
        "a client was cut off instead of re-authenticating:\n{}",
        broker.log_tail(30)
    );
    // The connections authenticated again and again: the broker counts it.
    let mut s = TcpStream::connect(broker.http_addr()).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut metrics = String::new();
    std::io::Read::read_to_string(&mut s, &mut metrics).unwrap();
    let reauths: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sluice_sasl_reauthentications_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no re-authentication counter:\n{metrics}"));
    assert!(reauths >= 2.0, "{reauths} re-authentications");
}
