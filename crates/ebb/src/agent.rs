//! `ebb agent`: this machine as a node of a server elsewhere. The agent reports its capacity,
//! labels and instances every second and runs what the server places on it.
//!
//! Stopping the agent leaves its instances running (as stopping a Nomad client does): an agent
//! is restarted to be upgraded or reconfigured, and its instances are adopted by the next agent
//! on the same data dir without a restart. Moving instances off a node is `ebb drain`'s job.

use crate::cli::{AgentArgs, Global};
use crate::commands::{Exit, EXIT_INVALID};
use crate::up::{default_node_name, lock_data_dir, prepare_data_dir, start_supervisor, Signals};
use ebb_client::{Client, ClientError};
use ebb_core::api::NodeInfo;

pub async fn agent(global: &Global, args: &AgentArgs) -> anyhow::Result<()> {
    let name = args.name.clone().unwrap_or_else(default_node_name);
    check_node_name(&name)?;
    let mut signals = Signals::new()?;
    let data_dir = prepare_data_dir(&global.data_dir)?;
    let _lock = lock_data_dir(&data_dir)?;
    let client = Client::new(&args.server, Some(args.token.clone()))?;
    let supervisor = start_supervisor(&name, &args.advertise, &data_dir)?;
    let (cpu, memory) = ebb_agent::capacity::offered();
    let node = NodeInfo {
        name: name.clone(),
        address: args.advertise.clone(),
        cpu_millis: args.cpu.unwrap_or(cpu),
        memory_bytes: args.memory.unwrap_or(memory),
        enforcement: supervisor.enforcement(),
        labels: args.labels.clone(),
    };
    if let Err(e) = first_contact(&client, &supervisor, &node).await {
        supervisor.detach();
        return Err(e);
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let sync = tokio::spawn(ebb_agent::sync::run(
        client,
        supervisor.clone(),
        node.clone(),
        stop.clone(),
    ));
    eprintln!(
        "ebb agent: node {name} joined {} with {} CPU, {} memory; instances bind {}; data in {}.\n  Ctrl-C stops the agent and leaves its instances running.",
        args.server,
        ebb_core::quantity::format_cpu_millis(node.cpu_millis),
        ebb_core::quantity::format_size(node.memory_bytes),
        node.address,
        data_dir.display(),
    );
    signals.next().await;
    stop.cancel();
    let _ = sync.await;
    supervisor.detach();
    eprintln!("ebb agent stopped; its instances keep running and the next agent on this data dir adopts them");
    Ok(())
}

/// One sync before anything else, so that a wrong address or token is a clear error at start,
/// not a warning in a retry loop.
async fn first_contact(
    client: &Client,
    supervisor: &ebb_agent::Supervisor,
    node: &NodeInfo,
) -> anyhow::Result<()> {
    match ebb_agent::sync::sync_once(client, supervisor, node).await {
        Ok(resp) => {
            supervisor.apply(&resp.assignments);
            Ok(())
        }
        Err(ClientError::Unauthorized { addr, .. }) => Err(anyhow::Error::new(Exit {
            code: EXIT_INVALID,
            message: format!(
                "the server at {addr} refused the join token: pass --token (or EBB_JOIN_TOKEN) with the content of the server's data dir join-token file"
            ),
        })),
        Err(e) => Err(anyhow::Error::new(e).context(format!("joining the server at {}", client.base()))),
    }
}

/// Node names go into store keys, events and cgroup paths: core's one rule.
fn check_node_name(name: &str) -> anyhow::Result<()> {
    ebb_core::api::validate_node_name(name).map_err(|message| {
        anyhow::Error::new(Exit {
            code: EXIT_INVALID,
            message: format!("{message} (--name)"),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_checked() {
        assert!(check_node_name("node-1.a_b").is_ok());
        assert!(check_node_name("").is_err());
        assert!(check_node_name("a/b").is_err());
        assert!(check_node_name(&"x".repeat(64)).is_err());
    }
}
