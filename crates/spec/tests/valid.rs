//! Valid deploy files become the expected `ServiceSpec`s, with ebb-core's defaults filled in.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use ebb_core::service::{
    DEFAULT_DRAIN, DEFAULT_HEALTHY_THRESHOLD, DEFAULT_HEALTH_INTERVAL, DEFAULT_HEALTH_TIMEOUT,
    DEFAULT_QUEUE_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, DEFAULT_RETRIES, DEFAULT_START_PERIOD,
    DEFAULT_STOP_GRACE, DEFAULT_STOP_SIGNAL, DEFAULT_UNHEALTHY_THRESHOLD,
};
use ebb_core::{
    BalanceAlgorithm, BalanceSpec, HealthCheck, HealthSpec, Placement, Protocol, Resources,
    ServiceSpec, StopSpec,
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
        autoscale: None,
        constraints: Vec::new(),
        placement: Placement::BinPack,
        tls: None,
        priority: None,
        restart: 0,
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
        autoscale: None,
        constraints: Vec::new(),
        placement: Placement::BinPack,
        tls: None,
        priority: None,
        restart: 0,
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
        autoscale: None,
        constraints: Vec::new(),
        placement: Placement::BinPack,
        tls: None,
        priority: None,
        restart: 0,
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

// === autoscaling ===

mod autoscale {
    use super::parse;
    use ebb_core::autoscale::{
        AutoscaleSpec, ForecastMode, ScaleMetric, ScalePolicy, ScaleTargets, ScheduleWindow,
        StepBand, StepChange, Weekdays, DEFAULT_IDLE_TIMEOUT, DEFAULT_PANIC_WINDOW,
        DEFAULT_SCALE_DOWN_DELAY, DEFAULT_STABLE_WINDOW, MINUTES_PER_DAY,
    };
    use ebb_core::ServiceSpec;
    use std::time::Duration;

    const WEB: &str = "[services.web]\ncommand = [\"a\"]\nport = 80\nresources = { cpu = 0.5, memory = \"256MiB\" }\n";

    fn autoscale_of(table: &str) -> (u32, AutoscaleSpec) {
        let specs = parse(&format!("{WEB}[services.web.autoscale]\n{table}"));
        let spec = specs.into_iter().next().unwrap();
        (spec.instances, spec.autoscale.expect("autoscale"))
    }

    #[test]
    fn target_tracking_with_every_setting() {
        let (instances, a) = autoscale_of(
            r#"min = 0
max = 20
concurrency = 10
rps = 150.5
cpu = 0.7
memory = 0.8
latency_p95 = "200ms"
policy = "target"
stable_window = "2m"
panic_window = "10s"
scale_down_delay = "5m"
idle_timeout = "15m"
forecast = "shadow"
"#,
        );
        assert_eq!(instances, 0, "starts at min");
        assert_eq!(
            a,
            AutoscaleSpec {
                min: 0,
                max: 20,
                targets: ScaleTargets {
                    concurrency: Some(10.0),
                    rps: Some(150.5),
                    cpu: Some(0.7),
                    memory: Some(0.8),
                    latency_p95: Some(Duration::from_millis(200)),
                },
                policy: ScalePolicy::Target,
                stable_window: Duration::from_secs(120),
                panic_window: Duration::from_secs(10),
                scale_down_delay: Duration::from_secs(300),
                scale_down_auto: false,
                idle_timeout: Duration::from_secs(900),
                idle_auto: false,
                forecast: ForecastMode::Shadow,
                // Not in deploy files: the defaults.
                ..AutoscaleSpec::new(0, 0, ScaleTargets::default())
            }
        );
    }

    #[test]
    fn idle_timeout_auto_learns_with_the_default_as_its_ceiling() {
        let (_, a) = autoscale_of("max = 5\nconcurrency = 10\nidle_timeout = \"auto\"\n");
        assert!(a.idle_auto);
        assert_eq!(a.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        // Also when left out: auto is the default.
        let (_, a) = autoscale_of("max = 5\nconcurrency = 10\n");
        assert!(a.idle_auto);
        assert_eq!(a.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        let (_, a) = autoscale_of("max = 5\nconcurrency = 10\nidle_timeout = \"2m\"\n");
        assert!(!a.idle_auto);
        assert_eq!(a.idle_timeout, Duration::from_secs(120));
    }

    #[test]
    fn scale_down_delay_is_learned_by_default_and_keeps_the_delay_until_then() {
        let (_, a) = autoscale_of("max = 5\nconcurrency = 10\nscale_down_delay = \"auto\"\n");
        assert!(a.scale_down_auto);
        assert_eq!(a.scale_down_delay, DEFAULT_SCALE_DOWN_DELAY);
        let (_, a) = autoscale_of("max = 5\nconcurrency = 10\nscale_down_delay = \"30s\"\n");
        assert!(!a.scale_down_auto);
        assert_eq!(a.scale_down_delay, Duration::from_secs(30));
        let (_, a) = autoscale_of("max = 5\nconcurrency = 10\n");
        assert!(a.scale_down_auto, "a learned delay by default");
        assert_eq!(a.scale_down_delay, DEFAULT_SCALE_DOWN_DELAY);
    }

    #[test]
    fn left_out_settings_take_the_defaults_of_the_design() {
        let (instances, a) = autoscale_of("max = 5\nconcurrency = 10\n");
        let expected = AutoscaleSpec::new(
            0,
            5,
            ScaleTargets {
                concurrency: Some(10.0),
                ..ScaleTargets::default()
            },
        );
        assert_eq!(a, expected);
        assert_eq!(instances, 0);
        assert_eq!(
            [
                a.stable_window,
                a.panic_window,
                a.scale_down_delay,
                a.idle_timeout
            ],
            [
                DEFAULT_STABLE_WINDOW,
                DEFAULT_PANIC_WINDOW,
                DEFAULT_SCALE_DOWN_DELAY,
                DEFAULT_IDLE_TIMEOUT
            ]
        );
        assert_eq!(DEFAULT_IDLE_TIMEOUT, Duration::from_secs(300));
    }

    #[test]
    fn instances_is_the_initial_count_within_the_bounds() {
        let specs = parse(&format!(
            "{WEB}instances = 4\nautoscale = {{ min = 2, max = 8, rps = 100 }}\n"
        ));
        assert_eq!(specs[0].instances, 4);
        let (instances, _) = autoscale_of("min = 3\nmax = 8\nrps = 100\n");
        assert_eq!(instances, 3);
    }

    #[test]
    fn step_policy_with_open_and_closed_bands() {
        let (_, a) = autoscale_of(
            r#"min = 1
max = 10
policy = "step"
metric = "cpu"
steps = [
  { from = 0.0, to = 0.3, change = "-1" },
  { from = 0.8, to = 0.9, change = "+2" },
  { from = 0.9, change = "+50%" },
]
"#,
        );
        assert_eq!(
            a.policy,
            ScalePolicy::Step {
                metric: ScaleMetric::Cpu,
                steps: vec![
                    StepBand {
                        from: 0.0,
                        to: Some(0.3),
                        change: StepChange::Remove(1)
                    },
                    StepBand {
                        from: 0.8,
                        to: Some(0.9),
                        change: StepChange::Add(2)
                    },
                    StepBand {
                        from: 0.9,
                        to: None,
                        change: StepChange::Percent(50.0)
                    },
                ],
            }
        );
        assert_eq!(a.targets, ScaleTargets::default());
    }

    #[test]
    fn step_bands_may_be_tables_with_integer_changes_and_latency_durations() {
        let (_, a) = autoscale_of(
            r#"min = 1
max = 10
policy = "step"
metric = "latency_p95"
[[services.web.autoscale.steps]]
from = "500ms"
to = "1s"
change = +1
[[services.web.autoscale.steps]]
from = "1s"
change = "+100%"
"#,
        );
        let ScalePolicy::Step { metric, steps } = a.policy else {
            panic!("{:?}", a.policy)
        };
        assert_eq!(metric, ScaleMetric::LatencyP95);
        assert_eq!(
            steps,
            [
                StepBand {
                    from: 0.5,
                    to: Some(1.0),
                    change: StepChange::Add(1)
                },
                StepBand {
                    from: 1.0,
                    to: None,
                    change: StepChange::Percent(100.0)
                },
            ]
        );
    }

    #[test]
    fn linear_policy() {
        let (_, a) = autoscale_of(
            "min = 1\nmax = 30\npolicy = \"linear\"\nmetric = \"rps\"\nlow = 50\nhigh = 200.5\nstep = 3\n",
        );
        assert_eq!(
            a.policy,
            ScalePolicy::Linear {
                metric: ScaleMetric::Rps,
                low: 50.0,
                high: 200.5,
                step: 3
            }
        );
    }

    #[test]
    fn schedule_policy_with_windows_that_default_to_the_tables_bounds() {
        let (instances, a) = autoscale_of(
            r#"min = 1
max = 20
concurrency = 10
policy = "schedule"

[[services.web.autoscale.schedule]]
days = "mon-fri"
hours = "09:00-18:00"
utc_offset = "+01:00"
min = 3
max = 30

[[services.web.autoscale.schedule]]
days = "sat,sun"
max = 4

[[services.web.autoscale.schedule]]
hours = "22:00-06:00"
utc_offset = "-05:30"
min = 0
"#,
        );
        assert_eq!(instances, 1);
        assert_eq!(a.targets.concurrency, Some(10.0));
        let ScalePolicy::Schedule { windows } = a.policy else {
            panic!("{:?}", a.policy)
        };
        assert_eq!(
            windows,
            [
                ScheduleWindow {
                    days: Weekdays::WEEKDAYS,
                    start: 9 * 60,
                    end: 18 * 60,
                    utc_offset_minutes: 60,
                    min: 3,
                    max: 30
                },
                ScheduleWindow {
                    days: Weekdays::WEEKEND,
                    start: 0,
                    end: MINUTES_PER_DAY,
                    utc_offset_minutes: 0,
                    min: 1,
                    max: 4
                },
                ScheduleWindow {
                    days: Weekdays::ALL,
                    start: 22 * 60,
                    end: 6 * 60,
                    utc_offset_minutes: -330,
                    min: 0,
                    max: 20
                },
            ]
        );
        assert_eq!(windows[0].to_string(), "mon-fri 09:00-18:00 UTC+01:00");
    }

    #[test]
    fn an_inline_schedule_works_like_tables() {
        let (_, a) = autoscale_of(
            "max = 5\nrps = 10\npolicy = \"schedule\"\nschedule = [{ days = \"*\", hours = \"8:00-24:00\", min = 2 }]\n",
        );
        let ScalePolicy::Schedule { windows } = a.policy else {
            panic!("{:?}", a.policy)
        };
        assert_eq!(
            (windows[0].start, windows[0].end),
            (8 * 60, MINUTES_PER_DAY)
        );
        assert_eq!((windows[0].min, windows[0].max), (2, 5));
    }

    #[test]
    fn a_schedule_may_scale_an_unrouted_service_to_zero() {
        let specs = parse(
            r#"[services.batch]
command = ["a"]
resources.cpu = 1
[services.batch.autoscale]
max = 8
cpu = 0.8
policy = "schedule"
[[services.batch.autoscale.schedule]]
days = "mon-fri"
hours = "08:00-20:00"
min = 2
"#,
        );
        assert_eq!(specs[0].instances, 0);
    }

    #[test]
    fn without_autoscale_nothing_changes() {
        let specs = parse("[services.web]\ncommand = [\"a\"]\n");
        assert_eq!(specs[0].autoscale, None);
        assert_eq!(specs[0].instances, 1);
    }

    #[test]
    fn autoscale_settings_do_not_change_the_version() {
        let plain = parse(WEB);
        let scaled = parse(&format!(
            "{WEB}instances = 1\n[services.web.autoscale]\nmin = 1\nmax = 9\nconcurrency = 5\n"
        ));
        let rescaled = parse(&format!(
            "{WEB}instances = 2\n[services.web.autoscale]\nmin = 2\nmax = 30\ncpu = 0.5\npolicy = \"target\"\nstable_window = \"30s\"\n"
        ));
        assert_ne!(scaled[0].autoscale, rescaled[0].autoscale);
        assert_eq!(plain[0].version(), scaled[0].version());
        assert_eq!(scaled[0].version(), rescaled[0].version());
    }

    #[test]
    fn parsed_specs_round_trip_through_json() {
        let text = format!(
            r#"{WEB}[services.web.autoscale]
max = 10
concurrency = 10
latency_p95 = "150ms"
policy = "schedule"
[[services.web.autoscale.schedule]]
days = "mon-fri"
hours = "09:00-18:00"
min = 2
[services.api]
command = ["b"]
port = 81
[services.api.autoscale]
min = 1
max = 4
policy = "step"
metric = "rps"
steps = [{{ from = 0, to = 10, change = "-1" }}, {{ from = 100, change = "+25%" }}]
[services.plain]
command = ["c"]
"#
        );
        let specs = parse(&text);
        assert_eq!(specs.len(), 3);
        for spec in specs {
            let json = serde_json::to_string(&spec).unwrap();
            let back: ServiceSpec = serde_json::from_str(&json).unwrap();
            assert_eq!(back, spec, "{json}");
            assert_eq!(back.validate(), []);
            assert_eq!(json.contains("autoscale"), spec.name != "plain", "{json}");
        }
    }
}

#[test]
fn constraints_and_placement_parse() {
    let specs = parse(
        "[services.web]\ncommand = [\"a\"]\nconstraints = [\"zone=a\", \"disk!=hdd\", \"node.ebb/rack = r-1\"]\nplacement = \"spread\"\n",
    );
    // Stored in the scheduler's canonical spelling: spacing does not change the version.
    assert_eq!(
        specs[0].constraints,
        ["zone=a", "disk!=hdd", "node.ebb/rack=r-1"]
    );
    assert_eq!(specs[0].placement, Placement::Spread);
    let binpack =
        parse("[services.web]\ncommand = [\"a\"]\nplacement = \"binpack\"\nconstraints = []\n");
    assert_eq!(binpack[0].placement, Placement::BinPack);
    assert_eq!(binpack[0].constraints, Vec::<String>::new());
    let inline = parse(
        "[services]\nweb = { command = [\"a\"], constraints = [\"zone != a\"], placement = \"spread\" }\n",
    );
    assert_eq!(inline[0].constraints, ["zone!=a"]);
    assert_eq!(inline[0].placement, Placement::Spread);
}

#[test]
fn without_constraints_and_placement_any_node_and_binpack_and_the_version_is_unchanged() {
    let plain = parse("[services.web]\ncommand = [\"a\"]\n");
    assert!(plain[0].constraints.is_empty());
    assert_eq!(plain[0].placement, Placement::BinPack);
    // The defaults written out give the same spec, hence the same version.
    let explicit =
        parse("[services.web]\ncommand = [\"a\"]\nconstraints = []\nplacement = \"binpack\"\n");
    assert_eq!(plain, explicit);
    // The strategy only steers new placements; the constraints decide where instances may run.
    let spread = parse("[services.web]\ncommand = [\"a\"]\nplacement = \"spread\"\n");
    assert_eq!(plain[0].version(), spread[0].version());
    let spaced = parse("[services.web]\ncommand = [\"a\"]\nconstraints = [\" zone = a \"]\n");
    let tight = parse("[services.web]\ncommand = [\"a\"]\nconstraints = [\"zone=a\"]\n");
    assert_eq!(spaced[0].version(), tight[0].version());
    assert_ne!(plain[0].version(), tight[0].version());
}

/// Every policy a deploy file can write comes out of the parser as a spec the one validator
/// (`AutoscaleSpec::problems`, which the autoscaler relies on) accepts, with the file's values.
#[test]
fn a_parsed_autoscale_table_is_a_valid_policy_config() {
    let tables = [
        "min = 0\nmax = 20\nconcurrency = 10\nidle_timeout = \"2m\"\n",
        "min = 1\nmax = 8\npolicy = \"step\"\nmetric = \"rps\"\nsteps = [ { from = 0.0, to = 10.0, change = \"-1\" }, { from = 50.0, change = \"+50%\" } ]\n",
        "min = 1\nmax = 8\npolicy = \"linear\"\nmetric = \"concurrency\"\nlow = 5\nhigh = 20\nstep = 2\n",
        "min = 1\nmax = 8\nrps = 50\npolicy = \"schedule\"\n[[services.web.autoscale.schedule]]\ndays = \"mon-fri\"\nhours = \"09:00-18:00\"\nmin = 3\n",
    ];
    for table in tables {
        let text = format!(
            "[services.web]\ncommand = [\"app\"]\nport = 8080\n[services.web.autoscale]\n{table}"
        );
        let specs =
            ebb_spec::parse_str("web.toml", &text, std::path::Path::new("/")).expect("valid file");
        let autoscale = specs[0].autoscale.as_ref().expect("autoscaled");
        assert_eq!(autoscale.problems(&specs[0].resources, true), [], "{table}");
    }
    let specs = ebb_spec::parse_str(
        "web.toml",
        "[services.web]\ncommand = [\"app\"]\nport = 8080\n[services.web.autoscale]\nmax = 3\nconcurrency = 5\nidle_timeout = \"2m\"\n",
        std::path::Path::new("/"),
    )
    .expect("valid file");
    let autoscale = specs[0].autoscale.as_ref().expect("autoscaled");
    assert_eq!(autoscale.idle_timeout, std::time::Duration::from_secs(120));
    assert_eq!(autoscale.targets.concurrency, Some(5.0));
}

#[test]
fn tls_certificates_resolve_against_the_file_and_sni_ones_follow_the_default() {
    let specs = parse(
        r#"
[services.web]
command = ["app"]
port = 8443
[services.web.tls]
cert = "certs/web.pem"
key = "/etc/ebb/web-key.pem"
[[services.web.tls.sni]]
cert = "./api.pem"
key = "api-key.pem"
"#,
    );
    let tls = specs[0].tls.clone().expect("tls");
    let pairs: Vec<(&str, &str)> = tls
        .certificates
        .iter()
        .map(|c| (c.cert.as_str(), c.key.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("/srv/app/certs/web.pem", "/etc/ebb/web-key.pem"),
            ("/srv/app/api.pem", "/srv/app/api-key.pem"),
        ]
    );
    // TLS is the router's: the instances' version does not change with it.
    let mut plain = specs[0].clone();
    plain.tls = None;
    assert_eq!(plain.version(), specs[0].version());
}
