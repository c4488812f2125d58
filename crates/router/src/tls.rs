//! TLS termination on a service's port: the certificates (several, chosen by SNI), read from
//! PEM files and read again when the files change, and the rustls acceptor that offers HTTP/2
//! and HTTP/1.1 through ALPN.
//!
//! A changed file is picked up by [`Terminator::reload_if_changed`] (the server calls it every
//! second): new handshakes get the new certificate, connections already open keep theirs. A
//! file that no longer loads leaves the last good certificates in place, and says why.

use arc_swap::ArcSwap;
use ebb_core::CertificateFiles;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio_rustls::TlsAcceptor;

/// ALPN protocols offered, in order of preference: HTTP/2, then HTTP/1.1.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Largest certificate or key file read: real chains are a few KiB.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Why a service's certificates cannot be served; the message names the file and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

/// One certificate ready to serve, with the names it is valid for.
struct Served {
    key: Arc<CertifiedKey>,
    /// DNS names of the leaf (subject alternative names, else the common name), lower case;
    /// `*.example.com` matches one label.
    names: Vec<String>,
}

/// The certificates of one listener; the first is the default.
struct Certificates {
    served: Vec<Served>,
}

impl Certificates {
    /// The certificate for `sni`: the first one valid for the name, else the default.
    fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let chosen = sni.and_then(|name| {
            let name = name.to_ascii_lowercase();
            self.served
                .iter()
                .find(|s| s.names.iter().any(|pattern| matches_name(pattern, &name)))
        });
        chosen.or(self.served.first()).map(|s| s.key.clone())
    }
}

/// Whether certificate name `pattern` covers `name` (both lower case): equal, or a wildcard
/// `*.rest` standing for exactly one label before `.rest` (RFC 6125 §6.4.3).
fn matches_name(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(rest) => name
            .split_once('.')
            .is_some_and(|(label, tail)| !label.is_empty() && tail == rest),
        None => pattern == name,
    }
}

/// Picks the certificate for each handshake from the current set, swapped whole on reload.
#[derive(Debug)]
struct Resolver {
    current: ArcSwap<Certificates>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&Vec<String>> = self.served.iter().map(|s| &s.names).collect();
        f.debug_struct("Certificates")
            .field("names", &names)
            .finish()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load().pick(hello.server_name())
    }
}

/// What identifies a file's content without reading it: a change of any of these is a new
/// certificate to load.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &str) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

/// A service's TLS: the acceptor, and the files it was loaded from.
pub struct Terminator {
    acceptor: TlsAcceptor,
    resolver: Arc<Resolver>,
    files: Vec<CertificateFiles>,
    stamps: std::sync::Mutex<Vec<Option<Stamp>>>,
}

impl std::fmt::Debug for Terminator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminator")
            .field("files", &self.files)
            .finish()
    }
}

/// What a load found worth saying without refusing the certificates (an expired one is served
/// still: refusing it would take the service down; clients decide).
pub type Warnings = Vec<String>;

impl Terminator {
    /// Loads every certificate and key; an error names the first file that does not load.
    pub fn load(
        files: &[CertificateFiles],
        now: SystemTime,
    ) -> Result<(Terminator, Warnings), TlsError> {
        let stamps = files_stamps(files);
        let (certificates, warnings) = load_all(files, now)?;
        let resolver = Arc::new(Resolver {
            current: ArcSwap::from_pointee(certificates),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(format!("TLS setup: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        // Resumption by ticket as well as by session id, as nginx and HAProxy offer it.
        if let Ok(ticketer) = rustls::crypto::ring::Ticketer::new() {
            config.ticketer = ticketer;
        }
        let terminator = Terminator {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            resolver,
            files: files.to_vec(),
            stamps: std::sync::Mutex::new(stamps),
        };
        Ok((terminator, warnings))
    }

    /// The rustls acceptor for new connections.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Loads the files again if any changed since the last load: `None` when none did;
    /// `Some(Ok(warnings))` when the new certificates are now served; `Some(Err)` when they do
    /// not load (the previous ones stay, and the same files are not tried again until one
    /// changes: a certificate replaced before its key loads once the key is written too).
    pub fn reload_if_changed(&self, now: SystemTime) -> Option<Result<Warnings, TlsError>> {
        let stamps = files_stamps(&self.files);
        let mut last = self.stamps.lock().unwrap_or_else(|p| p.into_inner());
        if *last == stamps {
            return None;
        }
        match load_all(&self.files, now) {
            Ok((certificates, warnings)) => {
                self.resolver.current.store(Arc::new(certificates));
                *last = stamps;
                Some(Ok(warnings))
            }
            Err(e) => {
                // Not retried until a file changes again: one message per bad version.
                *last = stamps;
                Some(Err(e))
            }
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn files_stamps(files: &[CertificateFiles]) -> Vec<Option<Stamp>> {
    files
        .iter()
        .flat_map(|f| [stamp(&f.cert), stamp(&f.key)])
        .collect()
}

/// Checks that `files` load: what the server runs before accepting a deploy.
pub fn check(files: &[CertificateFiles], now: SystemTime) -> Result<Warnings, TlsError> {
    load_all(files, now).map(|(_, warnings)| warnings)
}

fn load_all(
    files: &[CertificateFiles],
    now: SystemTime,
) -> Result<(Certificates, Warnings), TlsError> {
    let mut served = Vec::with_capacity(files.len());
    let mut warnings = Vec::new();
    for f in files {
        let (one, warning) = load_one(f, now)?;
        served.push(one);
        warnings.extend(warning);
    }
    if served.is_empty() {
        return Err(TlsError("no certificate given".into()));
    }
    Ok((Certificates { served }, warnings))
}

fn read_pem(path: &str, what: &str) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| TlsError(format!("cannot read the {what} {path}: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| TlsError(format!("cannot read the {what} {path}: {e}")))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError(format!(
            "the {what} {path} is larger than {} KiB: is it the right file?",
            MAX_PEM_BYTES / 1024
        )));
    }
    Ok(bytes)
}

/// One certificate chain and its key, checked to belong together.
fn load_one(f: &CertificateFiles, now: SystemTime) -> Result<(Served, Option<String>), TlsError> {
    let cert_pem = read_pem(&f.cert, "certificate")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError(format!("the certificate {} is not valid PEM: {e}", f.cert)))?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError(format!(
            "the certificate {} holds no certificate (expected -----BEGIN CERTIFICATE-----)",
            f.cert
        )));
    };
    let (names, not_before, not_after) = leaf_facts(leaf)
        .map_err(|e| TlsError(format!("the certificate {} cannot be parsed: {e}", f.cert)))?;
    let key_pem = read_pem(&f.key, "key")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        TlsError(format!(
            "the key {} is not a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
            f.key
        ))
    })?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError(format!("the key {} cannot be used: {e}", f.key)))?;
    let certified = CertifiedKey::new(chain, signing);
    if let Err(e) = certified.keys_match() {
        return Err(TlsError(format!(
            "the key {} does not belong to the certificate {} ({e})",
            f.key, f.cert
        )));
    }
    let now_s = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let warning = if now_s > not_after {
        Some(format!(
            "the certificate {} expired {} days ago: clients will refuse it; renew it (the file is read again when it changes)",
            f.cert,
            (now_s - not_after) / 86_400
        ))
    } else if now_s < not_before {
        Some(format!(
            "the certificate {} is not valid yet (it starts in {} hours)",
            f.cert,
            (not_before - now_s) / 3_600
        ))
    } else {
        None
    };
    let served = Served {
        key: Arc::new(certified),
        names,
    };
    Ok((served, warning))
}

/// The leaf's DNS names (SANs, else the subject CN) and its validity, in Unix seconds.
fn leaf_facts(der: &CertificateDer<'_>) -> Result<(Vec<String>, i64, i64), String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| e.to_string())?;
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .map(str::to_ascii_lowercase)
            .collect();
    }
    let validity = cert.validity();
    Ok((
        names,
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_exactly_or_by_one_wildcard_label() {
        assert!(matches_name("a.example.com", "a.example.com"));
        assert!(matches_name("*.example.com", "a.example.com"));
        assert!(!matches_name("*.example.com", "example.com"));
        assert!(!matches_name("*.example.com", "a.b.example.com"));
        assert!(!matches_name("*.example.com", ".example.com"));
        assert!(!matches_name("a.example.com", "b.example.com"));
    }
}
