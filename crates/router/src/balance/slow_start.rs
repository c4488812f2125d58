//! Slow start: a new endpoint's share of traffic ramps up linearly over a window.
//!
//! Envoy's slow start mode with its default aggression of 1: an endpoint of age `a` in a window
//! `W` has weight `max(MIN_SLOW_START_WEIGHT, a / W)`, and 1 from `W` on. The age is counted from
//! the endpoint's [`Load`] birth, i.e. from when it entered the set (its instance became ready);
//! an endpoint kept across set updates keeps its age.
//!
//! Weights are relative: when every endpoint is new (a first deployment, a router restart) they
//! all ramp together and get equal shares, as in Envoy. Slow start helps where a few endpoints
//! join many warm ones: a scale-up, a replaced instance, a rolling update.

use crate::endpoint::Load;
use std::time::{Duration, Instant};

/// The least weight an endpoint in slow start gets, as a fraction of a warm endpoint's: 10 %,
/// Envoy's `min_weight_percent` default. Without a floor a brand-new endpoint would get no
/// traffic at all at first and could not warm up (nor show that it is healthy).
pub const MIN_SLOW_START_WEIGHT: f64 = 0.1;

/// A slow-start window; zero is off. `Copy` and two words: balancers keep it by value and test
/// [`SlowStart::is_off`] first, so the off path reads no clock and no atomic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlowStart {
    window: Duration,
}

impl SlowStart {
    /// No ramp: every endpoint has weight 1 from the start.
    pub const OFF: SlowStart = SlowStart {
        window: Duration::ZERO,
    };

    /// A ramp over `window`; zero is [`SlowStart::OFF`].
    pub fn new(window: Duration) -> SlowStart {
        SlowStart { window }
    }

    /// How long a new endpoint ramps up; zero when off.
    pub fn window(self) -> Duration {
        self.window
    }

    /// Whether slow start is off (zero window): every endpoint has weight 1.
    pub fn is_off(self) -> bool {
        self.window.is_zero()
    }

    /// The weight in `[MIN_SLOW_START_WEIGHT, 1]` of an endpoint with this load at `now`.
    pub fn weight(self, load: &Load, now: Instant) -> f64 {
        slow_start_weight(load.age(now), self.window)
    }
}

/// The weight of an endpoint of `age` in a slow-start `window`: `max(MIN_SLOW_START_WEIGHT,
/// age / window)`, capped at 1; always 1 when the window is zero (off). Pure.
pub fn slow_start_weight(age: Duration, window: Duration) -> f64 {
    if age >= window {
        return 1.0;
    }
    (age.as_secs_f64() / window.as_secs_f64()).max(MIN_SLOW_START_WEIGHT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::{
        build, testing, BalanceAlgorithm, Balancer, LeastRequest, PeakEwma, RoundRobin,
    };
    use crate::endpoint::EndpointSet;

    const S: Duration = Duration::from_secs(1);
    const WINDOW: Duration = Duration::from_secs(60);
    const OLD: usize = 3;
    const PICKS: usize = 20_000;

    /// The three balancers slow start applies to, with the ramp on (or off for a zero window).
    fn balancers(window: Duration, seed: u64) -> [(&'static str, Box<dyn Balancer>); 3] {
        [
            (
                "round_robin",
                Box::new(RoundRobin::new().with_slow_start(window)),
            ),
            (
                "least_request",
                Box::new(LeastRequest::with_seed(seed).with_slow_start(window)),
            ),
            (
                "peak_ewma",
                Box::new(PeakEwma::with_seed(seed).with_slow_start(window)),
            ),
        ]
    }

    /// `OLD` warm endpoints and one that joined `age` before `now`, all with the same latency.
    fn newcomer_aged(age: Duration) -> (EndpointSet, Instant) {
        let t0 = Instant::now();
        let now = t0 + 10 * WINDOW;
        let set = testing::with_newcomer(OLD, t0, now - age);
        for e in &set.endpoints {
            // Above the 30 ms seed, so the sample replaces every estimate: equal at `now`.
            e.load.start();
            e.load.end(Some(Duration::from_millis(50)), now);
        }
        (set, now)
    }

    /// The newcomer's picks over the average warm endpoint's, when every pick starts a request
    /// that stays in flight (so P2C balances in-flight counts, as under steady load).
    fn relative_share(b: &dyn Balancer, set: &EndpointSet, now: Instant) -> f64 {
        let mut counts = [0u32; OLD + 1];
        for _ in 0..PICKS {
            let i = b.pick(set, None, now).unwrap();
            counts[i] += 1;
            set.endpoints[i].load.start();
        }
        let old = counts[..OLD].iter().sum::<u32>() as f64 / OLD as f64;
        f64::from(counts[OLD]) / old
    }

    #[test]
    fn the_weight_ramps_linearly_from_the_floor_to_one() {
        let w = 10 * S;
        assert_eq!(slow_start_weight(Duration::ZERO, w), MIN_SLOW_START_WEIGHT);
        assert_eq!(slow_start_weight(S / 2, w), MIN_SLOW_START_WEIGHT);
        assert_eq!(slow_start_weight(2 * S, w), 0.2);
        assert_eq!(slow_start_weight(5 * S, w), 0.5);
        assert_eq!(slow_start_weight(10 * S, w), 1.0);
        assert_eq!(slow_start_weight(1_000 * S, w), 1.0);
    }

    #[test]
    fn a_zero_window_is_off() {
        assert_eq!(slow_start_weight(Duration::ZERO, Duration::ZERO), 1.0);
        assert!(SlowStart::OFF.is_off());
        assert!(SlowStart::default().is_off());
        assert!(!SlowStart::new(S).is_off());
    }

    #[test]
    fn the_weight_follows_the_loads_age_and_ignores_a_clock_reading_before_its_birth() {
        let t0 = Instant::now() + S;
        let load = Load::new(t0);
        let ramp = SlowStart::new(4 * S);
        assert_eq!(ramp.weight(&load, t0 + S), 0.25);
        assert_eq!(ramp.weight(&load, t0 - S), MIN_SLOW_START_WEIGHT);
    }

    #[test]
    fn a_newcomer_gets_a_tenth_of_a_warm_share_at_first_and_an_equal_one_after_the_window() {
        for seed in [1, 2] {
            for (name, b) in balancers(WINDOW, seed) {
                let (set, now) = newcomer_aged(Duration::ZERO);
                let first = relative_share(b.as_ref(), &set, now);
                assert!((0.08..0.12).contains(&first), "{name} at age 0: {first}");
            }
            for (name, b) in balancers(WINDOW, seed) {
                let (set, now) = newcomer_aged(WINDOW);
                let after = relative_share(b.as_ref(), &set, now);
                assert!(
                    (0.97..1.03).contains(&after),
                    "{name} at the window: {after}"
                );
            }
        }
    }

    #[test]
    fn a_newcomers_share_grows_with_its_age_through_the_window() {
        for (name, _) in balancers(WINDOW, 0) {
            let mut shares = Vec::new();
            for quarter in 1..=3u32 {
                let (set, now) = newcomer_aged(WINDOW * quarter / 4);
                let b = balancers(WINDOW, 3)
                    .into_iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, b)| b)
                    .unwrap();
                let share = relative_share(b.as_ref(), &set, now);
                let weight = f64::from(quarter) / 4.0;
                assert!((share - weight).abs() < 0.03, "{name} at {weight}: {share}");
                shares.push(share);
            }
            assert!(shares.windows(2).all(|w| w[0] < w[1]), "{name}: {shares:?}");
        }
    }

    #[test]
    fn with_a_zero_window_every_pick_is_what_it_was_without_slow_start() {
        let (set, now) = newcomer_aged(Duration::ZERO);
        let unchanged: [(&str, Box<dyn Balancer>); 3] = [
            ("round_robin", Box::new(RoundRobin::new())),
            ("least_request", Box::new(LeastRequest::with_seed(5))),
            ("peak_ewma", Box::new(PeakEwma::with_seed(5))),
        ];
        for ((name, off), (_, plain)) in balancers(Duration::ZERO, 5).into_iter().zip(unchanged) {
            for _ in 0..1_000 {
                let i = off.pick(&set, None, now).unwrap();
                assert_eq!(Some(i), plain.pick(&set, None, now), "{name}");
                set.endpoints[i].load.start();
            }
        }
        let (set, now) = newcomer_aged(Duration::ZERO);
        for (name, b) in balancers(Duration::ZERO, 6) {
            let share = relative_share(b.as_ref(), &set, now);
            assert!((0.97..1.03).contains(&share), "{name}: {share}");
        }
    }

    #[test]
    fn an_idle_newcomer_loses_to_idle_warm_endpoints_during_the_ramp() {
        let t0 = Instant::now();
        let now = t0 + 10 * WINDOW;
        let set = testing::with_newcomer(OLD, t0, now - WINDOW / 2);
        let b = LeastRequest::with_seed(8).with_slow_start(WINDOW);
        assert!((0..1_000).all(|_| b.pick(&set, None, now) != Some(OLD)));
        // Without slow start it ties, and wins half the pairs it is drawn in.
        let b = LeastRequest::with_seed(8);
        let won = (0..1_000)
            .filter(|_| b.pick(&set, None, now) == Some(OLD))
            .count();
        assert!((200..300).contains(&won), "{won}");
    }

    #[test]
    fn build_with_ramps_every_algorithm_but_hash() {
        let (set, now) = newcomer_aged(Duration::ZERO);
        for a in [
            BalanceAlgorithm::RoundRobin,
            BalanceAlgorithm::LeastRequest,
            BalanceAlgorithm::PeakEwma,
        ] {
            let share = relative_share(build(a, WINDOW).as_ref(), &set, now);
            assert!((0.08..0.12).contains(&share), "{a}: {share}");
        }
        // Hashing keeps every key where the ring puts it, new endpoint or not.
        let (ramped, plain) = (
            build(BalanceAlgorithm::Hash, WINDOW),
            build(BalanceAlgorithm::Hash, Duration::ZERO),
        );
        let owner = |b: &dyn Balancer, key| b.pick(&set, Some(key), now);
        assert!((0..1_000).all(|k| owner(ramped.as_ref(), k) == owner(plain.as_ref(), k)));
        assert!((0..1_000).any(|k| owner(ramped.as_ref(), k) == Some(OLD)));
    }
}
