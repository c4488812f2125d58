//! The web dashboard at `/ui/`, in a real headless Chromium (Debian's `chromium`, which `.ci/run`
//! installs) driven over the DevTools protocol: it logs in through `ebb ui`'s one-time URL,
//! shows the service and the node, and follows a scale through the event stream. A screenshot
//! is written for the test's output. Plus the login's rules, checked over plain HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use base64::Engine;
use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A request with a cookie and/or a token; (status, head, body).
fn request(addr: &str, method: &str, path: &str, headers: &[String]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

fn api_addr(ebb: &Ebb) -> String {
    std::fs::read_to_string(ebb.data_dir().join("api.addr"))
        .unwrap()
        .trim()
        .to_string()
}

/// `ebb ui --print`: the one-time login URL.
fn login_url(ebb: &Ebb) -> String {
    let url = ebb.ok(&["ui", "--print"]).trim().to_string();
    assert!(url.contains("/ui/login?code="), "{url}");
    url
}

#[test]
fn a_login_url_works_once_and_a_session_only_reads() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cret-in-env";
    let file = deploy_file(
        dir.path(),
        "web.toml",
        &app_service("web", 1, &format!("env = {{ DB_PASSWORD = \"{secret}\" }}")),
    );
    let ebb = Ebb::up(&[&file]);
    let addr = api_addr(&ebb);
    let url = login_url(&ebb);
    let path = url.split_once(&addr).unwrap().1.to_string();
    assert!(
        !url.contains(
            std::fs::read_to_string(ebb.data_dir().join("api-token"))
                .unwrap()
                .trim()
        ),
        "the API token is never in the URL"
    );

    let (status, head, _) = request(&addr, "GET", &path, &[]);
    assert_eq!(status, 303, "{head}");
    let cookie_line = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Max-Age=", "Path=/"] {
        assert!(cookie_line.contains(attribute), "{cookie_line}");
    }
    let session = cookie_line
        .split_once("ebb_session=")
        .unwrap()
        .1
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let cookie = format!("Cookie: ebb_session={session}");

    let (again, _, body) = request(&addr, "GET", &path, &[]);
    assert_eq!(again, 401, "a login URL works once: {body}");
    assert!(body.contains("ebb ui"), "{body}");

    let (status, _, body) = request(&addr, "GET", "/v1/status", std::slice::from_ref(&cookie));
    assert_eq!(status, 200, "a session reads: {body}");
    assert!(body.contains("\"web\""), "{body}");
    assert!(
        !body.contains(secret),
        "a session never sees an environment: {body}"
    );
    assert!(!body.contains("example-app"), "nor a command line: {body}");
    let token = format!(
        "Authorization: Bearer {}",
        std::fs::read_to_string(ebb.data_dir().join("api-token"))
            .unwrap()
            .trim()
    );
    let (_, _, body) = request(&addr, "GET", "/v1/status", &[token]);
    assert!(body.contains(secret), "the token sees it: {body}");
    // Only what the page shows: a page on another port of this host may see the cookie.
    for path in [
        "/v1/services",
        "/v1/services/web",
        "/v1/logs/web",
        "/v1/jobs",
        "/v1/events",
        "/metrics",
    ] {
        let (status, _, body) = request(&addr, "GET", path, std::slice::from_ref(&cookie));
        assert_eq!(status, 401, "a session does not read {path}: {body}");
    }
    let (status, _, _) = request(
        &addr,
        "GET",
        "/v1/status",
        &["Cookie: ebb_session=0123".into()],
    );
    assert_eq!(status, 401, "an unknown session reads nothing");
    let (status, _, body) = request(
        &addr,
        "POST",
        "/v1/services/web/restart",
        std::slice::from_ref(&cookie),
    );
    assert_eq!(status, 401, "a session changes nothing: {body}");
    let (status, _, _) = request(&addr, "POST", "/v1/ui/login", std::slice::from_ref(&cookie));
    assert_eq!(status, 401, "a session cannot make more logins");

    // The event stream: server-sent events, each with its sequence number as its id.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /v1/events/stream?limit=3 HTTP/1.1\r\nHost: {addr}\r\n{cookie}\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(s);
    let mut seen = String::new();
    while seen.matches("\ndata: ").count() < 3 {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "stream ended: {seen}"
        );
        seen.push_str(&line);
    }
    assert!(seen.contains("content-type: text/event-stream"), "{seen}");
    assert!(seen.contains("\nid: "), "{seen}");

    // Logging out ends the session.
    let (status, head, _) = request(&addr, "POST", "/ui/logout", std::slice::from_ref(&cookie));
    assert_eq!(status, 303, "{head}");
    assert!(head.contains("Max-Age=0"), "{head}");
    let (status, _, _) = request(&addr, "GET", "/v1/status", &[cookie]);
    assert_eq!(status, 401, "a session ends at logout");
}

/// A headless Chromium of its own (own profile, own DevTools port), killed when dropped.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    devtools: String,
}

impl Browser {
    fn start() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--window-size=1400,1100",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run chromium: Debian's `chromium` package (.ci/run installs it)");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let browser_ws = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium says where its DevTools listen");
        let devtools = browser_ws
            .strip_prefix("ws://")
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string();
        Browser {
            child,
            _profile: profile,
            devtools,
        }
    }

    /// The first page's DevTools connection.
    fn page(&self) -> Page {
        // Chromium keeps this connection open after its answer: a client that reads by length.
        let list = format!("http://{}/json/list", self.devtools);
        let targets: Vec<Value> = reqwest::blocking::get(list).unwrap().json().unwrap();
        let url = targets
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_string();
        let (socket, _) = tungstenite::connect(url).unwrap();
        Page { socket, next_id: 0 }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One page, spoken to with DevTools protocol commands.
struct Page {
    socket: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Page {
    /// Sends a command and waits for its answer (events in between are skipped).
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let message = json!({ "id": id, "method": method, "params": params });
        self.socket
            .send(tungstenite::Message::text(message.to_string()))
            .unwrap();
        loop {
            let text = match self.socket.read().unwrap() {
                tungstenite::Message::Text(text) => text.to_string(),
                _ => continue,
            };
            let answer: Value = serde_json::from_str(&text).unwrap();
            if answer["id"] == id {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression on the page.
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is `want` on the page; returns how long that took.
    fn wait_for(
        &mut self,
        what: &str,
        expression: &str,
        want: Value,
        within: Duration,
    ) -> Duration {
        let start = Instant::now();
        loop {
            let got = self.eval(expression);
            if got == want {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "{what}: `{expression}` is {got}, not {want}; page says: {}",
                self.eval("document.body.innerText")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&mut self, path: &PathBuf) {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(&png[1..4], b"PNG");
        std::fs::write(path, png).unwrap();
    }
}

#[test]
fn the_dashboard_shows_services_and_nodes_and_follows_a_scale_live() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let file = deploy_file(
        dir.path(),
        "web.toml",
        &app_service("web", 1, &format!("port = {port}")),
    );
    let ebb = Ebb::up(&[&file]);
    ebb.wait_ready("web", 1, Duration::from_secs(30));

    let browser = Browser::start();
    let mut page = browser.page();
    page.call("Page.navigate", json!({ "url": login_url(&ebb) }));
    page.wait_for(
        "the login lands on the dashboard",
        "location.pathname",
        json!("/ui/"),
        Duration::from_secs(30),
    );
    page.wait_for(
        "the service with its ready and desired instances",
        r#"document.querySelector('[data-service="web"] .count')?.textContent ?? null"#,
        json!("1/1"),
        Duration::from_secs(30),
    );
    page.wait_for(
        "the node",
        r#"document.querySelector('[data-node="test-node"] td')?.textContent ?? null"#,
        json!("test-node"),
        Duration::from_secs(30),
    );
    page.wait_for(
        "the event stream is open",
        r#"document.getElementById('live').textContent"#,
        json!("live"),
        Duration::from_secs(30),
    );
    assert_eq!(
        page.eval("document.cookie"),
        json!(""),
        "the session cookie is HttpOnly: script cannot read it"
    );
    assert_eq!(
        page.eval("document.querySelectorAll('.spark canvas').length > 0"),
        json!(true),
        "the service has its sparkline"
    );

    ebb.ok(&["scale", "web", "3"]);
    page.wait_for(
        "the scale arrives through the event stream",
        r#"[...document.querySelectorAll('#events .kind')].some(k => k.textContent === 'service.scaled')"#,
        json!(true),
        Duration::from_secs(30),
    );
    page.wait_for(
        "the page follows the scale",
        r#"document.querySelector('[data-service="web"] .count')?.textContent ?? null"#,
        json!("3/3"),
        Duration::from_secs(60),
    );
    page.wait_for(
        "the new instances are listed",
        r#"document.querySelectorAll('[data-instance]').length"#,
        json!(3),
        Duration::from_secs(30),
    );
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    page.screenshot(&shot);
    println!("dashboard screenshot: {}", shot.display());
}
