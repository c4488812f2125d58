//! The fuzz targets of the HTTP/1.1 parsers, replayed on every test run from their seed
//! corpora (`fuzz/corpus/`, grown by `bench/fuzz.sh`): what libFuzzer found interesting, and any
//! input that once broke them, stays a test.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use ebb_testkit::fuzz_corpus;

#[test]
fn the_request_head_corpus_replays() {
    for (_name, data) in fuzz_corpus("h1_request") {
        ebb_router::fuzz::request_head(&data);
    }
}

#[test]
fn the_response_head_corpus_replays() {
    for (_name, data) in fuzz_corpus("h1_response") {
        ebb_router::fuzz::response_head(&data);
    }
}

#[test]
fn the_chunked_body_corpus_replays() {
    for (_name, data) in fuzz_corpus("chunked") {
        ebb_router::fuzz::chunked(&data);
    }
}
