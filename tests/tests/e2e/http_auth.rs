//! `--http-auth`: the schema registry, the Iceberg REST catalog, SQL and the
//! admin API want HTTP basic credentials (a Sluice user) or a bearer token;
//! SQL answers with the caller's purpose grants and topic ACLs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64_lite::encode;
use sluice_tests::Broker;

use crate::sasl::{sasl_broker, set_user};

/// A tiny base64 encoder, enough for basic credentials.
mod base64_lite {
    pub fn encode(data: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

/// One HTTP/1.1 request; returns (status, body).
fn http(addr: &str, method: &str, path: &str, auth: Option<&str>, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the HTTP port");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    (status, body)
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", encode(format!("{user}:{password}").as_bytes()))
}

fn produce(broker: &Broker, topic: &str) {
    let out = sluice_tests::kcat(
        &["-b", &broker.bootstrap(), "-P", "-t", topic],
        Some(b"a\nb\n"),
        Duration::from_secs(60),
    )
    .unwrap();
    sluice_tests::expect_success("kcat -P", &out);
}

#[test]
fn http_interfaces_want_credentials() {
    let policy = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        policy.path(),
        "purposes = [\"billing\"]\n[grants]\n\"User:alice\" = [\"billing\"]\n",
    )
    .unwrap();
    let (broker, _sasl) = sasl_broker(&[
        "--http-auth",
        "true",
        "--http-open-health",
        "true",
        "--authorizer",
        "acl",
        "--super-users",
        "User:admin;User:ANONYMOUS",
        "--policy-file",
        policy.path().to_str().unwrap(),
        "--table-commit-interval-ms",
        "100",
    ]);
    set_user(&broker, "admin", "admin-pw");
    set_user(&broker, "alice", "alice-pw");
    set_user(&broker, "bob", "bob-pw");
    produce(&broker, "invoices");
    let registry = broker.registry_addr();
    let http_addr = broker.http_addr();

    // No credentials, wrong ones: 401 from the registry and the catalog.
    for (addr, path) in [
        (registry.as_str(), "/subjects"),
        (http_addr.as_str(), "/v1/config"),
        (http_addr.as_str(), "/v1/namespaces"),
    ] {
        let (status, body) = http(addr, "GET", path, None, "");
        assert_eq!(status, 401, "{path} without credentials: {body}");
        let (status, _) = http(addr, "GET", path, Some(&basic("alice", "nope")), "");
        assert_eq!(status, 401, "{path} with a wrong password");
        let (status, body) = http(addr, "GET", path, Some(&basic("alice", "alice-pw")), "");
        assert_eq!(status, 200, "{path} with alice's password: {body}");
    }
    // Health and metrics stay open as configured.
    assert_eq!(http(&http_addr, "GET", "/healthz", None, "").0, 200);
    assert_eq!(http(&http_addr, "GET", "/metrics", None, "").0, 200);

    // Bearer tokens: made by an admin, not by alice; revoked, they stop working.
    let (status, _) = http(
        &http_addr,
        "POST",
        "/admin/tokens",
        Some(&basic("alice", "alice-pw")),
        r#"{"principal": "User:alice"}"#,
    );
    assert_eq!(status, 403, "alice may not make tokens");
    let (status, body) = http(
        &http_addr,
        "POST",
        "/admin/tokens",
        Some(&basic("admin", "admin-pw")),
        r#"{"principal": "User:alice"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let made: serde_json::Value = serde_json::from_str(&body).unwrap();
    let bearer = format!("Bearer {}", made["token"].as_str().unwrap());
    let (status, body) = http(&registry, "GET", "/subjects", Some(&bearer), "");
    assert_eq!(status, 200, "{body}");
    let (status, listed) = http(
        &http_addr,
        "GET",
        "/admin/tokens",
        Some(&basic("admin", "admin-pw")),
        "",
    );
    assert_eq!(status, 200);
    assert!(listed.contains("User:alice"), "{listed}");
    assert!(
        !listed.contains(made["token"].as_str().unwrap()),
        "{listed}"
    );

    // SQL applies the caller's grants and ACLs: alice may declare billing,
    // bob may not; neither has READ on the topic until an ACL says so.
    let sql = |auth: &str, purpose: &str| {
        http(
            &http_addr,
            "POST",
            &format!("/sql?purpose={purpose}"),
            Some(auth),
            "SELECT count(*) FROM invoices",
        )
    };
    let (status, body) = sql(&basic("bob", "bob-pw"), "billing");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("not granted purpose 'billing'"), "{body}");
    let (status, body) = sql(&bearer, "billing");
    assert_eq!(status, 400, "no READ ACL, no table: {body}");

    // An admin grants bob billing with `sluice purposes`, then takes it back.
    let purposes = |args: &[&str]| {
        let mut cmd = std::process::Command::new(sluice_tests::sluice_bin().unwrap());
        cmd.arg("purposes")
            .args(args)
            .args(["--http", &http_addr])
            .env("SLUICE_HTTP_USER", "admin")
            .env("SLUICE_HTTP_PASSWORD", "admin-pw");
        let out = sluice_tests::run_with_timeout(&mut cmd, None, Duration::from_secs(60)).unwrap();
        sluice_tests::expect_success(&format!("sluice purposes {}", args.join(" ")), &out)
    };
    purposes(&["grant", "User:bob", "billing"]);
    let listed = purposes(&["list"]);
    assert!(
        listed.contains("User:bob") && listed.contains("admin"),
        "{listed}"
    );
    assert!(
        listed.contains("User:alice") && listed.contains("policy file"),
        "{listed}"
    );
    let (status, body) = sql(&basic("bob", "bob-pw"), "billing");
    assert_eq!(status, 400, "granted now, but still no READ ACL: {body}");
    purposes(&["revoke", "User:bob", "billing"]);
    let (status, body) = sql(&basic("bob", "bob-pw"), "billing");
    assert_eq!(status, 403, "{body}");

    let acl = |principal: &str| {
        let out = sluice_tests::run_with_timeout(
            std::process::Command::new(sluice_tests::sluice_bin().unwrap()).args([
                "acls",
                "add",
                "--allow",
                principal,
                "--operation",
                "read",
                "--topic",
                "invoices",
                "-b",
                &broker.bootstrap(),
            ]),
            None,
            Duration::from_secs(60),
        )
        .unwrap();
        sluice_tests::expect_success("sluice acls add", &out);
    };
    acl("User:alice");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = sql(&bearer, "billing");
        if status == 200 && body.contains("\"2\"") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "alice's SQL never saw the 2 rows: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // The REST catalog follows the same ACLs: alice loads and lists the
    // table, bob (no READ on the topic) does neither.
    let table = "/v1/namespaces/kafka/tables/invoices";
    let (status, body) = http(&http_addr, "GET", table, Some(&bearer), "");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(&http_addr, "GET", table, Some(&basic("bob", "bob-pw")), "");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("ForbiddenException"), "{body}");
    let tables = "/v1/namespaces/kafka/tables";
    let (_, listed) = http(&http_addr, "GET", tables, Some(&bearer), "");
    assert!(listed.contains("invoices"), "{listed}");
    let (status, listed) = http(&http_addr, "GET", tables, Some(&basic("bob", "bob-pw")), "");
    assert_eq!(status, 200);
    assert!(!listed.contains("invoices"), "{listed}");

    let id = made["id"].as_str().unwrap();
    let (status, _) = http(
        &http_addr,
        "DELETE",
        &format!("/admin/tokens/{id}"),
        Some(&basic("admin", "admin-pw")),
        "",
    );
    assert_eq!(status, 200);
    let (status, _) = http(&registry, "GET", "/subjects", Some(&bearer), "");
    assert_eq!(status, 401, "a revoked token still works");
}
