//! Consistent-hashing keys from request data other than the client address.

/// The consistent-hashing key of a header value: FNV-1a over its bytes, so that requests with
/// the same value (a user or session id) keep reaching the same instance while the set is
/// unchanged.
pub fn bytes_key(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::bytes_key;

    #[test]
    fn equal_values_share_a_key_and_different_ones_differ() {
        assert_eq!(bytes_key(b"user-1"), bytes_key(b"user-1"));
        assert_ne!(bytes_key(b"user-1"), bytes_key(b"user-2"));
    }
}
