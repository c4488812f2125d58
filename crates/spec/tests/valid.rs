//! Valid deploy files become the expected `ServiceSpec`s, with ebb-core's defaults filled in.

use ebb_core::service::{
    DEFAULT_DRAIN, DEFAULT_HEALTHY_THRESHOLD, DEFAULT_HEALTH_INTERVAL, DEFAULT_HEALTH_TIMEOUT,
    DEFAULT_QUEUE_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, DEFAULT_RETRIES, DEFAULT_START_PERIOD,
    DEFAULT_STOP_GRACE, DEFAULT_STOP_SIGNAL, DEFAULT_UNHEALTHY_THRESHOLD,
};
use ebb_core::{
    BalanceAlgorithm, BalanceSpec, HealthCheck, HealthSpec, Protocol, Resources, ServiceSpec,
    StopSpec,
};
use ebb_spec::{parse_file, parse_files, parse_str};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const FULL: &str = r#"
[services.hello]
command = ["python3", "app.py", "--port", "${PORT}"]
instances = 3
env = { GREETING = "hi" }
workdir = "./app"
[services.hello.resources]
cpu = 0.25
memory = "64MiB"
[services.hello.health]
http = "/healthz"
interval = "2s"
timeout = "750ms"
unhealthy_threshold = 5
healthy_threshold = 2
start_period = "1m"
[services.hello.stop]
signal = "SIGINT"
grace = "30s"
"#;

fn parse(text: &str) -> Vec<ServiceSpec> {
    parse_str("deploy.toml", text, Path::new("/srv/app"))
        .unwrap_or_else(|e| panic!("should parse:\n{}", e.render()))
}

#[test]
fn a_full_service_parses_to_the_expected_spec() {
    let expected = ServiceSpec {
        name: "hello".into(),
        command: ["python3", "app.py", "--port", "${PORT}"]
            .map(String::from)
            .to_vec(),
        instances: 3,
        env: BTreeMap::from([("GREETING".to_string(), "hi".to_string())]),
        workdir: Some("/srv/app/app".into()),
        resources: Resources {
            cpu_millis: Some(250),
            memory_bytes: Some(64 << 20),
        },
        health: HealthSpec {
            check: HealthCheck::Http {
                path: "/healthz".into(),
            },
            interval: Duration::from_secs(2),
            timeout: Duration::from_millis(750),
            unhealthy_threshold: 5,
            healthy_threshold: 2,
            start_period: Duration::from_secs(60),
        },
        stop: StopSpec {
            signal: "SIGINT".into(),
            grace: Duration::from_secs(30),
        },
        port: None,
        protocol: Default::default(),
        balance: Default::default(),
    };
    assert_eq!(parse(FULL), vec![expected]);
}

#[test]
fn left_out_fields_take_the_defaults_and_workdir_is_the_files_folder() {
    let specs = parse("[services.web]\ncommand = [\"ebb\", \"example-app\"]\n");
    let expected = ServiceSpec {
        name: "web".into(),
        command: vec!["ebb".into(), "example-app".into()],
        instances: 1,
        env: BTreeMap::new(),
        workdir: Some("/srv/app".into()),
        resources: Resources::default(),
        health: HealthSpec {
            check: HealthCheck::Tcp,
            interval: DEFAULT_HEALTH_INTERVAL,
            timeout: DEFAULT_HEALTH_TIMEOUT,
            unhealthy_threshold: DEFAULT_UNHEALTHY_THRESHOLD,
            healthy_threshold: DEFAULT_HEALTHY_THRESHOLD,
            start_period: DEFAULT_START_PERIOD,
        },
        stop: StopSpec {
            signal: DEFAULT_STOP_SIGNAL.into(),
            grace: DEFAULT_STOP_GRACE,
        },
        port: None,
        protocol: Default::default(),
        balance: Default::default(),
    };
    assert_eq!(specs, vec![expected]);
}

#[test]
fn cpu_as_millicores_and_as_cores_are_the_same() {
    for cpu in ["\"250m\"", "0.25", "\"0.25\""] {
        let specs = parse(&format!(
            "[services.web]\ncommand = [\"a\"]\nresources = {{ cpu = {cpu} }}\n"
        ));
        assert_eq!(specs[0].resources.cpu_millis, Some(250), "cpu = {cpu}");
    }
    let specs = parse("[services.web]\ncommand = [\"a\"]\nresources = { cpu = 2 }\n");
    assert_eq!(specs[0].resources.cpu_millis, Some(2000));
}

#[test]
fn memory_may_be_plain_bytes() {
    let specs = parse("[services.web]\ncommand = [\"a\"]\nresources.memory = 1048576\n");
    assert_eq!(specs[0].resources.memory_bytes, Some(1 << 20));
}

#[test]
fn tcp_and_command_health_checks_parse() {
    let specs = parse("[services.web]\ncommand = [\"a\"]\nhealth.tcp = true\n");
    assert_eq!(specs[0].health.check, HealthCheck::Tcp);
    let specs = parse("[services.web]\ncommand = [\"a\"]\nhealth.command = [\"true\"]\n");
    assert_eq!(
        specs[0].health.check,
        HealthCheck::Command {
            argv: vec!["true".into()]
        }
    );
}

#[test]
fn zero_instances_is_allowed() {
    assert_eq!(
        parse("[services.web]\ncommand = [\"a\"]\ninstances = 0\n")[0].instances,
        0
    );
}

#[test]
fn services_come_out_in_file_order() {
    let text = r#"
[services.zeta]
command = ["z"]

[services.alpha.resources]
cpu = 1

[services.mid]
command = ["m"]

[services.alpha]
command = ["a"]
"#;
    let names: Vec<String> = parse(text).into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["zeta", "mid", "alpha"]);
}

#[test]
fn inline_tables_and_dotted_keys_work_like_headers() {
    let dotted = parse("services.web.command = [\"a\"]\nservices.web.instances = 2\n");
    let inline = parse("[services]\nweb = { command = [\"a\"], instances = 2 }\n");
    let headers = parse("[services.web]\ncommand = [\"a\"]\ninstances = 2\n");
    assert_eq!(dotted, headers);
    assert_eq!(inline, headers);
}

#[test]
fn absolute_workdirs_are_kept() {
    let specs = parse("[services.web]\ncommand = [\"a\"]\nworkdir = \"/opt/web\"\n");
    assert_eq!(specs[0].workdir.as_deref(), Some("/opt/web"));
}

#[test]
fn parse_file_resolves_workdir_against_the_files_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deploy.toml");
    std::fs::write(
        &path,
        "[services.web]\ncommand = [\"a\"]\nworkdir = \"site\"\n",
    )
    .unwrap();
    let specs = parse_file(&path).unwrap();
    assert_eq!(
        specs[0].workdir,
        Some(dir.path().join("site").display().to_string())
    );
}

#[test]
fn parse_files_joins_the_services_of_all_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.toml");
    let b = dir.path().join("b.toml");
    std::fs::write(&a, "[services.web]\ncommand = [\"a\"]\n").unwrap();
    std::fs::write(&b, "[services.api]\ncommand = [\"b\"]\n").unwrap();
    let names: Vec<String> = parse_files(&[a, b])
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["web", "api"]);
}

#[test]
fn the_same_file_reached_by_two_paths_gives_the_same_spec() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(
        dir.path().join("a.toml"),
        "[services.web]\ncommand = [\"x\"]\n",
    )
    .unwrap();
    let direct = ebb_spec::parse_file(&dir.path().join("a.toml")).unwrap();
    let roundabout = ebb_spec::parse_file(&sub.join("..").join("a.toml")).unwrap();
    assert_eq!(direct, roundabout);
    assert_eq!(direct[0].version(), roundabout[0].version());
}

// === routing ===

#[test]
fn a_routed_service_parses_with_its_port_protocol_and_balance_settings() {
    let specs = parse(
        r#"
[services.web]
command = ["ebb", "example-app"]
instances = 4
port = 8080
protocol = "http"
[services.web.balance]
algorithm = "least_request"
retries = 0
slow_start = "20s"
drain = "5s"
request_timeout = "2m"
queue_timeout = "1500ms"
"#,
    );
    let expected = ServiceSpec {
        name: "web".into(),
        command: vec!["ebb".into(), "example-app".into()],
        instances: 4,
        env: BTreeMap::new(),
        workdir: Some("/srv/app".into()),
        resources: Resources::default(),
        health: HealthSpec::default(),
        stop: StopSpec::default(),
        port: Some(8080),
        protocol: Protocol::Http,
        balance: BalanceSpec {
            algorithm: BalanceAlgorithm::LeastRequest,
            retries: 0,
            slow_start: Duration::from_secs(20),
            drain: Duration::from_secs(5),
            request_timeout: Duration::from_secs(120),
            queue_timeout: Duration::from_millis(1500),
            hash_header: None,
        },
    };
    assert_eq!(specs, vec![expected]);
}

#[test]
fn a_port_without_balance_settings_takes_the_default_balancing() {
    let specs = parse("[services.web]\ncommand = [\"a\"]\nport = 443\n");
    assert_eq!(specs[0].port, Some(443));
    assert_eq!(specs[0].protocol, Protocol::Http);
    assert_eq!(
        specs[0].balance,
        BalanceSpec {
            algorithm: BalanceAlgorithm::PeakEwma,
            retries: DEFAULT_RETRIES,
            slow_start: Duration::ZERO,
            drain: DEFAULT_DRAIN,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            hash_header: None,
        }
    );
    assert_eq!(DEFAULT_QUEUE_TIMEOUT, Duration::from_secs(3));
}

#[test]
fn some_balance_settings_keep_the_defaults_for_the_rest() {
    let specs = parse("[services.web]\ncommand = [\"a\"]\nport = 80\nbalance.retries = 5\n");
    assert_eq!(
        specs[0].balance,
        BalanceSpec {
            retries: 5,
            ..BalanceSpec::default()
        }
    );
}

#[test]
fn every_balancing_algorithm_parses() {
    for (name, algorithm) in [
        ("round_robin", BalanceAlgorithm::RoundRobin),
        ("least_request", BalanceAlgorithm::LeastRequest),
        ("peak_ewma", BalanceAlgorithm::PeakEwma),
        ("hash", BalanceAlgorithm::Hash),
    ] {
        let specs = parse(&format!(
            "[services.web]\ncommand = [\"a\"]\nport = 80\nbalance = {{ algorithm = \"{name}\" }}\n"
        ));
        assert_eq!(specs[0].balance.algorithm, algorithm, "{name}");
    }
}

#[test]
fn tcp_services_may_hash_on_the_client_address() {
    let specs = parse(
        "[services.db]\ncommand = [\"a\"]\nport = 5432\nprotocol = \"tcp\"\n[services.db.balance]\nalgorithm = \"hash\"\n",
    );
    assert_eq!(specs[0].protocol, Protocol::Tcp);
    assert_eq!(specs[0].balance.algorithm, BalanceAlgorithm::Hash);
}

#[test]
fn hash_header_is_stored_in_lower_case_whichever_comes_first_in_the_table() {
    for table in [
        "algorithm = \"hash\"\nhash_header = \"X-User-Id\"\n",
        "hash_header = \"X-User-Id\"\nalgorithm = \"hash\"\n",
    ] {
        let specs = parse(&format!(
            "[services.web]\ncommand = [\"a\"]\nport = 80\n[services.web.balance]\n{table}"
        ));
        assert_eq!(specs[0].balance.algorithm, BalanceAlgorithm::Hash);
        assert_eq!(specs[0].balance.hash_header.as_deref(), Some("x-user-id"));
    }
}

#[test]
fn queue_timeout_accepts_any_duration_up_to_ten_minutes() {
    for (text, expected) in [
        ("1ms", Duration::from_millis(1)),
        ("30s", Duration::from_secs(30)),
        ("10m", Duration::from_secs(600)),
    ] {
        let specs = parse(&format!(
            "[services.web]\ncommand = [\"a\"]\nport = 80\nbalance.queue_timeout = \"{text}\"\n"
        ));
        assert_eq!(specs[0].balance.queue_timeout, expected, "{text}");
    }
}

#[test]
fn the_new_balance_settings_do_not_change_the_version() {
    let plain = parse("[services.web]\ncommand = [\"a\"]\nport = 80\n");
    let tuned = parse(
        "[services.web]\ncommand = [\"a\"]\nport = 80\n[services.web.balance]\nalgorithm = \"hash\"\nhash_header = \"x-user-id\"\nqueue_timeout = \"20s\"\n",
    );
    assert_ne!(plain[0].balance, tuned[0].balance);
    assert_eq!(plain[0].version(), tuned[0].version());
}

#[test]
fn services_on_different_ports_across_files_are_fine() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.toml");
    let b = dir.path().join("b.toml");
    std::fs::write(&a, "[services.web]\ncommand = [\"a\"]\nport = 8080\n").unwrap();
    std::fs::write(
        &b,
        "[services.api]\ncommand = [\"b\"]\nport = 8081\n[services.worker]\ncommand = [\"c\"]\n",
    )
    .unwrap();
    let ports: Vec<Option<u16>> = parse_files(&[a, b])
        .unwrap()
        .into_iter()
        .map(|s| s.port)
        .collect();
    assert_eq!(ports, [Some(8080), Some(8081), None]);
}
