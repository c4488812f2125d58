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
    let token = join_token(args)?.map(|t| ebb_core::api::JoinToken::parse(&t));
    let server = Client::with_trust(
        &args.server,
        None,
        trust(global, &data_dir, token.as_ref())?,
    )?;
    let join_token = token.as_ref().map(|t| t.secret.clone());
    let client = node_client(&server, &data_dir, &name, join_token.as_deref()).await?;
    // The CA the token named is trusted from now on, also on later starts without the token.
    if let Some(hash) = token.and_then(|t| t.ca_sha256) {
        std::fs::write(data_dir.join(ebb_core::api::SERVER_CA_FILE), hash)?;
    }
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
    let client = match first_contact(&client, &supervisor, &node).await {
        Err(e) if refused(&e) && join_token.is_some() => {
            // The server forgot this node (`ebb nodes rm`, a new store): join again. The kept
            // credential is replaced only once a new one is in hand.
            let token = join_token.as_deref().unwrap_or_default();
            let client = join(&server, &data_dir, &name, token).await?;
            first_contact(&client, &supervisor, &node)
                .await
                .map(|()| client)
        }
        other => other.map(|()| client),
    };
    let client = match client {
        Ok(client) => client,
        Err(e) => {
            supervisor.detach();
            return Err(e);
        }
    };
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

/// What the agent trusts a TLS API by: `--ca`, else the CA hash in the join token, else the one
/// a previous start kept; None for a plain-HTTP server.
fn trust(
    global: &Global,
    data_dir: &std::path::Path,
    token: Option<&ebb_core::api::JoinToken>,
) -> anyhow::Result<Option<ebb_client::Trust>> {
    if let Some(file) = &global.ca {
        return crate::connect::ca_file(file).map(Some);
    }
    let kept = std::fs::read_to_string(data_dir.join(ebb_core::api::SERVER_CA_FILE)).ok();
    let hash = token
        .and_then(|t| t.ca_sha256.clone())
        .or(kept.map(|h| h.trim().to_string()).filter(|h| !h.is_empty()));
    Ok(hash.map(ebb_client::Trust::CaSha256))
}

/// The join token, from `--token-file` or else `--token` / `EBB_JOIN_TOKEN`; None when neither
/// is given (a node that has joined before needs none).
fn join_token(args: &AgentArgs) -> anyhow::Result<Option<String>> {
    let Some(path) = &args.token_file else {
        return Ok(args.token.clone().filter(|t| !t.trim().is_empty()));
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        invalid(format!(
            "cannot read the join token from {} (--token-file): {e}",
            path.display()
        ))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(invalid(format!(
            "{} (--token-file) is empty: copy the server's data dir join-token file",
            path.display()
        )));
    }
    Ok(Some(token.to_string()))
}

/// A client that calls as this node: with the credential kept in the data dir, or, on the
/// first start, with the one the server returns for the join token (then kept).
async fn node_client(
    server: &Client,
    data_dir: &std::path::Path,
    name: &str,
    join_token: Option<&str>,
) -> anyhow::Result<Client> {
    if let Some(credential) = ebb_agent::credential::load(data_dir)? {
        return Ok(server.with_token(credential));
    }
    let Some(token) = join_token else {
        return Err(invalid(format!(
            "node {name} has not joined yet (no {} in {}): pass --token-file with a copy of the server's data dir join-token file, or set EBB_JOIN_TOKEN",
            ebb_agent::credential::NODE_CREDENTIAL_FILE,
            data_dir.display()
        )));
    };
    join(server, data_dir, name, token).await
}

/// Trades the join token for this node's credential, and keeps it (replacing any older one).
async fn join(
    server: &Client,
    data_dir: &std::path::Path,
    name: &str,
    token: &str,
) -> anyhow::Result<Client> {
    let joined = server.with_token(token.to_string()).join(name).await;
    let credential = match joined {
        Ok(resp) => resp.credential,
        Err(ClientError::Unauthorized { addr, .. }) => {
            return Err(invalid(format!(
                "the server at {addr} refused the join token: use a copy of the server's data dir join-token file (--token-file)"
            )))
        }
        Err(ClientError::Api { status: 409, message }) => return Err(invalid(message)),
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("joining the server at {}", server.base()))
            )
        }
    };
    ebb_agent::credential::save(data_dir, &credential)?;
    Ok(server.with_token(credential))
}

fn invalid(message: String) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code: EXIT_INVALID,
        message,
    })
}

/// Whether the server refused this node's credential.
fn refused(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<ClientError>(),
        Some(ClientError::Unauthorized { .. })
    )
}

/// One sync before anything else, so that a wrong address or credential is a clear error at
/// start, not a warning in a retry loop.
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
        Err(e @ ClientError::Unauthorized { .. }) => Err(anyhow::Error::new(e).context(format!(
            "the server refused node {}'s credential ({}): if the node was removed with `ebb nodes rm` or the server's store was reset, start the agent with --token-file to join again",
            node.name,
            ebb_agent::credential::NODE_CREDENTIAL_FILE
        ))),
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
