//! No input, however mangled, makes the parser panic; every error it returns can be rendered.

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
}

#[test]
fn the_unmutated_file_is_valid() {
    assert!(parse_str("f.toml", VALID, Path::new("/srv")).is_ok());
}
