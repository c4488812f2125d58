//! Fuzz target: a chunked body, fed to the router's decoder whole and split.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ebb_router::fuzz::chunked(data));
