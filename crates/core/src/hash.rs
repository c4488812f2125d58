//! Two small, fixed hash functions that several crates need, written once.
//!
//! Both are stable across Rust releases and platforms, unlike
//! `std::collections::hash_map::DefaultHasher`, whose algorithm is unspecified: what they
//! compute may be stored (an agent's id) or must agree between processes (a placement's tie
//! break, a client's instance under consistent hashing).

/// FNV-1a's 64-bit offset basis (Fowler, Noll, Vo).
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a's 64-bit prime, 2^40 + 2^8 + 0xb3.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a of `bytes`: a few instructions per byte, good spread on short keys (names,
/// addresses, paths).
#[inline]
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// SplitMix64's increment (Steele, Lea, Flood 2014), the golden-ratio constant 2^64 / φ: a
/// stream's state advances by it before each [`splitmix64_mix`].
pub const SPLITMIX64_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a bijection that spreads every input bit over the output, so
/// nearby inputs give unrelated words. One step of a SplitMix64 stream is
/// `splitmix64_mix(state += SPLITMIX64_GAMMA)`.
#[inline]
pub fn splitmix64_mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// SHA-256 of `bytes` in lower-case hex: node credentials as the store keeps them, and the
/// API CA's identity in join tokens.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_the_fips_180_test_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn splitmix64_matches_the_reference_stream() {
        // The reference implementation seeded with 0 yields these first two words.
        let mut state = 0u64;
        let mut next = || {
            state = state.wrapping_add(SPLITMIX64_GAMMA);
            splitmix64_mix(state)
        };
        assert_eq!(next(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(next(), 0x6e78_9e6a_a1b9_65f4);
    }
}
