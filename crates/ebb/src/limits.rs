//! Process limits a serving role needs: every connection to a service port, to the API and to
//! an instance is a file descriptor, and systemd's and most shells' soft limit of 1,024 runs out
//! long before the machine does.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// The kernel's ceiling on any process's open files (`fs.nr_open`), which an unlimited hard
/// limit stands for.
const NR_OPEN: &str = "/proc/sys/fs/nr_open";

/// Raises the soft limit on open files to the hard one, as nginx's `worker_rlimit_nofile` and
/// systemd services with `LimitNOFILE=` do; says so once. Instances inherit the raised limit.
pub fn raise_open_files() {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let ceiling = std::fs::read_to_string(NR_OPEN)
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let Some(wanted) = raised_soft_limit(soft, hard, ceiling) else {
        return;
    };
    match setrlimit(Resource::RLIMIT_NOFILE, wanted, hard) {
        Ok(()) => tracing::info!("raised the open-file limit from {soft} to {wanted}"),
        Err(e) => tracing::warn!("could not raise the open-file limit from {soft}: {e}"),
    }
}

/// How many client connections the services' ports may hold open at once, from the (raised)
/// soft limit on open files; see [`ebb_router::limit::connection_budget`].
pub fn connection_budget() -> usize {
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
    ebb_router::limit::connection_budget(soft)
}

/// The soft limit to set, if it should change: the hard limit, or the kernel's ceiling when the
/// hard limit is unlimited (a soft limit above `fs.nr_open` is refused).
fn raised_soft_limit(soft: u64, hard: u64, ceiling: Option<u64>) -> Option<u64> {
    let target = match ceiling {
        Some(c) => hard.min(c),
        None => hard,
    };
    (target > soft).then_some(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_goes_up_to_the_hard_one_within_the_kernels_ceiling() {
        assert_eq!(
            raised_soft_limit(1024, 524_288, Some(1_048_576)),
            Some(524_288)
        );
        assert_eq!(
            raised_soft_limit(1024, u64::MAX, Some(1_048_576)),
            Some(1_048_576)
        );
        assert_eq!(raised_soft_limit(1024, 1024, Some(1_048_576)), None);
        assert_eq!(raised_soft_limit(4096, 2048, None), None, "never lowered");
    }
}
