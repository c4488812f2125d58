//! TLS terminated by the router on a service's port, through the real binary: HTTPS with
//! HTTP/1.1 and HTTP/2 (ALPN), certificates chosen by SNI, a certificate replaced on disk
//! served to new connections while open ones go on, and every bad certificate or key refused
//! at deploy with its own message.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::*;
use rustls::pki_types::CertificateDer;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// A certificate authority that signs the tests' certificates.
struct Ca {
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
}

impl Ca {
    fn new() -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ebb test CA");
        let cert = params.self_signed(&key).unwrap();
        Ca { key, cert }
    }

    /// A certificate for `names` (expired when `expired`), written with its key as
    /// `<dir>/<stem>.pem` and `<dir>/<stem>-key.pem`.
    fn issue(&self, dir: &Path, stem: &str, names: &[&str], expired: bool) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let (cert_path, key_path) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}-key.pem")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, self.cert.pem()).unwrap();
        path
    }
}

/// A routed example-app service on `port` with TLS from `tls` (the table's body).
fn tls_service(port: u16, tls: &str) -> String {
    format!(
        "{}\n[services.web.tls]\n{tls}\n",
        app_service("web", 2, &format!("port = {port}"))
    )
}

/// `curl` over HTTPS to `name` (resolved to 127.0.0.1) on `port`: (HTTP version, status, body).
fn curl(ca: &Path, name: &str, port: u16, http: &str) -> (String, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", http, "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("{name}:{port}:127.0.0.1")])
        .args(["-w", "\n%{http_version} %{http_code}"])
        .arg(format!("https://{name}:{port}/"))
        .output()
        .expect("curl (apt-get install curl)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {name}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, last) = stdout.rsplit_once('\n').unwrap();
    let (version, status) = last.split_once(' ').unwrap();
    (version.into(), status.into(), body.into())
}

/// A kept-alive HTTPS connection (rustls, trusting only the test CA).
struct Client {
    tls: rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
}

impl Client {
    fn connect(ca: &Ca, name: &str, port: u16) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca.cert.der().to_vec()))
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = name.to_string().try_into().unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), server_name).unwrap();
        let socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Client {
            tls: rustls::StreamOwned::new(conn, socket),
        }
    }

    /// GET / on this connection: the status line.
    fn get(&mut self) -> String {
        self.tls
            .write_all(b"GET / HTTP/1.1\r\nHost: web.test\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            assert_eq!(self.tls.read(&mut byte).unwrap(), 1, "connection closed");
            got.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&got).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .expect("content-length");
        let mut body = vec![0u8; length];
        self.tls.read_exact(&mut body).unwrap();
        head.lines().next().unwrap().to_string()
    }

    /// The certificate the server presented on this connection.
    fn certificate(&mut self) -> Vec<u8> {
        while self.tls.conn.is_handshaking() {
            self.tls.conn.complete_io(&mut self.tls.sock).unwrap();
        }
        self.tls.conn.peer_certificates().unwrap()[0].to_vec()
    }
}

fn up() -> Ebb {
    Ebb::up_with(&[], &["--router-bind", "127.0.0.1"])
}

#[test]
fn https_and_http2_over_tls_answer_with_the_certificate_for_each_name() {
    let ebb = up();
    let dir = ebb.dir.path();
    let ca = Ca::new();
    let ca_file = ca.write(dir);
    let (web, web_key) = ca.issue(dir, "web", &["web.test"], false);
    let (api, api_key) = ca.issue(dir, "api", &["api.test", "*.api.test"], false);
    let port = free_port();
    let tls = format!(
        "cert = {web:?}\nkey = {web_key:?}\n[[services.web.tls.sni]]\ncert = {api:?}\nkey = {api_key:?}\n"
    );
    let file = deploy_file(dir, "web.toml", &tls_service(port, &tls));
    ebb.ok(&["deploy", "--timeout", "30s", file.to_str().unwrap()]);

    let (version, status, body) = curl(&ca_file, "web.test", port, "--http1.1");
    assert_eq!(
        (version.as_str(), status.as_str()),
        ("1.1", "200"),
        "{body}"
    );
    let (version, status, _) = curl(&ca_file, "web.test", port, "--http2");
    assert_eq!((version.as_str(), status.as_str()), ("2", "200"));
    // curl checks the name: each answers only with the certificate for it.
    let (_, status, _) = curl(&ca_file, "api.test", port, "--http2");
    assert_eq!(status, "200");
    let (_, status, _) = curl(&ca_file, "v2.api.test", port, "--http1.1");
    assert_eq!(status, "200");
    // A name no certificate has still gets a certificate (the first), which curl refuses for
    // that name: the handshake itself went through.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&ca_file)
        .args(["--resolve", &format!("other.test:{port}:127.0.0.1")])
        .arg(format!("https://other.test:{port}/"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("subject name"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Plain HTTP on the TLS port is not served as HTTP.
    assert!(http_get(&format!("127.0.0.1:{port}"), "/").is_none_or(|(status, _)| status != 200));
}

#[test]
fn a_certificate_replaced_on_disk_is_served_to_new_connections_while_open_ones_go_on() {
    let ebb = up();
    let dir = ebb.dir.path();
    let ca = Ca::new();
    let (web, web_key) = ca.issue(dir, "web", &["web.test"], false);
    let port = free_port();
    let tls = format!("cert = {web:?}\nkey = {web_key:?}\n");
    let file = deploy_file(dir, "web.toml", &tls_service(port, &tls));
    ebb.ok(&["deploy", "--timeout", "30s", file.to_str().unwrap()]);

    let mut old = Client::connect(&ca, "web.test", port);
    assert!(old.get().contains("200"));
    let first = old.certificate();
    // Renewed: a new certificate and key, written over the same files (key first, as a
    // renewal tool might; the pair loads once both are in place).
    let renewed = tempfile::tempdir().unwrap();
    let (cert, key) = ca.issue(renewed.path(), "web", &["web.test"], false);
    std::fs::copy(&key, &web_key).unwrap();
    std::fs::copy(&cert, &web).unwrap();
    eventually("the renewed certificate", Duration::from_secs(10), || {
        let mut new = Client::connect(&ca, "web.test", port);
        (new.certificate() != first).then_some(())
    });
    assert!(ebb.ok(&["events"]).contains("router.certificate"));
    // The connection opened before goes on, with the certificate it started with.
    assert!(old.get().contains("200"));
    assert_eq!(old.certificate(), first);
    let mut new = Client::connect(&ca, "web.test", port);
    assert!(new.get().contains("200"));

    // A broken replacement is not served: the last good certificate stays, and it says why.
    std::fs::write(&web_key, "not a key").unwrap();
    eventually("the warning", Duration::from_secs(10), || {
        ebb.ok(&["events"])
            .contains("changed certificate files are not served")
            .then_some(())
    });
    let mut after = Client::connect(&ca, "web.test", port);
    assert!(after.get().contains("200"));
    // A deploy that would rebuild the listener is refused while its files do not load, and
    // the port goes on serving the last good certificate.
    let text = format!(
        "{}[services.web.balance]\nretries = 1\n",
        tls_service(port, &tls)
    );
    let file = deploy_file(dir, "web.toml", &text);
    let out = ebb.cli(&["deploy", file.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "broken files are refused at deploy"
    );
    let mut still = Client::connect(&ca, "web.test", port);
    assert!(still.get().contains("200"));
}

#[test]
fn bad_certificates_and_keys_are_refused_at_deploy_each_with_its_message() {
    let ebb = up();
    let dir = ebb.dir.path();
    let ca = Ca::new();
    let (web, web_key) = ca.issue(dir, "web", &["web.test"], false);
    let (_, other_key) = ca.issue(dir, "other", &["other.test"], false);
    let not_pem = dir.join("not-pem.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let missing = dir.join("missing.pem");
    let port = free_port();
    let cases = [
        (&missing, &web_key, "cannot read the certificate"),
        (&web, &missing, "cannot read the key"),
        (&web, &not_pem, "is not a PEM private key"),
        (&not_pem, &web_key, "holds no certificate"),
        (&web, &other_key, "does not belong to the certificate"),
    ];
    for (cert, key, message) in cases {
        let tls = format!("cert = {cert:?}\nkey = {key:?}\n");
        let file = deploy_file(dir, "web.toml", &tls_service(port, &tls));
        let out = ebb.cli(&["deploy", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{message}: {stderr}");
        assert!(stderr.contains(message), "{message}: {stderr}");
        assert!(stderr.contains("services.web.tls"), "{stderr}");
    }
    // A missing key field is a deploy-file error with its place.
    let file = deploy_file(
        dir,
        "web.toml",
        &tls_service(port, &format!("cert = {web:?}")),
    );
    let out = ebb.cli(&["deploy", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("services.web.tls.key"), "{stderr}");
    // Nothing was deployed by any of them.
    assert!(ebb.ps(Some("web")).is_empty());

    // An expired certificate is served (refusing it would take the service down), with a
    // warning event.
    let (old, old_key) = ca.issue(dir, "old", &["web.test"], true);
    let tls = format!("cert = {old:?}\nkey = {old_key:?}\n");
    let file = deploy_file(dir, "web.toml", &tls_service(port, &tls));
    ebb.ok(&["deploy", "--timeout", "30s", file.to_str().unwrap()]);
    eventually("the expiry warning", Duration::from_secs(10), || {
        ebb.ok(&["events"]).contains("expired").then_some(())
    });
}
