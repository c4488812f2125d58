//! Fuzz targets of the router's HTTP/1.1 parsers: what `fuzz/` at the repository root runs
//! under libFuzzer (nightly), and what `tests/fuzz_corpus.rs` replays on every test run from
//! the seed corpora. Not part of the router's API.

/// A client's request head, parsed and rewritten for the endpoint.
pub fn request_head(data: &[u8]) {
    crate::http::fuzzing::request_head(data);
}

/// An endpoint's response head (the first byte says what request it answers).
pub fn response_head(data: &[u8]) {
    crate::http::fuzzing::response_head(data);
}

/// A chunked body, fed whole and split (the first byte says where).
pub fn chunked(data: &[u8]) {
    crate::http::fuzzing::chunked(data);
}
