//! How a supervisor is set up, and what can make it fail to start.

use super::logs::{DEFAULT_LOG_KEEP, DEFAULT_LOG_MAX_BYTES};
use std::path::PathBuf;

/// Settings of one node's supervisor.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// Node name, given to instances as `EBB_NODE`.
    pub node: String,
    /// IP instances bind, given as `HOST`; health checks connect here.
    pub host: String,
    /// Agent state: `<data_dir>/instances.json`, logs under `<data_dir>/logs/<service>/<instance>.log`.
    pub data_dir: PathBuf,
    /// Run instead of a command whose `argv[0]` is `ebb`, so examples work without ebb on `PATH`.
    pub self_exe: PathBuf,
    /// Rotate a log above this size ([`DEFAULT_LOG_MAX_BYTES`]).
    pub log_max_bytes: u64,
    /// Rotated files kept per instance ([`DEFAULT_LOG_KEEP`]).
    pub log_keep: usize,
}

impl SupervisorConfig {
    /// A config with the default log limits.
    pub fn new(
        node: impl Into<String>,
        host: impl Into<String>,
        data_dir: impl Into<PathBuf>,
        self_exe: impl Into<PathBuf>,
    ) -> SupervisorConfig {
        SupervisorConfig {
            node: node.into(),
            host: host.into(),
            data_dir: data_dir.into(),
            self_exe: self_exe.into(),
            log_max_bytes: DEFAULT_LOG_MAX_BYTES,
            log_keep: DEFAULT_LOG_KEEP,
        }
    }
}

/// Why a supervisor could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Started outside a tokio runtime: it needs one to run its instances' tasks.
    #[error("the supervisor must be started inside a tokio runtime")]
    NoRuntime,
    /// The data dir (state file and logs) could not be created.
    #[error("cannot create the agent data directory {path}: {source}")]
    DataDir {
        /// The data dir asked for.
        path: PathBuf,
        /// Why creating it failed.
        source: std::io::Error,
    },
    /// The state file exists but cannot be used: starting anyway could duplicate or orphan processes.
    #[error("{0}")]
    State(String),
}
