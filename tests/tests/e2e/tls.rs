//! TLS listeners: a certificate authority made by the test with openssl,
//! kcat (librdkafka) producing and consuming over SSL, and plaintext
//! clients knocking on the TLS port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sluice_tests::{Broker, expect_success, free_port, kcat};

use crate::raw::frame;

const KCAT_TIMEOUT: Duration = Duration::from_secs(60);

/// A CA and a certificate it signed for 127.0.0.1: (ca.pem, server.pem, server.key).
/// Runs openssl in `dir`; panics with its error output on failure.
fn run_openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (installed by tests/run)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = |args: &[&str]| run_openssl(dir, args);
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=sluice test CA",
    ]);
    openssl(&ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(&csr);
    std::fs::write(
        dir.join("san.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.cnf",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

#[test]
fn tls_listener_serves_kcat_and_drops_plaintext_clients_alone() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certificates(certs.path());
    let tls_port = free_port();
    let tls_addr = format!("127.0.0.1:{tls_port}");
    let mut broker = Broker::start_with(&[
        "--listeners",
        &format!("PLAINTEXT://{{kafka}},SSL://{tls_addr}"),
        "--tls-cert",
        path(&cert),
        "--tls-key",
        path(&key),
    ]);
    let ssl = ["-b", tls_addr.as_str(), "-X", "security.protocol=ssl", "-X"];
    let ca_opt = format!("ssl.ca.location={}", path(&ca));

    // Produce and consume over TLS; Metadata on the TLS listener names the
    // TLS address, so librdkafka stays on it.
    let mut produce = ssl.to_vec();
    produce.extend([ca_opt.as_str(), "-P", "-t", "tls-orders"]);
    let out = kcat(&produce, Some(b"first\nsecond\n"), KCAT_TIMEOUT).unwrap();
    expect_success("kcat -P over SSL", &out);
    let mut consume = ssl.to_vec();
    consume.extend([
        ca_opt.as_str(),
        "-C",
        "-t",
        "tls-orders",
        "-o",
        "beginning",
        "-e",
    ]);
    let out = kcat(&consume, None, KCAT_TIMEOUT).unwrap();
    let text = expect_success("kcat -C over SSL", &out);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["first", "second"],
        "{text}"
    );
    let mut list = ssl.to_vec();
    list.extend([ca_opt.as_str(), "-L", "-t", "tls-orders"]);
    let text = expect_success(
        "kcat -L over SSL",
        &kcat(&list, None, KCAT_TIMEOUT).unwrap(),
    );
    assert!(
        text.contains(&tls_addr),
        "brokers not advertised at the TLS address:\n{text}"
    );

    // A client that does not trust the CA cannot connect.
    let untrusted = kcat(
        &[
            "-b",
            &tls_addr,
            "-X",
            "security.protocol=ssl",
            "-m",
            "5",
            "-L",
        ],
        None,
        KCAT_TIMEOUT,
    )
    .unwrap();
    assert!(
        !untrusted.status.success(),
        "kcat without the test CA listed metadata over TLS"
    );

    // A plaintext Kafka request on the TLS port: that connection ends, the
    // log says why, and both listeners keep serving.
    let mut plain = TcpStream::connect(&tls_addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    plain.write_all(&frame(18, 0, 1, &[])).unwrap();
    let mut rest = Vec::new();
    match plain.read_to_end(&mut rest) {
        Ok(_) => {}
        // Closed with our bytes unread: the peer sees a reset. Closed too.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the TLS listener did not close a plaintext connection: {e}"),
    }
    assert!(
        rest.len() < 8 || rest[..4] != 1i32.to_be_bytes()[..],
        "a plaintext client got a Kafka response from the TLS listener"
    );
    broker.assert_running();
    let log = broker.log();
    assert!(
        log.contains("TLS handshake failed"),
        "no log line for the plaintext client on the TLS listener:\n{}",
        broker.log_tail(40)
    );
    let text = expect_success(
        "kcat -L over SSL after",
        &kcat(&list, None, KCAT_TIMEOUT).unwrap(),
    );
    assert!(text.contains("tls-orders"), "{text}");
    let text = expect_success(
        "kcat -L on the plaintext listener",
        &kcat(
            &["-b", &broker.bootstrap(), "-L", "-m", "20"],
            None,
            KCAT_TIMEOUT,
        )
        .unwrap(),
    );
    assert!(text.contains("tls-orders"), "{text}");
}

#[test]
fn unauthenticated_network_binds_need_the_explicit_flag() {
    let err = match Broker::try_start_with(&["--listeners", "PLAINTEXT://0.0.0.0:0"]) {
        Ok(_) => panic!("a broker started on 0.0.0.0 without authentication"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("--allow-insecure-network"), "{err}");

    let certs = tempfile::tempdir().unwrap();
    let (_, cert, _) = make_certificates(certs.path());
    let err = match Broker::try_start_with(&[
        "--listeners",
        "PLAINTEXT://{kafka},SSL://127.0.0.1:0",
        "--tls-cert",
        path(&cert),
        "--tls-key",
        path(&cert),
    ]) {
        Ok(_) => panic!("a broker started with a certificate file as its key"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("private key"), "{err}");
}

/// A client certificate for `cn` signed by the test CA in `dir`:
/// (cert.pem, key.pem).
fn client_certificate(dir: &Path, cn: &str) -> (PathBuf, PathBuf) {
    let run = |args: &[&str]| run_openssl(dir, args);
    let (key, csr, cert) = (
        format!("{cn}.key"),
        format!("{cn}.csr"),
        format!("{cn}.pem"),
    );
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &csr,
        "-subj",
        &format!("/O=Sluice Tests/CN={cn}"),
    ]);
    std::fs::write(dir.join("client.cnf"), "extendedKeyUsage=clientAuth\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        &cert,
        "-days",
        "2",
        "-extfile",
        "client.cnf",
    ]);
    (dir.join(cert), dir.join(key))
}

#[test]
fn client_certificates_name_the_principal() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certificates(certs.path());
    let (alice_cert, alice_key) = client_certificate(certs.path(), "alice");
    let (bob_cert, bob_key) = client_certificate(certs.path(), "bob");
    let tls_addr = format!("127.0.0.1:{}", free_port());
    let broker = Broker::start_with(&[
        "--listeners",
        &format!("PLAINTEXT://{{kafka}},SSL://{tls_addr}"),
        "--tls-cert",
        path(&cert),
        "--tls-key",
        path(&key),
        "--tls-client-ca",
        path(&ca),
        // Local tools on the loopback plaintext listener administer.
        "--super-users",
        "User:ANONYMOUS",
    ]);
    let bootstrap = broker.bootstrap();
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["-b", bootstrap.as_str()]);
        crate::lakehouse::sluice_cli(&all)
    };
    cli(&["topics", "create", "mtls"]);
    for op in ["write", "read"] {
        cli(&[
            "acls",
            "add",
            "--allow",
            "User:CN=alice,O=Sluice Tests",
            "--operation",
            op,
            "--topic",
            "mtls",
        ]);
    }
    cli(&[
        "acls",
        "add",
        "--allow",
        "User:*",
        "--operation",
        "read",
        "--group",
        "*",
    ]);
    let listed = cli(&["acls", "list", "--topic", "mtls"]);
    assert!(listed.contains("User:CN=alice,O=Sluice Tests"), "{listed}");

    let ca_opt = format!("ssl.ca.location={}", path(&ca));
    let as_client = |cert: &Path, key: &Path, more: &[&str], stdin: Option<&[u8]>| {
        let cert_opt = format!("ssl.certificate.location={}", path(cert));
        let key_opt = format!("ssl.key.location={}", path(key));
        let mut args = vec![
            "-b",
            tls_addr.as_str(),
            "-X",
            "security.protocol=ssl",
            "-X",
            ca_opt.as_str(),
            "-X",
            cert_opt.as_str(),
            "-X",
            key_opt.as_str(),
        ];
        args.extend(more);
        kcat(&args, stdin, KCAT_TIMEOUT).unwrap()
    };
    let out = as_client(
        &alice_cert,
        &alice_key,
        &["-P", "-t", "mtls"],
        Some(b"signed\n"),
    );
    expect_success("kcat -P with alice's certificate", &out);
    let out = as_client(
        &alice_cert,
        &alice_key,
        &["-C", "-t", "mtls", "-o", "beginning", "-e"],
        None,
    );
    assert_eq!(expect_success("kcat -C as alice", &out).trim(), "signed");

    // bob's certificate is valid, but bob has no ACL on the topic.
    let out = as_client(
        &bob_cert,
        &bob_key,
        &["-P", "-t", "mtls", "-m", "5"],
        Some(b"forged\n"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("authorization failed"),
        "bob's produce was not refused:\n{stderr}"
    );

    // Without a certificate there is no TLS session at all.
    let out = kcat(
        &[
            "-b",
            &tls_addr,
            "-X",
            "security.protocol=ssl",
            "-X",
            &ca_opt,
            "-m",
            "5",
            "-L",
        ],
        None,
        KCAT_TIMEOUT,
    )
    .unwrap();
    assert!(
        !out.status.success(),
        "a client without a certificate got in"
    );
    let log = broker.log();
    assert!(
        log.contains("TLS client authenticated")
            && log.contains("principal=User:CN=alice,O=Sluice Tests"),
        "{}",
        broker.log_tail(30)
    );
    let again = expect_success(
        "kcat -C as alice, after",
        &as_client(
            &alice_cert,
            &alice_key,
            &["-C", "-t", "mtls", "-o", "beginning", "-e"],
            None,
        ),
    );
    assert_eq!(again.trim(), "signed", "bob's record got in");
}

/// A certificate principal has commas of its own (`User:CN=carol,O=...`),
/// so `--super-users` separates principals with `;` only, as Kafka does.
#[test]
fn certificate_principal_is_a_super_user() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certificates(certs.path());
    let (carol_cert, carol_key) = client_certificate(certs.path(), "carol");
    let (dave_cert, dave_key) = client_certificate(certs.path(), "dave");
    let tls_addr = format!("127.0.0.1:{}", free_port());
    let broker = Broker::start_with(&[
        "--listeners",
        &format!("PLAINTEXT://{{kafka}},SSL://{tls_addr}"),
        "--tls-cert",
        path(&cert),
        "--tls-key",
        path(&key),
        "--tls-client-ca",
        path(&ca),
        "--super-users",
        "User:CN=carol,O=Sluice Tests;User:ANONYMOUS",
    ]);
    crate::lakehouse::sluice_cli(&["topics", "create", "su", "-b", &broker.bootstrap()]);

    let ca_opt = format!("ssl.ca.location={}", path(&ca));
    let as_client = |cert: &Path, key: &Path, more: &[&str], stdin: Option<&[u8]>| {
        let cert_opt = format!("ssl.certificate.location={}", path(cert));
        let key_opt = format!("ssl.key.location={}", path(key));
        let mut args = vec![
            "-b",
            tls_addr.as_str(),
            "-X",
            "security.protocol=ssl",
            "-X",
            ca_opt.as_str(),
            "-X",
            cert_opt.as_str(),
            "-X",
            key_opt.as_str(),
        ];
        args.extend(more);
        kcat(&args, stdin, KCAT_TIMEOUT).unwrap()
    };
    // No ACL names carol: she writes and reads as a super user.
    let out = as_client(
        &carol_cert,
        &carol_key,
        &["-P", "-t", "su"],
        Some(b"super\n"),
    );
    expect_success("kcat -P with carol's certificate", &out);
    let out = as_client(
        &carol_cert,
        &carol_key,
        &["-C", "-t", "su", "-o", "beginning", "-e"],
        None,
    );
    assert_eq!(expect_success("kcat -C as carol", &out).trim(), "super");

    // dave is no super user and no ACL names him.
    let out = as_client(
        &dave_cert,
        &dave_key,
        &["-P", "-t", "su", "-m", "5"],
        Some(b"other\n"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("authorization failed"),
        "dave's produce was not refused:\n{stderr}"
    );

    // The old comma-separated form is refused at startup with a hint.
    let err = match Broker::try_start_with(&["--super-users", "User:admin,User:ANONYMOUS"]) {
        Ok(_) => panic!("a comma-separated --super-users list was accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("separate principals with ';'"), "{err}");
}
