//! `ebb jobs`, `ebb job NAME`, `ebb cancel JOB`, `ebb queues` and `ebb run -- CMD`.

use crate::output::{out, table};
use ebb_client::{Client, LogsQuery};
use ebb_core::api::{ApplyRequest, JobView};
use ebb_core::quantity::format_duration;
use ebb_core::{JobSpec, JobState, Resources};
use std::time::Duration;

/// How often `ebb run` polls its task.
const RUN_POLL: Duration = Duration::from_millis(100);

/// `ebb jobs [--json]`.
pub async fn jobs(client: &Client, json: bool) -> anyhow::Result<()> {
    let jobs = client.jobs().await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&jobs)?);
        return Ok(());
    }
    if jobs.is_empty() {
        out!("no jobs; submit one with `ebb deploy FILE` ([jobs.NAME]) or `ebb run -- CMD`");
        return Ok(());
    }
    table(&JOB_HEADER, &jobs.iter().map(job_row).collect::<Vec<_>>());
    Ok(())
}

/// The columns of a job's row, in `ebb jobs` and `ebb status`.
pub const JOB_HEADER: [&str; 9] = [
    "JOB",
    "STATE",
    "COMPLETED",
    "RUNNING",
    "QUEUED",
    "FAILED",
    "QUEUE",
    "PRIORITY",
    "REASON",
];

/// One job's row under [`JOB_HEADER`].
pub fn job_row(j: &JobView) -> Vec<String> {
    vec![
        j.name.clone(),
        j.state.as_str().to_string(),
        format!("{}/{}", j.completed, j.tasks),
        j.running.to_string(),
        j.queued.to_string(),
        j.failed.to_string(),
        j.queue.clone(),
        j.priority.to_string(),
        j.reason.clone().unwrap_or_else(|| "-".into()),
    ]
}

/// `ebb job NAME [--json]`: the job and a row per task that ran or runs.
pub async fn job(client: &Client, name: &str, json: bool) -> anyhow::Result<()> {
    let detail = client.job(name).await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&detail)?);
        return Ok(());
    }
    let j = &detail.job;
    out!(
        "job {} (run {}): {}, {}/{} completed, {} running, {} queued, {} failed; queue {}, priority {}",
        j.name,
        j.run,
        j.state.as_str(),
        j.completed,
        j.tasks,
        j.running,
        j.queued,
        j.failed,
        j.queue,
        j.priority
    );
    if let Some(reason) = &j.reason {
        out!("{reason}");
    }
    out!();
    let ms = |v: Option<u64>| {
        v.map_or("-".to_string(), |ms| {
            format_duration(Duration::from_millis(ms))
        })
    };
    let rows: Vec<Vec<String>> = detail
        .tasks
        .iter()
        .map(|t| {
            vec![
                t.index.to_string(),
                t.attempt.to_string(),
                t.node.clone().unwrap_or_else(|| "-".into()),
                t.state.as_str().to_string(),
                t.exit_code.map_or("-".into(), |c| c.to_string()),
                ms(t.duration_ms),
                ms(t.queue_wait_ms),
                t.last_exit.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(
        &[
            "INDEX",
            "ATTEMPT",
            "NODE",
            "STATE",
            "EXIT",
            "DURATION",
            "QUEUE WAIT",
            "LAST EXIT",
        ],
        &rows,
    );
    Ok(())
}

/// `ebb cancel JOB`.
pub async fn cancel(client: &Client, name: &str) -> anyhow::Result<()> {
    let j = client.cancel_job(name).await?;
    if j.state == JobState::Cancelled {
        out!(
            "{}: cancelled; its {} running task(s) are being stopped",
            j.name,
            j.running
        );
    } else {
        out!(
            "{}: already {}, nothing to cancel",
            j.name,
            j.state.as_str()
        );
    }
    Ok(())
}

/// `ebb queues [--json]`.
pub async fn queues(client: &Client, json: bool) -> anyhow::Result<()> {
    let queues = client.queues().await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&queues)?);
        return Ok(());
    }
    if queues.is_empty() {
        out!("no queues; jobs go to queue \"default\" unless their file names another");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = queues
        .iter()
        .map(|q| {
            vec![
                q.name.clone(),
                q.weight.to_string(),
                q.max_running.map_or("-".into(), |m| m.to_string()),
                q.running.to_string(),
                q.queued.to_string(),
                q.active_jobs.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "QUEUE",
            "WEIGHT",
            "MAX RUNNING",
            "RUNNING",
            "QUEUED",
            "ACTIVE JOBS",
        ],
        &rows,
    );
    Ok(())
}

/// What `ebb run` asks for.
pub struct RunRequest<'a> {
    pub name: Option<&'a str>,
    pub command: &'a [String],
    pub cpu_millis: Option<u32>,
    pub memory_bytes: Option<u64>,
    pub priority: Option<u8>,
    pub queue: Option<&'a str>,
    pub timeout: Option<Duration>,
}

/// `ebb run -- CMD`: one task, its output streamed, and the process exits with its code.
pub async fn run(client: &Client, req: RunRequest<'_>) -> anyhow::Result<()> {
    let name = match req.name {
        Some(n) => n.to_string(),
        None => format!("run-{:08x}", rand_suffix()),
    };
    let mut job = JobSpec::new(name.clone(), req.command.to_vec(), 1);
    job.retries = 0;
    job.resources = Resources {
        cpu_millis: req.cpu_millis,
        memory_bytes: req.memory_bytes,
    };
    if let Some(p) = req.priority {
        job.priority = p;
    }
    if let Some(q) = req.queue {
        job.queue = q.to_string();
    }
    job.timeout = req.timeout;
    // Each `ebb run` is a run of its own: with `--name` of a job that ended, the changed spec
    // makes a new run (one still running is refused, naming it), never the old output again.
    job.env
        .insert("EBB_RUN_ID".into(), format!("{:08x}", rand_suffix()));
    if let Ok(dir) = std::env::current_dir() {
        job.workdir = Some(dir.display().to_string());
    }
    let apply = ApplyRequest {
        services: Vec::new(),
        jobs: vec![job],
        queues: Vec::new(),
    };
    client
        .apply_request(&apply)
        .await
        .map_err(super::deploy::refused_as_invalid)?;
    eprintln!("ebb: task {name}/0 submitted; its output follows");
    let mut cursors = String::new();
    let mut seen_attempt = None;
    loop {
        let detail = client.job(&name).await?;
        let attempt = detail.tasks.first().and_then(|t| t.instance.clone());
        if attempt.is_some() && attempt != seen_attempt {
            seen_attempt = attempt;
        }
        if let Some(id) = &seen_attempt {
            cursors = print_new_lines(client, &name, id, &cursors).await;
        }
        if detail.job.state.is_finished() {
            // What the task wrote after the last poll.
            if let Some(id) = &seen_attempt {
                print_new_lines(client, &name, id, &cursors).await;
            }
            return finish(&detail.job, detail.tasks.first().and_then(|t| t.exit_code));
        }
        tokio::time::sleep(RUN_POLL).await;
    }
}

/// Prints the attempt's lines after `cursors`; returns the cursors after them. A log that
/// cannot be read now (its node is down or silent) prints nothing and keeps the cursor, so
/// nothing is printed twice; the exit code still comes back.
async fn print_new_lines(client: &Client, job: &str, id: &str, cursors: &str) -> String {
    let cursor = if cursors.is_empty() {
        format!("{id}:0")
    } else {
        cursors.to_string()
    };
    let query = LogsQuery {
        instance: Some(id),
        cursors: &cursor,
        ..Default::default()
    };
    match client.logs(job, &query).await {
        Ok(resp) if !resp.cursors.is_empty() => {
            for l in &resp.lines {
                out!("{}", l.line);
            }
            resp.cursors
                .iter()
                .map(|c| format!("{}:{}", c.instance, c.offset))
                .collect::<Vec<_>>()
                .join(",")
        }
        _ => cursors.to_string(),
    }
}

/// `ebb jobs rm JOB`.
pub async fn remove(client: &Client, job: &str) -> anyhow::Result<()> {
    let removed = client.remove_job(job).await?;
    out!(
        "job {} removed (it was {}; its task logs stay on the nodes)",
        removed.name,
        removed.state.as_str()
    );
    Ok(())
}

/// The task's exit code becomes ebb's, as `docker run` does; a task that never exited with a
/// code (killed, timed out, cancelled, could not start) ends with 1.
fn finish(job: &JobView, exit_code: Option<i32>) -> anyhow::Result<()> {
    match (job.state, exit_code) {
        (JobState::Completed, _) => Ok(()),
        (_, Some(code)) => Err(super::Exit {
            code,
            message: format!("ebb: task exited with code {code}"),
        }
        .into()),
        (state, None) => Err(super::Exit {
            code: 1,
            message: format!(
                "ebb: task {}: {}",
                state.as_str(),
                job.reason.clone().unwrap_or_default()
            ),
        }
        .into()),
    }
}

/// 32 bits for a one-off job's name.
fn rand_suffix() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mixed = ebb_core::hash::splitmix64_mix(nanos as u64 ^ u64::from(std::process::id()));
    mixed as u32
}
