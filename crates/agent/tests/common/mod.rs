//! Test harness: a supervisor on a temporary data dir, real processes, and waiting on conditions
//! with deadlines (never a bare sleep as synchronisation). Every instance is SIGKILLed on drop, so a
//! failing test leaves no process behind.
#![allow(dead_code)]

use ebb_agent::{Supervisor, SupervisorConfig};
use ebb_core::{
    Assignment, DesiredState, Event, EventKind, HealthCheck, HealthSpec, InstanceStatus, Resources,
    ServiceSpec, StopSpec,
};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Generous: CI machines are slow, and a passing test never waits this long.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct Harness {
    pub sup: Option<Supervisor>,
    pub dir: PathBuf,
    events: Mutex<Vec<Event>>,
}

pub fn config(dir: &Path) -> SupervisorConfig {
    let mut c = SupervisorConfig::new("node-t", "127.0.0.1", dir, "/bin/false");
    c.log_max_bytes = 1000;
    c.log_keep = 2;
    c
}

impl Harness {
    pub fn start(dir: &Path) -> Harness {
        Harness::with_config(config(dir))
    }

    pub fn with_config(c: SupervisorConfig) -> Harness {
        let dir = c.data_dir.clone();
        let sup = Supervisor::start(c).expect("supervisor starts");
        Harness {
            sup: Some(sup),
            dir,
            events: Mutex::new(Vec::new()),
        }
    }

    pub fn sup(&self) -> &Supervisor {
        self.sup.as_ref().expect("supervisor not forgotten")
    }

    /// Simulates `kill -9` of the agent: tasks stop, processes and the state file stay.
    pub fn crash(&mut self) {
        if let Some(sup) = self.sup.take() {
            sup.forget();
        }
    }

    pub fn status(&self, id: &str) -> Option<InstanceStatus> {
        self.sup().statuses().into_iter().find(|s| s.id == id)
    }

    /// All events so far (collected across calls).
    pub fn events(&self) -> Vec<Event> {
        let mut all = self.events.lock().unwrap();
        all.extend(self.sup().take_events());
        all.clone()
    }

    pub fn events_of(&self, kind: EventKind) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| e.kind == kind)
            .collect()
    }

    /// Waits until the instance's status satisfies `f`.
    pub async fn wait_status(
        &self,
        id: &str,
        what: &str,
        f: impl Fn(&InstanceStatus) -> bool,
    ) -> InstanceStatus {
        eventually(what, DEADLINE, || self.status(id).filter(|s| f(s))).await
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(sup) = &self.sup {
            sup.kill_all_now();
        }
    }
}

pub use ebb_testkit::eventually;

/// An assignment with quick health checks (100 ms) and a short stop grace.
pub fn assignment(id: &str, command: &[&str]) -> Assignment {
    let spec = ServiceSpec {
        name: "svc".into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        instances: 1,
        env: Default::default(),
        workdir: None,
        resources: Resources::default(),
        health: HealthSpec {
            check: HealthCheck::Command {
                argv: vec!["true".into()],
            },
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(1000),
            unhealthy_threshold: 3,
            healthy_threshold: 1,
            start_period: Duration::from_secs(30),
        },
        stop: StopSpec {
            signal: "SIGTERM".into(),
            grace: Duration::from_secs(3),
        },
        port: None,
        protocol: Default::default(),
        balance: Default::default(),
        autoscale: None,
        constraints: Vec::new(),
        placement: Default::default(),
        tls: None,
        priority: None,
        restart: 0,
    };
    Assignment {
        id: id.into(),
        service: "svc".into(),
        node: "node-t".into(),
        generation: 1,
        version: spec.version(),
        spec,
        desired: DesiredState::Run,
        created_ms: 0,
        task: None,
        placement: None,
    }
}

/// `python3 -m http.server` on the instance's port, checked with the given check.
pub fn http_server(id: &str, check: HealthCheck) -> Assignment {
    let mut a = assignment(
        id,
        &[
            "python3",
            "-m",
            "http.server",
            "${PORT}",
            "--bind",
            "${HOST}",
        ],
    );
    a.spec.health.check = check;
    a
}

/// True while `pid` exists and is not a zombie (the test container's init does not reap).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                .map(|st| st != "Z" && st != "X")
        })
        .unwrap_or(false)
}

/// Reads a file the instance writes, once it exists and is non-empty.
pub async fn read_when_written(path: &Path) -> String {
    eventually(
        &format!("{} to be written", path.display()),
        DEADLINE,
        || std::fs::read_to_string(path).ok().filter(|s| !s.is_empty()),
    )
    .await
}
