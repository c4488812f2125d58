//! The Prometheus text exposition format (version 0.0.4), written by hand: ebb's values already
//! live in its own atomics and views, so a client library's registry would only be a copy made
//! at every scrape. Families are written whole, one after the other, as the format requires.

use ebb_router::http_metrics::HistogramReading;
use std::fmt::Write;

/// The content type of the format, as Prometheus expects it.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Only goes up (until the server restarts); its name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Cumulative `le` buckets with `_sum` and `_count`.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A scrape's text, family by family.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts family `name`: its help and type lines. Its samples follow.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", number(value));
    }

    /// One histogram of the current family: its buckets, `+Inf`, `_sum` and `_count`.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], reading: &HistogramReading) {
        for (bound, count) in reading.cumulative() {
            let _ = write!(self.out, "{name}_bucket");
            write_labels(&mut self.out, labels, Some(&number(bound)));
            let _ = writeln!(self.out, " {count}");
        }
        let _ = write!(self.out, "{name}_bucket");
        write_labels(&mut self.out, labels, Some("+Inf"));
        let _ = writeln!(self.out, " {}", reading.count());
        self.sample(&format!("{name}_sum"), labels, reading.sum_seconds());
        self.sample(&format!("{name}_count"), labels, reading.count() as f64);
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// `{a="x",b="y"}` (nothing without labels), with `le` last when given.
fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let all = labels.iter().copied().chain(le.map(|v| ("le", v)));
    for (i, (name, value)) in all.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{name}=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

/// A value as the format writes it: integers without a fraction, infinities and NaN by name.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_router::http_metrics::DurationHistogram;
    use std::time::Duration;

    #[test]
    fn families_samples_and_escaped_labels() {
        let mut e = Exposition::default();
        e.family("ebb_x_total", Kind::Counter, "Things.\nMore");
        e.sample("ebb_x_total", &[("service", "a\"b\\c\nd")], 3.0);
        e.sample("ebb_x_total", &[], 0.5);
        let text = e.finish();
        assert_eq!(
            text,
            "# HELP ebb_x_total Things.\\nMore\n# TYPE ebb_x_total counter\n\
             ebb_x_total{service=\"a\\\"b\\\\c\\nd\"} 3\nebb_x_total 0.5\n"
        );
    }

    #[test]
    fn a_histogram_has_cumulative_buckets_inf_sum_and_count() {
        let h = DurationHistogram::default();
        h.record(Duration::from_millis(4));
        h.record(Duration::from_millis(20));
        let mut e = Exposition::default();
        e.family("ebb_d_seconds", Kind::Histogram, "D.");
        e.histogram("ebb_d_seconds", &[("service", "web")], &h.read());
        let text = e.finish();
        assert!(text.contains("ebb_d_seconds_bucket{service=\"web\",le=\"0.005\"} 1\n"));
        assert!(text.contains("ebb_d_seconds_bucket{service=\"web\",le=\"0.025\"} 2\n"));
        assert!(text.contains("ebb_d_seconds_bucket{service=\"web\",le=\"+Inf\"} 2\n"));
        assert!(text.contains("ebb_d_seconds_sum{service=\"web\"} 0.024\n"));
        assert!(text.contains("ebb_d_seconds_count{service=\"web\"} 2\n"));
    }
}
