//! The `ebb` binary: parses the command line and starts the role or runs the command.

mod agent;
mod cli;
mod commands;
mod connect;
mod limits;
mod output;
mod up;

use clap::Parser;

use cli::{Cli, Command};
use commands::{Exit, EXIT_UNREACHABLE};

fn main() {
    let cli = Cli::parse();
    let serving = matches!(
        cli.command,
        Command::Up(_) | Command::Server(_) | Command::Agent(_)
    );
    init_tracing(serving);
    if serving {
        limits::raise_open_files();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(run(cli));
    if let Err(e) = result {
        std::process::exit(report(&e));
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    match &cli.command {
        Command::Up(args) => up::up(g, args).await,
        Command::Server(args) => up::server(g, args).await,
        Command::Agent(args) => agent::agent(g, args).await,
        Command::Nodes {
            json,
            output,
            action,
        } => match action {
            None => commands::nodes::nodes(&connect::client(g)?, *json, output.is_some()).await,
            Some(cli::NodesAction::Rm { node }) => {
                commands::nodes::remove(&connect::client(g)?, node).await
            }
        },
        Command::Drain {
            node,
            deadline,
            detach,
            json,
        } => commands::moves::drain(&connect::client(g)?, node, *deadline, *detach, *json).await,
        Command::Undrain { node, json } => {
            commands::moves::undrain(&connect::client(g)?, node, *json).await
        }
        Command::Migrate {
            instance,
            to,
            detach,
            json,
        } => {
            let client = connect::client(g)?;
            commands::moves::migrate(&client, instance, to.as_deref(), *detach, *json).await
        }
        Command::Validate { files, json } => commands::validate(files, *json),
        Command::ExampleApp { port, host } => example_app(*port, host.clone()).await,
        Command::Demo(a) => commands::demo(a).await,
        Command::Sim(a) => commands::sim::sim(a),
        Command::Completions { shell } => {
            // Generated into memory, then written: clap_complete panics on a failed write
            // (`ebb completions bash | head`), and a closed pipe is no error here.
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut command, "ebb", &mut script);
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            Ok(())
        }
        Command::Deploy(a) => commands::deploy::deploy(&connect::client(g)?, a).await,
        Command::Ps {
            service,
            json,
            output,
        } => {
            let wide = output.is_some();
            commands::ps::ps(&connect::client(g)?, service.as_deref(), *json, wide).await
        }
        Command::Scale {
            service,
            instances,
            min,
            max,
            json,
        } => {
            let req = ebb_core::api::ScaleRequest {
                instances: *instances,
                min: *min,
                max: *max,
            };
            commands::deploy::scale(&connect::client(g)?, service, req, *json).await
        }
        Command::Stop {
            services,
            detach,
            json,
        } => commands::deploy::stop(&connect::client(g)?, services, *detach, *json).await,
        Command::Describe { name, json } => {
            commands::describe::describe(&connect::client(g)?, name, *json).await
        }
        Command::Restart {
            targets,
            detach,
            timeout,
            json,
        } => {
            let client = connect::client(g)?;
            commands::restart::restart(&client, targets, *detach, *timeout, *json).await
        }
        Command::Logs(a) => commands::logs::logs(&connect::client(g)?, a).await,
        Command::Jobs { json, action } => match action {
            None => commands::jobs::jobs(&connect::client(g)?, *json).await,
            Some(cli::JobsAction::Rm { job }) => {
                commands::jobs::remove(&connect::client(g)?, job).await
            }
        },
        Command::Job { name, json } => commands::jobs::job(&connect::client(g)?, name, *json).await,
        Command::Cancel { job } => commands::jobs::cancel(&connect::client(g)?, job).await,
        Command::Queues { json } => commands::jobs::queues(&connect::client(g)?, *json).await,
        Command::Run(a) => {
            let req = commands::jobs::RunRequest {
                name: a.name.as_deref(),
                command: &a.command,
                cpu_millis: a.cpu,
                memory_bytes: a.memory,
                priority: a.priority,
                queue: a.queue.as_deref(),
                timeout: a.timeout,
            };
            commands::jobs::run(&connect::client(g)?, req).await
        }
        Command::Ui { print } => commands::ui::ui(&connect::client(g)?, *print).await,
        Command::Events {
            follow,
            json,
            limit,
        } => commands::events::events(&connect::client(g)?, *follow, *json, *limit).await,
        Command::Metrics {
            service,
            window,
            json,
        } => {
            commands::metrics::metrics(&connect::client(g)?, service.as_deref(), *window, *json)
                .await
        }
        Command::Status { json } => commands::status::status(&connect::client(g)?, *json).await,
        Command::Servers { json } => commands::servers::servers(&connect::client(g)?, *json).await,
    }
}

/// Flags win over the environment (`PORT`, `HOST`, `EBB_INSTANCE_ID`, `GREETING`).
async fn example_app(port: Option<u16>, host: Option<String>) -> anyhow::Result<()> {
    let config = ebb_example_app::config_from_lookup(|key| match key {
        "PORT" if port.is_some() => port.map(|p| p.to_string()),
        "HOST" if host.is_some() => host.clone(),
        _ => std::env::var(key).ok(),
    })
    .map_err(|m| {
        anyhow::Error::new(Exit {
            code: commands::EXIT_INVALID,
            message: m,
        })
    })?;
    ebb_example_app::run(config).await?;
    Ok(())
}

/// Prints an error and returns the exit code it deserves: the README's list (0 success, 1
/// failure, 2 invalid input, 3 the API cannot be reached).
fn report(e: &anyhow::Error) -> i32 {
    if let Some(exit) = e.downcast_ref::<Exit>() {
        eprintln!("{}", exit.message);
        return exit.code;
    }
    eprintln!("error: {e:#}");
    match e.downcast_ref::<ebb_client::ClientError>() {
        Some(ebb_client::ClientError::Connect { .. }) => EXIT_UNREACHABLE,
        Some(c) if c.status().is_some_and(commands::invalid_status) => commands::EXIT_INVALID,
        _ => 1,
    }
}

fn init_tracing(server: bool) {
    let default = if server { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("EBB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .compact()
        .init();
}
