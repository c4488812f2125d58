//! `ebb up`: the control plane and a local agent in one foreground process.
//!
//! Start-up order matters: deploy files are checked before anything starts (a bad file changes
//! nothing), the data dir is locked so that two `ebb up` never share it, and the local agent
//! re-adopts instances that survived a crash before it reports to the server.

use crate::cli::{Global, PlaneArgs, ServerArgs, UpArgs};
use crate::commands::{self, Exit, EXIT_INVALID};
use crate::connect::ADDR_FILE;
use anyhow::Context;
use ebb_agent::{Supervisor, SupervisorConfig};
use ebb_client::Client;
use ebb_core::api::NodeInfo;
use ebb_router::read_ahead::ReadAhead;
use ebb_server::{auth, ControlPlane, PlaneConfig, Server, Stage};
use ebb_store::{EtcdStore, KvStore, SqliteStore};
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Store file inside the data dir.
const STORE_FILE: &str = "state.db";
/// Lock file that keeps two `ebb up` off one data dir.
const LOCK_FILE: &str = "lock";
/// Where the router spools responses read ahead of slow clients (unlinked files only).
const SPOOL_DIR: &str = "spool";

/// What a control-plane process runs: `ebb up` and `ebb server --agent` add a local agent.
pub struct Role<'a> {
    pub plane: &'a PlaneArgs,
    pub local_agent: Option<LocalAgent>,
    /// Where services' ports listen unless `--router-bind` says otherwise.
    pub router_bind: IpAddr,
    /// `etcd://...` to share the state with other servers; None: SQLite in the data dir.
    pub store: Option<String>,
    /// This server's name among several.
    pub name: Option<String>,
}

/// `ebb up` runs everything on one machine: its services' ports listen on loopback only, so
/// that trying ebb out exposes nothing.
const UP_ROUTER_BIND: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// `ebb server` is the front door of a cluster: its services' ports listen on every address.
const SERVER_ROUTER_BIND: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// The agent that runs inside the control plane's process.
pub struct LocalAgent {
    pub node_name: Option<String>,
    pub advertise: String,
}

/// `ebb up`: the control plane, a local agent, and the deploy files applied.
pub async fn up(global: &Global, args: &UpArgs) -> anyhow::Result<()> {
    let specs = if args.files.is_empty() {
        ebb_spec::Deployment::default()
    } else {
        commands::parse_deploy_files(&args.files)?
    };
    let role = Role {
        plane: &args.plane,
        local_agent: Some(LocalAgent {
            node_name: args.node_name.clone(),
            advertise: args.advertise.clone(),
        }),
        router_bind: args.plane.router_bind.unwrap_or(UP_ROUTER_BIND),
        store: None,
        name: None,
    };
    run(global, role, specs).await
}

/// `ebb server`: the control plane, with a local agent only when asked.
pub async fn server(global: &Global, args: &ServerArgs) -> anyhow::Result<()> {
    let role = Role {
        plane: &args.plane,
        local_agent: args.agent.then(|| LocalAgent {
            node_name: args.node_name.clone(),
            advertise: args.advertise.clone(),
        }),
        router_bind: args.plane.router_bind.unwrap_or(SERVER_ROUTER_BIND),
        store: args.store.clone(),
        name: args.name.clone(),
    };
    run(global, role, ebb_spec::Deployment::default()).await
}

/// A local agent of the control plane's process: its node name, the address its instances
/// bind, and its supervisor.
struct Local {
    name: String,
    advertise: String,
    supervisor: Supervisor,
}

async fn run(global: &Global, role: Role<'_>, specs: ebb_spec::Deployment) -> anyhow::Result<()> {
    let mut signals = Signals::new()?;
    let data_dir = prepare_data_dir(&global.data_dir)?;
    let _lock = lock_data_dir(&data_dir)?;
    // Store and tokens first, then the API's port: both are errors before the agent adopts
    // or sweeps any process.
    let state = open_state(&data_dir, role.store.as_deref())?;
    let listener = bind_api(&data_dir, &role).await?;
    let addr = listener.local_addr()?;
    let local = match &role.local_agent {
        Some(local) => Some(start_local(local, &data_dir)?),
        None => None,
    };
    let token = state.token.clone();
    let tls = api_tls(&data_dir, &role, addr, &state)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let etcd = state.etcd.clone();
    let server = new_server(state, &role, addr).inspect_err(|_| {
        // Leave the adopted instances running, as `ebb agent` does on an error at start.
        if let Some(l) = &local {
            l.supervisor.clone().detach();
        }
    })?;
    // The local node's name is the control plane's own: the join token cannot claim it.
    if let Some(local) = &local {
        auth::reserve_node_name(server.store(), &local.name)
            .context("reserving the local node's name")?;
    }
    // The CLI finds the API here.
    // `host:port` for plain HTTP (as tools and scripts read it), `https://host:port` with TLS.
    let api_url = match tls {
        Some(_) => format!("https://{addr}"),
        None => addr.to_string(),
    };
    std::fs::write(data_dir.join(ADDR_FILE), &api_url)?;
    let campaign = campaign(&server, &role, &api_url, etcd.as_ref())?;
    let trust = tls
        .as_ref()
        .map(|t| ebb_client::Trust::CaSha256(t.ca_sha256.clone()));
    let mut plane = ControlPlane::start(PlaneConfig {
        server,
        api: listener,
        router_bind: role.router_bind,
        router_threads: role.plane.router_threads,
        max_connections: crate::limits::connection_budget(),
        api_tls: tls.map(|t| t.config),
        read_ahead: Arc::new(ReadAhead::with_spool(&data_dir.join(SPOOL_DIR))?),
        api_trust: trust.clone(),
    })
    .context("starting the router's runtime")?;
    let client = Client::with_trust(&api_url, Some(token), trust)?;
    if let Some(local) = &local {
        report_local(&mut plane, &client, local);
    }
    // A failed initial apply still stops what runs, through the same path as Ctrl-C.
    let outcome = apply(&client, specs).await;
    if outcome.is_ok() {
        say_up(&format!("{scheme}://{addr}"), &data_dir, local.as_ref());
        signals.next().await;
    }
    let supervisor = local.map(|l| l.supervisor);
    stop(plane, supervisor, campaign, &mut signals, &data_dir).await;
    outcome
}

/// TLS for the API when it listens beyond loopback, or with `--tls`: the certificates (made
/// on first start), and the join-token file rewritten to carry the CA's hash. Without TLS the
/// file holds the bare secret.
fn api_tls(
    data_dir: &Path,
    role: &Role<'_>,
    addr: std::net::SocketAddr,
    state: &State,
) -> anyhow::Result<Option<ebb_server::api_tls::ApiTls>> {
    let join_secret = &state.join_token;
    let wanted = role.plane.tls || !addr.ip().is_loopback();
    let made = match (&state.etcd, wanted) {
        (_, false) => None,
        (None, true) => Some(ebb_server::api_tls::load_or_create(data_dir, addr.ip())),
        // Several servers: one CA for all, so that agents trust every one of them.
        (Some(etcd), true) => Some(ebb_server::api_tls::load_or_create_shared(
            data_dir,
            addr.ip(),
            etcd.as_ref(),
        )),
    };
    let tls = made
        .transpose()
        .context("making or reading the API's TLS certificates")?;
    let token = ebb_core::api::JoinToken {
        ca_sha256: tls.as_ref().map(|t| t.ca_sha256.clone()),
        secret: join_secret.to_string(),
    };
    auth::write_join_token(data_dir, &token).context("writing the join token")?;
    Ok(tls)
}

/// The API's listener.
async fn bind_api(data_dir: &Path, role: &Role<'_>) -> anyhow::Result<tokio::net::TcpListener> {
    let listen = role.plane.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!("cannot listen on {listen}: is another ebb running there? Use --listen")
        })?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "API listens beyond loopback: every call must carry the token from {}", auth::token_path(data_dir).display());
    }
    Ok(listener)
}

/// What the control plane starts from: the store and the two tokens.
struct State {
    store: Arc<dyn KvStore>,
    /// The same store when it is an etcd cluster that other servers share.
    etcd: Option<Arc<EtcdStore>>,
    token: String,
    join_token: String,
}

/// Opens the store (SQLite in `data_dir`, or the etcd cluster at `url`) and reads (or creates)
/// the tokens. Servers sharing an etcd share their tokens through it, each keeping a copy in
/// its data dir, so that the CLI and agents can use any of them.
fn open_state(data_dir: &Path, url: Option<&str>) -> anyhow::Result<State> {
    let token =
        auth::load_or_create_token(data_dir).context("reading or creating the API token")?;
    let join_token =
        auth::load_or_create_join_token(data_dir).context("reading or creating the join token")?;
    let Some(url) = url else {
        let store = SqliteStore::open(&data_dir.join(STORE_FILE)).context("opening the store")?;
        return Ok(State {
            store: Arc::new(store),
            etcd: None,
            token,
            join_token,
        });
    };
    let members = EtcdStore::parse_url(url)?;
    let etcd = Arc::new(
        EtcdStore::connect(&members, ebb_store::etcd::DEFAULT_NAMESPACE)
            .with_context(|| format!("connecting to the store at {url}"))?,
    );
    let (token, join_token) = auth::share_tokens(etcd.as_ref(), data_dir, token, join_token)
        .context("sharing the tokens through etcd")?;
    Ok(State {
        store: etcd.clone(),
        etcd: Some(etcd),
        token,
        join_token,
    })
}

/// With an etcd store: this server's session, registry entry and bid for leadership, which the
/// controllers follow. None alone on SQLite, where this server always leads.
fn campaign(
    server: &Server,
    role: &Role<'_>,
    api_url: &str,
    etcd: Option<&Arc<EtcdStore>>,
) -> anyhow::Result<Option<ebb_store::etcd::election::Campaign>> {
    let name = role.name.clone().unwrap_or_else(default_node_name);
    let identity = ebb_server::Identity {
        name: name.clone(),
        api: api_url.to_string(),
        router: role.router_bind.to_string(),
    };
    let record = serde_json::to_vec(&identity)?;
    server.set_identity(identity);
    let Some(etcd) = etcd else {
        return Ok(None);
    };
    let campaign = etcd.campaign(ebb_store::etcd::election::Candidate { name, record });
    server.set_cluster(Arc::clone(etcd));
    server.set_leadership(campaign.leadership());
    Ok(Some(campaign))
}

/// The server state over the store, with its tokens and settings.
fn new_server(state: State, role: &Role<'_>, addr: std::net::SocketAddr) -> anyhow::Result<Server> {
    let server = Server::new(state.store, state.token)?;
    server.set_join_token(state.join_token);
    server.nodes().set_down_after(role.plane.node_down_after);
    server.record(ebb_core::Event::new(
        ebb_server::now_ms(),
        ebb_core::EventKind::ServerStarted,
        format!("ebb {} started; API on {addr}", env!("CARGO_PKG_VERSION")),
    ));
    Ok(server)
}

/// Starts the local agent's supervisor (it adopts what survived a crash first).
fn start_local(local: &LocalAgent, data_dir: &Path) -> anyhow::Result<Local> {
    let name = local.node_name.clone().unwrap_or_else(default_node_name);
    let supervisor = start_supervisor(&name, &local.advertise, data_dir)?;
    Ok(Local {
        name,
        advertise: local.advertise.clone(),
        supervisor,
    })
}

/// The local agent reports to the API like any other node, in the plane's reporting stage.
fn report_local(plane: &mut ControlPlane, client: &Client, local: &Local) {
    let (cpu_millis, memory_bytes) = ebb_agent::capacity::offered();
    let node = NodeInfo {
        name: local.name.clone(),
        address: local.advertise.clone(),
        cpu_millis,
        memory_bytes,
        enforcement: local.supervisor.enforcement(),
        labels: Default::default(),
    };
    let (client, supervisor) = (client.clone(), local.supervisor.clone());
    plane.spawn(Stage::Reporting, move |stop| {
        ebb_agent::sync::run(client, supervisor, node, stop)
    });
}

/// Applies the deploy files given on the command line, if any.
async fn apply(client: &Client, specs: ebb_spec::Deployment) -> anyhow::Result<()> {
    if specs == ebb_spec::Deployment::default() {
        return Ok(());
    }
    let req: ebb_core::api::ApplyRequest = specs.into();
    let resp = client
        .apply_request(&req)
        .await
        .context("applying the deploy files")?;
    for c in resp.changes {
        tracing::info!(service = c.service, change = ?c.change, "applied");
    }
    for j in resp.jobs {
        tracing::info!(job = j.job, change = j.change, "applied");
    }
    Ok(())
}

fn say_up(addr: &str, data_dir: &Path, local: Option<&Local>) {
    match local {
        Some(local) => eprintln!(
            "ebb is up: API {addr}, node {}, data in {}.\n  Try `ebb ps` or `ebb status` in another terminal; Ctrl-C stops every instance and exits.",
            local.name,
            data_dir.display()
        ),
        None => eprintln!(
            "ebb server is up: API {addr}, data in {dir}.\n  Nodes join with `ebb agent --server {addr} --token-file FILE`, FILE a copy of {dir}/{join}; `ebb nodes` lists them.",
            dir = data_dir.display(),
            join = auth::JOIN_TOKEN_FILE,
        ),
    }
}

/// Stops gracefully (ControlPlane::shutdown: no new decisions; instances stop while the
/// router still drains them and the agent still reports them; the listeners; a last report;
/// the API, bounded so that attached followers cannot hold up the exit); a second signal
/// kills the instances at once and exits 130.
async fn stop(
    plane: ControlPlane,
    supervisor: Option<Supervisor>,
    campaign: Option<ebb_store::etcd::election::Campaign>,
    signals: &mut Signals,
    data_dir: &Path,
) {
    match &supervisor {
        Some(_) => eprintln!("stopping: instances get their stop signal and grace period (Ctrl-C again to kill them now)"),
        None => eprintln!("stopping the server: instances on the nodes keep running"),
    }
    // Resigned once, by whichever comes first: the graceful path, or a second Ctrl-C.
    let campaign = std::sync::Mutex::new(campaign);
    let take = || campaign.lock().ok().and_then(|mut c| c.take());
    let graceful = plane.shutdown(async {
        // Once decisions have stopped (their last writes, such as the autoscaler's learned
        // state, made while this server still led): another server leads at once instead of
        // after the session's TTL.
        if let Some(campaign) = take() {
            campaign.resign().await;
        }
        if let Some(s) = &supervisor {
            s.shutdown().await;
        }
    });
    tokio::select! {
        _ = graceful => {}
        _ = signals.next() => {
            if let Some(s) = &supervisor {
                s.kill_all_now();
                eprintln!("killed every instance");
            }
            if let Some(campaign) = take() {
                campaign.resign().await;
            }
            let _ = std::fs::remove_file(data_dir.join(ADDR_FILE));
            std::process::exit(130);
        }
    }
    let _ = std::fs::remove_file(data_dir.join(ADDR_FILE));
    eprintln!("ebb stopped");
}

/// The agent of this process, its state in `<data dir>/agent`.
pub fn start_supervisor(
    node: &str,
    advertise: &str,
    data_dir: &Path,
) -> anyhow::Result<Supervisor> {
    Supervisor::start(SupervisorConfig {
        node: node.to_string(),
        host: advertise.to_string(),
        data_dir: data_dir.join("agent"),
        self_exe: std::env::current_exe().context("finding ebb's own executable")?,
        log_max_bytes: ebb_agent::DEFAULT_LOG_MAX_BYTES,
        log_keep: ebb_agent::DEFAULT_LOG_KEEP,
    })
    .context("starting the agent")
}

/// Ctrl-C and SIGTERM, listened to from start-up on so that no signal is lost between the first
/// and the second (a second one means "stop now").
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    pub fn new() -> anyhow::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    pub async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// Creates the data dir (owner-only: it holds the store with every service's env, the tokens
/// and the instances' logs) if needed and resolves it. An existing one that others may read is
/// left as it is, with a warning: it is the user's folder.
pub fn prepare_data_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    ebb_core::files::create_private_dir(dir)
        .with_context(|| format!("creating data dir {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving data dir {}", dir.display()))?;
    let mode = std::fs::metadata(&dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            "data dir {} is open to other users (mode {mode:o}); it holds the store, the tokens and the logs: `chmod 700 {}`",
            dir.display(),
            dir.display()
        );
    }
    Ok(dir)
}

/// Takes an exclusive lock on the data dir for the life of the process.
pub fn lock_data_dir(dir: &Path) -> anyhow::Result<Flock<File>> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| {
        anyhow::Error::new(Exit {
            code: EXIT_INVALID,
            message: format!(
                "another ebb is already running on data dir {}; stop it first or pass a different --data-dir",
                dir.display()
            ),
        })
    })
}

pub fn default_node_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.to_lowercase())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".to_string())
}
