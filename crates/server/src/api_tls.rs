//! TLS for the API: a certificate authority and a server certificate that ebb makes in its data
//! dir on first start (rcgen), and the rustls configuration that serves them.
//!
//! Clients do not need a public CA: the CLI on the server's machine trusts `tls/ca.pem` from
//! the data dir, other machines trust it by `--ca FILE` or by the CA's SHA-256 carried in the
//! join token ([`ebb_core::api::JoinToken`]). They check the chain to that CA, not the name the
//! server is reached by (an address, a load balancer's name, a container's), since the CA is
//! ebb's own and signs nothing else.

use ebb_core::files::{write_synced, PRIVATE};
use ebb_core::hash::sha256_hex;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The folder in the data dir with the API's certificates.
pub const TLS_DIR: &str = "tls";
/// The CA certificate clients trust (public).
pub const CA_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca-key.pem";
const CERT_FILE: &str = "api.pem";
const KEY_FILE: &str = "api-key.pem";
/// Mode of the certificates, which are no secret.
const PUBLIC: u32 = 0o644;

/// The API's TLS: the rustls server configuration and the CA's identity.
pub struct ApiTls {
    /// What the API's listener serves with.
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the CA certificate (DER), lower-case hex: what join tokens carry.
    pub ca_sha256: String,
    /// Where the CA certificate is, for `--ca` and for the CLI on this machine.
    pub ca_path: PathBuf,
}

/// Where the CA certificate of the API whose data dir is `data_dir` is kept.
pub fn ca_path(data_dir: &Path) -> PathBuf {
    data_dir.join(TLS_DIR).join(CA_FILE)
}

/// Loads the API's certificates from `data_dir/tls`, making them on first start: a CA, and a
/// certificate it signs for `localhost`, this machine's name and `listen` (keys 0600).
pub fn load_or_create(data_dir: &Path, listen: IpAddr) -> io::Result<ApiTls> {
    let dir = data_dir.join(TLS_DIR);
    if !dir.join(KEY_FILE).exists() {
        if !dir.join(CA_KEY_FILE).exists() {
            create_ca(&dir)?;
        }
        create_leaf(&dir, listen)?;
    }
    load(&dir)
}

/// Where servers sharing an etcd keep the API's CA, certificate and key (under ebb's namespace).
pub const SHARED_CA_KEY: &str = "control/api-ca";

/// The API's CA as the store keeps it for every server.
#[derive(serde::Serialize, serde::Deserialize)]
struct SharedCa {
    cert_pem: String,
    key_pem: String,
}

/// [`load_or_create`] for one of several servers sharing `store`: they all use one CA (the
/// first server's), each with its own certificate signed by it, so that an agent or a client
/// that trusts the CA's hash (in the join token) can move from one server to another.
pub fn load_or_create_shared(
    data_dir: &Path,
    listen: IpAddr,
    store: &dyn ebb_store::KvStore,
) -> io::Result<ApiTls> {
    use ebb_store::KvStoreJsonExt;
    let dir = data_dir.join(TLS_DIR);
    let shared = store
        .get_or_create_json(SHARED_CA_KEY, || {
            // This server's own CA (made now if it has none) becomes the cluster's.
            if !dir.join(CA_KEY_FILE).exists() {
                create_ca(&dir)?;
            }
            Ok(SharedCa {
                cert_pem: fs::read_to_string(dir.join(CA_FILE))?,
                key_pem: fs::read_to_string(dir.join(CA_KEY_FILE))?,
            })
        })
        .map_err(io::Error::other)?;
    let local = fs::read_to_string(dir.join(CA_FILE)).unwrap_or_default();
    if local != shared.cert_pem {
        // Another server's CA is the cluster's: take it, and have it sign a new certificate.
        // The old certificate's key goes first: a crash in between must not leave it to be
        // served beside the new CA.
        ebb_core::files::create_private_dir(&dir)?;
        match fs::remove_file(dir.join(KEY_FILE)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        write_synced(&dir.join(CA_FILE), shared.cert_pem.as_bytes(), PUBLIC)?;
        write_synced(&dir.join(CA_KEY_FILE), shared.key_pem.as_bytes(), PRIVATE)?;
    }
    if !dir.join(KEY_FILE).exists() {
        create_leaf(&dir, listen)?;
    }
    load(&dir)
}

/// The API's TLS from the certificates in `dir`.
fn load(dir: &Path) -> io::Result<ApiTls> {
    let ca_pem = fs::read(dir.join(CA_FILE))?;
    let ca = CertificateDer::from_pem_slice(&ca_pem).map_err(invalid)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join(CERT_FILE))
        .map_err(invalid)?
        .collect::<Result<_, _>>()
        .map_err(invalid)?;
    let key = PrivateKeyDer::from_pem_file(dir.join(KEY_FILE)).map_err(invalid)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(invalid)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(invalid)?;
    Ok(ApiTls {
        config: Arc::new(config),
        ca_sha256: sha256_hex(ca.as_ref()),
        ca_path: dir.join(CA_FILE),
    })
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the API's certificates in the data dir's {TLS_DIR}/: {e}"),
    )
}

/// The CA's parameters: the same every time, so that the CA's key alone can sign again.
fn ca_params() -> io::Result<rcgen::CertificateParams> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(invalid)?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ebb API CA");
    Ok(params)
}

/// Makes the CA: its certificate (public) and key (0600) in `dir`.
fn create_ca(dir: &Path) -> io::Result<()> {
    ebb_core::files::create_private_dir(dir)?;
    let ca_key = rcgen::KeyPair::generate().map_err(invalid)?;
    let ca = ca_params()?.self_signed(&ca_key).map_err(invalid)?;
    write_synced(&dir.join(CA_FILE), ca.pem().as_bytes(), PUBLIC)?;
    write_synced(
        &dir.join(CA_KEY_FILE),
        ca_key.serialize_pem().as_bytes(),
        PRIVATE,
    )
}

/// Makes this server's certificate, signed by the CA in `dir`, for `localhost`, this machine's
/// name and `listen`.
fn create_leaf(dir: &Path, listen: IpAddr) -> io::Result<()> {
    let ca_pem = fs::read_to_string(dir.join(CA_FILE))?;
    let ca_key =
        rcgen::KeyPair::from_pem(&fs::read_to_string(dir.join(CA_KEY_FILE))?).map_err(invalid)?;
    // The issuer: the CA's name and key are what a signature needs and a client checks.
    let issuer = ca_params()?.self_signed(&ca_key).map_err(invalid)?;
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if let Ok(host) = fs::read_to_string("/proc/sys/kernel/hostname") {
        names.extend(Some(host.trim().to_string()).filter(|h| !h.is_empty()));
    }
    if !listen.is_unspecified() {
        names.push(listen.to_string());
    }
    names.dedup();
    let key = rcgen::KeyPair::generate().map_err(invalid)?;
    let mut params = rcgen::CertificateParams::new(names).map_err(invalid)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ebb API");
    let cert = params.signed_by(&key, &issuer, &ca_key).map_err(invalid)?;
    // The chain, leaf first, then the CA as stored: clients that pin the CA by hash find it.
    let chain = format!("{}{ca_pem}", cert.pem());
    write_synced(&dir.join(CERT_FILE), chain.as_bytes(), PUBLIC)?;
    // The key last: its presence says the set is complete.
    write_synced(&dir.join(KEY_FILE), key.serialize_pem().as_bytes(), PRIVATE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn certificates_are_made_once_keys_private_and_the_hash_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path(), "10.0.0.1".parse().unwrap()).unwrap();
        let b = load_or_create(dir.path(), "10.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(a.ca_sha256, b.ca_sha256);
        assert_eq!(a.ca_sha256.len(), 64);
        let mode = |f: &str| {
            fs::metadata(dir.path().join(TLS_DIR).join(f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(CA_KEY_FILE), 0o600);
        assert_eq!(mode(KEY_FILE), 0o600);
        assert_eq!(mode(CA_FILE), 0o644);
        let pem = fs::read(ca_path(dir.path())).unwrap();
        let der = CertificateDer::from_pem_slice(&pem).unwrap();
        assert_eq!(sha256_hex(der.as_ref()), a.ca_sha256);
    }
}
