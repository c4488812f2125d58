//! Autoscaling through the real binary: a service at zero wakes on its first request, scales
//! out under load, back in when the load goes, and to zero when idle — without a failed request.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::*;
use std::time::{Duration, Instant};

/// An autoscaled example-app service with short windows, so that a test sees every phase.
fn autoscaled(name: &str, port: u16) -> String {
    format!(
        "[services.{name}]\ncommand = [\"ebb\", \"example-app\"]\nport = {port}\n\
         [services.{name}.health]\nhttp = \"/healthz\"\ninterval = \"200ms\"\n\
         [services.{name}.stop]\ngrace = \"5s\"\n\
         [services.{name}.balance]\nalgorithm = \"least_request\"\ndrain = \"10s\"\nqueue_timeout = \"20s\"\n\
         [services.{name}.autoscale]\nmin = 0\nmax = 4\nconcurrency = 2\nstable_window = \"4s\"\n\
         panic_window = \"2s\"\nscale_down_delay = \"2s\"\nidle_timeout = \"4s\"\n"
    )
}

/// Deploys `web`, an example-app service on a free port, with `sections` (its TOML after the
/// command and port); returns the port and the deploy file.
fn deploy_web(ebb: &Ebb, sections: &str) -> (u16, std::path::PathBuf) {
    deploy_web_running(ebb, r#"["ebb", "example-app"]"#, sections)
}

/// [`deploy_web`] with the service's `command` (a TOML array).
fn deploy_web_running(ebb: &Ebb, command: &str, sections: &str) -> (u16, std::path::PathBuf) {
    let port = free_port();
    let service = format!("[services.web]\ncommand = {command}\nport = {port}\n{sections}");
    let file = deploy_file(ebb.dir.path(), "web.toml", &service);
    ebb.ok(&["deploy", "--detach", file.to_str().unwrap()]);
    (port, file)
}

fn desired(ebb: &Ebb, name: &str) -> u64 {
    let v: serde_json::Value =
        serde_json::from_str(&ebb.ok(&["status", "--json"])).expect("status json");
    v["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .and_then(|s| s["desired"].as_u64())
        .expect("service in status")
}

#[test]
fn a_service_wakes_from_zero_scales_with_load_and_goes_back_to_zero() {
    let ebb = Ebb::up_with(&[], &["--router-bind", "127.0.0.1"]);
    let port = free_port();
    let file = deploy_file(ebb.dir.path(), "echo.toml", &autoscaled("echo", port));
    ebb.ok(&["deploy", "--detach", file.to_str().unwrap()]);
    assert_eq!(desired(&ebb, "echo"), 0, "starts at min = 0");
    let addr = format!("127.0.0.1:{port}");
    eventually("the router to listen", Duration::from_secs(5), || {
        std::net::TcpStream::connect(&addr).ok()
    });

    // At zero: the first request is held while an instance starts, then served.
    let (status, body) = http_get_within(&addr, "/", Duration::from_secs(20)).expect("answer");
    assert_eq!(status, 200, "{body}");
    assert!(ebb.ok(&["events"]).contains("autoscaled 0 → 1"));

    // Load: 8 clients on a 100 ms endpoint keep ~8 requests in flight; target 2 each → 4.
    let load = LoadGen::start_path(&addr, "/slow?ms=100", 8);
    let stepped = Instant::now();
    eventually("scale-out to 4", Duration::from_secs(15), || {
        (ebb.ready("echo").len() == 4).then_some(())
    });
    let reaction = stepped.elapsed();
    let (ok, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 50, "the load ran: {ok}");
    let status = ebb.ok(&["status"]);
    assert!(
        status.contains("0-4: "),
        "the last reason is shown: {status}"
    );

    // Manual control: counts are refused, bounds are changed live.
    let refused = ebb.cli(&["scale", "echo", "3"]);
    assert_ne!(refused.status.code(), Some(0));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("autoscaled") && said.contains("--min"),
        "{said}"
    );

    // Idle: back in, then to zero.
    eventually("idle to zero", Duration::from_secs(30), || {
        (desired(&ebb, "echo") == 0 && ebb.ps(Some("echo")).is_empty()).then_some(())
    });
    let events = ebb.ok(&["events"]);
    assert!(
        events.contains("concurrency"),
        "decisions say why: {events}"
    );
    ebb.ok(&["scale", "echo", "--min", "1", "--max", "3"]);
    eventually("min 1 applies", Duration::from_secs(10), || {
        (ebb.ready("echo").len() == 1).then_some(())
    });
    eprintln!("scale-out reaction: {reaction:?}");
}

#[test]
fn cpu_use_reported_by_the_agent_drives_a_cpu_target() {
    let ebb = Ebb::up(&[]);
    // A busy loop reserving half a core: it uses ~100 % of its reservation (or more, where
    // cgroups cannot cap it); a target of 0.5 asks for at least two instances.
    let text = "[services.burn]\ncommand = [\"sh\", \"-c\", \"while :; do :; done\"]\n\
                [services.burn.resources]\ncpu = 0.5\n\
                [services.burn.health]\ncommand = [\"true\"]\ninterval = \"200ms\"\n\
                [services.burn.stop]\ngrace = \"1s\"\n\
                [services.burn.autoscale]\nmin = 1\nmax = 2\ncpu = 0.5\nstable_window = \"3s\"\npanic_window = \"1s\"\n";
    let file = deploy_file(ebb.dir.path(), "burn.toml", text);
    ebb.ok(&["deploy", "--detach", file.to_str().unwrap()]);
    eventually("a cpu-driven scale-out", Duration::from_secs(20), || {
        (desired(&ebb, "burn") == 2).then_some(())
    });
    let events = ebb.ok(&["events"]);
    assert!(events.contains("autoscaled 1 → 2: cpu"), "{events}");
    ebb.ok(&["stop", "burn"]);
}

/// A client that asks for `/bytes?n={len}` and reads it at about 1 KiB a second until `fast`
/// is set, then at full speed; returns how many body bytes of `x` it got (within 60 s).
fn slow_reader(addr: &str, len: usize, fast: &std::sync::atomic::AtomicBool) -> usize {
    use nix::sys::socket::{self as so, sockopt, AddressFamily, SockFlag, SockType};
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    // A small receive buffer, so that the kernel holds little of the response for us; set
    // before connecting, as the window scale is agreed then.
    let fd = so::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .expect("socket");
    so::setsockopt(&fd, sockopt::RcvBuf, &4096).expect("SO_RCVBUF");
    let to: std::net::SocketAddrV4 = addr.parse().expect("an IPv4 address");
    so::connect(fd.as_raw_fd(), &so::SockaddrIn::from(to)).expect("connect");
    let mut socket = std::net::TcpStream::from(fd);
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(socket, "GET /bytes?n={len} HTTP/1.1\r\nHost: slow\r\n\r\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut head = Vec::new();
    let mut body = 0; // bytes of `x` after the head
    let mut chunk = vec![0; 64 * 1024];
    while Instant::now() < deadline && body < len {
        let quick = fast.load(std::sync::atomic::Ordering::SeqCst);
        let n = match socket.read(&mut chunk[..if quick { 64 * 1024 } else { 1000 }]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut bytes = &chunk[..n];
        while !head.ends_with(b"\r\n\r\n") && !bytes.is_empty() {
            head.push(bytes[0]);
            bytes = &bytes[1..];
        }
        body += bytes.iter().filter(|&&b| b == b'x').count();
        if !quick {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    body
}

#[test]
fn slow_readers_neither_scale_a_service_out_nor_hold_up_its_drain() {
    let ebb = Ebb::up_with(&[], &["--router-bind", "127.0.0.1"]);
    let port = free_port();
    let text = |greeting: &str| {
        format!(
            "[services.dl]\ncommand = [\"ebb\", \"example-app\"]\nport = {port}\n\
             env = {{ GREETING = \"{greeting}\" }}\n\
             [services.dl.health]\nhttp = \"/healthz\"\ninterval = \"200ms\"\n\
             [services.dl.stop]\ngrace = \"5s\"\n\
             [services.dl.balance]\nalgorithm = \"least_request\"\ndrain = \"60s\"\n\
             [services.dl.autoscale]\nmin = 1\nmax = 4\nconcurrency = 2\nstable_window = \"4s\"\n\
             panic_window = \"2s\"\n"
        )
    };
    let file = deploy_file(ebb.dir.path(), "dl.toml", &text("hello"));
    ebb.ok(&["deploy", "--timeout", "30s", file.to_str().unwrap()]);
    let before = ebb.wait_ready("dl", 1, Duration::from_secs(10));
    let addr = format!("127.0.0.1:{port}");

    // 40 downloads of 8 MiB read at 1 KiB/s: more than the kernel's socket buffers between
    // the instance and a client hold (up to 4 MiB each way with autotuning), so without
    // reading ahead each keeps its request in flight for hours, 20 times the target of 2.
    let len = 8 << 20;
    let fast = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // They arrive over 8 s, as users do (40 at once would be 320 MiB to move at once, real
    // work for the instance).
    let started = Instant::now();
    let readers: Vec<_> = (0..40)
        .map(|i| {
            let (addr, fast) = (addr.clone(), fast.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200) * i);
                slow_reader(&addr, len, &fast)
            })
        })
        .collect();
    while started.elapsed() < Duration::from_secs(12) {
        let desired = desired(&ebb, "dl");
        assert_eq!(
            desired,
            1,
            "slow readers scaled the service out:\n{}",
            ebb.ok(&["events"])
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // A rolling update drains the instance the downloads came from: the drain is over long
    // before its 60 s bound, while the clients are still reading.
    let old_pid = before[0]["pid"].as_u64().unwrap();
    std::fs::write(&file, text("hi")).unwrap();
    ebb.ok(&["deploy", "--detach", file.to_str().unwrap()]);
    eventually(
        "the drained instance to stop while its clients still read",
        Duration::from_secs(15),
        || (!alive(old_pid)).then_some(()),
    );
    eprintln!(
        "the drained instance stopped {:?} after the downloads began",
        started.elapsed()
    );
    fast.store(true, std::sync::atomic::Ordering::SeqCst);
    for reader in readers {
        assert_eq!(reader.join().unwrap(), len, "every download is whole");
    }
}

/// A forecast in mode "on" raises the count ahead of a rise the service's history has seen on
/// each of the last seven days, in a live `ebb up`, before any load arrives. The history is
/// kept in the store, as a server keeps it, so it is there after a restart.
#[test]
fn a_forecast_raises_the_count_ahead_of_a_daily_rise_before_any_load() {
    use ebb_autoscaler::{minute_of, Forecaster, ASSUMED_START_TIME, DAY_MINUTES, TICK};
    use ebb_server::controllers::forecast_history;

    let mut ebb = Ebb::up_with(&[], &["--router-bind", "127.0.0.1"]);

    // The floor looks a start time and a tick ahead. None is measured here (the deployed
    // instance is not a scale-up of the autoscaler's), so it is the assumed one. The rise is the
    // first whole minute that leaves this test 30 s to deploy, restart ebb and see the floor.
    let lookahead = (ASSUMED_START_TIME + TICK).as_millis() as i64;
    let rise = minute_of(unix_ms() + lookahead + 30_000) + 1;
    let rise_ms = rise * 60_000;
    // Deployed first: the history of a service that does not exist is deleted.
    let (_, file) = deploy_web(
        &ebb,
        "[services.web.health]\nhttp = \"/healthz\"\ninterval = \"200ms\"\n\
         [services.web.autoscale]\nmin = 1\nmax = 4\nconcurrency = 2\nforecast = \"on\"\n",
    );
    ebb.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
    // Kept under the service's own targets, as the server keeps it.
    let spec = ebb_spec::parse_file(&file).unwrap().remove(0);
    let autoscale = spec.autoscale.as_ref().unwrap();
    let basis = forecast_history::basis(autoscale);
    {
        use ebb_store::KvStore;
        let store = ebb_store::SqliteStore::open(&ebb.data_dir().join("state.db")).unwrap();
        // Kept by this service, not an earlier one of the same name.
        let incarnation = store.get("services/web").unwrap().unwrap().create_revision;
        let mut f = Forecaster::default();
        let today = forecast_history::day_of(rise);
        for day in today - 7..today {
            // An idle service (the stable window asks for 0) that needed 3 in that minute.
            let mut means = vec![Some(0.0); DAY_MINUTES as usize];
            means[(rise - DAY_MINUTES * (today - day)).rem_euclid(DAY_MINUTES) as usize] =
                Some(3.0);
            f.history_mut().restore_day(day, &means);
            forecast_history::keep(&store, "web", incarnation, day, &basis, &f).unwrap();
        }
    }
    ebb.start(&[]);
    assert_eq!(desired(&ebb, "web"), 1, "starts at min, no load");

    let raised_at = eventually(
        "the forecast to raise the count",
        Duration::from_secs(200),
        || (desired(&ebb, "web") == 3).then(unix_ms),
    );
    assert!(
        raised_at < rise_ms,
        "raised {} ms after the rise began, not before it",
        raised_at - rise_ms
    );
    let events = ebb.ok(&["events"]);
    let lead = format!("{}s ahead", (ASSUMED_START_TIME + TICK).as_secs());
    assert!(events.contains(&lead), "raised {lead}: {events}");
    assert!(
        events.contains("autoscaled 1 → 3") && events.contains("daily forecast for"),
        "{events}"
    );
    ebb.wait_ready("web", 3, Duration::from_secs(30));
    let event = events
        .lines()
        .find(|l| l.contains("forecast"))
        .unwrap_or("");
    eprintln!(
        "raised {} ms before the predicted rise: {event}",
        rise_ms - raised_at
    );
}

fn unix_ms() -> i64 {
    ebb_server::now_ms() as i64
}

/// The default keep-alive of a `min = 0` service (`idle_timeout = "auto"`) in a live `ebb up`:
/// while it learns (8 gaps), an instance is kept as long as a cold start costs (11 times its
/// start time, over 2 s here), so a caller every 4 s meets one cold start, its first; once
/// learned, the instance is released within seconds of the last request instead of 5 minutes
/// after it, and the event says so. The gaps are kept in the store, so a server restarted after
/// a crash releases as soon.
#[test]
fn a_learned_keep_alive_releases_a_periodic_caller_within_seconds_once_learned() {
    use ebb_autoscaler::MIN_GAPS;
    use ebb_server::controllers::learned;

    let mut ebb = Ebb::up_with(&[], &["--router-bind", "127.0.0.1"]);
    // No idle_timeout: "auto" is the default for min = 0. The instance takes over 2 s to
    // start, so that while the keep-alive learns it is kept through the 4 s gaps.
    let (port, _) = deploy_web_running(
        &ebb,
        r#"["sh", "-c", "sleep 2 && exec ebb example-app"]"#,
        "[services.web.health]\nhttp = \"/healthz\"\ninterval = \"200ms\"\n\
         [services.web.balance]\nqueue_timeout = \"20s\"\n\
         [services.web.autoscale]\nmin = 0\nmax = 2\nconcurrency = 2\n",
    );
    let addr = format!("127.0.0.1:{port}");
    eventually("the router to listen", Duration::from_secs(5), || {
        std::net::TcpStream::connect(&addr).ok()
    });

    // A caller every 4 s: gaps well over MIN_GAP (2 s), even one learned a second short.
    let calls = MIN_GAPS + 2;
    for call in 0..calls {
        let (status, body) =
            http_get_within(&addr, "/", Duration::from_secs(20)).expect("an answer");
        assert_eq!(status, 200, "call {call}: {body}");
        if call + 1 < calls {
            std::thread::sleep(Duration::from_secs(4));
        }
    }
    let last_call = Instant::now();
    let events = ebb.ok(&["events"]);
    assert_eq!(
        events.matches("(scale from zero)").count(),
        1,
        "one cold start, every gap kept through while learning: {events}"
    );

    // Learned: zero within seconds of the last call, not the fixed 5 minutes.
    let (released, release) = learned_release(&ebb, "web", last_call);
    eprintln!("released {released:?} after the last call: {release}");

    // The gaps are kept in the store, each within WRITE_EVERY of being seen: after a crash
    // (SIGKILL: nothing written on the way out; no instance runs at zero), one call is
    // released as soon, not 5 minutes later.
    let written = last_call + learned::WRITE_EVERY + Duration::from_secs(5);
    std::thread::sleep(written.saturating_duration_since(Instant::now()));
    ebb.signal_and_wait(nix::sys::signal::Signal::SIGKILL);
    ebb.start(&[]);
    eventually(
        "the router to listen again",
        Duration::from_secs(10),
        || std::net::TcpStream::connect(&addr).ok(),
    );
    let (status, body) = http_get_within(&addr, "/", Duration::from_secs(20)).expect("an answer");
    assert_eq!(status, 200, "after the restart: {body}");
    let (released, release) = learned_release(&ebb, "web", Instant::now());
    let events = ebb.ok(&["events"]);
    assert_eq!(
        events.matches("idle_timeout auto:").count(),
        2,
        "a learned release before the crash and one after: {events}"
    );
    eprintln!("after a crash, released {released:?} after the call: {release}");
}

/// How long after `since` (its last call) service `name` went to zero, and the event that says
/// the keep-alive was learned; fails if it is not at zero within a minute (a fixed keep-alive
/// would hold it 5).
fn learned_release(ebb: &Ebb, name: &str, since: Instant) -> (Duration, String) {
    while desired(ebb, name) != 0 {
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "not released a minute after the last call: {}",
            ebb.ok(&["status"])
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let released = since.elapsed();
    let events = ebb.ok(&["events"]);
    let release = events
        .lines()
        .rfind(|l| l.contains("→ 0") && l.contains("idle_timeout auto"))
        .unwrap_or_else(|| panic!("the release says it was learned: {events}"));
    assert!(release.contains("learned from"), "{release}");
    (released, release.to_string())
}

/// The idle gaps and the forecast's history the autoscaler keeps for a service go when the
/// service does, even if it was deleted while no server ran.
#[test]
fn what_the_autoscaler_kept_of_a_service_deleted_while_no_server_ran_is_swept() {
    use ebb_store::{Expect, KvStore};

    let mut ebb = Ebb::up_with(&[], &["--router-bind", "127.0.0.1"]);
    ebb.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
    let db = ebb.data_dir().join("state.db");
    let left = [
        "autoscale-gaps/gone",
        "autoscale-history/gone/20000",
        "autoscale-history/gone/20001",
    ];
    {
        let store = ebb_store::SqliteStore::open(&db).unwrap();
        for key in left {
            store.put(key, b"{}", Expect::Any).unwrap();
        }
    }
    ebb.start(&[]);
    let store = ebb_store::SqliteStore::open(&db).unwrap();
    eventually(
        "what the gone service left to go",
        Duration::from_secs(20),
        || {
            left.iter()
                .all(|key| store.get(key).unwrap().is_none())
                .then_some(())
        },
    );
}

/// A service deleted and deployed again under the same name while no server ran (here: its spec
/// key deleted and written again in the store) is a new service: the forecast's history and
/// the idle gaps its predecessor left are deleted, not learned from.
#[test]
fn what_an_earlier_service_of_the_same_name_learned_is_not_inherited() {
    use ebb_autoscaler::{minute_of, Forecaster, State};
    use ebb_server::controllers::{forecast_history, learned};
    use ebb_server::state::keys;
    use ebb_store::{Expect, KvStore};

    let mut ebb = Ebb::up_with(&[], &["--router-bind", "127.0.0.1"]);
    // min = 0 and the defaults: a learned keep-alive and a forecast, so both are kept.
    let (_, file) = deploy_web(
        &ebb,
        "[services.web.autoscale]\nmin = 0\nmax = 4\nconcurrency = 2\n",
    );
    ebb.signal_and_wait(nix::sys::signal::Signal::SIGTERM);

    let spec = ebb_spec::parse_file(&file).unwrap().remove(0);
    let autoscale = spec.autoscale.as_ref().unwrap();
    let basis = forecast_history::basis(autoscale);
    let store = ebb_store::SqliteStore::open(&ebb.data_dir().join("state.db")).unwrap();
    let old = store.get(&keys::service("web")).unwrap().unwrap();
    // What the first web learned: a day of history, and ten idle gaps.
    let today = forecast_history::day_of(minute_of(unix_ms()));
    let mut f = Forecaster::default();
    f.history_mut().restore_day(
        today,
        &vec![Some(2.0); ebb_autoscaler::DAY_MINUTES as usize],
    );
    forecast_history::keep(&store, "web", old.create_revision, today, &basis, &f).unwrap();
    let mut state = State::default();
    let gaps = (0..10).map(|i| Duration::from_secs(20 + i));
    state.keep_alive_mut().restore(gaps);
    learned::keep(&store, "web", old.create_revision, autoscale, &state).unwrap();
    // Deleted and deployed again, the same spec.
    store.delete(&keys::service("web"), Expect::Any).unwrap();
    store
        .put(&keys::service("web"), &old.value, Expect::Absent)
        .unwrap();
    let new = store.get(&keys::service("web")).unwrap().unwrap();
    assert_ne!(new.create_revision, old.create_revision);

    ebb.start(&[]);
    // Gone, or (the history's day, rewritten once a minute) the new service's own.
    let predecessors = |key: &str| {
        store.get(key).unwrap().is_some_and(|kv| {
            let v: serde_json::Value = serde_json::from_slice(&kv.value).unwrap();
            v["incarnation"].as_u64() != Some(new.create_revision)
        })
    };
    let keys = [
        keys::autoscale_gaps("web"),
        keys::autoscale_history("web", today),
    ];
    eventually(
        "the predecessor's history and gaps to go",
        Duration::from_secs(20),
        || keys.iter().all(|k| !predecessors(k)).then_some(()),
    );
}

/// The forecast's history reaches the store: the first completed minute at once, later ones
/// at most every ten minutes (`forecast_history::WRITE_EVERY`), and what is not yet written
/// when ebb stops. The recent load too, up to the block in progress at the stop, and ebb
/// started again takes it up.
#[test]
fn the_forecast_history_and_the_recent_load_are_kept_when_ebb_stops_and_read_again() {
    use ebb_autoscaler::minute_of;
    use ebb_server::controllers::forecast_history::day_of;
    use ebb_server::state::keys;
    use ebb_store::KvStore;

    // A day that ends during the test is written when it ends, not at the stop: start after
    // 00:02 UTC if it is later than 23:56 (the test takes under 3 minutes).
    let minute_of_day = minute_of(unix_ms()).rem_euclid(ebb_autoscaler::DAY_MINUTES);
    if !(2..ebb_autoscaler::DAY_MINUTES - 4).contains(&minute_of_day) {
        let wait = (ebb_autoscaler::DAY_MINUTES + 2 - minute_of_day) % ebb_autoscaler::DAY_MINUTES;
        std::thread::sleep(Duration::from_secs(60 * wait as u64));
    }
    let mut ebb = Ebb::up_with(&[], &["--router-bind", "127.0.0.1"]);
    // A 4 s stable window: a minute's count is recorded 2 s after the minute's load.
    deploy_web(
        &ebb,
        "[services.web.autoscale]\nmin = 1\nmax = 2\nconcurrency = 2\nstable_window = \"4s\"\n\
         panic_window = \"2s\"\n",
    );
    let store = ebb_store::SqliteStore::open(&ebb.data_dir().join("state.db")).unwrap();
    let incarnation = store
        .get(&keys::service("web"))
        .unwrap()
        .unwrap()
        .create_revision;
    // The newest minute a kept day holds, and the revision of its write.
    let kept = |day: i64| {
        let kv = store.get(&keys::autoscale_history("web", day)).ok()??;
        let v: serde_json::Value = serde_json::from_slice(&kv.value).unwrap();
        assert_eq!(v["incarnation"].as_u64(), Some(incarnation));
        let means = v["means"].as_array()?;
        let newest = means.iter().rposition(|m| !m.is_null())?;
        Some((
            day * ebb_autoscaler::DAY_MINUTES + newest as i64,
            kv.mod_revision,
        ))
    };
    // The minute recorded `lag` ms ago.
    let recorded = |lag: i64| minute_of(unix_ms() - 2_000 - lag);
    let (first, revision) = eventually(
        "the first completed minute to be kept",
        Duration::from_secs(90),
        || kept(day_of(recorded(0))),
    );
    // The newest minute kept was in progress at the write; once it completes it is not written
    // again for ten minutes (a minute-by-minute writer would write it at once).
    eventually(
        "the next minute to complete",
        Duration::from_secs(90),
        // With 10 s for the server's tick to record the next one, on a busy machine.
        || (recorded(10_000) > first).then_some(()),
    );
    let again = kept(day_of(first)).map(|(_, r)| r);
    assert_eq!(again, Some(revision), "written again within ten minutes");
    let before_stop = ebb_autoscaler::block_of(Duration::from_millis(unix_ms() as u64));
    ebb.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
    let (last, _) = kept(day_of(first + 1)).expect("kept when ebb stopped");
    assert!(
        last > first,
        "the minutes after {first} kept at the stop: {last}"
    );
    // The recent load is kept too, up to the 90 s block in progress at the stop, on a clock
    // that reads the wall clock's time, so that a restarted server's blocks line up with it.
    let after_stop = ebb_autoscaler::block_of(Duration::from_millis(unix_ms() as u64));
    let (blocks, _) = store.list(&keys::autoscale_window_prefix("web")).unwrap();
    let newest = blocks
        .iter()
        .max_by_key(|kv| kv.key.clone())
        .expect("recent load kept");
    let number: u64 = newest.key.rsplit('/').next().unwrap().parse().unwrap();
    // The last tick's sample may be in the block before the one the stop began in.
    assert!(
        (before_stop - 1..=after_stop).contains(&number),
        "block {number} kept at the stop, between {before_stop} and {after_stop}"
    );
    let v: serde_json::Value = serde_json::from_slice(&newest.value).unwrap();
    assert_eq!(v["incarnation"].as_u64(), Some(incarnation));
    assert!(!v["requests"].as_array().unwrap().is_empty(), "{v}");
    // Started again, ebb takes the window up where it stood.
    ebb.start(&[]);
    eventually(
        "the recent load taken up after the restart",
        Duration::from_secs(20),
        || {
            let log = ebb.server_log();
            let line = log.lines().find(|l| l.contains("recent load taken up"))?;
            (line.contains("web") && !line.contains("samples=0")).then_some(())
        },
    );
}
