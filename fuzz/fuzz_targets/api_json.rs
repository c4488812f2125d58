//! Fuzz target: any bytes as the API's JSON request bodies.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ebb_core::fuzz::api_bodies(data));
