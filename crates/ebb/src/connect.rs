//! How the CLI finds the API: address and token from flags, the environment, or the data dir.

use crate::cli::{Global, DEFAULT_LISTEN};
use ebb_client::Client;
use std::path::Path;

pub use ebb_core::api::ADDR_FILE;

/// A client for the API named by `--addr`/`EBB_ADDR`, else the data dir, else the default.
pub fn client(global: &Global) -> anyhow::Result<Client> {
    let addr = match &global.addr {
        Some(a) => a.clone(),
        None => read_trimmed(&global.data_dir.join(ADDR_FILE))
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string()),
    };
    let token = std::env::var("EBB_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| read_trimmed(&ebb_server::auth::token_path(&global.data_dir)));
    Ok(Client::with_trust(&addr, token, trust(global, &addr)?)?)
}

/// What the CLI trusts a TLS API by: `--ca`, else, for an `https://` address, the CA in the
/// data dir (an API on this machine).
pub fn trust(global: &Global, addr: &str) -> anyhow::Result<Option<ebb_client::Trust>> {
    let file = match &global.ca {
        Some(file) => file.clone(),
        None if addr.starts_with("https://") => ebb_server::api_tls::ca_path(&global.data_dir),
        None => return Ok(None),
    };
    ca_file(&file).map(Some)
}

/// Trust in the CA certificate (PEM) at `file`.
pub fn ca_file(file: &Path) -> anyhow::Result<ebb_client::Trust> {
    let pem = std::fs::read(file).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the CA certificate {} (--ca): {e}",
            file.display()
        )
    })?;
    Ok(ebb_client::Trust::CaPem(pem))
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}
