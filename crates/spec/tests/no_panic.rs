//! No input, however mangled, makes the parser panic; every error it returns can be rendered.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use ebb_spec::parse_str;
use proptest::prelude::*;
use std::path::Path;

const VALID: &str = r#"[services.hello]
command = ["python3", "app.py", "--port", "${PORT}"]
instances = 3
env = { GREETING = "hi" }
workdir = "."
port = 8080
protocol = "http"
constraints = ["zone=a", "disk!=hdd"]
placement = "spread"
[services.hello.resources]
cpu = 0.25
memory = "64MiB"
[services.hello.health]
http = "/healthz"
interval = "1s"
timeout = "500ms"
unhealthy_threshold = 3
healthy_threshold = 1
start_period = "30s"
[services.hello.stop]
signal = "SIGTERM"
grace = "10s"
[services.hello.balance]
algorithm = "hash"
hash_header = "X-User-Id"
retries = 2
slow_start = "0s"
drain = "30s"
request_timeout = "60s"
queue_timeout = "3s"
[services.hello.autoscale]
min = 1
max = 10
concurrency = 10
rps = 100
cpu = 0.7
memory = 0.8
latency_p95 = "200ms"
policy = "target"
stable_window = "60s"
panic_window = "6s"
scale_down_delay = "60s"
idle_timeout = "5m"
"#;

/// The other scaling policies, each with every field it takes.
const POLICIES: &str = r#"[services.step]
command = ["a"]
port = 81
resources = { cpu = "500m" }
[services.step.autoscale]
min = 0
max = 20
policy = "step"
metric = "cpu"
steps = [ { from = 0.0, to = 0.3, change = "-1" }, { from = 0.8, to = 0.9, change = +2 }, { from = 0.9, change = "+50%" } ]
[services.linear]
command = ["b"]
port = 82
instances = 2
autoscale = { min = 1, max = 30, policy = "linear", metric = "latency_p95", low = "50ms", high = "200ms", step = 3 }
[services.schedule]
command = ["c"]
[services.schedule.resources]
memory = "256MiB"
[services.schedule.autoscale]
max = 20
memory = 0.8
policy = "schedule"
[[services.schedule.autoscale.schedule]]
days = "mon-fri"
hours = "09:00-18:00"
utc_offset = "+01:00"
min = 3
max = 30
[[services.schedule.autoscale.schedule]]
days = "sat,sun"
hours = "22:00-06:00"
min = 1
[[services.schedule.autoscale.schedule]]
days = "daily"
max = 2
"#;

/// Parses, and checks what any error says is well-formed.
fn check(text: &str) {
    if let Err(errs) = parse_str("f.toml", text, Path::new("/srv")) {
        assert!(!errs.0.is_empty());
        let lines = text.split('\n').count();
        for e in &errs.0 {
            assert!(e.line >= 1 && e.line <= lines, "{e}");
            assert!(e.column >= 1, "{e}");
            assert!(!e.message.is_empty(), "{e}");
            let _ = e.render();
        }
    }
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, char),
    Delete(usize),
    Replace(usize, char),
}

fn edit() -> impl Strategy<Value = Edit> {
    // Characters that matter to TOML, plus anything at all.
    let ch = prop_oneof![
        prop::sample::select(vec![
            '[', ']', '{', '}', '"', '\'', '=', '.', ',', '\n', '#', '-', '0', 'é', ' '
        ]),
        any::<char>(),
    ];
    prop_oneof![
        (any::<usize>(), ch.clone()).prop_map(|(i, c)| Edit::Insert(i, c)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), ch).prop_map(|(i, c)| Edit::Replace(i, c)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        let n = chars.len().max(1);
        match *e {
            Edit::Insert(i, c) => chars.insert(i % (chars.len() + 1), c),
            Edit::Delete(i) if !chars.is_empty() => {
                chars.remove(i % n);
            }
            Edit::Replace(i, c) if !chars.is_empty() => chars[i % n] = c,
            _ => {}
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check(&text);
    }

    #[test]
    fn toml_like_text_never_panics(text in "[\\[\\]{}=\".,a-z0-9 \n#-]{0,200}") {
        check(&text);
    }

    #[test]
    fn mutated_valid_files_never_panic(edits in prop::collection::vec(edit(), 1..8)) {
        check(&apply(VALID, &edits));
    }

    #[test]
    fn mutated_scaling_policies_never_panic(edits in prop::collection::vec(edit(), 1..8)) {
        check(&apply(POLICIES, &edits));
    }
}

#[test]
fn the_unmutated_files_are_valid() {
    let specs = parse_str("f.toml", VALID, Path::new("/srv")).unwrap();
    assert!(specs[0].autoscale.is_some());
    let specs = parse_str("f.toml", POLICIES, Path::new("/srv")).unwrap_or_else(|e| panic!("{e}"));
    assert!(specs.iter().all(|s| s.autoscale.is_some()), "{specs:?}");
}
