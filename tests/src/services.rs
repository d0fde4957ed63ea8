//! Private backing services for tests of the distributed backends: a real
//! PostgreSQL server ([`Postgres`]) and a real S3 API server ([`S3Server`],
//! moto), each started on a free loopback port with its own temporary
//! directory and stopped when the value is dropped.
//!
//! Both are plain child processes of the test. A small shell watchdog stops
//! each one should the test process die without dropping it (a crash, or a
//! server kept in a `static`, which is never dropped).
//!
//! PostgreSQL refuses to run as root. When the tests run as root (as on CI),
//! `initdb` and `postgres` are started as the `postgres` system user that the
//! Debian package creates, through `setpriv`, which execs the program in
//! place so the child's pid is the server's own.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::{OP_TIMEOUT, STARTUP_TIMEOUT, free_port, run_with_timeout};

/// How long a service may take to exit after it is asked to stop, before it
/// is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How many times a start is retried on fresh ports after losing a port race.
const PORT_ATTEMPTS: u32 = 5;
/// The database role the test server is created with; it needs no password.
pub const PG_USER: &str = "sluice";

/// A private PostgreSQL server on `127.0.0.1`.
///
/// The cluster lives in a temporary directory (data, socket and log) that is
/// removed on drop, after the server has been stopped. Durability is switched
/// off (`fsync`, `synchronous_commit`, `full_page_writes`): the data is
/// thrown away with the directory, and tests run faster without it.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// The system user the server runs as when the tests run as root.
    run_as: Option<String>,
    server: Option<Watched>,
    starts: u32,
}

impl Postgres {
    /// Creates a fresh cluster and starts a server on a free port.
    pub fn start() -> anyhow::Result<Postgres> {
        let bin = pg_bin_dir()?;
        let run_as = if is_root()? {
            Some("postgres".to_string())
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("sluice-pg-")
            .tempdir()
            .context("create temp dir")?;
        if let Some(user) = &run_as {
            // The server's user must own its data directory and be able to
            // create its socket and lock files next to it.
            let (uid, gid) = user_ids(user)?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .with_context(|| format!("chown {} to {user}", dir.path().display()))?;
        }
        let mut pg = Postgres {
            dir,
            bin,
            port: free_port(),
            run_as,
            server: None,
            starts: 0,
        };
        pg.initdb()?;
        let mut attempt = 1;
        loop {
            match pg.spawn_and_wait() {
                Ok(()) => return Ok(pg),
                Err(e) if attempt < PORT_ATTEMPTS && is_port_race(&e) => {
                    attempt += 1;
                    pg.port = free_port();
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// TCP port of the server.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connection URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates an empty database and returns its URL.
    pub fn create_database(&self, name: &str) -> anyhow::Result<String> {
        let out = run_with_timeout(
            Command::new(self.bin.join("createdb"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-U", PG_USER, "--", name]),
            None,
            OP_TIMEOUT,
        )?;
        check_output(&format!("createdb {name}"), &out)?;
        Ok(self.url(name))
    }

    /// Runs SQL in database `db` with `psql` and returns what it prints:
    /// unaligned rows without headers, one a line, fields separated by `|`.
    /// Fails on the first SQL error.
    pub fn psql(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        let out = run_with_timeout(
            Command::new(self.bin.join("psql"))
                .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
                .arg(format!("--dbname={}", self.url(db)))
                .args(["-c", sql]),
            None,
            OP_TIMEOUT,
        )?;
        check_output(&format!("psql {sql:?}"), &out)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The file that collects the server's output.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_path(), lines)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A command for a server-side program, run as the server's user.
    fn server_command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("setpriv");
                c.args(["--reuid", user, "--regid", user, "--init-groups", "--"])
                    .arg(program);
                c
            }
            None => Command::new(program),
        };
        // The test's working directory may be closed to the server's user.
        cmd.current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .env_remove("PGDATA");
        cmd
    }

    fn initdb(&self) -> anyhow::Result<()> {
        let out = run_with_timeout(
            self.server_command("initdb")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-A", "trust", "-U", PG_USER, "-E", "UTF8"])
                .args(["--locale=C", "--no-sync"]),
            None,
            STARTUP_TIMEOUT,
        )?;
        check_output("initdb", &out)
    }

    fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        self.starts += 1;
        let log = crate::open_log(
            &self.log_path(),
            &format!("postgres start #{}", self.starts),
        )?;
        let mut cmd = self.server_command("postgres");
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-F", "-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.server = Some(Watched::spawn(&mut cmd, "INT")?);

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.server.as_mut().and_then(Watched::exited) {
                self.server = None;
                bail!(
                    "postgres exited during startup with {status}\n--- postgres log tail ---\n{}",
                    self.log_tail(40)
                );
            }
            // The socket in our private directory can only be this server's,
            // and postgres creates it after binding its TCP listener.
            let ready = Command::new(self.bin.join("pg_isready"))
                .arg("-q")
                .arg("-h")
                .arg(self.dir.path())
                .args(["-p", &self.port.to_string(), "-U", PG_USER])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .context("run pg_isready")?;
            if ready.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                bail!(
                    "postgres did not accept connections within {STARTUP_TIMEOUT:?}\n\
                     --- postgres log tail ---\n{}",
                    self.log_tail(40)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            // SIGINT is PostgreSQL's fast shutdown: it disconnects clients
            // instead of waiting for them as SIGTERM does.
            server.stop("INT");
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private S3 API server (moto) on `127.0.0.1`.
///
/// Buckets and objects live in the server's memory and are gone once it
/// stops on drop. It accepts any credentials; [`S3Server::env`] gives the
/// settings a broker needs to use it.
pub struct S3Server {
    dir: tempfile::TempDir,
    port: u16,
    server: Option<Watched>,
}

impl S3Server {
    /// Starts moto's server on a free port.
    ///
    /// The server is `SLUICE_TEST_MOTO` if set (a `moto_server` executable),
    /// else `python -m moto.server` with `SLUICE_TEST_PYTHON` or `python3`.
    pub fn start() -> anyhow::Result<S3Server> {
        let dir = tempfile::Builder::new()
            .prefix("sluice-s3-")
            .tempdir()
            .context("create temp dir")?;
        let mut s3 = S3Server {
            dir,
            port: free_port(),
            server: None,
        };
        let mut attempt = 1;
        loop {
            match s3.spawn_and_wait() {
                Ok(()) => return Ok(s3),
                Err(e) if attempt < PORT_ATTEMPTS && is_port_race(&e) => {
                    attempt += 1;
                    s3.port = free_port();
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Base URL of the S3 API.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Environment for a process (a broker) that talks to this server
    /// through the AWS SDK conventions.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", &self.endpoint()),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Creates a bucket. Creating one that exists succeeds.
    pub fn create_bucket(&self, bucket: &str) -> anyhow::Result<()> {
        self.request_ok("PUT", &format!("/{}", encode(bucket, false)), b"")?;
        Ok(())
    }

    /// Stores an object.
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) -> anyhow::Result<()> {
        self.request_ok("PUT", &object_path(bucket, key), body)?;
        Ok(())
    }

    /// Reads an object.
    pub fn get_object(&self, bucket: &str, key: &str) -> anyhow::Result<Vec<u8>> {
        self.request_ok("GET", &object_path(bucket, key), b"")
    }

    /// Keys of all objects in `bucket` whose key starts with `prefix`, in
    /// key order.
    pub fn list_keys(&self, bucket: &str, prefix: &str) -> anyhow::Result<Vec<String>> {
        self.list_keys_paged(bucket, prefix, 1000)
    }

    /// [`S3Server::list_keys`], asking for `page` keys at a time.
    fn list_keys_paged(
        &self,
        bucket: &str,
        prefix: &str,
        page: usize,
    ) -> anyhow::Result<Vec<String>> {
        let mut keys = vec![];
        let mut token: Option<String> = None;
        loop {
            let mut path = format!(
                "/{}?list-type=2&max-keys={page}&prefix={}",
                encode(bucket, false),
                encode(prefix, false)
            );
            if let Some(t) = &token {
                path.push_str(&format!("&continuation-token={}", encode(t, false)));
            }
            let body = self.request_ok("GET", &path, b"")?;
            let xml = String::from_utf8_lossy(&body);
            for contents in elements(&xml, "Contents") {
                if let Some(key) = elements(contents, "Key").next() {
                    keys.push(xml_unescape(key));
                }
            }
            let truncated = elements(&xml, "IsTruncated").next() == Some("true");
            token = elements(&xml, "NextContinuationToken")
                .next()
                .map(xml_unescape);
            if !truncated || token.is_none() {
                return Ok(keys);
            }
        }
    }

    /// How many objects in `bucket` have a key starting with `prefix`.
    pub fn count_objects(&self, bucket: &str, prefix: &str) -> anyhow::Result<usize> {
        Ok(self.list_keys(bucket, prefix)?.len())
    }

    /// The file that collects the server's output.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("moto.log")
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_path(), lines)
    }

    fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        let log = crate::open_log(&self.log_path(), &format!("moto on port {}", self.port))?;
        let mut cmd = match std::env::var_os("SLUICE_TEST_MOTO") {
            Some(moto) => Command::new(moto),
            None => {
                let python = crate::test_python().unwrap_or_else(|| PathBuf::from("python3"));
                let mut c = Command::new(python);
                c.args(["-m", "moto.server"]);
                c
            }
        };
        cmd.args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.server = Some(Watched::spawn(&mut cmd, "TERM")?);

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.server.as_mut().and_then(Watched::exited) {
                self.server = None;
                bail!(
                    "the S3 server exited during startup with {status} (is moto[server] \
                     installed? tests/run --setup-only installs it and sets \
                     SLUICE_TEST_PYTHON)\n--- moto log tail ---\n{}",
                    self.log_tail(40)
                );
            }
            // Any HTTP answer will do; our process is still alive (checked
            // above), so the port is not held by someone else.
            if self.request("GET", "/", b"").is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                bail!(
                    "the S3 server did not answer on {} within {STARTUP_TIMEOUT:?}\n\
                     --- moto log tail ---\n{}",
                    self.endpoint(),
                    self.log_tail(40)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends one request and fails unless the answer is a 2xx.
    fn request_ok(&self, method: &str, path: &str, body: &[u8]) -> anyhow::Result<Vec<u8>> {
        let (status, answer) = self.request(method, path, body)?;
        if !(200..300).contains(&status) {
            bail!(
                "{method} {path} answered {status}: {}",
                String::from_utf8_lossy(&answer)
            );
        }
        Ok(answer)
    }

    /// Sends one HTTP/1.0 request (so the answer is never chunked and the
    /// server closes the connection after it) and returns status and body.
    fn request(&self, method: &str, path: &str, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .with_context(|| format!("connect to {addr}"))?;
        stream.set_read_timeout(Some(OP_TIMEOUT))?;
        stream.set_write_timeout(Some(OP_TIMEOUT))?;
        // moto does not check signatures, but a request without credentials
        // is anonymous and may not read objects; any SigV4 header naming an
        // access key makes it a request of moto's default account, the same
        // one that brokers using `env()` act as.
        let head = format!(
            "{method} {path} HTTP/1.0\r\n\
             Host: 127.0.0.1:{port}\r\n\
             Authorization: AWS4-HMAC-SHA256 \
             Credential=testing/20240101/us-east-1/s3/aws4_request, \
             SignedHeaders=host, Signature=0\r\n\
             Content-Type: application/octet-stream\r\n\
             Content-Length: {len}\r\n\r\n",
            port = self.port,
            len = body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut answer = vec![];
        stream
            .read_to_end(&mut answer)
            .with_context(|| format!("read answer to {method} {path}"))?;
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .with_context(|| format!("{method} {path}: answer without a header end"))?;
        let head = String::from_utf8_lossy(&answer[..split]);
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .with_context(|| format!("{method} {path}: bad status line in {head:?}"))?;
        Ok((status, answer[split + 4..].to_vec()))
    }

    fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop("TERM");
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A server process plus a watchdog that sends it a signal should the test
/// process die first.
struct Watched {
    child: Child,
    watchdog: Option<Child>,
}

impl Watched {
    fn spawn(cmd: &mut Command, signal: &str) -> anyhow::Result<Watched> {
        let child = cmd.spawn().with_context(|| format!("spawn {cmd:?}"))?;
        // Signals the server only once the test process is gone: while this
        // process lives it stops the server itself (and the watchdog first,
        // so the watchdog never signals a reused pid).
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(
                r#"while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done
                   kill -0 "$1" 2>/dev/null || kill -"$3" "$2" 2>/dev/null"#,
            )
            .arg("watchdog")
            .arg(std::process::id().to_string())
            .arg(child.id().to_string())
            .arg(signal)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        Ok(Watched { child, watchdog })
    }

    /// The exit status, if the server has exited.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Stops the watchdog, then asks the server to stop with `signal` and
    /// kills it if it has not exited within [`STOP_TIMEOUT`].
    fn stop(mut self, signal: &str) {
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        if self.exited().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The directory holding `initdb`, `postgres`, `createdb` and `psql`: the
/// highest version under `/usr/lib/postgresql` (Debian keeps the server
/// programs there, off `PATH`), else the directory of `initdb` on `PATH`.
fn pg_bin_dir() -> anyhow::Result<PathBuf> {
    let mut best: Option<(Vec<u64>, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(version) = name
                .split('.')
                .map(str::parse::<u64>)
                .collect::<Result<Vec<_>, _>>()
            else {
                continue;
            };
            let bin = entry.path().join("bin");
            if bin.join("initdb").is_file() && best.as_ref().is_none_or(|(v, _)| version > *v) {
                best = Some((version, bin));
            }
        }
    }
    if let Some((_, bin)) = best {
        return Ok(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        if dir.join("initdb").is_file() {
            return Ok(dir);
        }
    }
    bail!(
        "PostgreSQL server programs (initdb) not found under /usr/lib/postgresql or on PATH; \
         install the `postgresql` package (tests/run --setup-only does)"
    )
}

fn is_root() -> anyhow::Result<bool> {
    let out = Command::new("id").arg("-u").output().context("run id -u")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Uid and gid of a system user.
fn user_ids(user: &str) -> anyhow::Result<(u32, u32)> {
    let id = |flag: &str| -> anyhow::Result<u32> {
        let out = Command::new("id")
            .args([flag, user])
            .output()
            .context("run id")?;
        if !out.status.success() {
            bail!(
                "running as root, and PostgreSQL refuses to: it would run as user `{user}`, \
                 which does not exist (the `postgresql` package creates it): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .with_context(|| format!("parse `id {flag} {user}`"))
    };
    Ok((id("-u")?, id("-g")?))
}

/// Whether a start failed because another process took the port first.
fn is_port_race(e: &anyhow::Error) -> bool {
    format!("{e:#}").contains("already in use")
}

fn check_output(what: &str, out: &Output) -> anyhow::Result<()> {
    if !out.status.success() {
        bail!(
            "{what} failed with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn tail(path: &Path, lines: usize) -> String {
    let log = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `/bucket/key`, each part percent-encoded (the `/`s of the key kept).
fn object_path(bucket: &str, key: &str) -> String {
    format!("/{}/{}", encode(bucket, false), encode(key, true))
}

/// Percent-encodes all but RFC 3986 unreserved characters (and `/` if
/// `keep_slash`).
fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The texts of the `<tag>...</tag>` elements in `xml`, in order. Enough for
/// S3's listing answers, whose elements carry no attributes.
fn elements<'a>(xml: &'a str, tag: &str) -> impl Iterator<Item = &'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut rest = xml;
    std::iter::from_fn(move || {
        let start = rest.find(&open)? + open.len();
        let len = rest[start..].find(&close)?;
        let text = &rest[start..start + len];
        rest = &rest[start + len + close.len()..];
        Some(text)
    })
}

/// Resolves XML character and entity references.
fn xml_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.find(';') else { break };
        let entity = &rest[1..semi];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .map(|h| u32::from_str_radix(h, 16))
                .or_else(|| entity.strip_prefix('#').map(str::parse::<u32>))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_postgres_serves_sql() {
        let pg = Postgres::start().expect("start postgres");
        let url = pg.create_database("services_check").expect("create db");
        assert_eq!(url, pg.url("services_check"));
        assert_eq!(pg.psql("services_check", "SELECT 1").unwrap().trim(), "1");
        pg.psql(
            "services_check",
            "CREATE TABLE t (k text PRIMARY KEY); INSERT INTO t VALUES ('a'), ('b');",
        )
        .unwrap();
        assert_eq!(
            pg.psql("services_check", "SELECT count(*) FROM t")
                .unwrap()
                .trim(),
            "2"
        );
        // A second database is independent of the first.
        pg.create_database("services_other").unwrap();
        let err = pg
            .psql("services_other", "SELECT count(*) FROM t")
            .unwrap_err();
        assert!(format!("{err:#}").contains("does not exist"), "{err:#}");

        let port = pg.port();
        drop(pg);
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "postgres still listening on {port} after drop"
        );
    }

    #[test]
    fn services_s3_stores_and_lists_objects() {
        let s3 = S3Server::start().expect("start S3 server");
        s3.create_bucket("sluice-check").unwrap();
        s3.create_bucket("sluice-check").unwrap();
        s3.put_object("sluice-check", "a/one.bin", b"hello")
            .unwrap();
        s3.put_object("sluice-check", "a/two words&=.bin", b"")
            .unwrap();
        s3.put_object("sluice-check", "b/three.bin", &[0, 1, 2, 255])
            .unwrap();
        assert_eq!(
            s3.list_keys("sluice-check", "a/").unwrap(),
            ["a/one.bin", "a/two words&=.bin"]
        );
        assert_eq!(s3.count_objects("sluice-check", "").unwrap(), 3);
        assert_eq!(
            s3.get_object("sluice-check", "a/one.bin").unwrap(),
            b"hello"
        );
        assert_eq!(
            s3.get_object("sluice-check", "b/three.bin").unwrap(),
            [0, 1, 2, 255]
        );
        assert!(s3.get_object("sluice-check", "missing").is_err());
        assert!(s3.list_keys("no-such-bucket", "").is_err());
        let env = s3.env();
        assert!(env.contains(&("AWS_ENDPOINT_URL".to_string(), s3.endpoint())));

        let port = s3.port;
        drop(s3);
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "S3 server still listening on {port} after drop"
        );
    }

    #[test]
    fn services_s3_lists_past_one_page() {
        let s3 = S3Server::start().expect("start S3 server");
        s3.create_bucket("sluice-pages").unwrap();
        let want: Vec<String> = (0..7).map(|i| format!("k/{i:02}")).collect();
        for key in &want {
            s3.put_object("sluice-pages", key, b"x").unwrap();
        }
        s3.put_object("sluice-pages", "other", b"x").unwrap();
        assert_eq!(s3.list_keys_paged("sluice-pages", "k/", 2).unwrap(), want);
    }

    #[test]
    fn services_xml_helpers() {
        let xml = "<R><Contents><Key>a&amp;b</Key></Contents><Contents><Key>c&#x41;&#66;</Key>\
                   </Contents><IsTruncated>false</IsTruncated></R>";
        let keys: Vec<String> = elements(xml, "Contents")
            .filter_map(|c| elements(c, "Key").next().map(xml_unescape))
            .collect();
        assert_eq!(keys, ["a&b", "cAB"]);
        assert_eq!(xml_unescape("x & y &bogus; z"), "x & y &bogus; z");
        assert_eq!(encode("a b/c", true), "a%20b/c");
        assert_eq!(encode("a b/c", false), "a%20b%2Fc");
    }
}
