//! The deploy-file fuzz target, replayed on every test run from its seed corpus
//! (`fuzz/corpus/deploy_file/`, grown by `bench/fuzz.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

#[test]
fn the_deploy_file_corpus_replays() {
    let corpus = ebb_testkit::fuzz_corpus("deploy_file");
    // The seeds include every example: they must parse, not merely not panic.
    let examples: Vec<_> = corpus
        .iter()
        .filter(|(name, _)| name.starts_with("example-"))
        .collect();
    assert!(!examples.is_empty());
    for (name, data) in &examples {
        let text = std::str::from_utf8(data).unwrap();
        let parsed = ebb_spec::parse_str(name, text, std::path::Path::new("/srv/app"));
        assert!(parsed.is_ok(), "{name}: {}", parsed.err().unwrap().render());
    }
    for (_name, data) in corpus {
        ebb_spec::fuzz::deploy_file(&data);
    }
}
