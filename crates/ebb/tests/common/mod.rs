//! Test harness: runs the real `ebb` binary (`ebb up` in the background, CLI commands in the
//! foreground) on a fresh data dir and an ephemeral API port.
#![allow(dead_code)]

pub mod agent;
pub mod loopfs;

use serde_json::Value;
use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const EBB: &str = env!("CARGO_BIN_EXE_ebb");

/// A running `ebb up`, stopped (gracefully, then by force) when dropped.
pub struct Ebb {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    options: Vec<String>,
    /// The command and its options: `up` (with a local node) or `server`.
    role: Vec<String>,
    /// A shell command run before ebb, in the shell that then execs it (`ulimit -Sn 1024`).
    prelude: Option<String>,
}

impl Ebb {
    /// Starts `ebb up` with these deploy files and waits until its API answers.
    pub fn up(files: &[&Path]) -> Ebb {
        Ebb::up_with(files, &[])
    }

    /// Like [`Ebb::up`], with extra `ebb up` options (kept for restarts).
    pub fn up_with(files: &[&Path], options: &[&str]) -> Ebb {
        let mut ebb = Ebb::up_unstarted(options, None);
        ebb.start(files);
        ebb
    }

    /// [`Ebb::up_with`] with no file, ebb started by a shell that first runs `prelude`
    /// (`ulimit -Sn 1024`).
    pub fn up_after(prelude: &str, options: &[&str]) -> Ebb {
        let mut ebb = Ebb::up_unstarted(options, Some(prelude.to_string()));
        ebb.start(&[]);
        ebb
    }

    fn up_unstarted(options: &[&str], prelude: Option<String>) -> Ebb {
        let role = ["up", "--listen", "127.0.0.1:0", "--node-name", "test-node"];
        Ebb {
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
            options: options.iter().map(|s| s.to_string()).collect(),
            role: role.iter().map(|s| s.to_string()).collect(),
            prelude,
        }
    }

    /// Starts `ebb server` (no local node) on `127.0.0.1:port` and waits until its API answers;
    /// restarts reuse the port, so that agents find it again.
    pub fn server(port: u16) -> Ebb {
        Ebb::server_with(port, &[])
    }

    /// [`Ebb::server`] with more options for `ebb server`.
    pub fn server_with(port: u16, options: &[&str]) -> Ebb {
        Ebb::server_in(tempfile::tempdir().expect("tempdir"), port, options)
    }

    /// [`Ebb::server_with`] on `<dir>/data` (where a test may have mounted a file system).
    pub fn server_in(dir: tempfile::TempDir, port: u16, options: &[&str]) -> Ebb {
        let listen = format!("127.0.0.1:{port}");
        let mut role = vec!["server".to_string(), "--listen".into(), listen];
        role.extend(options.iter().map(|o| o.to_string()));
        let mut ebb = Ebb {
            dir,
            child: None,
            options: Vec::new(),
            role,
            prelude: None,
        };
        ebb.start(&[]);
        ebb
    }

    /// The token agents join this server with.
    pub fn join_token(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("join-token")).expect("join-token file")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// (Re)starts `ebb up` on this data dir.
    pub fn start(&mut self, files: &[&Path]) {
        let _ = std::fs::remove_file(self.data_dir().join("api.addr"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("ebb-up.log"))
            .expect("log file");
        let mut cmd = match &self.prelude {
            // `sh -c 'PRELUDE && exec "$0" "$@"' ebb ARGS...`: the child is ebb itself.
            Some(prelude) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("{prelude} && exec \"$0\" \"$@\""))
                    .arg(EBB);
                sh
            }
            None => Command::new(EBB),
        };
        cmd.arg("--data-dir").arg(self.data_dir()).args(&self.role);
        cmd.args(&self.options)
            .args(files)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(cmd.spawn().expect("spawn ebb up"));
        eventually("ebb up's API to answer", Duration::from_secs(20), || {
            self.try_cli(&["status"])
                .is_some_and(|o| o.status.success())
                .then_some(())
        });
    }

    /// The server's own log so far (for assertion messages).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ebb-up.log")).unwrap_or_default()
    }

    pub fn try_cli(&self, args: &[&str]) -> Option<Output> {
        if !self.data_dir().join("api.addr").exists() {
            return None;
        }
        Command::new(EBB)
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(args)
            .env_remove("EBB_ADDR")
            .env_remove("EBB_TOKEN")
            .output()
            .ok()
    }

    /// Runs an `ebb` CLI command against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.try_cli(args).expect("run ebb cli")
    }

    /// Runs a CLI command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "ebb {args:?} failed ({}):\nstdout: {}\nstderr: {}\nserver log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.server_log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a CLI command that must fail; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            !out.status.success(),
            "ebb {args:?} should have failed:\nstdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `ebb ps --json`, optionally for one service.
    pub fn ps(&self, service: Option<&str>) -> Vec<Value> {
        let mut args = vec!["ps", "--json"];
        args.extend(service);
        serde_json::from_str(&self.ok(&args)).expect("ps --json is JSON")
    }

    /// Instances that should run and are ready.
    pub fn ready(&self, service: &str) -> Vec<Value> {
        self.ps(Some(service))
            .into_iter()
            .filter(|i| i["ready"] == true && i["desired"] == "run")
            .collect()
    }

    /// Ready instances of `service` per node.
    pub fn per_node(&self, service: &str) -> std::collections::BTreeMap<String, usize> {
        let mut by = std::collections::BTreeMap::new();
        for i in self.ready(service) {
            *by.entry(i["node"].as_str().unwrap_or("").to_string())
                .or_default() += 1;
        }
        by
    }

    /// Waits until `service` has exactly `n` instances, all ready and running.
    pub fn wait_ready(&self, service: &str, n: usize, within: Duration) -> Vec<Value> {
        eventually(&format!("{n} ready instances of {service}"), within, || {
            let all = self.ps(Some(service));
            (all.len() == n
                && all
                    .iter()
                    .all(|i| i["ready"] == true && i["desired"] == "run"))
            .then_some(all)
        })
    }

    /// Kills `ebb up` with SIGKILL (a crash), leaving its instances running.
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal to `ebb up` and waits for it to exit; returns its exit status.
    /// Sends `sig` to the server process and returns at once (SIGSTOP, SIGCONT).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let c = self.child.as_ref().expect("ebb running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig).expect("signal");
    }

    pub fn signal_and_wait(&mut self, sig: nix::sys::signal::Signal) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("ebb up running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig).expect("signal");
        eventually("ebb up to exit", Duration::from_secs(30), || {
            c.try_wait().ok().flatten()
        })
    }
}

impl Drop for Ebb {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
        }
    }
}

pub use ebb_testkit::blocking::eventually;

/// A plain HTTP/1.1 GET; returns (status, body).
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    http_get_within(addr, path, Duration::from_secs(5))
}

/// As [`http_get`], waiting up to `read_timeout` for the answer.
pub fn http_get_within(addr: &str, path: &str, read_timeout: Duration) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(read_timeout)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Pids of live processes whose environment has `EBB_INSTANCE_ID` of an instance in this data dir's service.
pub fn processes_with_env(key: &str, value: &str) -> Vec<u64> {
    let needle = format!("{key}={value}");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) && alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// Stops the load; it must have run (more than `at_least` answers) and seen no failed request.
pub fn finish_without_failures(load: LoadGen, at_least: u64) {
    let (ok, failures) = load.finish();
    assert!(ok > at_least, "the load ran: {ok}");
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

/// Writes a deploy file into `dir` and returns its path.
pub fn deploy_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write deploy file");
    path
}

/// A deploy file for `n` instances of the example app under a service name; `extra` is appended
/// inside the service table.
pub fn app_service(name: &str, n: u32, extra: &str) -> String {
    format!(
        "[services.{name}]\ncommand = [\"ebb\", \"example-app\"]\ninstances = {n}\n{extra}\n[services.{name}.health]\nhttp = \"/healthz\"\ninterval = \"200ms\"\n[services.{name}.stop]\ngrace = \"5s\"\n"
    )
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Constant load on a router: `threads` keep-alive clients sending GETs back to back until
/// stopped (or for 60 s at most), counting answers that are not 200 and broken requests.
pub struct LoadGen {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    workers: Vec<std::thread::JoinHandle<(u64, Vec<String>)>>,
}

/// Most time a load generator runs, whatever happens.
const LOAD_LIMIT: Duration = Duration::from_secs(60);

impl LoadGen {
    pub fn start(addr: &str, threads: usize) -> LoadGen {
        LoadGen::start_path(addr, "/", threads)
    }

    /// As [`LoadGen::start`], each client GETting `path` again and again.
    pub fn start_path(addr: &str, path: &str, threads: usize) -> LoadGen {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers = (0..threads)
            .map(|_| {
                let (stop, addr, path) = (stop.clone(), addr.to_string(), path.to_string());
                std::thread::spawn(move || keep_alive_client(&addr, &path, &stop))
            })
            .collect();
        LoadGen { stop, workers }
    }

    /// Stops the clients; returns (requests answered 200, failures with their reasons).
    pub fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut ok = 0;
        let mut failures = Vec::new();
        for w in self.workers {
            let (n, mut f) = w.join().expect("load thread");
            ok += n;
            failures.append(&mut f);
        }
        (ok, failures)
    }
}

fn keep_alive_client(
    addr: &str,
    path: &str,
    stop: &std::sync::atomic::AtomicBool,
) -> (u64, Vec<String>) {
    let deadline = Instant::now() + LOAD_LIMIT;
    let (mut ok, mut failures) = (0u64, Vec::new());
    let mut conn: Option<std::io::BufReader<TcpStream>> = None;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
        if conn.is_none() {
            match TcpStream::connect(addr) {
                Ok(s) => {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    conn = Some(std::io::BufReader::new(s));
                }
                Err(e) => {
                    failures.push(format!("connect: {e}"));
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        match one_request(c, addr, path) {
            Ok(200) => ok += 1,
            Ok(status) => failures.push(format!("status {status}")),
            Err(e) => {
                failures.push(format!("request: {e}"));
                conn = None;
            }
        }
    }
    (ok, failures)
}

/// One GET on a kept-alive connection; reads the whole answer (Content-Length bodies).
fn one_request(
    c: &mut std::io::BufReader<TcpStream>,
    addr: &str,
    path: &str,
) -> std::io::Result<u16> {
    use std::io::BufRead;
    write!(c.get_mut(), "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n")?;
    let mut line = String::new();
    if c.read_line(&mut line)? == 0 {
        return Err(std::io::Error::other("connection closed before the answer"));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if c.read_line(&mut h)? == 0 {
            return Err(std::io::Error::other("connection closed in the headers"));
        }
        if h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    c.read_exact(&mut body)?;
    Ok(status)
}

/// A server and `n` agents named `<prefix>-1..n` on 127.0.0.2.., each started with `options`
/// too (node names are unique per test: instances are found by their `EBB_NODE`).
pub fn cluster_with(prefix: &str, n: usize, options: &[&str]) -> (Ebb, Vec<agent::Agent>, u16) {
    let port = free_port();
    let server = Ebb::server(port);
    let token = server.join_token();
    let addr = format!("127.0.0.1:{port}");
    let agents = (1..=n)
        .map(|i| {
            agent::Agent::join_with(
                &addr,
                &token,
                &format!("{prefix}-{i}"),
                &format!("127.0.0.{}", i + 1),
                options,
            )
        })
        .collect();
    (server, agents, port)
}

/// Starts a following CLI command and returns a channel of its stdout lines.
pub fn follow(ebb: &Ebb, args: &[&str]) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(EBB)
        .arg("--data-dir")
        .arg(ebb.data_dir())
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for a line containing `needle`.
pub fn expect_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    eventually(
        &format!("a line with {needle:?}"),
        Duration::from_secs(10),
        || {
            rx.recv_timeout(Duration::from_millis(100))
                .ok()
                .filter(|l| l.contains(needle))
        },
    )
}
