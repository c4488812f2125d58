//! The API JSON fuzz target, replayed on every test run from its seed corpus
//! (`fuzz/corpus/api_json/`, grown by `bench/fuzz.sh`).

#[test]
fn the_api_json_corpus_replays() {
    for (_name, data) in ebb_testkit::fuzz_corpus("api_json") {
        ebb_core::fuzz::api_bodies(&data);
    }
}
