//! What `ebb demo` prints: the live view (a redrawn block on a terminal, one plain line per
//! second otherwise) and the summary.

use super::load::Tally;
use super::Phase;
use ebb_core::quantity::format_latency;
use ebb_core::{Event, EventKind};
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// Prints a line to stdout. Unlike `out!`, a closed stdout does not end the process: the demo
/// must still stop what it started.
pub fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// `60s`, `1m30s`: a duration as --duration takes it.
pub fn secs(d: Duration) -> String {
    ebb_core::quantity::format_duration(d)
}

/// `+12.3s`: a time relative to the start of the wave.
fn rel(seconds: f64) -> String {
    format!("{seconds:+.1}s")
}

/// A decision as listed live and in the summary.
pub fn decision_line(at: f64, message: &str) -> String {
    format!("  {:>7}  {message}", rel(at))
}

/// One moment of the demo, as the live view shows it.
pub struct Frame {
    pub elapsed: Duration,
    pub total: Duration,
    pub phase: Phase,
    pub clients: usize,
    pub ready: Option<u32>,
    pub desired: Option<u32>,
    pub max: u32,
    /// Router's view over the last 2 s.
    pub rps: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Requests held now because no instance is ready.
    pub queued: u32,
    pub ok: u64,
    pub failed: u64,
    /// Seconds from the start of the wave, and the message.
    pub last_decision: Option<(f64, String)>,
}

fn count(v: Option<u32>) -> String {
    v.map_or_else(|| "?".to_string(), |n| n.to_string())
}

fn rps(v: Option<f64>) -> String {
    match v {
        None => "-".to_string(),
        Some(r) if r < 10.0 => format!("{r:.1}"),
        Some(r) => format!("{r:.0}"),
    }
}

impl Frame {
    /// One line per second without a terminal (logs, CI, tests).
    pub fn plain(&self) -> String {
        let mut line = format!(
            "{:>4}s  {:<10}  clients {:>2}  instances {}/{}  {:>4} rps  p99 {:>6}  ok {}  failed {}",
            self.elapsed.as_secs(),
            self.phase.name(),
            self.clients,
            count(self.ready),
            count(self.desired),
            rps(self.rps),
            format_latency(self.p99_ms),
            self.ok,
            self.failed,
        );
        if self.queued > 0 {
            line.push_str(&format!("  held {}", self.queued));
        }
        match &self.last_decision {
            Some((at, message)) => line.push_str(&format!("  | {} {message}", rel(*at))),
            None => line.push_str("  | no decision yet"),
        }
        line
    }

    /// The block redrawn on a terminal (decisions scroll above it).
    pub fn block(&self) -> Vec<String> {
        let (ready, desired) = (self.ready.unwrap_or(0), self.desired.unwrap_or(0));
        let mut bar = String::new();
        for i in 0..self.max.max(desired) {
            bar.push_str(if i < ready {
                "\x1b[32m■\x1b[0m"
            } else if i < desired {
                "\x1b[33m□\x1b[0m"
            } else {
                "\x1b[2m·\x1b[0m"
            });
        }
        let mut traffic = format!(
            "  traffic    {} rps   p99 {}   {} ok   {} failed",
            rps(self.rps),
            format_latency(self.p99_ms),
            self.ok,
            self.failed
        );
        if self.queued > 0 {
            traffic.push_str(&format!(
                "   {} held until an instance is ready",
                self.queued
            ));
        }
        vec![
            String::new(),
            format!(
                "  \x1b[1m{:>3}s\x1b[0m of {}   phase \x1b[1m{}\x1b[0m   {} client{}",
                self.elapsed.as_secs(),
                secs(self.total),
                self.phase.name(),
                self.clients,
                if self.clients == 1 { "" } else { "s" }
            ),
            format!(
                "  instances  {bar}  {} ready / {} desired",
                count(self.ready),
                count(self.desired)
            ),
            traffic,
        ]
    }
}

/// The live view: where it draws and how much it drew last.
pub struct Screen {
    tty: bool,
    drawn: usize,
}

impl Screen {
    pub fn new() -> Screen {
        Screen {
            tty: std::io::stdout().is_terminal(),
            drawn: 0,
        }
    }

    /// Shows new decisions and this frame: on a terminal, decisions scroll above a block that
    /// is redrawn in place; otherwise one line per second.
    pub fn show(&mut self, new_decisions: &[String], frame: &Frame) {
        let mut text = String::new();
        if self.tty {
            if self.drawn > 0 {
                // Up to the block's first line, and clear from there down.
                text.push_str(&format!("\x1b[{}F\x1b[J", self.drawn));
            }
            for d in new_decisions {
                text.push_str(d);
                text.push('\n');
            }
            let block = frame.block();
            self.drawn = block.len();
            for line in block {
                text.push_str(&line);
                text.push('\n');
            }
        } else {
            text.push_str(&frame.plain());
            text.push('\n');
        }
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
    }

    /// Leaves the last block where it is.
    pub fn finish(&mut self) {
        self.drawn = 0;
        say("");
    }
}

/// What the summary is made of.
pub struct Facts<'a> {
    pub tally: &'a Tally,
    /// The service's events.
    pub events: &'a [Event],
    pub started_ms: u64,
    pub peak_ready: u32,
    pub spike_ms: Option<u64>,
    pub load_stopped_ms: Option<u64>,
    pub zero_ms: Option<u64>,
    pub cold_sent_ms: Option<u64>,
    pub cold: Option<(Result<(), String>, Duration)>,
}

/// `autoscaled 2 → 8: ...` → (2, 8).
pub fn parse_decision(message: &str) -> Option<(u32, u32)> {
    let rest = message.strip_prefix("autoscaled ")?;
    let (from, rest) = rest.split_once(" → ")?;
    let to: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((from.trim().parse().ok()?, to.parse().ok()?))
}

fn ms_between(from: u64, to: u64) -> f64 {
    to as f64 - from as f64
}

/// The summary's lines.
pub fn summary(f: &Facts) -> Vec<String> {
    let rel_s = |ms: u64| ms_between(f.started_ms, ms) / 1000.0;
    let mut lines = vec!["summary".to_string()];
    lines.push(format!(
        "  requests           {} ok, {} failed",
        f.tally.ok, f.tally.failed
    ));
    for (reason, n) in &f.tally.reasons {
        lines.push(format!("                       {n} × {reason}"));
    }
    lines.push(format!("  peak instances     {} ready", f.peak_ready));

    let decisions: Vec<(&Event, (u32, u32))> = f
        .events
        .iter()
        .filter(|e| e.kind == EventKind::ServiceScaled)
        .filter_map(|e| parse_decision(&e.message).map(|d| (e, d)))
        .collect();
    let outs = decisions.iter().filter(|(_, (a, b))| b > a).count();
    lines.push(format!(
        "  scaling decisions  {}: {outs} out, {} in",
        decisions.len(),
        decisions.len() - outs
    ));
    for (e, _) in &decisions {
        lines.push(format!(
            "    {}",
            decision_line(rel_s(e.time_ms), &e.message)
        ));
    }

    lines.push(format!(
        "  spike reaction     {}",
        spike_reaction(f, &decisions)
    ));

    let zero = match (f.zero_ms, f.load_stopped_ms) {
        (Some(z), Some(stopped)) => format!(
            "yes, {:.1}s after the load stopped ({})",
            ms_between(stopped, z) / 1000.0,
            rel(rel_s(z))
        ),
        (Some(z), None) => format!("yes ({})", rel(rel_s(z))),
        (None, _) => "no: instances were still running when the idle phase ended".to_string(),
    };
    lines.push(format!("  zero reached       {zero}"));
    lines.push(format!("  cold start         {}", cold_start(f)));
    lines
}

/// From the spike to the first scale-out decision, and to its instances serving.
fn spike_reaction(f: &Facts, decisions: &[(&Event, (u32, u32))]) -> String {
    let Some(spike) = f.spike_ms else {
        return "no spike".to_string();
    };
    // The spike's own decision is the panic one; a scale-out right after the spike began can
    // still be the rise's, decided on the stable window.
    let outs: Vec<&(&Event, (u32, u32))> = decisions
        .iter()
        .filter(|(e, (a, b))| e.time_ms >= spike && b > a)
        .collect();
    let Some((decision, (from, to))) = outs
        .iter()
        .find(|(e, _)| e.message.contains("(panic"))
        .or(outs.first())
    else {
        return "no scale-out after the spike began".to_string();
    };
    let panic = if decision.message.contains("(panic") {
        " (panic)"
    } else {
        ""
    };
    let mut text = format!(
        "scale-out {from} → {to}{panic} decided {} after the spike began",
        format_latency(Some(ms_between(spike, decision.time_ms)))
    );
    let ready: Vec<u64> = f
        .events
        .iter()
        .filter(|e| e.kind == EventKind::InstanceReady && e.time_ms >= decision.time_ms)
        .map(|e| e.time_ms)
        .collect();
    if let Some(first) = ready.first() {
        text.push_str(&format!(
            "; first new instance serving after {}",
            format_latency(Some(ms_between(spike, *first)))
        ));
        let new = (to - from) as usize;
        if new > 1 {
            if let Some(all) = ready.get(new - 1) {
                text.push_str(&format!(
                    ", all {new} after {}",
                    format_latency(Some(ms_between(spike, *all)))
                ));
            }
        }
    }
    text
}

/// The request sent at zero: its latency, and how much of it the instance's own start took.
fn cold_start(f: &Facts) -> String {
    let Some((result, took)) = &f.cold else {
        return "not measured".to_string();
    };
    let took_ms = took.as_secs_f64() * 1000.0;
    if let Err(reason) = result {
        return format!(
            "the request failed after {}: {reason}",
            format_latency(Some(took_ms))
        );
    }
    if f.zero_ms.is_none() {
        return format!(
            "not measured at zero (the service never got there); a request took {}",
            format_latency(Some(took_ms))
        );
    }
    let mut text = format!(
        "the first request at zero was answered in {}",
        format_latency(Some(took_ms))
    );
    let sent = f.cold_sent_ms.unwrap_or(0);
    let started = f
        .events
        .iter()
        .find(|e| e.kind == EventKind::InstanceStarted && e.time_ms >= sent);
    let ready = started.and_then(|s| {
        f.events.iter().find(|e| {
            e.kind == EventKind::InstanceReady && e.instance == s.instance && e.seq > s.seq
        })
    });
    if let (Some(s), Some(r)) = (started, ready) {
        let app = ms_between(s.time_ms, r.time_ms);
        text.push_str(&format!(
            "; the instance took {} from start to ready, ebb the other {}",
            format_latency(Some(app)),
            format_latency(Some((took_ms - app).max(0.0)))
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_parse() {
        assert_eq!(
            parse_decision("autoscaled 1 → 4: concurrency 7.1 over 2s / target 2 → 4 (panic)"),
            Some((1, 4))
        );
        assert_eq!(
            parse_decision("autoscaled 3 → 0: no request for 6s"),
            Some((3, 0))
        );
        assert_eq!(parse_decision("scaled to 3"), None);
    }

    fn event(seq: u64, at: u64, kind: EventKind, message: &str, instance: &str) -> Event {
        let mut e = Event::new(at, kind, message)
            .service("demo")
            .instance(instance);
        e.seq = seq;
        e
    }

    #[test]
    fn the_summary_measures_the_spike_by_its_panic_decision_and_the_cold_start_by_its_instance() {
        use EventKind::{InstanceReady, InstanceStarted, ServiceScaled};
        let t0 = 1_000_000;
        let events = vec![
            event(
                1,
                t0,
                ServiceScaled,
                "autoscaled 0 → 1: request waiting",
                "",
            ),
            event(
                2,
                t0 + 8_300,
                ServiceScaled,
                "autoscaled 1 → 2: concurrency 5.8 over 6s / target 4 → 2",
                "",
            ),
            event(
                3,
                t0 + 9_000,
                ServiceScaled,
                "autoscaled 2 → 6: concurrency 21.1 over 2s / target 4 → 6 (panic)",
                "",
            ),
            event(4, t0 + 9_100, InstanceReady, "ready", "a"),
            event(5, t0 + 9_200, InstanceReady, "ready", "b"),
            event(6, t0 + 9_250, InstanceReady, "ready", "c"),
            event(7, t0 + 9_300, InstanceReady, "ready", "d"),
            event(
                8,
                t0 + 20_000,
                ServiceScaled,
                "autoscaled 6 → 0: no request for 3s",
                "",
            ),
            event(9, t0 + 25_010, InstanceStarted, "started", "e"),
            event(10, t0 + 25_050, InstanceReady, "ready", "e"),
        ];
        let tally = Tally {
            ok: 10,
            ..Tally::default()
        };
        let lines = summary(&Facts {
            tally: &tally,
            events: &events,
            started_ms: t0,
            peak_ready: 6,
            spike_ms: Some(t0 + 8_000),
            load_stopped_ms: Some(t0 + 15_000),
            zero_ms: Some(t0 + 21_000),
            cold_sent_ms: Some(t0 + 25_000),
            cold: Some((Ok(()), Duration::from_millis(70))),
        });
        let text = lines.join("\n");
        assert!(
            text.contains("requests           10 ok, 0 failed"),
            "{text}"
        );
        assert!(text.contains("scaling decisions  4: 3 out, 1 in"), "{text}");
        assert!(
            text.contains("scale-out 2 → 6 (panic) decided 1.00s after the spike began; first new instance serving after 1.10s, all 4 after 1.30s"),
            "{text}"
        );
        assert!(
            text.contains("zero reached       yes, 6.0s after the load stopped (+21.0s)"),
            "{text}"
        );
        assert!(
            text.contains(
                "answered in 70ms; the instance took 40ms from start to ready, ebb the other 30ms"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_plain_line_has_every_figure() {
        let f = Frame {
            elapsed: Duration::from_secs(23),
            total: Duration::from_secs(60),
            phase: Phase::Spike,
            clients: 32,
            ready: Some(4),
            desired: Some(8),
            max: 8,
            rps: Some(612.3),
            p99_ms: Some(71.2),
            queued: 0,
            ok: 12034,
            failed: 0,
            last_decision: Some((21.34, "autoscaled 1 → 8: x (panic)".into())),
        };
        let line = f.plain();
        for part in [
            "23s",
            "spike",
            "clients 32",
            "4/8",
            "612 rps",
            "p99   71ms",
            "failed 0",
            "+21.3s autoscaled 1 → 8",
        ] {
            assert!(line.contains(part), "{part} in {line}");
        }
    }
}
