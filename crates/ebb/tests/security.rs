//! Security defaults through the real binary: the token file, token checks, and instances that
//! never see the token.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

#[test]
fn the_api_token_is_private_required_and_never_given_to_instances() {
    let ebb = Ebb::up(&[]);
    let token_file = ebb.data_dir().join("api-token");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert!(token.trim().len() >= 32);

    // Without the token (and with a wrong one) the API refuses.
    let addr = std::fs::read_to_string(ebb.data_dir().join("api.addr")).unwrap();
    let (status, body) = http_get(addr.trim(), "/v1/status").unwrap();
    assert_eq!(status, 401, "{body}");
    let out = Command::new(EBB)
        .args([
            "--data-dir",
            "/nonexistent",
            "--addr",
            addr.trim(),
            "status",
        ])
        .env("EBB_TOKEN", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused the token"));

    // An instance dumps its environment: no token, no EBB_ADDR, but its own identity.
    let dump = ebb.dir.path().join("env.txt");
    let text = format!(
        "[services.mike]\ncommand = [\"sh\", \"-c\", \"env > {}; exec ebb example-app\"]\n",
        dump.display()
    );
    let file = deploy_file(ebb.dir.path(), "m.toml", &text);
    let out = Command::new(EBB)
        .arg("--data-dir")
        .arg(ebb.data_dir())
        .args(["deploy", "--timeout", "20s", file.to_str().unwrap()])
        .env("EBB_TOKEN", token.trim())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ebb.wait_ready("mike", 1, Duration::from_secs(5));
    let env = std::fs::read_to_string(&dump).unwrap();
    assert!(
        !env.contains(token.trim()),
        "the token leaked into an instance"
    );
    assert!(!env.contains("EBB_TOKEN") && !env.contains("EBB_ADDR"));
    for var in [
        "PORT=",
        "HOST=127.0.0.1",
        "EBB_INSTANCE_ID=mike-",
        "EBB_SERVICE=mike",
        "EBB_NODE=test-node",
    ] {
        assert!(
            env.contains(var),
            "{var} missing from the instance env:\n{env}"
        );
    }
    // Nor do the logs or events carry it.
    assert!(!ebb.ok(&["events", "--json"]).contains(token.trim()));
    assert!(!ebb.server_log().contains(token.trim()));
}

#[test]
fn a_second_ebb_up_on_the_same_data_dir_is_refused() {
    let ebb = Ebb::up(&[]);
    let out = Command::new(EBB)
        .arg("--data-dir")
        .arg(ebb.data_dir())
        .args(["up", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already running on data dir"));
}

/// Mode bits of a path, permissions only.
fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_data_dir_the_store_and_the_logs_are_the_owners_alone() {
    let ebb = Ebb::up(&[]);
    let data = ebb.data_dir();
    assert_eq!(mode_of(&data), 0o700, "a data dir ebb creates");
    for file in ["state.db", "state.db-wal", "agent/instances.json"] {
        let path = data.join(file);
        if file == "agent/instances.json" && !path.exists() {
            continue; // written once an instance runs; checked below
        }
        assert_eq!(mode_of(&path), 0o600, "{file}");
    }
    let text = "[services.logger]\ncommand = [\"sh\", \"-c\", \"echo secret-ish; exec ebb example-app\"]\n";
    let file = deploy_file(ebb.dir.path(), "l.toml", text);
    ebb.ok(&["deploy", "--timeout", "20s", file.to_str().unwrap()]);
    ebb.wait_ready("logger", 1, Duration::from_secs(5));
    let logs = data.join("agent").join("logs").join("logger");
    let log = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "log"))
        .expect("the instance's log");
    assert_eq!(mode_of(&log), 0o600, "{}", log.display());
    assert_eq!(mode_of(&data.join("agent/instances.json")), 0o600);
}

#[test]
fn a_serving_ebb_raises_its_soft_open_file_limit_to_the_hard_one() {
    let limits = |pid: u32| {
        let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .to_string();
        let numbers: Vec<String> = line
            .split_whitespace()
            .skip(3)
            .take(2)
            .map(String::from)
            .collect();
        (numbers[0].clone(), numbers[1].clone())
    };
    let dir = tempfile::tempdir().unwrap();
    // Under the common soft limit of 1,024 (the hard limit stays as it is).
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -Sn 1024 && exec {EBB} --data-dir {} up --listen 127.0.0.1:0",
            dir.path().join("data").display()
        ))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (soft, hard) = eventually("the limit raised", Duration::from_secs(10), || {
        let (soft, hard) = limits(pid);
        (soft != "1024" || hard == "1024").then_some((soft, hard))
    });
    let addr = dir.path().join("data").join("api.addr");
    eventually("the API to be up", Duration::from_secs(20), || {
        addr.exists().then_some(())
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    if hard != "1024" {
        assert_eq!(soft, hard.replace("unlimited", &soft), "{log}");
        assert!(
            log.contains("raised the open-file limit from 1024"),
            "{log}"
        );
    }
}

#[test]
fn ebb_up_listens_for_services_on_loopback_only_by_default() {
    let ebb = Ebb::up(&[]);
    let port = free_port();
    let text = format!("[services.local]\ncommand = [\"ebb\", \"example-app\"]\nport = {port}\n");
    let file = deploy_file(ebb.dir.path(), "p.toml", &text);
    ebb.ok(&["deploy", "--timeout", "20s", file.to_str().unwrap()]);
    ebb.wait_ready("local", 1, Duration::from_secs(5));
    let on_loopback = format!("127.0.0.1:{port}");
    eventually("the service on 127.0.0.1", Duration::from_secs(10), || {
        http_get(&on_loopback, "/").filter(|(status, _)| *status == 200)
    });
    // Another address of this machine (127.0.0.2 is loopback too, but not 127.0.0.1): a
    // listener on 0.0.0.0 would answer there; one on 127.0.0.1 refuses.
    let elsewhere: std::net::SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
    assert!(
        std::net::TcpStream::connect_timeout(&elsewhere, Duration::from_secs(2)).is_err(),
        "ebb up's service port answers beyond 127.0.0.1"
    );
}

#[test]
fn a_services_env_values_appear_in_no_event_and_no_log_of_ebb() {
    let ebb = Ebb::up(&[]);
    let secret = "s3cr3t-value-7f2c9a";
    let text = format!(
        "[services.vault]\ncommand = [\"ebb\", \"example-app\"]\nenv = {{ DB_PASSWORD = \"{secret}\" }}\n"
    );
    let file = deploy_file(ebb.dir.path(), "vault.toml", &text);
    ebb.ok(&["deploy", "--timeout", "20s", file.to_str().unwrap()]);
    ebb.wait_ready("vault", 1, Duration::from_secs(5));
    // A change of the secret rolls the instance: the rollout's events must not carry it either.
    // (The API shows a service's spec, env included, to its token holder, as `kubectl get -o
    // yaml` does; events and logs are read more widely and carry none.)
    let rolled = text.replace(secret, "another-s3cr3t-1b4e");
    let file = deploy_file(ebb.dir.path(), "vault.toml", &rolled);
    ebb.ok(&["deploy", "--timeout", "20s", file.to_str().unwrap()]);
    for needle in [secret, "another-s3cr3t-1b4e"] {
        assert!(!ebb.ok(&["events", "--json"]).contains(needle), "events");
        assert!(!ebb.server_log().contains(needle), "ebb's own log");
    }
}

/// Raises this test process's own soft open-file limit to its hard one, for a flood of sockets.
fn raise_own_open_files(needed: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        hard >= needed,
        "the test needs {needed} open files; the hard limit is {hard}"
    );
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

/// Whether the peer has closed `socket` (EOF or reset), without blocking.
fn closed_by_peer(socket: &mut std::net::TcpStream) -> bool {
    use std::io::Read;
    let mut byte = [0u8; 64];
    match socket.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

#[test]
fn a_flood_of_unfinished_connections_under_a_1024_soft_limit_harms_no_one() {
    use std::io::Write;
    use std::net::TcpStream;
    raise_own_open_files(4096);
    let ebb = Ebb::up_after("ulimit -Sn 1024", &[]);
    let port = free_port();
    let file = deploy_file(
        ebb.dir.path(),
        "web.toml",
        &app_service("web", 2, &format!("port = {port}")),
    );
    ebb.ok(&["deploy", "--timeout", "30s", file.to_str().unwrap()]);
    let pids = |ebb: &Ebb| -> Vec<u64> {
        let mut pids: Vec<u64> = ebb
            .wait_ready("web", 2, Duration::from_secs(20))
            .iter()
            .map(|i| i["pid"].as_u64().unwrap())
            .collect();
        pids.sort();
        pids
    };
    let before = pids(&ebb);
    let service = format!("127.0.0.1:{port}");
    let api = std::fs::read_to_string(ebb.data_dir().join("api.addr")).unwrap();
    let connect = |addr: &str| {
        let addr: std::net::SocketAddr = addr.trim().parse().unwrap();
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect")
    };
    // 1,500 clients that send one byte of the HTTP/2 preface, 500 that send nothing, 300 with
    // a request head never finished; 600 silent connections to the API.
    let flood_started = std::time::Instant::now();
    let mut flood: Vec<TcpStream> = Vec::with_capacity(2_900);
    for i in 0..2_300 {
        let mut s = connect(&service);
        match i {
            0..1_500 => s.write_all(b"P").unwrap(),
            1_500..2_000 => {}
            _ => s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap(),
        }
        flood.push(s);
    }
    flood.extend((0..600).map(|_| connect(&api)));
    // Opening the flood takes well under a second on an idle machine, but seconds on a busy
    // one (a full accept queue makes connects wait for a SYN retransmit): the client's 12 s
    // count from when the flood is in place.
    let flooded = std::time::Instant::now();
    eprintln!("flood opened in {:?}", flooded - flood_started);
    // Throughout: a normal client is answered every time, and so is `ebb status`.
    let mut answered = 0;
    while flooded.elapsed() < Duration::from_secs(12) {
        let (status, body) = http_get(&service, "/").expect("the service answers");
        assert_eq!(status, 200, "{body}");
        answered += 1;
        if answered % 10 == 0 {
            ebb.ok(&["status"]);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(answered >= 10, "the client ran: {answered} requests");
    // ebb closes every unfinished connection (the header timeout is 10 s).
    for s in &flood {
        s.set_nonblocking(true).unwrap();
    }
    eventually("ebb to close the flood", Duration::from_secs(30), || {
        flood.retain_mut(|s| !closed_by_peer(s));
        flood.is_empty().then_some(())
    });
    assert!(
        flooded.elapsed() < Duration::from_secs(40),
        "{:?}",
        flooded.elapsed()
    );
    // No health check failed, no instance restarted.
    assert_eq!(pids(&ebb), before);
    let events = ebb.ok(&["events", "--limit", "1000"]);
    assert!(
        !events.contains("unhealthy") && !events.contains("instance.exited"),
        "{events}"
    );
}
