//! Bad deploy files through the real binary: a non-zero exit, a message naming file:line:col and
//! the field, and the running state untouched.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

/// (file contents, expected "line:col", expected field, phrase of the message)
const CASES: &[(&str, &str, &str, &str)] = &[
    (
        "[services.web\ncommand = [\"x\"]\n",
        ":1:14",
        "",
        "invalid TOML",
    ),
    (
        "[services.web]\ncommand = [\"x\"]\ninstnces = 3\n",
        ":3:1",
        "services.web.instnces",
        "did you mean `instances`",
    ),
    (
        "[services.web]\ncommand = [\"x\"]\ninstances = \"three\"\n",
        ":3:13",
        "services.web.instances",
        "expected a whole number, found a string",
    ),
    (
        "[services.web]\ncommand = [\"x\"]\nport = 80\n[services.web.balance]\ndrain = \"100000h\"\n",
        ":5:9",
        "services.web.balance.drain",
        "more than the limit of 1h",
    ),
    (
        "[services.web]\ncommand = [\"x\"]\n[services.web.health]\ninterval = \"10 parsecs\"\n",
        ":4:12",
        "services.web.health.interval",
        "invalid duration",
    ),
    (
        "[services.web]\ncommand = [\"x\"]\n[services.web.resources]\nmemory = \"64 potatoes\"\n",
        ":4:10",
        "services.web.resources.memory",
        "invalid size",
    ),
    (
        "[services.web]\ncommand = [\"x\"]\ninstances = -1\n",
        ":3:13",
        "services.web.instances",
        "negative",
    ),
    (
        "[services.web]\ncommand = [\"x\"]\ninstances = 99999999\n",
        ":3:13",
        "services.web.instances",
        "limit",
    ),
    (
        "[services.web]\ncommand = []\n",
        ":2:11",
        "services.web.command",
        "empty",
    ),
    (
        "[services.web]\ncommand = [\"x\"]\n[services.web]\ncommand = [\"y\"]\n",
        ":3:1",
        "services.web",
        "duplicate key",
    ),
];

fn validate(dir: &std::path::Path, text: &str) -> (i32, String) {
    let file = deploy_file(dir, "bad.toml", text);
    let out = Command::new(EBB)
        .current_dir(dir)
        .args(["validate", "bad.toml"])
        .output()
        .unwrap();
    assert!(!file.as_os_str().is_empty());
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_kind_of_bad_deploy_file_is_located_and_named() {
    let dir = tempfile::tempdir().unwrap();
    for (text, place, field, phrase) in CASES {
        let (code, err) = validate(dir.path(), text);
        assert_eq!(code, 2, "exit code for {text:?}: {err}");
        let first = err.lines().next().unwrap_or_default();
        assert!(
            first.contains(&format!("bad.toml{place}")),
            "place {place} missing for {text:?}:\n{err}"
        );
        assert!(
            first.contains(field),
            "field {field} missing for {text:?}:\n{err}"
        );
        assert!(
            err.contains(phrase),
            "phrase {phrase:?} missing for {text:?}:\n{err}"
        );
        assert!(err.contains("nothing was applied"), "{err}");
    }
}

#[test]
fn a_service_named_in_two_files_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    deploy_file(dir.path(), "a.toml", "[services.web]\ncommand = [\"x\"]\n");
    deploy_file(
        dir.path(),
        "b.toml",
        "# b\n[services.web]\ncommand = [\"y\"]\n",
    );
    let out = Command::new(EBB)
        .current_dir(dir.path())
        .args(["validate", "a.toml", "b.toml"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("b.toml:2:1") && err.contains("a.toml:1:1"),
        "{err}"
    );
}

#[test]
fn a_bad_deploy_changes_nothing_on_a_running_server() {
    let ebb = Ebb::up(&[]);
    let good = deploy_file(ebb.dir.path(), "good.toml", &app_service("kilo", 2, ""));
    ebb.ok(&["deploy", good.to_str().unwrap()]);
    let before = ebb.wait_ready("kilo", 2, Duration::from_secs(5));
    let events_before = ebb.ok(&["events", "--json"]);
    // A valid change to kilo and an invalid new service in one deploy: neither is applied.
    let bad = deploy_file(
        ebb.dir.path(),
        "bad.toml",
        &format!(
            "{}\n[services.lima]\ncommand = [\"x\"]\ninstances = -2\n",
            app_service("kilo", 5, "")
        ),
    );
    let out = ebb.cli(&["deploy", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("services.lima.instances"));
    let after = ebb.ps(None);
    assert_eq!(after.len(), 2);
    let ids = |v: &[serde_json::Value]| v.iter().map(|i| i["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&after), ids(&before));
    assert_eq!(
        ebb.ok(&["events", "--json"]),
        events_before,
        "no event: nothing happened"
    );
}

#[test]
fn up_with_a_bad_file_exits_2_before_starting_anything() {
    let dir = tempfile::tempdir().unwrap();
    let bad = deploy_file(dir.path(), "bad.toml", "[services.web]\ncomand = [\"x\"]\n");
    let data = dir.path().join("data");
    let out = Command::new(EBB)
        .arg("--data-dir")
        .arg(&data)
        .args(["up", "--listen", "127.0.0.1:0"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:2:1") && err.contains("did you mean `command`"),
        "{err}"
    );
    assert!(!data.exists(), "nothing may be created for a bad file");
}

#[test]
fn cli_errors_have_meaningful_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens here: exit 3 with a hint.
    let out = Command::new(EBB)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--addr", "127.0.0.1:9", "ps"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is `ebb up` running?"));
    // Bad arguments: clap's usage error, exit 2.
    let out = Command::new(EBB)
        .args(["scale", "web", "many"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_closed_stdout_ends_a_command_quietly_instead_of_panicking() {
    // As in `ebb ps | head -1`: the reader is gone before ebb writes.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/hello.toml");
    let out = Command::new(EBB)
        .args(["validate", example])
        .stdout(writer)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}

#[test]
fn every_shipped_example_is_a_valid_deploy_file() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    let out = Command::new(EBB)
        .arg("validate")
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_port_held_by_another_program_is_invalid_input_and_changes_nothing() {
    let ebb = Ebb::up(&[]);
    // Another program holds the port on the address ebb up's services listen on.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let text = format!("[services.taken]\ncommand = [\"ebb\", \"example-app\"]\nport = {port}\n");
    let file = deploy_file(ebb.dir.path(), "taken.toml", &text);
    let out = ebb.cli(&["deploy", "--detach", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("services.taken.port"), "{stderr}");
    assert!(stderr.contains("already in use"), "{stderr}");
    assert!(stderr.contains("nothing was applied"), "{stderr}");
    assert!(!ebb.ok(&["status"]).contains("taken"));
}

#[test]
fn completions_for_bash_zsh_and_fish_come_from_the_parser() {
    let script = |shell: &str| {
        let out = std::process::Command::new(EBB)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    // bash: loaded by a real bash, it completes `ebb jo` to the two commands that start so.
    let bash = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source <({EBB} completions bash); COMP_WORDS=(ebb jo); COMP_CWORD=1; _ebb ebb jo ebb; echo \"${{COMPREPLY[@]}}\""
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&bash.stdout).trim(),
        "jobs job",
        "{bash:?}"
    );
    // zsh and fish: their scripts name every command (shells not installed here are not run).
    let zsh = script("zsh");
    assert!(zsh.starts_with("#compdef ebb"), "{zsh}");
    let fish = script("fish");
    for command in ["deploy", "logs", "jobs", "completions"] {
        assert!(zsh.contains(&format!("'{command}:")), "zsh lacks {command}");
        assert!(
            fish.contains(&format!("-a \"{command}\"")),
            "fish lacks {command}"
        );
    }
    let bad = std::process::Command::new(EBB)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
