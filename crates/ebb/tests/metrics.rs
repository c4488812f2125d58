//! `GET /metrics`: checked by the real `promtool` and scraped by a real Prometheus (Debian's
//! `prometheus` package, which `.ci/run` installs), whose PromQL sees the request rate.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `GET path` with an optional bearer token; (status, content type, body).
fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, String, String) {
    try_get(addr, path, token).unwrap_or_else(|| panic!("GET {path} from {addr}"))
}

/// [`get`], None when nothing answers (yet).
fn try_get(addr: &str, path: &str, token: Option<&str>) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    Some((status, content_type, body.to_string()))
}

/// The value of the sample whose name and labels are exactly `series` (`name{a="b",...}`).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

struct Api {
    addr: String,
    token: String,
}

impl Api {
    fn of(ebb: &Ebb) -> Api {
        let read = |f: &str| std::fs::read_to_string(ebb.data_dir().join(f)).unwrap();
        Api {
            addr: read("api.addr").trim().to_string(),
            token: read("api-token").trim().to_string(),
        }
    }

    fn scrape(&self) -> String {
        let (status, content_type, body) = get(&self.addr, "/metrics", Some(&self.token));
        assert_eq!(status, 200, "{body}");
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        body
    }
}

/// `promtool check metrics` on `text`: its exit status and what it printed.
fn promtool(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`; .ci/run installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

/// A Prometheus server scraping `api` every second, ended when dropped.
struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(api: &Api, token_file: &std::path::Path) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: ebb\n    \
                 authorization:\n      credentials_file: {}\n    static_configs:\n      - targets: [\"{}\"]\n",
                token_file.display(),
                api.addr
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian package `prometheus`; .ci/run installs it)");
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    /// The first value of an instant PromQL query's result, if it has one.
    fn query(&self, promql: &str) -> Option<f64> {
        let mut encoded = String::new();
        for b in promql.bytes() {
            if b.is_ascii_alphanumeric() {
                encoded.push(b as char);
            } else {
                encoded += &format!("%{b:02X}");
            }
        }
        let (status, _, body) =
            try_get(&self.addr, &format!("/api/v1/query?query={encoded}"), None)?;
        if status != 200 {
            return None;
        }
        let answer: Value = serde_json::from_str(&body).ok()?;
        answer["data"]["result"][0]["value"][1]
            .as_str()?
            .parse()
            .ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn metrics_pass_promtool_and_prometheus_sees_the_request_rate() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let web = deploy_file(
        dir.path(),
        "web.toml",
        &app_service("web", 2, &format!("port = {port}")),
    );
    let ebb = Ebb::up(&[&web]);
    ebb.wait_ready("web", 2, Duration::from_secs(30));
    let api = Api::of(&ebb);
    let router = format!("127.0.0.1:{port}");

    // The same token as the API: none, none served.
    let (status, _, _) = get(&api.addr, "/metrics", None);
    assert_eq!(status, 401);

    for _ in 0..30 {
        assert_eq!(http_get(&router, "/").unwrap().0, 200);
    }
    let (missing, _) = http_get(&router, "/no-such-page").unwrap();
    assert_eq!(missing, 404);

    // The router counts a request when its response has been sent: wait for the last one.
    let get_2xx = r#"ebb_http_server_request_duration_seconds_count{service="web",http_request_method="GET",http_response_status_class="2xx"}"#;
    let text = eventually("the requests counted", Duration::from_secs(5), || {
        let text = api.scrape();
        (value(&text, get_2xx)? >= 30.0).then_some(text)
    });
    let (ok, said) = promtool(&text);
    assert!(
        ok && said.trim().is_empty(),
        "promtool check metrics: {said}\n{text}"
    );
    let get_4xx = get_2xx.replace("2xx", "4xx");
    assert_eq!(value(&text, &get_4xx), Some(1.0), "{text}");
    let inf = r#"ebb_http_server_request_duration_seconds_bucket{service="web",http_request_method="GET",http_response_status_class="2xx",le="+Inf"}"#;
    assert_eq!(value(&text, inf), value(&text, get_2xx));
    assert_eq!(
        value(&text, r#"ebb_service_ready_instances{service="web"}"#),
        Some(2.0)
    );
    assert_eq!(
        value(&text, r#"ebb_service_desired_instances{service="web"}"#),
        Some(2.0)
    );
    assert_eq!(
        value(
            &text,
            r#"ebb_service_instances{service="web",state="running"}"#
        ),
        Some(2.0)
    );
    assert_eq!(value(&text, r#"ebb_node_up{node="test-node"}"#), Some(1.0));
    assert!(value(&text, r#"ebb_node_cpu_capacity_cores{node="test-node"}"#).unwrap() > 0.0);
    assert_eq!(value(&text, "ebb_server_leader"), Some(1.0));
    assert!(value(&text, "ebb_controller_pass_duration_seconds_count").unwrap() >= 1.0);
    assert!(value(&text, "ebb_store_revision").unwrap() > 0.0);
    // No label of a request or an instance: the id of neither appears.
    for instance in ebb.ps(Some("web")) {
        let id = instance["id"].as_str().unwrap();
        assert!(!text.contains(id), "instance id {id} in the metrics");
    }
    assert!(!text.contains("no-such-page"));

    // A real Prometheus scrapes it with the token from a file, and PromQL sees the load.
    let prometheus = Prometheus::start(&api, &ebb.data_dir().join("api-token"));
    let load = LoadGen::start(&router, 2);
    let rate = eventually(
        "a positive request rate in PromQL",
        Duration::from_secs(40),
        || {
            let up = prometheus.query(r#"up{job="ebb"}"#)?;
            let rate = prometheus.query(
            r#"sum(rate(ebb_http_server_request_duration_seconds_count{service="web",http_response_status_class="2xx"}[5s]))"#,
        )?;
            (up == 1.0 && rate > 0.0).then_some(rate)
        },
    );
    finish_without_failures(load, 10);
    assert!(rate > 1.0, "{rate} requests/s");
}

#[test]
fn cold_starts_autoscaler_rules_and_job_queue_waits_are_counted() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let done = dir.path().join("done");
    let file = deploy_file(
        dir.path(),
        "zero.toml",
        &format!(
            "{}\n[services.zero.autoscale]\nmin = 0\nmax = 2\nconcurrency = 4\nidle_timeout = \"1m\"\n\n\
             [jobs.sums]\ncommand = [\"sh\", \"-c\", \"echo $EBB_TASK_INDEX >> {}\"]\ntasks = 3\nqueue = \"batch\"\n",
            app_service("zero", 0, &format!("port = {port}")),
            done.display()
        ),
    );
    let ebb = Ebb::up(&[&file]);
    let api = Api::of(&ebb);

    // A request at zero instances waits in the queue and wakes the service. The load balancer
    // opens its port once the deploy is applied, a moment after the API answers.
    let addr = format!("127.0.0.1:{port}");
    eventually("the load balancer listens", Duration::from_secs(30), || {
        TcpStream::connect(&addr).ok()
    });
    let (status, _) = http_get_within(&addr, "/", Duration::from_secs(30)).unwrap();
    assert_eq!(status, 200);
    let text = eventually(
        "the cold start and the job counted",
        Duration::from_secs(30),
        || {
            let text = api.scrape();
            let completed = value(&text, r#"ebb_jobs{state="completed"}"#)?;
            (completed == 1.0).then_some(text)
        },
    );
    let (ok, said) = promtool(&text);
    assert!(
        ok && said.trim().is_empty(),
        "promtool check metrics: {said}\n{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"ebb_autoscaler_changes_total{service="zero",rule="demand"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(value(&text, r#"ebb_autoscaler_desired_instances{service="zero"}"#).unwrap() >= 1.0);
    // The forecast (on by default) reports from its first tick.
    eventually("the forecast reported", Duration::from_secs(10), || {
        value(
            &api.scrape(),
            r#"ebb_autoscaler_forecast_scored_seconds{service="zero"}"#,
        )
    });
    assert_eq!(
        value(
            &text,
            r#"ebb_router_queue_wait_seconds_count{service="zero"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            r#"ebb_router_queue_wait_seconds_bucket{service="zero",le="0.005"}"#
        ),
        Some(0.0),
        "a cold start takes longer than 5 ms"
    );
    assert_eq!(
        value(&text, r#"ebb_job_tasks{state="completed"}"#),
        Some(3.0)
    );
    assert_eq!(
        value(&text, r#"ebb_queue_wait_seconds_count{queue="batch"}"#),
        Some(3.0)
    );
    assert_eq!(
        value(&text, r#"ebb_queue_tasks{queue="batch",state="waiting"}"#),
        Some(0.0)
    );
}
