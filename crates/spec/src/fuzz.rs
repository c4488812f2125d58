//! The deploy-file parser as a fuzz target: what `fuzz/` at the repository root runs under
//! libFuzzer (nightly) and `tests/fuzz_corpus.rs` replays from the seed corpus. Not part of the
//! crate's API.

use ebb_core::ServiceSpec;
use std::path::Path;

/// Any text as a deploy file: parsed, or refused with errors that render; a parsed service is
/// valid by ebb-core's own rules and survives the trip through the API's JSON.
pub fn deploy_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match crate::parse_str("fuzz.toml", text, Path::new("/srv/app")) {
        Ok(specs) => {
            for spec in specs {
                let problems = spec.validate();
                assert!(problems.is_empty(), "parsed yet invalid: {problems:?}");
                let json = match serde_json::to_vec(&spec) {
                    Ok(json) => json,
                    Err(e) => panic!("a parsed spec does not serialize: {e}"),
                };
                match serde_json::from_slice::<ServiceSpec>(&json) {
                    Ok(back) => assert_eq!(back, spec, "JSON round trip"),
                    Err(e) => panic!("a parsed spec does not read back: {e}"),
                }
            }
        }
        Err(errors) => {
            let _ = errors.render();
        }
    }
}
