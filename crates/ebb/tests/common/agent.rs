//! A node for cluster tests: a real `ebb agent` process with its own data dir, advertising its
//! own 127.0.0.x address. Dropping it kills the agent and every instance it started, and removes
//! their cgroups (a stopped agent leaves its instances running by design).

use super::{eventually, processes_with_env, EBB};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long [`Agent::lose_machine`] must find no instance before it counts the machine as gone:
/// far longer than a fork takes to reach its exec.
const LOST_MACHINE_QUIET: Duration = Duration::from_millis(300);

/// How long [`Agent::lose_machine`] tries before it gives up on instances that will not die.
const LOST_MACHINE_DEADLINE: Duration = Duration::from_secs(10);

pub struct Agent {
    pub name: String,
    pub advertise: String,
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    server: String,
    token: String,
    options: Vec<String>,
}

impl Agent {
    /// Starts `ebb agent` joining the server at `server` (host:port) as node `name`, and waits
    /// until it has joined.
    pub fn join(server: &str, token: &str, name: &str, advertise: &str) -> Agent {
        Agent::join_with(server, token, name, advertise, &[])
    }

    /// [`Agent::join`] with more `ebb agent` options (`--cpu 1`), kept for restarts.
    pub fn join_with(
        server: &str,
        token: &str,
        name: &str,
        advertise: &str,
        options: &[&str],
    ) -> Agent {
        let mut agent = Agent {
            options: options.iter().map(|o| o.to_string()).collect(),
            name: name.to_string(),
            advertise: advertise.to_string(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
            server: server.to_string(),
            token: token.to_string(),
        };
        agent.start();
        agent
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// (Re)starts the agent on its data dir; returns once its start-up line is logged.
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .expect("log file");
        let before = self.log().matches("joined").count();
        let child = Command::new(EBB)
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["agent", "--server", &self.server, "--name", &self.name])
            .args(["--advertise", &self.advertise])
            .args(&self.options)
            .env("EBB_JOIN_TOKEN", &self.token)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn ebb agent");
        self.child = Some(child);
        eventually(
            &format!("agent {} to join", self.name),
            Duration::from_secs(20),
            || (self.log().matches("joined").count() > before).then_some(()),
        );
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("agent running").id() as i32)
    }

    /// Sends `sig` to the agent process only (its instances run on).
    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).expect("signal the agent");
    }

    /// kill -9 of the agent alone; waits for it to be gone.
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Pids of the instances this node runs, found by their `EBB_NODE`.
    pub fn instance_pids(&self) -> Vec<u64> {
        processes_with_env("EBB_NODE", &self.name)
    }

    /// A lost machine: kill -9 of the agent and of every instance it runs.
    ///
    /// One scan is not enough: an instance the agent was spawning when it died is forked but not
    /// yet exec'd, so its environment is still the agent's and it has no `EBB_NODE` to be found
    /// by; it execs a moment later and runs on (CI, a29b494: a lost node's task finished).
    /// So the scan repeats until it has found nothing for [`LOST_MACHINE_QUIET`]. Panics with
    /// the pids still found after [`LOST_MACHINE_DEADLINE`].
    pub fn lose_machine(&mut self) {
        if let Err(left) = self.kill_until_quiet() {
            panic!(
                "node {}: instances still alive after SIGKILL: {left:?}",
                self.name
            );
        }
    }

    /// Kills the agent and its instances until none is found for [`LOST_MACHINE_QUIET`]; the
    /// pids still found if that takes past [`LOST_MACHINE_DEADLINE`] (a process stuck in
    /// uninterruptible sleep cannot die).
    fn kill_until_quiet(&mut self) -> Result<(), Vec<u64>> {
        self.crash();
        let start = std::time::Instant::now();
        let mut quiet_since = start;
        while quiet_since.elapsed() < LOST_MACHINE_QUIET {
            let pids = self.instance_pids();
            if !pids.is_empty() {
                if start.elapsed() > LOST_MACHINE_DEADLINE {
                    return Err(pids);
                }
                quiet_since = std::time::Instant::now();
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_ref() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGCONT);
        }
        let agent_ids: Vec<String> = self
            .instance_pids()
            .iter()
            .filter_map(|pid| env_of(*pid, "EBB_AGENT_ID"))
            .collect();
        // No panic in a drop (it would abort a test already failing): say what is left.
        if let Err(left) = self.kill_until_quiet() {
            eprintln!(
                "node {}: instances still alive after SIGKILL: {left:?}",
                self.name
            );
        }
        for id in agent_ids {
            remove_cgroups(&id);
        }
    }
}

fn env_of(pid: u64, key: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{key}=");
    env.split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix(&prefix).map(str::to_string))
}

/// Removes `.../ebb/<agent id>` and its instance groups under every cgroup mount (best effort:
/// a group whose processes are still exiting stays).
fn remove_cgroups(agent_id: &str) {
    fn walk(dir: &std::path::Path, agent_id: &str, depth: usize) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if !path.is_dir() {
                continue;
            }
            if path.ends_with(format!("ebb/{agent_id}")) {
                for _ in 0..50 {
                    let children: Vec<PathBuf> = std::fs::read_dir(&path)
                        .into_iter()
                        .flatten()
                        .flatten()
                        .map(|c| c.path())
                        .filter(|c| c.is_dir())
                        .collect();
                    children.iter().for_each(|c| drop(std::fs::remove_dir(c)));
                    if std::fs::remove_dir(&path).is_ok() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            } else if depth > 0 {
                walk(&path, agent_id, depth - 1);
            }
        }
    }
    walk(std::path::Path::new("/sys/fs/cgroup"), agent_id, 6);
}
