//! Every kind of mistake in a deploy file is reported with file:line:col, the field, and a message
//! that says what is wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use ebb_spec::{parse_file, parse_files, parse_str, SpecError};
use std::path::Path;

fn errors(text: &str) -> Vec<SpecError> {
    match parse_str("deploy.toml", text, Path::new("/srv/app")) {
        Ok(specs) => panic!("expected errors, got {specs:?}"),
        Err(e) => e.0,
    }
}

/// The only error for `text`, checked for place, field and a phrase of the message.
fn only_error(text: &str, line: usize, column: usize, field: &str, phrase: &str) -> SpecError {
    let all = errors(text);
    assert_eq!(all.len(), 1, "expected one error, got:\n{}", lines(&all));
    let e = all.into_iter().next().unwrap();
    assert_error(&e, line, column, field, phrase);
    e
}

fn assert_error(e: &SpecError, line: usize, column: usize, field: &str, phrase: &str) {
    assert_eq!(e.file, "deploy.toml", "{e}");
    assert_eq!((e.line, e.column), (line, column), "{e}");
    assert_eq!(e.field.as_deref(), Some(field), "{e}");
    assert!(
        e.to_string().contains(phrase),
        "{e:?} should say {phrase:?}"
    );
}

fn lines(all: &[SpecError]) -> String {
    all.iter().map(|e| format!("{e}\n")).collect()
}

const HEAD: &str = "[services.web]\ncommand = [\"python3\", \"app.py\"]\n";

// === syntax ===

#[test]
fn a_toml_syntax_error_is_located_and_names_the_key() {
    let e = only_error(
        &format!("{HEAD}instances = = 3\n"),
        3,
        13,
        "services.web.instances",
        "invalid TOML",
    );
    assert!(e
        .to_string()
        .starts_with("deploy.toml:3:13: services.web.instances: invalid TOML"));
}

#[test]
fn a_service_defined_twice_in_one_file_is_a_located_syntax_error() {
    let text = format!("{HEAD}\n[services.web]\ncommand = [\"b\"]\n");
    only_error(&text, 4, 1, "services.web", "duplicate key");
}

#[test]
fn a_key_given_twice_is_a_located_syntax_error() {
    let text = format!("{HEAD}instances = 1\ninstances = 2\n");
    only_error(
        &text,
        4,
        1,
        "services.web.instances",
        "duplicate key `instances`",
    );
}

// === unknown fields ===

#[test]
fn an_unknown_top_level_key_is_refused() {
    let e = only_error(
        &format!("version = 2\n{HEAD}"),
        1,
        1,
        "version",
        "unknown field `version`",
    );
    assert_eq!(
        e.hint.as_deref(),
        Some("valid fields here are `services`, `jobs` and `queues`")
    );
}

#[test]
fn a_misspelt_service_field_gets_a_suggestion() {
    let e = only_error(
        &format!("{HEAD}instnces = 3\n"),
        3,
        1,
        "services.web.instnces",
        "unknown field `instnces`",
    );
    assert!(e.to_string().ends_with("did you mean `instances`?"), "{e}");
}

#[test]
fn a_field_from_another_tool_gets_our_name_for_it() {
    let e = only_error(
        &format!("{HEAD}replicas = 3\n"),
        3,
        1,
        "services.web.replicas",
        "unknown field",
    );
    assert_eq!(e.hint.as_deref(), Some("did you mean `instances`?"));
}

#[test]
fn unknown_fields_in_nested_tables_are_refused_with_the_valid_list() {
    let text = format!("{HEAD}[services.web.resources]\ngpu = 1\n");
    let e = only_error(
        &text,
        4,
        1,
        "services.web.resources.gpu",
        "unknown field `gpu`",
    );
    assert_eq!(
        e.hint.as_deref(),
        Some("valid fields here are `cpu` and `memory`")
    );

    let text = format!("{HEAD}[services.web.health]\nintervall = \"1s\"\n");
    let e = only_error(
        &text,
        4,
        1,
        "services.web.health.intervall",
        "unknown field",
    );
    assert_eq!(e.hint.as_deref(), Some("did you mean `interval`?"));

    let text = format!("{HEAD}stop = {{ grace_period = \"5s\" }}\n");
    let e = only_error(
        &text,
        3,
        10,
        "services.web.stop.grace_period",
        "unknown field",
    );
    assert_eq!(e.hint.as_deref(), Some("did you mean `grace`?"));
}

// === types ===

#[test]
fn a_value_of_the_wrong_type_says_what_was_expected_and_found() {
    let text = format!("{HEAD}instances = \"three\"\n");
    only_error(
        &text,
        3,
        13,
        "services.web.instances",
        "expected a whole number, found a string",
    );

    let text = format!("{HEAD}resources = 4\n");
    only_error(
        &text,
        3,
        13,
        "services.web.resources",
        "expected a table, found an integer",
    );

    let text = format!("{HEAD}health = {{ tcp = \"yes\" }}\n");
    only_error(
        &text,
        3,
        18,
        "services.web.health.tcp",
        "expected `true` or `false`, found a string",
    );

    let text = format!("{HEAD}workdir = 7\n");
    only_error(
        &text,
        3,
        11,
        "services.web.workdir",
        "expected a string, found an integer",
    );
}

#[test]
fn a_quoted_number_is_told_to_lose_its_quotes() {
    let e = only_error(
        &format!("{HEAD}instances = \"3\"\n"),
        3,
        13,
        "services.web.instances",
        "found a string",
    );
    assert_eq!(e.hint.as_deref(), Some("remove the quotes: instances = 3"));
}

#[test]
fn an_env_value_must_be_a_string() {
    let text = format!("{HEAD}env = {{ WORKERS = 4 }}\n");
    let e = only_error(
        &text,
        3,
        19,
        "services.web.env.WORKERS",
        "expected a string, found an integer",
    );
    assert_eq!(
        e.hint.as_deref(),
        Some("environment values are strings: write WORKERS = \"4\"")
    );
}

#[test]
fn a_command_written_as_one_string_is_shown_as_an_array() {
    let text = "[services.web]\ncommand = \"python3 app.py\"\n";
    let e = only_error(
        text,
        2,
        11,
        "services.web.command",
        "expected an array of arguments, found a string",
    );
    assert_eq!(
        e.hint.as_deref(),
        Some("write each argument separately: [\"python3\", \"app.py\"]")
    );
}

#[test]
fn a_non_string_argument_is_pointed_at() {
    let text = "[services.web]\ncommand = [\"sleep\", 5]\n";
    only_error(
        text,
        2,
        21,
        "services.web.command[1]",
        "expected a string argument, found an integer",
    );
}

// === quantities ===

#[test]
fn a_bad_duration_is_refused_with_examples() {
    let text = format!("{HEAD}[services.web.health]\ninterval = \"5 sec\"\n");
    only_error(
        &text,
        4,
        12,
        "services.web.health.interval",
        "invalid duration \"5 sec\"",
    );

    let text = format!("{HEAD}[services.web.stop]\ngrace = 10\n");
    let e = only_error(
        &text,
        4,
        9,
        "services.web.stop.grace",
        "expected a duration with a unit",
    );
    assert_eq!(e.hint.as_deref(), Some("write \"10s\" or \"10ms\""));
}

#[test]
fn a_bad_size_is_refused() {
    let text = format!("{HEAD}[services.web.resources]\nmemory = \"64 potatoes\"\n");
    only_error(
        &text,
        4,
        10,
        "services.web.resources.memory",
        "invalid size \"64 potatoes\"",
    );

    let text = format!("{HEAD}[services.web.resources]\nmemory = -5\n");
    only_error(
        &text,
        4,
        10,
        "services.web.resources.memory",
        "invalid size \"-5\"",
    );

    let text = format!("{HEAD}[services.web.resources]\nmemory = 1.5\n");
    only_error(
        &text,
        4,
        10,
        "services.web.resources.memory",
        "found a float",
    );
}

#[test]
fn a_bad_cpu_is_refused() {
    for (value, phrase) in [
        ("\"lots\"", "invalid cpu \"lots\""),
        ("0", "invalid cpu \"0\""),
        ("-0.5", "invalid cpu \"-0.5\""),
    ] {
        let text = format!("{HEAD}[services.web.resources]\ncpu = {value}\n");
        only_error(&text, 4, 7, "services.web.resources.cpu", phrase);
    }
}

// === counts ===

#[test]
fn a_negative_instance_count_is_refused() {
    only_error(
        &format!("{HEAD}instances = -1\n"),
        3,
        13,
        "services.web.instances",
        "must not be negative",
    );
}

#[test]
fn an_absurd_instance_count_is_refused() {
    let text = format!("{HEAD}instances = 99999999999\n");
    only_error(
        &text,
        3,
        13,
        "services.web.instances",
        "99999999999 is more than the limit of 10000",
    );
    let text = format!("{HEAD}instances = 10001\n");
    only_error(
        &text,
        3,
        13,
        "services.web.instances",
        "more than the limit of 10000",
    );
}

#[test]
fn a_fractional_instance_count_is_refused() {
    only_error(
        &format!("{HEAD}instances = 2.5\n"),
        3,
        13,
        "services.web.instances",
        "must be a whole number",
    );
}

#[test]
fn a_threshold_out_of_range_is_refused() {
    let text = format!("{HEAD}[services.web.health]\nhealthy_threshold = 0\n");
    only_error(
        &text,
        4,
        21,
        "services.web.health.healthy_threshold",
        "between 1 and 100",
    );
    let text = format!("{HEAD}[services.web.health]\nunhealthy_threshold = 1000\n");
    only_error(
        &text,
        4,
        23,
        "services.web.health.unhealthy_threshold",
        "more than the limit of 100",
    );
}

// === commands ===

#[test]
fn an_empty_command_is_refused() {
    let e = only_error(
        "[services.web]\ncommand = []\n",
        2,
        11,
        "services.web.command",
        "command is empty",
    );
    assert!(e
        .hint
        .as_deref()
        .unwrap_or("")
        .contains("[\"python3\", \"app.py\"]"));
}

#[test]
fn a_blank_program_is_refused() {
    only_error(
        "[services.web]\ncommand = [\" \"]\n",
        2,
        11,
        "services.web.command",
        "command is empty",
    );
}

#[test]
fn a_missing_command_is_reported_at_the_service_header() {
    only_error(
        "\n[services.web]\ninstances = 2\n",
        2,
        1,
        "services.web.command",
        "missing required field `command`",
    );
}

#[test]
fn an_empty_health_command_is_refused() {
    let text = format!("{HEAD}[services.web.health]\ncommand = []\n");
    only_error(
        &text,
        4,
        11,
        "services.web.health.command",
        "command is empty",
    );
}

// === names ===

#[test]
fn an_invalid_service_name_is_reported_at_its_header() {
    let text = "[services.Web_1]\ncommand = [\"a\"]\n";
    only_error(
        text,
        1,
        1,
        "services.Web_1",
        "invalid service name \"Web_1\"",
    );
}

#[test]
fn the_same_service_in_two_files_is_reported_at_the_second_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.toml");
    let b = dir.path().join("b.toml");
    std::fs::write(&a, "# first\n[services.web]\ncommand = [\"a\"]\n").unwrap();
    std::fs::write(
        &b,
        "[services.api]\ncommand = [\"b\"]\n\n  [services.web]\ncommand = [\"c\"]\n",
    )
    .unwrap();
    let errs = parse_files(&[a.clone(), b.clone()]).unwrap_err().0;
    assert_eq!(errs.len(), 1, "{}", lines(&errs));
    let e = &errs[0];
    assert_eq!(e.file, b.display().to_string());
    assert_eq!((e.line, e.column), (4, 3));
    assert_eq!(e.field.as_deref(), Some("services.web"));
    let first = format!("already defined at {}:2:1", a.display());
    assert!(e.message.contains(&first), "{e}");
}

// === health checks ===

#[test]
fn http_and_tcp_together_are_refused_at_the_second() {
    let text = format!("{HEAD}[services.web.health]\nhttp = \"/healthz\"\ntcp = true\n");
    let e = only_error(
        &text,
        5,
        1,
        "services.web.health.tcp",
        "`http` and `tcp` both given",
    );
    assert!(e.hint.as_deref().unwrap_or("").contains("choose one"));
}

#[test]
fn tcp_false_is_refused_because_every_instance_is_checked() {
    let text = format!("{HEAD}health = {{ tcp = false }}\n");
    only_error(&text, 3, 18, "services.web.health.tcp", "no health check");
}

// === checks from ebb-core's validate(), mapped back to the file ===

#[test]
fn a_reserved_env_var_is_reported_at_its_key() {
    let text = format!("{HEAD}[services.web.env]\nGREETING = \"hi\"\nPORT = \"80\"\n");
    only_error(&text, 5, 1, "services.web.env.PORT", "set by ebb");
}

#[test]
fn an_unknown_stop_signal_is_reported_at_its_value() {
    let text = format!("{HEAD}[services.web.stop]\nsignal = \"SIGKILL\"\n");
    only_error(
        &text,
        4,
        10,
        "services.web.stop.signal",
        "unknown signal \"SIGKILL\"",
    );
}

#[test]
fn an_http_path_without_a_slash_is_reported_at_its_value() {
    let text = format!("{HEAD}health.http = \"healthz\"\n");
    only_error(
        &text,
        3,
        15,
        "services.web.health.http",
        "must start with '/'",
    );
}

#[test]
fn a_zero_interval_is_reported_at_its_value() {
    let text = format!("{HEAD}[services.web.health]\ninterval = \"0\"\n");
    only_error(
        &text,
        4,
        12,
        "services.web.health.interval",
        "greater than zero",
    );
}

// === files ===

#[test]
fn a_file_without_services_is_an_error() {
    let e = only_error("# nothing here\n", 1, 1, "services", "no services defined");
    assert!(e.hint.is_some());
    only_error("\n[services]\n", 2, 2, "services", "no services defined");
}

#[test]
fn an_unreadable_file_is_an_error_without_a_place() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let errs = parse_file(&missing).unwrap_err().0;
    assert_eq!(errs.len(), 1);
    let e = &errs[0];
    assert_eq!((e.line, e.column), (0, 0));
    assert_eq!(e.field, None);
    assert!(e.message.contains("cannot read deploy file"), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("{}: cannot read", missing.display())),
        "{e}"
    );
    assert!(e.render().contains("cannot read deploy file"));
}

#[test]
fn every_broken_service_is_reported_not_just_the_first() {
    let text = "[services.a]\ninstances = -1\ncommand = [\"x\"]\n\n[services.b]\ncommand = []\n[services.b.resources]\ncpu = \"lots\"\n";
    let all = errors(text);
    assert_eq!(all.len(), 3, "{}", lines(&all));
    assert_error(
        &all[0],
        2,
        13,
        "services.a.instances",
        "must not be negative",
    );
    assert_error(&all[1], 6, 11, "services.b.command", "command is empty");
    assert_error(&all[2], 8, 7, "services.b.resources.cpu", "invalid cpu");
}

// === rendering ===

#[test]
fn render_shows_the_line_and_a_caret_without_colours() {
    let e = only_error(
        &format!("{HEAD}instnces = 3\n"),
        3,
        1,
        "services.web.instnces",
        "unknown field",
    );
    let out = e.render();
    assert!(out.contains(&e.to_string()), "{out}");
    assert!(out.contains("instnces = 3"), "{out}");
    assert!(out.contains("────────"), "underline under the key: {out}");
    assert!(!out.contains('\u{1b}'), "no ANSI escapes: {out:?}");
}

#[test]
fn spec_errors_display_one_line_per_error() {
    let text = "[services.a]\ninstances = -1\n";
    let errs = parse_str("d.toml", text, Path::new("/")).unwrap_err();
    let shown = errs.to_string();
    assert_eq!(shown.lines().count(), errs.0.len());
    assert!(shown.lines().all(|l| l.starts_with("d.toml:")), "{shown}");
}

// === routing ===

#[test]
fn a_port_out_of_range_is_refused() {
    for value in ["0", "-1", "65536", "99999999999"] {
        let e = only_error(
            &format!("{HEAD}port = {value}\n"),
            3,
            8,
            "services.web.port",
            &format!("port {value} is out of range"),
        );
        assert_eq!(e.hint.as_deref(), Some("give a port from 1 to 65535"));
    }
}

#[test]
fn a_port_of_the_wrong_type_is_refused() {
    let e = only_error(
        &format!("{HEAD}port = \"8080\"\n"),
        3,
        8,
        "services.web.port",
        "expected a whole number, found a string",
    );
    assert_eq!(e.hint.as_deref(), Some("remove the quotes: port = 8080"));
    only_error(
        &format!("{HEAD}port = \"http\"\n"),
        3,
        8,
        "services.web.port",
        "expected a whole number, found a string",
    );
    only_error(
        &format!("{HEAD}port = 80.5\n"),
        3,
        8,
        "services.web.port",
        "must be a whole number",
    );
}

#[test]
fn an_unknown_protocol_is_refused_listing_both() {
    let e = only_error(
        &format!("{HEAD}port = 53\nprotocol = \"udp\"\n"),
        4,
        12,
        "services.web.protocol",
        "unknown protocol \"udp\": use http or tcp",
    );
    assert_eq!(e.hint, None);
    let e = only_error(
        &format!("{HEAD}port = 80\nprotocol = \"HTTP\"\n"),
        4,
        12,
        "services.web.protocol",
        "unknown protocol \"HTTP\"",
    );
    assert_eq!(e.hint.as_deref(), Some("did you mean `http`?"));
    only_error(
        &format!("{HEAD}port = 80\nprotocol = 1\n"),
        4,
        12,
        "services.web.protocol",
        "expected \"http\" or \"tcp\", found an integer",
    );
}

#[test]
fn an_unknown_algorithm_lists_the_valid_ones_and_suggests_a_near_miss() {
    let text = format!("{HEAD}port = 80\n[services.web.balance]\nalgorithm = \"round-robin\"\n");
    let e = only_error(
        &text,
        5,
        13,
        "services.web.balance.algorithm",
        "unknown balancing algorithm \"round-robin\": use one of round_robin, least_request, peak_ewma, hash",
    );
    assert_eq!(e.hint.as_deref(), Some("did you mean `round_robin`?"));

    let text = format!("{HEAD}port = 80\n[services.web.balance]\nalgorithm = \"leastconn\"\n");
    let e = only_error(
        &text,
        5,
        13,
        "services.web.balance.algorithm",
        "unknown balancing algorithm",
    );
    assert_eq!(e.hint.as_deref(), Some("did you mean `least_request`?"));

    let text = format!("{HEAD}port = 80\n[services.web.balance]\nalgorithm = \"fastest\"\n");
    let e = only_error(
        &text,
        5,
        13,
        "services.web.balance.algorithm",
        "use one of round_robin, least_request, peak_ewma, hash",
    );
    assert_eq!(e.hint, None);
}

#[test]
fn retries_out_of_range_are_refused() {
    let text = format!("{HEAD}port = 80\n[services.web.balance]\nretries = 11\n");
    only_error(
        &text,
        5,
        11,
        "services.web.balance.retries",
        "11 is more than the limit of 10",
    );
    let text = format!("{HEAD}port = 80\n[services.web.balance]\nretries = -1\n");
    only_error(
        &text,
        5,
        11,
        "services.web.balance.retries",
        "must not be negative",
    );
}

#[test]
fn bad_balance_durations_are_refused() {
    for (key, column) in [
        ("slow_start", 14),
        ("drain", 9),
        ("request_timeout", 19),
        ("queue_timeout", 17),
    ] {
        let text = format!("{HEAD}port = 80\n[services.web.balance]\n{key} = \"soon\"\n");
        only_error(
            &text,
            5,
            column,
            &format!("services.web.balance.{key}"),
            "invalid duration \"soon\"",
        );
        let text = format!("{HEAD}port = 80\n[services.web.balance]\n{key} = 30\n");
        only_error(
            &text,
            5,
            column,
            &format!("services.web.balance.{key}"),
            "expected a duration with a unit",
        );
    }
}

#[test]
fn a_zero_request_timeout_is_reported_at_its_value() {
    let text = format!("{HEAD}port = 80\n[services.web.balance]\nrequest_timeout = \"0s\"\n");
    only_error(
        &text,
        5,
        19,
        "services.web.balance.request_timeout",
        "greater than zero",
    );
}

#[test]
fn a_queue_timeout_of_zero_or_over_ten_minutes_is_reported_at_its_value() {
    let text = format!("{HEAD}port = 80\n[services.web.balance]\nqueue_timeout = \"0s\"\n");
    only_error(
        &text,
        5,
        17,
        "services.web.balance.queue_timeout",
        "queue_timeout must be greater than zero",
    );
    let text = format!("{HEAD}port = 80\nbalance.queue_timeout = \"1h\"\n");
    only_error(
        &text,
        4,
        25,
        "services.web.balance.queue_timeout",
        "queue_timeout 1h is more than the limit of 10m",
    );
}

#[test]
fn hash_header_without_hash_balancing_is_refused_with_a_hint() {
    // Without `algorithm` (peak_ewma, the default), and with another algorithm after it.
    for table in [
        "hash_header = \"X-User-Id\"\n",
        "hash_header = \"X-User-Id\"\nalgorithm = \"round_robin\"\n",
    ] {
        let text = format!("{HEAD}port = 80\n[services.web.balance]\n{table}");
        let e = only_error(
            &text,
            5,
            15,
            "services.web.balance.hash_header",
            "`hash_header` only applies to algorithm = \"hash\"",
        );
        assert_eq!(
            e.hint.as_deref(),
            Some("set algorithm = \"hash\" in this table, or remove `hash_header`")
        );
    }
}

#[test]
fn hash_header_on_a_tcp_service_is_refused() {
    let text = format!(
        "{HEAD}port = 5432\nprotocol = \"tcp\"\n[services.web.balance]\nalgorithm = \"hash\"\nhash_header = \"x-user-id\"\n"
    );
    let e = only_error(
        &text,
        7,
        15,
        "services.web.balance.hash_header",
        "TCP has no headers",
    );
    assert!(
        e.hint.as_deref().unwrap_or("").contains("client address"),
        "{e}"
    );
}

#[test]
fn hash_header_must_be_a_header_name_string() {
    let text = format!(
        "{HEAD}port = 80\n[services.web.balance]\nalgorithm = \"hash\"\nhash_header = \"X User\"\n"
    );
    only_error(
        &text,
        6,
        15,
        "services.web.balance.hash_header",
        "invalid header name \"X User\": ' ' is not allowed",
    );
    let text = format!("{HEAD}port = 80\nbalance = {{ algorithm = \"hash\", hash_header = 7 }}\n");
    only_error(
        &text,
        4,
        47,
        "services.web.balance.hash_header",
        "expected a string, found an integer",
    );
}

#[test]
fn a_wrong_algorithm_or_protocol_is_the_only_error_next_to_hash_header() {
    // No second error about hash_header against the default that stands in for the typo.
    let text = format!(
        "{HEAD}port = 80\n[services.web.balance]\nalgorithm = \"hsah\"\nhash_header = \"x-user-id\"\n"
    );
    only_error(
        &text,
        5,
        13,
        "services.web.balance.algorithm",
        "unknown balancing algorithm",
    );
    let text = format!(
        "{HEAD}port = 80\nprotocol = \"udp\"\n[services.web.balance]\nalgorithm = \"hash\"\nhash_header = \"x-user-id\"\n"
    );
    only_error(&text, 4, 12, "services.web.protocol", "unknown protocol");
}

#[test]
fn near_misses_of_the_new_balance_fields_get_suggestions() {
    for (wrong, right) in [
        ("queue_timout", "queue_timeout"),
        ("hash_headers", "hash_header"),
        ("hash_on", "hash_header"),
        ("header_name", "hash_header"),
    ] {
        let text = format!("{HEAD}port = 80\n[services.web.balance]\n{wrong} = \"x\"\n");
        let e = only_error(
            &text,
            5,
            1,
            &format!("services.web.balance.{wrong}"),
            "unknown field",
        );
        assert_eq!(e.hint, Some(format!("did you mean `{right}`?")), "{wrong}");
    }
}

#[test]
fn an_unknown_balance_field_gets_a_suggestion() {
    let text = format!("{HEAD}port = 80\n[services.web.balance]\nretry = 3\n");
    let e = only_error(
        &text,
        5,
        1,
        "services.web.balance.retry",
        "unknown field `retry`",
    );
    assert_eq!(e.hint.as_deref(), Some("did you mean `retries`?"));

    let text = format!("{HEAD}port = 80\n[services.web.balance]\nsticky = true\n");
    let e = only_error(&text, 5, 1, "services.web.balance.sticky", "unknown field");
    assert_eq!(
        e.hint.as_deref(),
        Some("valid fields here are `algorithm`, `retries`, `slow_start`, `drain`, `request_timeout`, `queue_timeout` and `hash_header`")
    );
}

#[test]
fn balance_settings_without_a_port_are_refused_at_the_balance_table() {
    let text = format!("{HEAD}\n[services.web.balance]\nalgorithm = \"hash\"\n");
    let e = only_error(
        &text,
        4,
        1,
        "services.web.balance",
        "balance settings need a public port",
    );
    assert!(
        e.hint
            .as_deref()
            .unwrap_or("")
            .starts_with("add `port = ...`"),
        "{e}"
    );
    // Written as a dotted key, the error points at `balance`.
    let text = format!("{HEAD}balance.retries = 1\n");
    only_error(&text, 3, 1, "services.web.balance", "need a public port");
}

#[test]
fn the_same_port_in_two_files_is_reported_at_the_second_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.toml");
    let b = dir.path().join("b.toml");
    std::fs::write(&a, "[services.web]\ncommand = [\"a\"]\nport = 8080\n").unwrap();
    std::fs::write(
        &b,
        "[services.api]\ncommand = [\"b\"]\nport = 9090\n\n[services.admin]\ncommand = [\"c\"]\nport  =  8080\n",
    )
    .unwrap();
    let errs = parse_files(&[a.clone(), b.clone()]).unwrap_err().0;
    assert_eq!(errs.len(), 1, "{}", lines(&errs));
    let e = &errs[0];
    assert_eq!(e.file, b.display().to_string());
    assert_eq!((e.line, e.column), (7, 10));
    assert_eq!(e.field.as_deref(), Some("services.admin.port"));
    let first = format!(
        "port 8080 is already used by service `web` at {}:3:8",
        a.display()
    );
    assert!(e.message.contains(&first), "{e}");
    assert!(e.hint.is_some());
}

#[test]
fn the_same_port_twice_in_one_file_is_refused_in_file_order() {
    let text = "[services.a]\ncommand = [\"a\"]\nport = 80\n[services.b]\ncommand = [\"b\"]\nport = 80\n[services.c]\ncommand = [\"c\"]\ninstances = -1\n";
    let all = errors(text);
    assert_eq!(all.len(), 2, "{}", lines(&all));
    assert_error(
        &all[0],
        6,
        8,
        "services.b.port",
        "port 80 is already used by service `a` at deploy.toml:3:8",
    );
    assert_error(
        &all[1],
        9,
        13,
        "services.c.instances",
        "must not be negative",
    );
}

// === autoscaling ===

/// A routed service with cpu and memory reserved, then its autoscale table from line 5.
const AUTOSCALED: &str = "[services.web]\ncommand = [\"a\"]\nport = 80\nresources = { cpu = 1, memory = \"1GiB\" }\n[services.web.autoscale]\n";

/// The autoscale table's fields start on line 6.
fn scaled(table: &str) -> String {
    format!("{AUTOSCALED}{table}")
}

#[test]
fn autoscale_needs_max() {
    let e = only_error(
        &scaled("min = 1\nconcurrency = 10\n"),
        5,
        1,
        "services.web.autoscale.max",
        "missing required field `max`",
    );
    assert_eq!(
        e.hint.as_deref(),
        Some("add the most instances the autoscaler may run, e.g. max = 10")
    );
}

#[test]
fn autoscale_bounds_are_refused_at_their_values() {
    for (table, line, column, field, phrase) in [
        ("max = 0\nrps = 1\n", 6, 7, "max", "max must be at least 1"),
        (
            "max = 10001\nrps = 1\n",
            6,
            7,
            "max",
            "more than the limit of 10000",
        ),
        ("max = -1\nrps = 1\n", 6, 7, "max", "must not be negative"),
        (
            "min = 5\nmax = 3\nrps = 1\n",
            6,
            7,
            "min",
            "min 5 is above max 3: set min ≤ max",
        ),
        (
            "min = 1.5\nmax = 3\nrps = 1\n",
            6,
            7,
            "min",
            "must be a whole number",
        ),
    ] {
        only_error(
            &scaled(table),
            line,
            column,
            &format!("services.web.autoscale.{field}"),
            phrase,
        );
    }
}

#[test]
fn instances_of_an_autoscaled_service_must_lie_within_its_bounds() {
    let text = "[services.web]\ncommand = [\"a\"]\nport = 80\ninstances = 5\nautoscale = { min = 1, max = 3, concurrency = 10 }\n";
    let e = only_error(
        text,
        4,
        13,
        "services.web.instances",
        "5 instances is outside the autoscale bounds",
    );
    assert!(e.message.contains("from min 1 to max 3"), "{e}");
}

#[test]
fn target_tracking_needs_a_target() {
    only_error(
        &scaled("max = 3\n"),
        5,
        15,
        "services.web.autoscale.policy",
        "policy \"target\" tracks a target per instance: set concurrency, rps, cpu, memory or latency_p95",
    );
    only_error(
        &scaled("max = 3\npolicy = \"target\"\n"),
        7,
        10,
        "services.web.autoscale.policy",
        "tracks a target",
    );
}

#[test]
fn targets_out_of_range_are_refused_at_their_values() {
    for (table, column, field, phrase) in [
        (
            "concurrency = 0",
            15,
            "concurrency",
            "a target must be above 0, got 0",
        ),
        ("rps = -5", 7, "rps", "a target must be above 0, got -5"),
        (
            "cpu = 1.5",
            7,
            "cpu",
            "fraction of the reservation per instance, above 0 and at most 1",
        ),
        ("memory = 0", 10, "memory", "above 0 and at most 1"),
        (
            "latency_p95 = \"0s\"",
            15,
            "latency_p95",
            "a target must be above 0",
        ),
        (
            "concurrency = nan",
            15,
            "concurrency",
            "must be a finite number, found NaN",
        ),
        (
            "latency_p95 = 200",
            15,
            "latency_p95",
            "expected a duration with a unit",
        ),
    ] {
        only_error(
            &scaled(&format!("max = 3\n{table}\n")),
            7,
            column,
            &format!("services.web.autoscale.{field}"),
            phrase,
        );
    }
}

#[test]
fn a_percentage_or_a_quoted_number_as_a_target_gets_a_hint() {
    let e = only_error(
        &scaled("max = 3\ncpu = \"70%\"\n"),
        7,
        7,
        "services.web.autoscale.cpu",
        "expected a number, found a string",
    );
    assert_eq!(e.hint.as_deref(), Some("write a fraction: cpu = 0.7"));
    let e = only_error(
        &scaled("max = 3\nrps = \"100\"\n"),
        7,
        7,
        "services.web.autoscale.rps",
        "found a string",
    );
    assert_eq!(e.hint.as_deref(), Some("remove the quotes: rps = 100"));
}

#[test]
fn cpu_and_memory_targets_need_a_reservation() {
    let text = "[services.web]\ncommand = [\"a\"]\nport = 80\n[services.web.autoscale]\nmax = 3\ncpu = 0.7\nmemory = 0.8\n";
    let all = errors(text);
    assert_eq!(all.len(), 2, "{}", lines(&all));
    assert_error(
        &all[0],
        6,
        7,
        "services.web.autoscale.cpu",
        "fraction of the reserved cpu: set resources.cpu",
    );
    assert_error(
        &all[1],
        7,
        10,
        "services.web.autoscale.memory",
        "set resources.memory",
    );
}

#[test]
fn a_bad_reservation_is_the_only_error_next_to_a_cpu_target() {
    let text = "[services.web]\ncommand = [\"a\"]\nport = 80\nresources.cpu = \"lots\"\n[services.web.autoscale]\nmax = 3\ncpu = 0.7\n";
    only_error(text, 4, 17, "services.web.resources.cpu", "invalid cpu");
}

#[test]
fn request_metrics_and_scale_to_zero_need_a_port() {
    let text = "[services.web]\ncommand = [\"a\"]\n[services.web.autoscale]\nmax = 3\nrps = 100\n";
    let all = errors(text);
    assert_eq!(all.len(), 2, "{}", lines(&all));
    assert_error(
        &all[0],
        3,
        15,
        "services.web.autoscale.min",
        "only a routed service gets requests to wake it: add `port`",
    );
    assert_error(
        &all[1],
        5,
        7,
        "services.web.autoscale.rps",
        "measured by the service's load balancer: add `port`",
    );
}

#[test]
fn the_panic_window_must_be_shorter_than_the_stable_window() {
    only_error(
        &scaled("max = 3\nrps = 1\nstable_window = \"30s\"\npanic_window = \"30s\"\n"),
        9,
        16,
        "services.web.autoscale.panic_window",
        "panic_window 30s must be shorter than stable_window 30s",
    );
}

#[test]
fn autoscale_durations_are_refused_when_bad_zero_or_too_long() {
    for (key, value, phrase) in [
        ("stable_window", "\"soon\"", "invalid duration \"soon\""),
        (
            "stable_window",
            "\"2h\"",
            "stable_window 2h is more than the limit of 1h",
        ),
        ("scale_down_delay", "60", "expected a duration with a unit"),
        (
            "idle_timeout",
            "\"0s\"",
            "idle_timeout must be longer than 0s",
        ),
        ("idle_timeout", "\"2d\"", "more than the limit of 1d"),
    ] {
        only_error(
            &scaled(&format!("max = 3\nrps = 1\n{key} = {value}\n")),
            8,
            key.len() + 4,
            &format!("services.web.autoscale.{key}"),
            phrase,
        );
    }
}

#[test]
fn a_bad_idle_timeout_is_told_about_auto() {
    let e = only_error(
        &scaled("max = 3\nrps = 1\nidle_timeout = \"automatic\"\n"),
        8,
        16,
        "services.web.autoscale.idle_timeout",
        "invalid duration \"automatic\"",
    );
    assert!(e.to_string().contains("\"auto\" to learn it"), "{e}");
}

#[test]
fn unknown_autoscale_fields_get_suggestions() {
    for (wrong, right) in [
        ("maxReplicas", "max"),
        ("min_instances", "min"),
        ("concurency", "concurrency"),
        ("qps", "rps"),
        ("latency", "latency_p95"),
        ("stable_windw", "stable_window"),
        ("cooldown", "scale_down_delay"),
        ("bands", "steps"),
        ("windows", "schedule"),
    ] {
        let e = only_error(
            &scaled(&format!("max = 3\nrps = 1\n{wrong} = 1\n")),
            8,
            1,
            &format!("services.web.autoscale.{wrong}"),
            &format!("unknown field `{wrong}`"),
        );
        assert_eq!(e.hint, Some(format!("did you mean `{right}`?")), "{wrong}");
    }
    let e = only_error(
        "[services.web]\ncommand = [\"a\"]\nautoscaling = { max = 3 }\n",
        3,
        1,
        "services.web.autoscaling",
        "unknown field",
    );
    assert_eq!(e.hint.as_deref(), Some("did you mean `autoscale`?"));
}

#[test]
fn an_unknown_policy_lists_the_valid_ones_and_suggests_a_near_miss() {
    let e = only_error(
        &scaled("max = 3\nrps = 1\npolicy = \"steps\"\n"),
        8,
        10,
        "services.web.autoscale.policy",
        "unknown policy \"steps\": use one of target, step, linear, schedule",
    );
    assert_eq!(e.hint.as_deref(), Some("did you mean `step`?"));
}

#[test]
fn fields_of_another_policy_are_refused_with_the_policy_they_belong_to() {
    let e = only_error(
        &scaled("max = 3\nrps = 1\nlow = 5\n"),
        8,
        1,
        "services.web.autoscale.low",
        "`low` does not apply to policy = \"target\"",
    );
    assert_eq!(
        e.hint.as_deref(),
        Some("it belongs to policy = \"linear\": set that policy, or remove `low`")
    );
    let e = only_error(
        &scaled("max = 3\nrps = 1\nmetric = \"cpu\"\n"),
        8,
        1,
        "services.web.autoscale.metric",
        "does not apply",
    );
    assert!(
        e.hint
            .as_deref()
            .unwrap_or("")
            .contains("policy = \"step\" or \"linear\""),
        "{e}"
    );
    let text = scaled(
        "max = 3\npolicy = \"linear\"\nmetric = \"rps\"\nlow = 1\nhigh = 2\nstep = 1\nsteps = []\n",
    );
    only_error(
        &text,
        12,
        1,
        "services.web.autoscale.steps",
        "`steps` does not apply to policy = \"linear\"",
    );
}

#[test]
fn targets_are_refused_with_step_and_linear_policies() {
    let text = scaled(
        "max = 3\nconcurrency = 10\npolicy = \"step\"\nmetric = \"rps\"\nsteps = [{ from = 10, change = \"+1\" }]\n",
    );
    let e = only_error(
        &text,
        7,
        1,
        "services.web.autoscale.concurrency",
        "a `concurrency` target does not apply to policy = \"step\", which follows `metric`",
    );
    assert!(
        e.hint
            .as_deref()
            .unwrap_or("")
            .starts_with("remove `concurrency`"),
        "{e}"
    );
}

#[test]
fn a_step_policy_needs_its_metric_and_bands() {
    let all = errors(&scaled("max = 3\npolicy = \"step\"\n"));
    assert_eq!(all.len(), 2, "{}", lines(&all));
    assert_error(
        &all[0],
        7,
        10,
        "services.web.autoscale.metric",
        "policy = \"step\" needs `metric`",
    );
    assert_error(
        &all[1],
        7,
        10,
        "services.web.autoscale.steps",
        "policy = \"step\" needs `steps`",
    );
    only_error(
        &scaled("max = 3\npolicy = \"step\"\nmetric = \"rps\"\nsteps = []\n"),
        9,
        9,
        "services.web.autoscale.steps",
        "needs at least one band",
    );
}

#[test]
fn an_unknown_metric_lists_the_valid_ones() {
    let e = only_error(
        &scaled("max = 3\npolicy = \"step\"\nmetric = \"requests\"\nsteps = [{ from = 1, change = \"+1\" }]\n"),
        8,
        10,
        "services.web.autoscale.metric",
        "unknown metric \"requests\": use one of concurrency, rps, cpu, memory, latency_p95",
    );
    assert_eq!(e.hint, None);
}

#[test]
fn step_bands_must_be_ordered_and_not_overlap() {
    let text = scaled(
        "max = 3\npolicy = \"step\"\nmetric = \"rps\"\nsteps = [{ from = 5, to = 10, change = \"+1\" }, { from = 8, change = \"+2\" }]\n",
    );
    only_error(
        &text,
        9,
        57,
        "services.web.autoscale.steps[1].from",
        "from 8 overlaps the band before, which ends at 10",
    );
    let text = scaled(
        "max = 3\npolicy = \"step\"\nmetric = \"rps\"\n[[services.web.autoscale.steps]]\nfrom = 5\nchange = \"+1\"\n[[services.web.autoscale.steps]]\nfrom = 10\nto = 9\nchange = \"+2\"\n",
    );
    let all = errors(&text);
    assert_eq!(all.len(), 2, "{}", lines(&all));
    assert_error(
        &all[0],
        13,
        8,
        "services.web.autoscale.steps[1].from",
        "comes after a band without `to`",
    );
    assert_error(
        &all[1],
        14,
        6,
        "services.web.autoscale.steps[1].to",
        "to 9 must be above from 10",
    );
}

#[test]
fn a_band_needs_from_and_change_and_knows_its_fields() {
    let text = scaled(
        "max = 3\npolicy = \"step\"\nmetric = \"rps\"\n[[services.web.autoscale.steps]]\nto = 5\ndelta = 1\n",
    );
    let all = errors(&text);
    assert_eq!(all.len(), 3, "{}", lines(&all));
    for e in &all[..2] {
        assert_eq!((e.line, e.column), (9, 1), "{e}");
        assert!(e.message.starts_with("missing required field"), "{e}");
        assert!(
            e.hint
                .as_deref()
                .unwrap_or("")
                .contains("each band needs `from`"),
            "{e}"
        );
    }
    assert_eq!(
        all[0].field.as_deref(),
        Some("services.web.autoscale.steps[0].from")
    );
    assert_eq!(
        all[1].field.as_deref(),
        Some("services.web.autoscale.steps[0].change")
    );
    assert_error(
        &all[2],
        11,
        1,
        "services.web.autoscale.steps[0].delta",
        "unknown field `delta`",
    );
}

#[test]
fn a_bad_change_says_how_to_write_one() {
    for (change, phrase) in [
        (
            "\"2\"",
            "change \"2\" needs a sign: \"+2\" adds instances, \"-2\" removes them",
        ),
        ("\"+0\"", "does nothing"),
        ("0", "change 0 does nothing"),
        ("\"-150%\"", "cannot remove more than 100 %"),
        (
            "\"double\"",
            "expected \"+N\" or \"-N\" instances, or \"+P%\" or \"-P%\"",
        ),
        (
            "1.5",
            "expected a change like \"+2\", \"-1\" or \"+50%\", found a float",
        ),
    ] {
        let text = scaled(&format!(
            "max = 3\npolicy = \"step\"\nmetric = \"rps\"\nsteps = [{{ from = 1, change = {change} }}]\n"
        ));
        only_error(
            &text,
            9,
            31,
            "services.web.autoscale.steps[0].change",
            phrase,
        );
    }
}

#[test]
fn latency_thresholds_are_durations() {
    let text = scaled(
        "max = 3\npolicy = \"step\"\nmetric = \"latency_p95\"\nsteps = [{ from = 200, change = \"+1\" }]\n",
    );
    let e = only_error(
        &text,
        9,
        19,
        "services.web.autoscale.steps[0].from",
        "metric = \"latency_p95\" is a duration, found an integer",
    );
    assert_eq!(e.hint.as_deref(), Some("write \"200ms\" or \"200s\""));
    let text = scaled(
        "max = 3\npolicy = \"linear\"\nmetric = \"cpu\"\nlow = \"0.5\"\nhigh = 0.9\nstep = 1\n",
    );
    only_error(
        &text,
        9,
        7,
        "services.web.autoscale.low",
        "expected a number, found a string",
    );
}

#[test]
fn a_linear_policy_needs_low_below_high_and_a_step() {
    let all = errors(&scaled(
        "max = 3\npolicy = \"linear\"\nmetric = \"rps\"\nlow = 5\n",
    ));
    assert_eq!(all.len(), 2, "{}", lines(&all));
    assert_error(
        &all[0],
        7,
        10,
        "services.web.autoscale.high",
        "policy = \"linear\" needs `high`",
    );
    assert_error(
        &all[1],
        7,
        10,
        "services.web.autoscale.step",
        "policy = \"linear\" needs `step`",
    );
    let text =
        scaled("max = 3\npolicy = \"linear\"\nmetric = \"rps\"\nlow = 5\nhigh = 5\nstep = 0\n");
    let all = errors(&text);
    assert_eq!(all.len(), 2, "{}", lines(&all));
    assert_error(
        &all[0],
        10,
        8,
        "services.web.autoscale.high",
        "must be above low (5), got 5",
    );
    assert_error(
        &all[1],
        11,
        8,
        "services.web.autoscale.step",
        "must add at least 1 instance",
    );
}

#[test]
fn a_schedule_policy_needs_windows_written_as_an_array_of_tables() {
    let e = only_error(
        &scaled("max = 3\nrps = 1\npolicy = \"schedule\"\n"),
        8,
        10,
        "services.web.autoscale.schedule",
        "policy = \"schedule\" needs `schedule`",
    );
    assert!(
        e.hint
            .as_deref()
            .unwrap_or("")
            .contains("[[services.web.autoscale.schedule]]"),
        "{e}"
    );
    let text = scaled(
        "max = 3\nrps = 1\npolicy = \"schedule\"\n[services.web.autoscale.schedule]\ndays = \"mon\"\nmin = 1\n",
    );
    let e = only_error(
        &text,
        9,
        25,
        "services.web.autoscale.schedule",
        "expected an array of tables, found a table",
    );
    assert_eq!(
        e.hint.as_deref(),
        Some("use double brackets, [[services.web.autoscale.schedule]], once per element")
    );
    only_error(
        &scaled("max = 3\nrps = 1\npolicy = \"schedule\"\nschedule = [{ days = \"mon\", min = 2 }, 3]\n"),
        9,
        40,
        "services.web.autoscale.schedule[1]",
        "expected a table, found an integer",
    );
}

#[test]
fn schedule_windows_need_a_target_and_a_policy() {
    only_error(
        &scaled("max = 3\npolicy = \"schedule\"\n[[services.web.autoscale.schedule]]\ndays = \"mon\"\nmin = 1\n"),
        7,
        10,
        "services.web.autoscale.policy",
        "policy \"schedule\" tracks a target per instance",
    );
    let e = only_error(
        &scaled("max = 3\nrps = 1\n[[services.web.autoscale.schedule]]\ndays = \"mon\"\nmin = 1\n"),
        8,
        26,
        "services.web.autoscale.schedule",
        "`schedule` does not apply to policy = \"target\"",
    );
    assert_eq!(
        e.hint.as_deref(),
        Some("it belongs to policy = \"schedule\": set that policy, or remove `schedule`")
    );
}

#[test]
fn bad_window_values_are_refused_at_their_values() {
    const WINDOW: &str =
        "max = 3\nrps = 1\npolicy = \"schedule\"\n[[services.web.autoscale.schedule]]\nmin = 1\n";
    // The last line of `lines` has the error.
    for (lines, phrase, field, column) in [
        ("days = \"funday\"", "unknown day \"funday\"", "days", 8),
        ("days = 1", "expected a string, found an integer", "days", 8),
        (
            "hours = \"9-17\"",
            "invalid hours \"9-17\": expected \"HH:MM-HH:MM\"",
            "hours",
            9,
        ),
        (
            "hours = \"10:00-10:00\"",
            "10:00-10:00 is empty",
            "hours",
            9,
        ),
        (
            "days = \"mon\"\nutc_offset = \"Europe/Paris\"",
            "time-zone names are not supported",
            "utc_offset",
            14,
        ),
        (
            "days = \"mon\"\nutc_offset = \"+15:00\"",
            "they run from -12:00 to +14:00",
            "utc_offset",
            14,
        ),
        (
            "days = \"mon\"\nmax = 0",
            "max must be at least 1",
            "max",
            7,
        ),
    ] {
        let e = only_error(
            &scaled(&format!("{WINDOW}{lines}\n")),
            10 + lines.lines().count(),
            column,
            &format!("services.web.autoscale.schedule[0].{field}"),
            phrase,
        );
        assert!(e.to_string().contains(phrase), "{e}");
    }
    let e = only_error(
        &scaled(&format!("{WINDOW}days = \"mon\"\nutc_offset = 1\n")),
        12,
        14,
        "services.web.autoscale.schedule[0].utc_offset",
        "expected an offset like \"+01:00\", found an integer",
    );
    assert_eq!(e.hint.as_deref(), Some("write utc_offset = \"+01:00\""));
}

#[test]
fn a_window_bound_is_checked_against_the_other_even_when_defaulted() {
    // max defaults to the table's 3.
    only_error(
        &scaled("max = 3\nrps = 1\npolicy = \"schedule\"\n[[services.web.autoscale.schedule]]\ndays = \"mon\"\nmin = 5\n"),
        11,
        7,
        "services.web.autoscale.schedule[0].min",
        "min 5 is above max 3",
    );
    // min defaults to the table's 2; the error points at the window.
    only_error(
        &scaled("min = 2\nmax = 3\nrps = 1\npolicy = \"schedule\"\n[[services.web.autoscale.schedule]]\ndays = \"mon\"\nmax = 1\n"),
        10,
        1,
        "services.web.autoscale.schedule[0].min",
        "min 2 is above max 1",
    );
}

#[test]
fn a_window_must_set_bounds_and_a_time() {
    let text = scaled("max = 3\nrps = 1\npolicy = \"schedule\"\n[[services.web.autoscale.schedule]]\ntimezone = \"+01:00\"\n");
    let all = errors(&text);
    assert_eq!(all.len(), 3, "{}", lines(&all));
    assert_error(
        &all[0],
        9,
        1,
        "services.web.autoscale.schedule[0]",
        "sets neither `min` nor `max`",
    );
    assert_error(
        &all[1],
        9,
        1,
        "services.web.autoscale.schedule[0]",
        "without `days` or `hours` is always open",
    );
    assert_error(
        &all[2],
        10,
        1,
        "services.web.autoscale.schedule[0].timezone",
        "unknown field",
    );
    assert_eq!(all[2].hint.as_deref(), Some("did you mean `utc_offset`?"));
}

#[test]
fn autoscale_must_be_a_table() {
    only_error(
        "[services.web]\ncommand = [\"a\"]\nautoscale = 3\n",
        3,
        13,
        "services.web.autoscale",
        "expected a table, found an integer",
    );
}

// === constraints and placement ===

#[test]
fn a_malformed_constraint_is_reported_at_its_element_with_the_schedulers_message() {
    let text = format!("{HEAD}constraints = [\"zone=a\", \"zone\"]\n");
    let e = only_error(
        &text,
        3,
        26,
        "services.web.constraints[1]",
        "constraint `zone` has no operator: write `key=value` or `key!=value`, e.g. `zone=value`",
    );
    assert_eq!(
        e.to_string(),
        "deploy.toml:3:26: services.web.constraints[1]: constraint `zone` has no operator: \
         write `key=value` or `key!=value`, e.g. `zone=value`"
    );
    for (bad, phrase) in [
        ("", "empty constraint"),
        ("=a", "no label name"),
        (
            "zone!=",
            "no value after the operator: write e.g. `zone!=a`",
        ),
        ("zone==a", "more than one operator"),
        ("zone=a b", "has ` ` in its value"),
        ("zone<a=b", "has `<` in its label name"),
    ] {
        let text = format!("{HEAD}constraints = [{bad:?}]\n");
        only_error(&text, 3, 16, "services.web.constraints[0]", phrase);
    }
}

#[test]
fn every_malformed_constraint_is_reported() {
    let text = format!("{HEAD}constraints = [\"zone\", \"disk!=hdd\", \"a==b\"]\n");
    let all = errors(&text);
    assert_eq!(all.len(), 2, "{}", lines(&all));
    assert_error(&all[0], 3, 16, "services.web.constraints[0]", "no operator");
    assert_error(
        &all[1],
        3,
        37,
        "services.web.constraints[2]",
        "more than one operator",
    );
}

#[test]
fn constraints_of_the_wrong_type_are_refused_with_a_hint() {
    let e = only_error(
        &format!("{HEAD}constraints = \"zone=a\"\n"),
        3,
        15,
        "services.web.constraints",
        "expected an array of constraints, found a string",
    );
    assert_eq!(
        e.hint.as_deref(),
        Some("write a list, even of one: constraints = [\"zone=a\"]")
    );
    let e = only_error(
        &format!("{HEAD}constraints = {{ zone = \"a\" }}\n"),
        3,
        15,
        "services.web.constraints",
        "expected an array of constraints, found a table",
    );
    assert_eq!(
        e.hint.as_deref(),
        Some("write `key=value` or `key!=value` strings, e.g. constraints = [\"zone=a\", \"disk!=hdd\"]")
    );
    only_error(
        &format!("{HEAD}[[services.web.constraints]]\nzone = \"a\"\n"),
        3,
        16,
        "services.web.constraints",
        "expected an array of constraints, found an array of tables",
    );
    let e = only_error(
        &format!("{HEAD}constraints = [\"zone=a\", 7]\n"),
        3,
        26,
        "services.web.constraints[1]",
        "expected a constraint string, found an integer",
    );
    assert!(
        e.hint.as_deref().unwrap_or("").contains("`key=value`"),
        "{e}"
    );
}

#[test]
fn an_unknown_placement_lists_the_valid_ones_and_suggests_a_near_miss() {
    let e = only_error(
        &format!("{HEAD}placement = \"pack\"\n"),
        3,
        13,
        "services.web.placement",
        "unknown placement \"pack\": expected one of \"binpack\", \"spread\"",
    );
    assert_eq!(
        e.to_string(),
        "deploy.toml:3:13: services.web.placement: unknown placement \"pack\": expected one of \
         \"binpack\", \"spread\"; did you mean `binpack`?"
    );
    let e = only_error(
        &format!("{HEAD}placement = \"Spread\"\n"),
        3,
        13,
        "services.web.placement",
        "unknown placement \"Spread\"",
    );
    assert_eq!(e.hint.as_deref(), Some("did you mean `spread`?"));
    let e = only_error(
        &format!("{HEAD}placement = \"random\"\n"),
        3,
        13,
        "services.web.placement",
        "unknown placement",
    );
    assert_eq!(e.hint, None);
}

#[test]
fn a_placement_of_the_wrong_type_is_refused() {
    for (value, found) in [
        ("1", "an integer"),
        ("[\"spread\"]", "an array"),
        ("true", "a boolean"),
    ] {
        only_error(
            &format!("{HEAD}placement = {value}\n"),
            3,
            13,
            "services.web.placement",
            &format!("expected \"binpack\" or \"spread\", found {found}"),
        );
    }
}

#[test]
fn placement_and_constraint_names_from_other_tools_get_ours() {
    for (written, ours) in [
        ("node_selector", "constraints"),
        ("constraint", "constraints"),
        ("strategy", "placement"),
    ] {
        let e = only_error(
            &format!("{HEAD}{written} = 1\n"),
            3,
            1,
            &format!("services.web.{written}"),
            "unknown field",
        );
        assert_eq!(e.hint, Some(format!("did you mean `{ours}`?")), "{written}");
    }
}

#[test]
fn absurd_durations_are_refused_at_their_value_naming_the_limit() {
    let text = format!("{HEAD}port = 80\n[services.web.balance]\ndrain = \"100000h\"\n");
    only_error(
        &text,
        5,
        9,
        "services.web.balance.drain",
        "drain 4166d16h is more than the limit of 1h",
    );
    let text = format!("{HEAD}[services.web.stop]\ngrace = \"2h\"\n");
    only_error(
        &text,
        4,
        9,
        "services.web.stop.grace",
        "grace 2h is more than the limit of 1h",
    );
    let text = format!("{HEAD}[services.web.health]\ninterval = \"61m\"\ntimeout = \"1h\"\n");
    only_error(
        &text,
        4,
        12,
        "services.web.health.interval",
        "interval 1h1m is more than the limit of 1h",
    );
}

#[test]
fn tls_without_a_key_or_on_a_tcp_service_is_refused_with_its_place() {
    let e = only_error(
        "[services.web]\ncommand = [\"app\"]\nport = 443\n[services.web.tls]\ncert = \"c.pem\"\n",
        4,
        1,
        "services.web.tls.key",
        "missing required field `key`",
    );
    assert!(e.to_string().contains("key.pem"), "{e}");
    let all = errors(
        "[services.web]\ncommand = [\"app\"]\nport = 443\nprotocol = \"tcp\"\n[services.web.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\ncolour = 1\n",
    );
    let text = lines(&all);
    assert!(text.contains("services.web.tls.colour"), "{text}");
    assert!(
        text.contains("for protocol = \"http\" services only"),
        "{text}"
    );
}

#[test]
fn a_service_priority_is_0_to_100_and_kept_when_valid() {
    only_error(
        &format!("{HEAD}priority = 101\n"),
        3,
        12,
        "services.web.priority",
        "more than the limit of 100",
    );
    let specs = parse_str(
        "deploy.toml",
        &format!("{HEAD}priority = 20\n"),
        Path::new("/srv/app"),
    )
    .unwrap();
    assert_eq!(specs[0].priority, Some(20));
    assert_eq!(specs[0].priority(), 20);
}
