//! The two references: the optimal oracle, which knows the future, and a fleet fixed at the peak.

use crate::model::{Model, Outcome};

/// The cheapest fleet that never misses a second.
///
/// Instances are interchangeable, so think of them as layers: layer `k` must serve every second
/// whose load needs more than `k` instances. Each layer on its own is optimal when it starts
/// `d` seconds before each run of needed seconds and keeps its instance through a gap of at most
/// `d` idle seconds (keeping costs the gap, restarting costs `d`). Layers serving at the first
/// second are there from the start, as every replay's initial instances are; a layer first
/// needed at second `s ≤ d` cannot have started in time, so it is there from the start too and
/// costs its `s` idle seconds. `changes` counts the starts.
pub fn oracle(model: &Model, load: &[f64]) -> Outcome {
    let d = model.start_delay_s;
    // The last second each layer served.
    let mut last: Vec<u64> = Vec::new();
    let mut out = Outcome {
        seconds: load.len() as u64,
        ..Outcome::default()
    };
    let initial = load.first().map_or(0, |l| model.needed(*l)) as usize;
    for (i, &lambda) in load.iter().enumerate() {
        let s = i as u64;
        let n = model.needed(lambda) as usize;
        for k in 0..n {
            match last.get(k) {
                Some(&end) => {
                    let gap = s - end - 1;
                    if gap > d {
                        out.instance_seconds += d;
                        out.changes += 1;
                    } else {
                        out.instance_seconds += gap;
                    }
                    last[k] = s;
                }
                None => {
                    if !(s == 0 && k < initial) {
                        out.instance_seconds += d.min(s);
                        out.changes += u64::from(s > d);
                    }
                    last.push(s);
                }
            }
            out.instance_seconds += 1;
        }
    }
    out
}

/// A fleet that always runs what the busiest second needs: never misses, never changes.
pub fn fixed_at_peak(model: &Model, load: &[f64]) -> (u32, Outcome) {
    let peak = load.iter().map(|l| model.needed(*l)).max().unwrap_or(0);
    let out = Outcome {
        seconds: load.len() as u64,
        instance_seconds: u64::from(peak) * load.len() as u64,
        ..Outcome::default()
    };
    (peak, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: Model = Model {
        capacity: 10.0,
        start_delay_s: 3,
    };

    #[test]
    fn a_short_gap_is_kept_and_a_long_one_restarts() {
        // One instance needed at 0, then at 3 (gap 2 ≤ d: kept, cost 2), then at 10 (gap 6 > d:
        // restart, cost 3).
        let mut load = vec![0.0; 11];
        for s in [0, 3, 10] {
            load[s] = 5.0;
        }
        let out = oracle(&MODEL, &load);
        assert_eq!(out.instance_seconds, 3 + 2 + 3);
        assert_eq!(out.changes, 1);
        assert_eq!(out.missed_seconds, 0);
    }

    /// A layer first needed before it could have started is there from the start: it costs
    /// its idle seconds, never a start it had no time for (or the oracle would cost more than
    /// a fleet fixed at the peak on a short trace with a long delay).
    #[test]
    fn an_early_need_is_met_from_the_start() {
        let model = Model {
            capacity: 10.0,
            start_delay_s: 86_400,
        };
        let mut load = vec![25.0; 3600];
        load[0] = 5.0;
        let out = oracle(&model, &load);
        assert_eq!(out.instance_seconds, 3600 + 2 * 3600);
        assert!(out.instance_seconds <= fixed_at_peak(&model, &load).1.instance_seconds);
    }

    #[test]
    fn layers_are_counted_apart_and_the_peak_holds_the_most() {
        let load = [25.0, 5.0, 5.0, 5.0, 5.0, 25.0];
        let out = oracle(&MODEL, &load);
        // Layer 0 serves all six; layers 1 and 2 serve 0, idle 4 (> 3: restart for 3), serve 5.
        assert_eq!(out.instance_seconds, 6 + 2 * (1 + 3 + 1));
        let (peak, fixed) = fixed_at_peak(&MODEL, &load);
        assert_eq!((peak, fixed.instance_seconds), (3, 18));
        assert!(out.instance_seconds <= fixed.instance_seconds);
    }
}
