//! `run` stops on SIGTERM and returns `Ok`, so the process exits 0. (Its own test binary: the
//! signal goes to the whole process.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use ebb_example_app::{run, AppConfig};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

#[tokio::test]
async fn sigterm_stops_the_app_gracefully() {
    // A port that was free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = tokio::spawn(run(AppConfig {
        host: "127.0.0.1".into(),
        port,
        name: "sig".into(),
        greeting: None,
    }));

    // Signal handlers are installed before the port opens, so once it answers SIGTERM is safe.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "the app never started listening");
        assert!(!app.is_finished(), "the app stopped: {:?}", app.await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    kill(Pid::this(), Signal::SIGTERM).unwrap();

    let result = tokio::time::timeout(Duration::from_secs(30), app)
        .await
        .expect("the app did not stop after SIGTERM");
    result.unwrap().unwrap();
    assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());
}
