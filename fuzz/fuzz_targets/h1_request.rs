//! Fuzz target: a client's HTTP/1.1 request head, as the router parses and rewrites it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ebb_router::fuzz::request_head(data));
