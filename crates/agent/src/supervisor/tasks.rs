//! Tasks a supervisor starts: one runner per instance, adoption of a previous agent's processes,
//! the state-file writer and the log keeper (line times and rotation).

use super::cgroup;
use super::goal::Goal;
use super::log_stamps::{Stamper, STAMP_INTERVAL};
use super::logs::{self, LOG_CHECK_INTERVAL};
use super::process::Proc;
use super::procfs;
use super::runner::Runner;
use super::shared::{now_ms, Entry, Shared, State};
use super::state_file::Record;
use super::usage::{self, Sampler, USAGE_INTERVAL};
use ebb_core::{EventKind, InstanceState, InstanceStatus};
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Least time between two writes of the state file. A burst of starts (a deploy, a node taking
/// over a drained one's instances) becomes one write per interval of the latest records, instead
/// of one full rewrite and fsync per start. Short, because a process not yet on disk when the
/// agent dies is killed and started again by the next agent (`sweep.rs`).
const STATE_WRITE_INTERVAL: Duration = Duration::from_millis(50);

/// What a new runner starts from.
pub struct NewInstance<'a> {
    pub id: &'a str,
    pub service: &'a str,
    pub status: InstanceStatus,
    pub goal: Goal,
    pub adopted: Option<(Proc, &'a Record)>,
    /// A job's task, whose log is kept after it ends.
    pub keep_log: bool,
    /// A task of this generation that already ended: never start it.
    pub ended_task: Option<u64>,
}

/// Adds an instance and starts its runner. The caller holds the state lock, so that two
/// concurrent `apply` calls can never both create a runner for the same id.
pub fn spawn_runner(shared: &Arc<Shared>, state: &mut State, new: NewInstance) {
    let (tx, rx) = watch::channel(new.goal);
    let mut runner = Runner::new(shared.clone(), new.id, new.service, rx);
    let port = new.adopted.as_ref().map(|(p, _)| p.port);
    if let Some((proc, record)) = new.adopted {
        runner = runner.adopting(proc, record);
    }
    if let Some(generation) = new.ended_task {
        runner = runner.ended_while_away(generation);
    }
    let entry = Entry {
        service: new.service.to_string(),
        status: new.status,
        goal: tx,
        task: Some(shared.runtime.spawn(runner.run())),
        port,
        keep_log: new.keep_log,
    };
    state.entries.insert(new.id.to_string(), entry);
}

/// A task that ended while the agent was down is not started again: it is reported exited,
/// how unknown, and the server decides (it runs it again, not as a failure).
fn ended_task(shared: &Arc<Shared>, id: &str, record: &Record) {
    let status = InstanceStatus {
        id: id.to_string(),
        generation: record.generation,
        state: InstanceState::Exited,
        pid: None,
        addr: None,
        ready: false,
        restarts: record.restarts,
        started_ms: Some(record.started_ms),
        last_exit: Some("ended while the agent was down: exit status unknown".into()),
        exit_code: None,
        exit_unknown: true,
        reason: None,
    };
    let mut state = shared.lock();
    let new = NewInstance {
        id,
        service: &record.service,
        status,
        goal: Goal::Adopted,
        adopted: None,
        keep_log: true,
        ended_task: Some(record.generation),
    };
    spawn_runner(shared, &mut state, new);
    drop(state);
    let message = format!(
        "task pid {} ended while the agent was down; exit status unknown",
        record.pid
    );
    shared.event(EventKind::InstanceExited, &record.service, id, message);
}

/// Takes over the processes a previous agent recorded: alive ones (same pid AND same start time)
/// are watched again; dead ones are forgotten after killing what is left in their cgroups.
pub fn adopt(shared: &Arc<Shared>, records: BTreeMap<String, Record>) {
    let now = (now_ms(), Instant::now());
    for (id, record) in records {
        if !procfs::is_alive(record.pid, record.start_ticks) {
            cgroup::signal_all(&record.cgroups, Signal::SIGKILL);
            let cgroups = record.cgroups.clone();
            shared
                .runtime
                .spawn(async move { remove_groups_later(cgroups).await });
            if record.task {
                ended_task(shared, &id, &record);
                continue;
            }
            let message = format!(
                "pid {} ended while the agent was down; it will be started again",
                record.pid
            );
            shared.event(EventKind::InstanceExited, &record.service, &id, message);
            continue;
        }
        let up_for = Duration::from_millis(now.0.saturating_sub(record.started_ms));
        let started_at = now.1.checked_sub(up_for).unwrap_or(now.1);
        let proc = Proc::adopt(&record, started_at);
        let status = InstanceStatus {
            id: id.clone(),
            generation: record.generation,
            state: InstanceState::Running,
            pid: Some(record.pid),
            addr: Some(super::ports::join_host_port(
                &shared.config.host,
                record.port,
            )),
            ready: false,
            restarts: record.restarts,
            started_ms: Some(record.started_ms),
            last_exit: None,
            exit_code: None,
            exit_unknown: false,
            reason: None,
        };
        let message = format!("adopted pid {} from a previous agent", record.pid);
        let mut state = shared.lock();
        state.records.insert(id.clone(), record.clone());
        let new = NewInstance {
            id: &id,
            service: &record.service,
            status,
            goal: Goal::Adopted,
            adopted: Some((proc, &record)),
            keep_log: record.task,
            ended_task: None,
        };
        spawn_runner(shared, &mut state, new);
        drop(state);
        shared.event(EventKind::InstanceAdopted, &record.service, &id, message);
    }
    // Dead records are gone: written now, before any apply, so the file is right at once.
    shared.lock().touch_records();
    shared.flush_records();
}

/// Writes the state file after records change: the latest snapshot, off the async workers and
/// outside the state lock, at most once per [`STATE_WRITE_INTERVAL`]. Changes during a write or
/// the pause after it are coalesced into the next write (a `Notify` keeps one wake-up).
pub fn spawn_state_writer(shared: &Arc<Shared>) {
    let weak = Arc::downgrade(shared);
    let dirty = shared.records_dirty.clone();
    let task = shared.runtime.spawn(async move {
        loop {
            dirty.notified().await;
            let Some(shared) = weak.upgrade() else { return };
            let _ = tokio::task::spawn_blocking(move || shared.flush_records()).await;
            tokio::time::sleep(STATE_WRITE_INTERVAL).await;
        }
    });
    shared.lock().background.push(task);
}

/// Groups of a dead instance may stay busy for a moment while the killed processes exit.
async fn remove_groups_later(groups: Vec<std::path::PathBuf>) {
    for _ in 0..40 {
        if cgroup::remove(&groups) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Once a second, samples the CPU and memory of every instance and of the node (blocking reads
/// of /proc and cgroup files, off the async workers) and keeps the result for the heartbeat.
pub fn spawn_usage_sampler(shared: &Arc<Shared>) {
    let weak = Arc::downgrade(shared);
    let task = shared.runtime.spawn(async move {
        let mut sampler = Some(Sampler::default());
        let mut ticker = tokio::time::interval(USAGE_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(shared) = weak.upgrade() else { return };
            let targets = usage::targets(&shared);
            drop(shared);
            let mut s = sampler.take().unwrap_or_default();
            let sampled = tokio::task::spawn_blocking(move || {
                let latest = s.sample(&targets, Instant::now(), now_ms());
                (s, latest)
            })
            .await;
            // A failed sample (a panic in a parser would be a bug) starts from fresh baselines.
            let Ok((s, latest)) = sampled else { continue };
            sampler = Some(s);
            let Some(shared) = weak.upgrade() else { return };
            shared.set_usage(latest);
        }
    });
    shared.lock().background.push(task);
}

/// A few times a second, notes how far each log has grown (its lines' times, [`log_stamps`]);
/// every few seconds, rotates the logs that outgrew the limit. Both in one loop, so a log is
/// never stamped while it rotates. Blocking I/O runs off the runtime.
pub fn spawn_log_rotation(shared: &Arc<Shared>) {
    let weak = Arc::downgrade(shared);
    let task = shared.runtime.spawn(async move {
        let mut ticker = tokio::time::interval(STAMP_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stamper = Some(Stamper::default());
        let mut last_rotation = Instant::now();
        loop {
            ticker.tick().await;
            let Some(shared) = weak.upgrade() else { return };
            let (paths, max, keep) = (
                shared.log_paths(),
                shared.config.log_max_bytes,
                shared.config.log_keep,
            );
            drop(shared);
            let rotate = last_rotation.elapsed() >= LOG_CHECK_INTERVAL;
            if rotate {
                last_rotation = Instant::now();
            }
            let mut s = stamper.take().unwrap_or_default();
            let kept = tokio::task::spawn_blocking(move || {
                keep_logs(&mut s, &paths, rotate.then_some((max, keep)));
                s
            })
            .await;
            // A panic would be a bug: start again from the files.
            stamper = kept.ok();
        }
    });
    shared.lock().background.push(task);
}

/// One look at the logs: stamp the growth of every one, then rotate (`rotate`: max bytes,
/// files kept), so a slow copy of a big log does not delay the others' stamps.
fn keep_logs(stamper: &mut Stamper, paths: &[std::path::PathBuf], rotate: Option<(u64, usize)>) {
    stamper.retain(paths);
    for path in paths {
        match stamper.note(path, now_ms) {
            // Said once per rotation check, not four times a second (a full disk, say).
            Err(e) if rotate.is_some() => {
                tracing::warn!(path = %path.display(), "cannot note the log's growth: {e}")
            }
            _ => {}
        }
    }
    let Some((max, keep)) = rotate else { return };
    for path in paths {
        match logs::rotate_if_needed(path, max, keep) {
            Ok(true) => stamper.forget(path),
            Ok(false) => {}
            Err(e) => tracing::warn!(path = %path.display(), "cannot rotate log: {e}"),
        }
    }
}
