//! Models of the peers ebb is compared with, from their documented defaults.
//!
//! - [`Hpa`]: Kubernetes' HorizontalPodAutoscaler (`autoscaling/v2`) on a requests-per-second
//!   metric with an `AverageValue` target: a sync every 15 s on the last 15 s mean, ±10 %
//!   tolerance, scale-down to the highest recommendation of the last 300 s, scale-up by at most
//!   max(4 pods, 100 %) per 15 s, never below one pod.
//! - [`Kpa`]: Knative's Pod Autoscaler on concurrency: a 2 s tick, a 60 s stable and a 6 s panic
//!   window, 70 % target utilization, panic when the panic window asks for ≥ 2× the ready pods
//!   and until 60 s after that last held (no scale-down meanwhile), scale-down by at most half
//!   per tick, to zero when the stable window saw no request, and the activator asking at once
//!   when a request meets zero pods.

use crate::model::{ceil_count, Policy, View, SERVICE_TIME_S};
use std::collections::VecDeque;

/// Sums of the last `len` values pushed.
#[derive(Debug, Clone)]
struct Window {
    len: usize,
    values: VecDeque<f64>,
    sum: f64,
    /// Values above zero in the window (a sum of floats can drift off zero).
    positive: usize,
}

impl Window {
    fn new(len: usize) -> Window {
        Window {
            len,
            values: VecDeque::with_capacity(len + 1),
            sum: 0.0,
            positive: 0,
        }
    }

    fn push(&mut self, v: f64) {
        self.values.push_back(v);
        self.sum += v;
        self.positive += usize::from(v > 0.0);
        if self.values.len() > self.len {
            let old = self.values.pop_front().unwrap_or(0.0);
            self.sum -= old;
            self.positive -= usize::from(old > 0.0);
        }
    }

    fn is_quiet(&self) -> bool {
        self.positive == 0
    }

    fn mean(&self) -> f64 {
        // Sums of floats drift: never below zero.
        (self.sum / self.values.len().max(1) as f64).max(0.0)
    }
}

/// HPA: sync period 15 s.
pub const HPA_SYNC_S: u64 = 15;
/// HPA: tolerance ±10 %.
pub const HPA_TOLERANCE: f64 = 0.1;
/// HPA: scale-down stabilization window 300 s.
pub const HPA_DOWN_WINDOW_S: u64 = 300;
/// HPA: scale-up policies per 15 s: 4 pods or 100 %, whichever is more.
pub const HPA_UP_PODS: u32 = 4;

/// Kubernetes' HPA on requests per second per pod.
#[derive(Debug, Clone)]
pub struct Hpa {
    target_rps: f64,
    min: u32,
    max: u32,
    load: Window,
    /// (second, recommendation) of the last 300 s.
    recommendations: VecDeque<(u64, u32)>,
}

impl Hpa {
    /// Targets `target_rps` per pod within `min ..= max` (min at least 1: an HPA never scales
    /// to zero).
    pub fn new(target_rps: f64, min: u32, max: u32) -> Hpa {
        Hpa {
            target_rps,
            min: min.max(1),
            max: max.max(1),
            load: Window::new(HPA_SYNC_S as usize),
            recommendations: VecDeque::new(),
        }
    }
}

impl Policy for Hpa {
    fn decide(&mut self, load: f64, view: View) -> u32 {
        self.load.push(load);
        let current = view.total;
        if !(view.second + 1).is_multiple_of(HPA_SYNC_S) {
            return current.clamp(self.min, self.max);
        }
        let mean = self.load.mean();
        let per_pod = mean / f64::from(view.ready.max(1));
        let ratio = per_pod / self.target_rps;
        let recommendation = if (ratio - 1.0).abs() <= HPA_TOLERANCE {
            current
        } else {
            ceil_count(mean / self.target_rps)
        }
        .clamp(self.min, self.max);
        let s = view.second;
        self.recommendations.push_back((s, recommendation));
        while self
            .recommendations
            .front()
            .is_some_and(|&(at, _)| at + HPA_DOWN_WINDOW_S <= s)
        {
            self.recommendations.pop_front();
        }
        if recommendation < current {
            let highest = self.recommendations.iter().map(|r| r.1).max();
            highest.unwrap_or(recommendation).min(current)
        } else {
            let limit = current
                .saturating_add(HPA_UP_PODS)
                .max(current.saturating_mul(2));
            recommendation.min(limit)
        }
    }
}

/// KPA: tick 2 s.
pub const KPA_TICK_S: u64 = 2;
/// KPA: stable window 60 s.
pub const KPA_STABLE_S: usize = 60;
/// KPA: panic window 10 % of the stable window.
pub const KPA_PANIC_S: usize = 6;
/// KPA: target utilization 70 %.
pub const KPA_UTILIZATION: f64 = 0.7;
/// KPA: panic threshold 200 % of the ready pods.
pub const KPA_PANIC_THRESHOLD: f64 = 2.0;
/// KPA: max scale-down rate 2 (at most half per tick).
pub const KPA_DOWN_RATE: u32 = 2;

/// Knative's KPA on concurrency per pod.
#[derive(Debug, Clone)]
pub struct Kpa {
    target: f64,
    min: u32,
    max: u32,
    stable: Window,
    panic_window: Window,
    /// The second the panic condition last held, while panicking.
    panic_since: Option<u64>,
    panicking: bool,
}

impl Kpa {
    /// Targets `target` requests in flight per pod (of which 70 % is aimed at) within
    /// `min ..= max`.
    pub fn new(target: f64, min: u32, max: u32) -> Kpa {
        Kpa {
            target,
            min,
            max,
            stable: Window::new(KPA_STABLE_S),
            panic_window: Window::new(KPA_PANIC_S),
            panic_since: None,
            panicking: false,
        }
    }

    fn per_pod(&self) -> f64 {
        self.target * KPA_UTILIZATION
    }
}

impl Policy for Kpa {
    fn decide(&mut self, load: f64, view: View) -> u32 {
        let concurrency = load * SERVICE_TIME_S;
        self.stable.push(concurrency);
        self.panic_window.push(concurrency);
        let current = view.total;
        if view.total == 0 && load > 0.0 {
            // The activator holds the request and asks at once.
            return ceil_count(concurrency / self.per_pod())
                .max(1)
                .clamp(self.min, self.max.max(1));
        }
        if !(view.second + 1).is_multiple_of(KPA_TICK_S) {
            return current;
        }
        let s = view.second;
        let stable = ceil_count(self.stable.mean() / self.per_pod());
        let panic = ceil_count(self.panic_window.mean() / self.per_pod());
        let ready = f64::from(view.ready.max(1));
        if f64::from(panic) / ready >= KPA_PANIC_THRESHOLD {
            self.panic_since = Some(s);
        } else if self
            .panic_since
            .is_some_and(|at| s > at + KPA_STABLE_S as u64)
        {
            self.panic_since = None;
        }
        self.panicking = self.panic_since.is_some();
        let want = if self.panicking {
            panic.max(current)
        } else {
            stable.max(current / KPA_DOWN_RATE)
        };
        let want = if self.stable.is_quiet() { 0 } else { want };
        want.clamp(self.min, self.max)
    }

    fn panicking(&self) -> bool {
        self.panicking
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{replay, Model};

    const MODEL: Model = Model {
        capacity: 10.0,
        start_delay_s: 5,
    };

    #[test]
    fn hpa_follows_a_step_at_its_sync_and_holds_for_five_minutes() {
        let mut load = vec![10.0; 60];
        load.extend(vec![80.0; 120]);
        load.extend(vec![10.0; 600]);
        let mut hpa = Hpa::new(10.0, 1, 100);
        let (out, seconds) = replay(&MODEL, &load, &mut hpa, 1, 0..load.len());
        // The step at 60 is seen at the sync ending at second 74: 1 → max(1 + 4, 2) = 5, then 8.
        assert_eq!(seconds[74].desired, 5);
        assert_eq!(seconds[89].desired, 8);
        // Back to 10 req/s at 180: held at 8 until 300 s after the last recommendation of 8.
        assert_eq!(seconds[400].desired, 8);
        assert_eq!(seconds[779].desired, 1);
        assert!(out.missed_seconds > 0);
    }

    #[test]
    fn kpa_panics_on_a_step_scales_to_zero_and_wakes_at_once() {
        let mut load = vec![7.0; 60];
        load.extend(vec![70.0; 30]);
        load.extend(vec![0.0; 200]);
        load.push(7.0);
        let mut kpa = Kpa::new(1.0, 0, 100);
        let (out, seconds) = replay(&MODEL, &load, &mut kpa, 1, 0..load.len());
        assert!(out.panic_seconds > 0);
        // 70 req/s: 7 in flight / 0.7 per pod = 10 pods.
        assert!(
            seconds[70..90].iter().any(|s| s.desired == 10),
            "{:?}",
            &seconds[60..90]
        );
        assert_eq!(seconds[280].desired, 0);
        assert_eq!(seconds[290].desired, 1, "the activator asks at once");
    }
}
