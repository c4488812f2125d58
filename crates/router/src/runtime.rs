//! The data plane's own tokio runtime, built the same way by the server (`ebb up`) and by the
//! router benchmark (`examples/bench_proxy.rs`), so that the figures in BENCHMARKS.md are those
//! of the runtime users run.

use std::io;

/// Builds the router's multi-threaded runtime with `threads` workers (`--router-threads`);
/// `None` or 0 means one per core, like nginx's `worker_processes auto`.
///
/// It is separate from the control plane's runtime so that proxying never waits behind an API
/// call, a health check or a database write.
pub fn build(threads: Option<usize>) -> io::Result<tokio::runtime::Runtime> {
    let threads = threads
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("ebb-router")
        .enable_all()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_the_asked_number_of_workers_and_one_per_core_by_default() {
        let one = build(Some(1)).unwrap();
        assert_eq!(one.metrics().num_workers(), 1);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(build(None).unwrap().metrics().num_workers(), cores);
        assert_eq!(build(Some(0)).unwrap().metrics().num_workers(), cores);
        // The workers run spawned tasks (the proxy's connections are spawned, never block_on'd).
        let name = one.block_on(async {
            tokio::spawn(async { std::thread::current().name().map(str::to_owned) })
                .await
                .unwrap()
        });
        assert_eq!(name.as_deref(), Some("ebb-router"));
        one.shutdown_background();
    }
}
