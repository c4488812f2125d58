//! Fuzz target: any text as a deploy file.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ebb_spec::fuzz::deploy_file(data));
