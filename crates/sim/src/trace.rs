//! Request-rate traces: one count per line (requests that arrived in that second), or CSV lines
//! whose last column is the count. Blank lines and `#` comments are skipped, and so is a first
//! line whose last column is not a number (a CSV header).

use thiserror::Error;

/// Most seconds a trace may hold: a year, so a wrong file cannot take all memory.
pub const MAX_SECONDS: usize = 366 * 24 * 3600;

/// A line that is not a count, with its number (1-based).
#[derive(Debug, Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct TraceError {
    /// The line's number, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

/// The counts of `text`, each times `scale`.
pub fn parse(text: &str, scale: f64) -> Result<Vec<f64>, TraceError> {
    let mut counts = Vec::new();
    // The data lines (neither blank nor a comment) with their index.
    let data = text
        .lines()
        .map(str::trim)
        .enumerate()
        .filter(|(_, line)| is_data(line));
    for (nth, (i, line)) in data.enumerate() {
        let last = line.rsplit(',').next().unwrap_or(line).trim();
        let count = match last.parse::<f64>() {
            Ok(c) if c.is_finite() && c >= 0.0 => c,
            Ok(c) => {
                return Err(TraceError {
                    line: i + 1,
                    message: format!("{c} is not a count of requests (0 or more)"),
                })
            }
            // A header names its columns: only the first line may.
            Err(_) if nth == 0 => continue,
            Err(_) => {
                return Err(TraceError {
                    line: i + 1,
                    message: format!(
                    "{:?} is not a number: expected one count per line, or CSV with the count last",
                    shortened(last)
                ),
                })
            }
        };
        if counts.len() == MAX_SECONDS {
            return Err(TraceError {
                line: i + 1,
                message: format!("the trace is longer than {MAX_SECONDS} seconds (a year)"),
            });
        }
        let scaled = count * scale;
        if !scaled.is_finite() {
            return Err(TraceError {
                line: i + 1,
                message: format!("{count} × {scale} is too large a rate"),
            });
        }
        counts.push(scaled);
    }
    if counts.is_empty() {
        return Err(no_counts(text));
    }
    Ok(counts)
}

/// The error for a trace without a count: where its only data line is, if it has one (read as
/// a CSV header), and what a count looks like, so that a file in another format (`1;2`) is told
/// why rather than only that nothing was read.
fn no_counts(text: &str) -> TraceError {
    match text.lines().map(str::trim).enumerate().find(|(_, l)| is_data(l)) {
        Some((i, header)) => TraceError {
            line: i + 1,
            message: format!(
                "no counts in the trace: its only line that is neither blank nor a comment, {:?}, was read as a CSV header; \
                 expected one count per line, or CSV with the count last",
                shortened(header)
            ),
        },
        None => TraceError {
            line: text.lines().count().max(1),
            message: "no counts in the trace (it is empty, or blank lines and # comments only)"
                .into(),
        },
    }
}

/// Most characters of a line an error quotes: a file of one huge line (counts separated by
/// spaces, or old Mac line ends) is not echoed whole.
const QUOTED_CHARS: usize = 80;

/// `line`, cut to [`QUOTED_CHARS`] with `…` when longer.
fn shortened(line: &str) -> String {
    match line.char_indices().nth(QUOTED_CHARS) {
        Some((end, _)) => format!("{}…", &line[..end]),
        None => line.to_string(),
    }
}

/// Whether a trimmed line holds data: it is neither blank nor a `#` comment.
fn is_data(line: &str) -> bool {
    !line.is_empty() && !line.starts_with('#')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_csv_and_comments_read_and_scale() {
        assert_eq!(parse("1\n0\n# x\n\n3\n", 10.0).unwrap(), [10.0, 0.0, 30.0]);
        let csv = "time,requests\n2025-01-01T00:00:00Z,4\n2025-01-01T00:00:01Z,5\n";
        assert_eq!(parse(csv, 1.0).unwrap(), [4.0, 5.0]);
    }

    #[test]
    fn bad_lines_say_where_and_what() {
        let e = parse("1\n2\nthree\n", 1.0).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("\"three\" is not a number"), "{e}");
        assert_eq!(parse("1\n-2\n", 1.0).unwrap_err().line, 2);
        assert_eq!(parse("1\nNaN\n", 1.0).unwrap_err().line, 2);
        assert!(parse("# only a comment\n", 1.0).is_err());
        let e = parse("\n1;2\n", 1.0).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            e.message.contains("\"1;2\", was read as a CSV header"),
            "{e}"
        );
        let long = format!("{}\n", "1 ".repeat(1_000));
        let e = parse(&long, 1.0).unwrap_err();
        assert!(
            e.message.len() < 300,
            "quoted whole: {} bytes",
            e.message.len()
        );
        assert!(
            e.message.contains("1 1 1") && e.message.contains('…'),
            "{e}"
        );
        let e = parse("", 1.0).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("empty"), "{e}");
        assert_eq!(parse("1\n1e300\n", 1e10).unwrap_err().line, 2);
    }
}
