//! Port allocation: ask the kernel for a free port on `host` (bind port 0, read it, release it),
//! never one that another local instance holds, even while that instance is down in back-off.

use std::collections::BTreeSet;
use std::io;
use std::net::TcpListener;

/// Kernel picks before giving up; a collision with `in_use` is rare, so a few suffice.
const ATTEMPTS: usize = 32;

/// A port for an instance: `preferred` (its previous one) when still free, else a new one.
pub fn allocate(host: &str, in_use: &BTreeSet<u16>, preferred: Option<u16>) -> io::Result<u16> {
    if let Some(port) = preferred.filter(|p| !in_use.contains(p)) {
        if TcpListener::bind((host, port)).is_ok() {
            return Ok(port);
        }
    }
    for _ in 0..ATTEMPTS {
        let port = TcpListener::bind((host, 0))?.local_addr()?.port();
        if !in_use.contains(&port) {
            return Ok(port);
        }
    }
    Err(io::Error::other(format!(
        "no free port on {host} after {ATTEMPTS} tries"
    )))
}

/// `host:port`, with brackets around an IPv6 host.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocated_ports_avoid_those_in_use_and_keep_the_preferred_one() {
        let first = allocate("127.0.0.1", &BTreeSet::new(), None).unwrap();
        assert_eq!(
            allocate("127.0.0.1", &BTreeSet::new(), Some(first)).unwrap(),
            first
        );
        let taken: BTreeSet<u16> = [first].into();
        assert_ne!(allocate("127.0.0.1", &taken, Some(first)).unwrap(), first);
        let _held = TcpListener::bind(("127.0.0.1", first)).unwrap();
        assert_ne!(
            allocate("127.0.0.1", &BTreeSet::new(), Some(first)).unwrap(),
            first
        );
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(join_host_port("::1", 80), "[::1]:80");
        assert_eq!(join_host_port("10.0.0.1", 80), "10.0.0.1:80");
    }
}
