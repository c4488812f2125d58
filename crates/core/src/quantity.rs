//! Parsing of the human quantities found in deploy files: durations, byte sizes and CPU shares.

use std::time::Duration;
use thiserror::Error;

/// Why a quantity could not be parsed; the message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuantityError {
    /// Not a duration; holds the text given.
    #[error("invalid duration {0:?}: expected a number with a unit, like \"500ms\", \"10s\", \"5m\" or \"1h30m\"")]
    Duration(String),
    /// A duration below zero; holds the text given.
    #[error("invalid duration {0:?}: must not be negative")]
    NegativeDuration(String),
    /// A duration past [`MAX_DURATION_MS`]; holds the text given.
    #[error("invalid duration {0:?}: too long")]
    DurationTooLong(String),
    /// Not a byte size; holds the text given.
    #[error("invalid size {0:?}: expected bytes or a number with a unit, like \"64MiB\", \"512M\" or \"2GiB\"")]
    Size(String),
    /// Not a CPU amount; holds the text given.
    #[error("invalid cpu {0:?}: expected cores as a number (0.25) or millicores (\"250m\")")]
    Cpu(String),
}

/// Longest duration read, in milliseconds (10^15, some 31,000 years): far past any setting's
/// own bound, and below 2^53, so the `f64` sum of the parts is exact to the millisecond.
pub const MAX_DURATION_MS: f64 = 1e15;

/// Parses `"500ms"`, `"10s"`, `"1.5s"`, `"5m"`, `"1h30m"`, `"2d"`. A bare `"0"` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, QuantityError> {
    let err = || QuantityError::Duration(text.to_string());
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err());
    }
    // A well-formed duration with a minus sign: negative, unless it is zero.
    if let Some(magnitude) = s.strip_prefix('-') {
        return match parse_duration(magnitude) {
            Ok(d) if d.is_zero() => Ok(d),
            Ok(_) => Err(QuantityError::NegativeDuration(text.to_string())),
            Err(_) => Err(err()),
        };
    }
    let mut total_ms: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_len == 0 {
            return Err(err());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_ms = match &rest[..unit_len] {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total_ms += value * unit_ms;
    }
    if !total_ms.is_finite() || total_ms > MAX_DURATION_MS {
        return Err(QuantityError::DurationTooLong(text.to_string()));
    }
    Ok(Duration::from_millis(total_ms.round() as u64))
}

/// A latency in milliseconds as people read it: `0.4ms`, `12ms`, `1.25s`; `-` when unknown.
pub fn format_latency(ms: Option<f64>) -> String {
    match ms {
        None => "-".to_string(),
        Some(ms) if ms < 10.0 => format!("{ms:.1}ms"),
        Some(ms) if ms < 1000.0 => format!("{ms:.0}ms"),
        Some(ms) => format!("{:.2}s", ms / 1000.0),
    }
}

/// Formats a duration the way [`parse_duration`] reads it back (`1m30s`, `250ms`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let mut secs = ms / 1000;
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= len {
            out.push_str(&format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    out
}

/// Parses a byte size: `"64MiB"`, `"512M"` (decimal), `"1.5GiB"`, `"1024"` (bytes).
pub fn parse_size(text: &str) -> Result<u64, QuantityError> {
    let err = || QuantityError::Size(text.to_string());
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    if split == 0 {
        return Err(err());
    }
    let value: f64 = s[..split].parse().map_err(|_| err())?;
    let mult: f64 = match s[split..].trim() {
        "" | "B" => 1.0,
        "K" | "KB" | "k" | "kB" => 1e3,
        "M" | "MB" => 1e6,
        "G" | "GB" => 1e9,
        "T" | "TB" => 1e12,
        "Ki" | "KiB" => 1024.0,
        "Mi" | "MiB" => 1024.0 * 1024.0,
        "Gi" | "GiB" => 1024.0 * 1024.0 * 1024.0,
        "Ti" | "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(err()),
    };
    let bytes = value * mult;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(err());
    }
    Ok(bytes.round() as u64)
}

/// Formats bytes with a binary unit (`64MiB`, `1.5GiB`).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if (v - v.round()).abs() < 0.05 {
        format!("{}{}", v.round() as u64, UNITS[i])
    } else {
        format!("{v:.1}{}", UNITS[i])
    }
}

/// CPU as written in a deploy file: whole cores as `2`, else millicores as `1930m`.
pub fn format_cpu_millis(millis: u32) -> String {
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

/// Parses CPU as cores (`"0.25"`, `"2"`) or millicores (`"250m"`) into millicores.
pub fn parse_cpu_millis(text: &str) -> Result<u32, QuantityError> {
    let err = || QuantityError::Cpu(text.to_string());
    let s = text.trim();
    let millis = if let Some(m) = s.strip_suffix('m') {
        m.parse::<f64>().map_err(|_| err())?
    } else {
        s.parse::<f64>().map_err(|_| err())? * 1000.0
    };
    cpu_millis_from_f64(millis).ok_or_else(err)
}

/// Converts millicores given as a float into a positive integer, if it is sane.
pub fn cpu_millis_from_f64(millis: f64) -> Option<u32> {
    if millis.is_finite() && (1.0..=1_000_000.0).contains(&millis) {
        Some(millis.round() as u32)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_read_naturally() {
        assert_eq!(format_latency(None), "-");
        assert_eq!(format_latency(Some(0.42)), "0.4ms");
        assert_eq!(format_latency(Some(12.4)), "12ms");
        assert_eq!(format_latency(Some(1250.0)), "1.25s");
    }

    #[test]
    fn durations_parse_with_units_and_compounds() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn durations_without_unit_or_with_unknown_unit_are_refused() {
        for bad in ["10", "", "s", "10x", "-1s", "1.2.3s", "ms10"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn negative_and_overlong_durations_say_so() {
        let negative = parse_duration("-5s").unwrap_err();
        assert_eq!(negative, QuantityError::NegativeDuration("-5s".into()));
        assert!(
            negative.to_string().contains("must not be negative"),
            "{negative}"
        );
        assert_eq!(parse_duration("-0s"), Ok(Duration::ZERO));
        for malformed in ["-", "-abc", "-5x", "--5s"] {
            assert_eq!(
                parse_duration(malformed),
                Err(QuantityError::Duration(malformed.into())),
                "{malformed:?}"
            );
        }
        let long = parse_duration("99999999999999h").unwrap_err();
        assert!(long.to_string().contains("too long"), "{long}");
        assert!(
            parse_duration("277777777h").is_ok(),
            "just under the longest"
        );
    }

    #[test]
    fn durations_round_trip_through_format() {
        for s in ["250ms", "1m30s", "2h", "1d1h1m1s"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }

    #[test]
    fn sizes_parse_binary_and_decimal_units() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("512M").unwrap(), 512_000_000);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert!(parse_size("64 potatoes").is_err());
        assert!(parse_size("-5MiB").is_err());
        assert_eq!(format_size(64 << 20), "64MiB");
    }

    #[test]
    fn cpu_parses_cores_and_millicores() {
        assert_eq!(parse_cpu_millis("0.25").unwrap(), 250);
        assert_eq!(parse_cpu_millis("250m").unwrap(), 250);
        assert_eq!(parse_cpu_millis("2").unwrap(), 2000);
        assert!(parse_cpu_millis("0").is_err());
        assert!(parse_cpu_millis("lots").is_err());
    }
}
