//! `ebb demo` through the real binary, without a terminal: a whole wave ends in a summary with
//! no failed request, a scale-out, zero and a cold start; an interrupted demo cleans up too.
//! Either way nothing it started remains: no temporary dir, no `ebb up`, no instance.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::{processes_with_env, EBB};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One demo at a time: both use the service name `demo`, which the leftover check looks for.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Longest a demo may run before the test gives up on it.
const LIMIT: Duration = Duration::from_secs(90);

/// A running `ebb demo` with its stdout read line by line.
struct Demo {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Demo {
    fn start(args: &[&str]) -> Demo {
        let mut child = Command::new(EBB)
            .arg("demo")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ebb demo");
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            text
        });
        Demo {
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Reads lines until one satisfies `want`, within `within`.
    fn wait_for_line(&mut self, what: &str, within: Duration, want: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                let hit = want(&line);
                self.seen.push(line);
                if hit {
                    return;
                }
            }
        }
        abandon(&mut self.child);
        panic!(
            "no line with {what} within {within:?}:\n{}",
            self.seen.join("\n")
        );
    }

    /// Waits for the exit (interrupting the demo past `within`, then killing it); the exit
    /// status, all of stdout and stderr.
    fn finish(mut self, within: Duration) -> (ExitStatus, String, String) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                abandon(&mut self.child);
                let rest: Vec<String> = self.lines.try_iter().collect();
                panic!(
                    "ebb demo did not finish within {within:?}:\n{}\n{}",
                    self.seen.join("\n"),
                    rest.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        // The reader ends when stdout closes.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        let stderr = self.stderr.join().unwrap_or_default();
        (status, self.seen.join("\n"), stderr)
    }
}

/// Ctrl-C lets the demo clean up; gives it time to, then kills it.
fn abandon(child: &mut Child) {
    interrupt(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn interrupt(child: &Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
}

/// The temporary dir the demo announced.
fn state_dir(out: &str) -> PathBuf {
    let line = out
        .lines()
        .find(|l| l.contains("ebb's state and log: "))
        .unwrap_or_else(|| panic!("the demo names its state dir:\n{out}"));
    let path = line
        .split_once("ebb's state and log: ")
        .and_then(|(_, rest)| rest.split_once(" ("))
        .map(|(path, _)| path)
        .expect("a path");
    PathBuf::from(path)
}

/// Nothing of the demo remains: its dir, its `ebb up` (marked with the dir), its instances.
fn assert_nothing_left(dir: &std::path::Path, out: &str) {
    assert!(!dir.exists(), "{} is removed:\n{out}", dir.display());
    let marked = processes_with_env("EBBDEMO_DIR", &dir.display().to_string());
    assert!(
        marked.is_empty(),
        "processes of the demo remain: {marked:?}"
    );
    let instances = processes_with_env("EBB_SERVICE", "demo");
    assert!(instances.is_empty(), "instances remain: {instances:?}");
}

/// The value after a summary label (`  zero reached       yes, ...` → `yes, ...`).
fn summary_field<'a>(out: &'a str, label: &str) -> &'a str {
    let summary = out
        .split_once("\nsummary\n")
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("a summary:\n{out}"));
    summary
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("{label} in the summary:\n{out}"))
}

#[test]
fn a_demo_scales_out_goes_to_zero_serves_a_cold_start_and_leaves_nothing_behind() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let started = Instant::now();
    let charts = tempfile::tempdir().unwrap();
    let chart = charts.path().join("wave.svg");
    let demo = Demo::start(&["--duration", "20s", "--chart", chart.to_str().unwrap()]);
    let (status, out, err) = demo.finish(LIMIT);
    eprintln!("{out}\n(took {:?})", started.elapsed());
    assert!(status.success(), "exit {status}:\n{out}\nstderr:\n{err}");

    // Live lines without a terminal: plain text, one per second, through every phase.
    assert!(!out.contains('\x1b'), "no escape codes without a terminal");
    for phase in ["rise", "spike", "fall", "idle"] {
        assert!(
            out.lines().any(|l| l.contains(&format!("s  {phase} "))),
            "a live line in {phase}:\n{out}"
        );
    }

    let requests = summary_field(&out, "requests");
    assert!(requests.ends_with(" 0 failed"), "{requests}");
    let decisions = summary_field(&out, "scaling decisions");
    let outs: u32 = decisions
        .split_once(": ")
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("decisions out: {decisions}"));
    assert!(outs >= 1, "a scale-out: {decisions}");
    assert!(out.contains("autoscaled 0 → 1"), "woke from zero:\n{out}");
    let spike = summary_field(&out, "spike reaction");
    assert!(spike.contains("decided"), "{spike}");
    let zero = summary_field(&out, "zero reached");
    assert!(zero.starts_with("yes"), "{zero}");
    let cold = summary_field(&out, "cold start");
    assert!(
        cold.starts_with("the first request at zero was answered in"),
        "{cold}"
    );

    // The chart: instances against load, as SVG, with a point a second.
    assert!(
        out.contains(&format!("chart: {}", chart.display())),
        "{out}"
    );
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(svg.contains("ready instances") && svg.contains("requests per second"));
    let longest = svg
        .split("points=\"")
        .skip(1)
        .map(|p| p.split('"').next().unwrap_or("").split(' ').count())
        .max()
        .unwrap_or(0);
    assert!(longest >= 15, "a point a second over the wave: {longest}");

    assert_nothing_left(&state_dir(&out), &out);
}

#[test]
fn a_chart_that_is_not_svg_is_refused_before_anything_starts() {
    let out = Command::new(EBB)
        .args(["demo", "--chart", "wave.png"])
        .output()
        .expect("run ebb demo");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--chart wave.png") && err.contains("SVG"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn an_interrupted_demo_stops_ebb_and_its_instances_and_removes_its_state() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut demo = Demo::start(&["--duration", "60s"]);
    // Under load, with an instance running.
    demo.wait_for_line("a ready instance", Duration::from_secs(30), |l| {
        l.contains("  rise ") && l.contains("instances 1/")
    });
    interrupt(&demo.child);
    let (status, out, err) = demo.finish(Duration::from_secs(40));
    assert_eq!(status.code(), Some(130), "{out}\nstderr:\n{err}");
    assert!(out.contains("interrupted"), "{out}");
    assert!(err.contains("interrupted"), "{err}");
    assert_nothing_left(&state_dir(&out), &out);
}

#[test]
fn a_too_short_duration_is_refused_before_anything_starts() {
    let out = Command::new(EBB)
        .args(["demo", "--duration", "5s"])
        .output()
        .expect("run ebb demo");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--duration"), "{err}");
    assert!(out.stdout.is_empty());
}
