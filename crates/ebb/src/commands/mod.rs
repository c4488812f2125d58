//! One module per CLI command.

use crate::output::out;
pub mod deploy;
pub mod describe;
pub mod events;
pub mod jobs;
pub mod logs;
pub mod metrics;
pub mod moves;
pub mod nodes;
pub mod ps;
pub mod restart;
pub mod servers;
pub mod sim;
pub mod status;
pub mod ui;

use std::path::PathBuf;

/// A failure with the exit code it should end the process with.
#[derive(Debug)]
pub struct Exit {
    pub code: i32,
    pub message: String,
}

/// Exit code for invalid input: a bad deploy file or bad arguments (clap uses 2 as well).
pub const EXIT_INVALID: i32 = 2;
/// Exit code when the API cannot be reached.
pub const EXIT_UNREACHABLE: i32 = 3;

/// Whether the API refused a request for what it asked (a bad value, an unknown name, a
/// conflict with the cluster's state, a body too large): invalid input, nothing changed. A
/// refused token (401) and the server's own failures (5xx) are failures, not invalid input.
pub fn invalid_status(status: u16) -> bool {
    matches!(status, 400 | 404 | 405 | 409 | 413 | 422)
}

/// `names` in their order, each once (`ebb stop web web` stops web once).
pub fn unique(names: &[String]) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    names
        .iter()
        .filter(|n| seen.insert(n.as_str()))
        .cloned()
        .collect()
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// Parses deploy files, or fails with every diagnostic rendered and exit code 2.
pub fn parse_deploy_files(files: &[PathBuf]) -> anyhow::Result<ebb_spec::Deployment> {
    ebb_spec::parse_deployment_files(files).map_err(|errors| {
        let rendered: Vec<String> = errors.0.iter().map(|e| e.render()).collect();
        let n = errors.0.len();
        anyhow::Error::new(Exit {
            code: EXIT_INVALID,
            message: format!(
                "{}\n{n} error{} in deploy files; nothing was applied",
                rendered.join("\n"),
                if n == 1 { "" } else { "s" }
            ),
        })
    })
}

/// `ebb validate FILE...`
pub fn validate(files: &[PathBuf], json: bool) -> anyhow::Result<()> {
    let deployment = parse_deploy_files(files)?;
    if json {
        let req: ebb_core::api::ApplyRequest = deployment.into();
        out!("{}", serde_json::to_string_pretty(&req)?);
        return Ok(());
    }
    for s in &deployment.services {
        out!(
            "{}: ok ({} instances, version {})",
            s.name,
            s.instances,
            s.version()
        );
    }
    for j in &deployment.jobs {
        out!(
            "{}: ok (job, {} tasks, queue {}, priority {})",
            j.name,
            j.tasks,
            j.queue,
            j.priority
        );
    }
    for q in &deployment.queues {
        out!("{}: ok (queue, weight {})", q.name, q.weight);
    }
    Ok(())
}

/// `ebb demo`: runs the demo crate with this binary as its `ebb up`, and turns its failures
/// into exit codes (invalid option 2, interrupted 130, failed 1).
pub async fn demo(args: &crate::cli::DemoArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    use ebb_demo::{DemoError, Failure, Options};
    let options = Options {
        duration: args.duration,
        port: args.port,
        ebb: std::env::current_exe().context("finding ebb's own executable")?,
        chart: args.chart.clone(),
    };
    ebb_demo::run(&options)
        .await
        .map_err(|e| match e.downcast::<DemoError>() {
            Ok(DemoError { kind, message }) => {
                let code = match kind {
                    Failure::InvalidOption => EXIT_INVALID,
                    Failure::Interrupted => 130,
                    Failure::Failed => 1,
                };
                Exit { code, message }.into()
            }
            Err(other) => other,
        })
}
