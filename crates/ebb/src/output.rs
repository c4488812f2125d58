//! Printing helpers: aligned tables, ages, timestamps.

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

/// Prints a line to stdout like `println!`, but a closed stdout (`ebb ps | head`) ends the
/// process quietly instead of panicking, as a Unix tool killed by SIGPIPE would.
macro_rules! out {
    () => { $crate::output::write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}
pub(crate) use out;

/// Prints to stdout without a newline and flushes (progress lines); see [`out!`].
macro_rules! out_inline {
    ($($arg:tt)*) => { $crate::output::write_stdout(format_args!($($arg)*)) };
}
pub(crate) use out_inline;

/// Writes and flushes; exits with status 0 if stdout was closed by its reader.
pub fn write_stdout(args: std::fmt::Arguments) {
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_fmt(args)
        .and_then(|()| stdout.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}

/// Prints rows as left-aligned columns separated by two spaces.
/// [`table`] without the columns named in `wide_only`, unless `wide` (`-o wide`).
pub fn table_wide(header: &[&str], rows: &[Vec<String>], wide: bool, wide_only: &[&str]) {
    let keep: Vec<bool> = header
        .iter()
        .map(|h| wide || !wide_only.contains(h))
        .collect();
    let header: Vec<&str> = header
        .iter()
        .zip(&keep)
        .filter_map(|(h, k)| k.then_some(*h))
        .collect();
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(c, _)| c.clone())
                .collect()
        })
        .collect();
    table(&header, &rows)
}

pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// `42s`, `5m`, `3h`, `2d`: how long ago `since_ms` was.
pub fn age(since_ms: u64) -> String {
    let secs = ebb_server::now_ms().saturating_sub(since_ms) / 1000;
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// Latest time RFC 3339 can show (9999-12-31T23:59:59Z), in unix milliseconds.
const MAX_RFC3339_MS: u64 = 253_402_300_799_000;

/// RFC 3339 UTC time with seconds; a time past year 9999 (a node's bad clock) prints as raw ms.
pub fn timestamp(ms: u64) -> String {
    if ms > MAX_RFC3339_MS {
        return format!("{ms}ms");
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// RFC 3339 UTC time with milliseconds (log lines); past year 9999 as raw ms, as [`timestamp`].
pub fn timestamp_millis(ms: u64) -> String {
    if ms > MAX_RFC3339_MS {
        return format!("{ms}ms");
    }
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

pub fn dash(v: Option<String>) -> String {
    v.unwrap_or_else(|| "-".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_in_utc_and_absurd_ones_do_not_panic() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp(MAX_RFC3339_MS), "9999-12-31T23:59:59Z");
        assert_eq!(timestamp(u64::MAX), format!("{}ms", u64::MAX));
        assert_eq!(timestamp_millis(1_250), "1970-01-01T00:00:01.250Z");
        assert_eq!(timestamp_millis(u64::MAX), format!("{}ms", u64::MAX));
    }
}
