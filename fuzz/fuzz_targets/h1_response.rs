//! Fuzz target: an instance's HTTP/1.1 response head, as the router parses and rewrites it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ebb_router::fuzz::response_head(data));
