//! `ebb restart SERVICE|INSTANCE...`: replace instances by new ones, start-before-stop, one at a
//! time, without a spec change (after a secret or a file the program reads changed, or to
//! clear a bad state). A service rolls as a spec change does; an instance moves as with
//! `ebb migrate`, except that its replacement may land on its own node.

use super::{deploy, moves, Exit, EXIT_INVALID};
use crate::output::out;
use ebb_client::Client;
use std::time::Duration;

/// What a name given to `ebb restart` is.
enum Target {
    Service(String),
    Instance(String),
}

/// `ebb restart TARGET... [--detach] [--timeout T]`: every target is checked before anything
/// restarts, so that a typo restarts nothing.
pub async fn restart(
    client: &Client,
    names: &[String],
    detach: bool,
    timeout: Duration,
    json: bool,
) -> anyhow::Result<()> {
    let targets = resolve(client, names).await?;
    let mut services = Vec::new();
    let mut moves = Vec::new();
    let mut answers = Vec::new();
    for target in targets {
        match target {
            Target::Service(name) if json => {
                answers.push(serde_json::to_value(client.restart_service(&name).await?)?);
            }
            Target::Instance(id) if json => {
                answers.push(serde_json::to_value(client.restart_instance(&id).await?)?);
            }
            Target::Service(name) => {
                let view = client.restart_service(&name).await?;
                out!(
                    "{name}: restarting {} instances, one at a time, each replaced by a new one started first",
                    view.desired
                );
                services.push(name);
            }
            Target::Instance(id) => {
                let view = client.restart_instance(&id).await?;
                out!(
                    "{id} ({}): restarting on node {} or another that fits; a replacement starts first",
                    view.service,
                    view.from
                );
                moves.push(view);
            }
        }
    }
    if json {
        out!("{}", serde_json::to_string_pretty(&answers)?);
        return Ok(());
    }
    if detach {
        return Ok(());
    }
    if !services.is_empty() {
        deploy::wait_ready(client, &services, timeout).await?;
    }
    for view in moves {
        moves::follow_move(client, view, timeout).await?;
    }
    Ok(())
}

/// Each name as a service (first) or an instance id, each once; an unknown one is invalid
/// input.
async fn resolve(client: &Client, names: &[String]) -> anyhow::Result<Vec<Target>> {
    let services = client.services().await?;
    let instances = client.instances(None).await?;
    let mut targets = Vec::new();
    for name in super::unique(names) {
        if services.iter().any(|s| s.name == name) {
            targets.push(Target::Service(name));
        } else if instances.iter().any(|i| i.id == name) {
            targets.push(Target::Instance(name));
        } else {
            return Err(anyhow::Error::new(Exit {
                code: EXIT_INVALID,
                message: format!(
                    "error: no service or instance named {name:?}: `ebb status` lists the services, `ebb ps` the instances\nnothing was restarted"
                ),
            }));
        }
    }
    Ok(targets)
}
