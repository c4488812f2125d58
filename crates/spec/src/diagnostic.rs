//! Errors in deploy files, located precisely enough that a user can jump straight to the problem
//! (ARCHITECTURE.md, principle 9: errors say what, where, and what to do).
//!
//! A [`SpecError`] keeps the byte span and the file's text so it can be shown as a snippet with a
//! caret. It implements [`miette::Diagnostic`], so the binary can hand it to miette's fancy
//! reporter; [`SpecError::render`] produces the same picture as plain text for logs and tests.

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceCode};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// The text of one deploy file, shared by all the errors found in it.
pub(crate) type Source = Arc<NamedSource<String>>;

/// One problem in a deploy file: where it is, which field, what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecError {
    /// The file as the user named it.
    pub file: String,
    /// 1-based line; 0 when the problem has no place in the file (it could not be read).
    pub line: usize,
    /// 1-based column, counted in characters; 0 together with `line`.
    pub column: usize,
    /// Dotted path of the field, e.g. `services.hello.instances`, when one is concerned.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
    /// What to do about it, e.g. "did you mean `instances`?".
    pub hint: Option<String>,
    /// Byte range of the offending text in the file, for snippets.
    pub span: Option<Range<usize>>,
    source: Option<Source>,
}

impl SpecError {
    /// An error at a byte span of `source`; line and column are computed from the span start.
    /// Without a span the error is placed at 1:1 and shown without a snippet.
    pub(crate) fn at(
        source: &Source,
        span: Option<Range<usize>>,
        field: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        let text = source.inner();
        let span = span.map(|s| clamp_span(text, s));
        let (line, column) = span.as_ref().map_or((1, 1), |s| line_col(text, s.start));
        SpecError {
            file: source.name().to_string(),
            line,
            column,
            field,
            message: message.into(),
            hint: None,
            span,
            source: Some(source.clone()),
        }
    }

    /// An error about a whole file that has no place in it, such as an unreadable file.
    pub(crate) fn whole_file(file: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError {
            file: file.into(),
            line: 0,
            column: 0,
            field: None,
            message: message.into(),
            hint: None,
            span: None,
            source: None,
        }
    }

    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The text of the file this error points into, if it was read.
    pub fn source_text(&self) -> Option<&str> {
        self.source.as_deref().map(|s| s.inner().as_str())
    }

    /// A multi-line, human report: the [`Display`](fmt::Display) line, then the source line with
    /// the offending text underlined. Plain text: no colours, no terminal needed.
    pub fn render(&self) -> String {
        let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
            .with_links(false)
            .with_urls(false)
            .with_wrap_lines(false)
            .with_context_lines(1);
        let mut out = String::new();
        if handler.render_report(&mut out, self).is_err() {
            return self.to_string();
        }
        out
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

impl miette::Diagnostic for SpecError {
    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_ref().map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        // No label text: the message and hint are already in the report's first line.
        let span = self.span.clone()?;
        self.source.as_ref()?;
        Some(Box::new(std::iter::once(
            LabeledSpan::new_primary_with_span(None, span.start..span.end),
        )))
    }
}

/// Every problem found in one or more deploy files, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecErrors(pub Vec<SpecError>);

impl SpecErrors {
    /// All errors rendered as snippets (see [`SpecError::render`]), separated by blank lines.
    pub fn render(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(SpecError::render).collect();
        parts.join("\n")
    }

    /// The errors, in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, SpecError> {
        self.0.iter()
    }

    /// How many errors there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no errors.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One error per line.
impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

impl From<SpecError> for SpecErrors {
    fn from(e: SpecError) -> Self {
        SpecErrors(vec![e])
    }
}

impl IntoIterator for SpecErrors {
    type Item = SpecError;
    type IntoIter = std::vec::IntoIter<SpecError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a SpecErrors {
    type Item = &'a SpecError;
    type IntoIter = std::slice::Iter<'a, SpecError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

// === positions ===

/// Keeps a span inside the text and on character boundaries, whatever the parser handed us.
fn clamp_span(text: &str, span: Range<usize>) -> Range<usize> {
    let floor = |mut i: usize| {
        i = i.min(text.len());
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let start = floor(span.start);
    let end = floor(span.end).max(start);
    start..end
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

// === hints ===

/// Names people bring from docker-compose, Kubernetes, Nomad, HAProxy or nginx, mapped to ours.
const ALIASES: [(&str, &str); 55] = [
    ("replicas", "instances"),
    ("scale", "instances"),
    ("count", "instances"),
    ("cmd", "command"),
    ("args", "command"),
    ("entrypoint", "command"),
    ("environment", "env"),
    ("working_dir", "workdir"),
    ("cwd", "workdir"),
    ("dir", "workdir"),
    ("healthcheck", "health"),
    ("limits", "resources"),
    ("mem", "memory"),
    ("stop_signal", "stop"),
    ("ports", "port"),
    ("listen", "port"),
    ("load_balancer", "balance"),
    ("leastconn", "least_request"),
    ("ip_hash", "hash"),
    ("source", "hash"),
    ("hash_on", "hash_header"),
    ("hash_on_header", "hash_header"),
    ("header_name", "hash_header"),
    ("timeout_queue", "queue_timeout"),
    ("queue", "queue_timeout"),
    // Placement: Kubernetes nodeSelector and scoring strategies, Nomad's spread and binpack.
    ("node_selector", "constraints"),
    ("nodeselector", "constraints"),
    ("constraint", "constraints"),
    ("strategy", "placement"),
    ("scheduling", "placement"),
    ("bin_pack", "binpack"),
    ("pack", "binpack"),
    ("mostallocated", "binpack"),
    ("leastallocated", "spread"),
    // Autoscaling: Kubernetes HPA, Knative, KEDA, AWS step scaling.
    ("autoscaling", "autoscale"),
    ("minreplicas", "min"),
    ("maxreplicas", "max"),
    ("min_replicas", "min"),
    ("max_replicas", "max"),
    ("min_instances", "min"),
    ("max_instances", "max"),
    ("target_concurrency", "concurrency"),
    ("container_concurrency", "concurrency"),
    ("qps", "rps"),
    ("requests_per_second", "rps"),
    ("latency", "latency_p95"),
    ("p95", "latency_p95"),
    ("bands", "steps"),
    ("windows", "schedule"),
    ("cooldown", "scale_down_delay"),
    ("stabilization_window", "scale_down_delay"),
    ("scaledown_period", "idle_timeout"),
    ("timezone", "utc_offset"),
    ("tz", "utc_offset"),
    ("scaling_adjustment", "change"),
];

/// The hint for an unknown field: the nearest valid name, or the list of valid names.
pub(crate) fn unknown_field_hint(unknown: &str, valid: &[&str]) -> String {
    match suggest(unknown, valid) {
        Some(name) => format!("did you mean `{name}`?"),
        None => format!("valid fields here are {}", list(valid)),
    }
}

/// The valid name closest to `unknown`, if one is close enough to be a likely typo or synonym.
pub(crate) fn suggest<'a>(unknown: &str, valid: &[&'a str]) -> Option<&'a str> {
    let lower = unknown.to_ascii_lowercase();
    if let Some(&(_, to)) = ALIASES.iter().find(|(from, _)| *from == lower) {
        if let Some(v) = valid.iter().find(|v| **v == to) {
            return Some(v);
        }
    }
    valid
        .iter()
        .map(|v| (strsim::jaro_winkler(&lower, v), *v))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, v)| v)
}

/// `a`, `b` and `c`
pub(crate) fn list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(line_col(text, 10), (2, 4));
        assert_eq!(line_col(text, 999), (3, 1));
    }

    #[test]
    fn spans_are_clamped_to_character_boundaries() {
        let text = "é";
        assert_eq!(clamp_span(text, 1..5), 0..2);
    }

    #[test]
    fn typos_and_synonyms_get_a_suggestion_and_nonsense_gets_the_list() {
        let valid = ["command", "instances", "env"];
        assert_eq!(suggest("instnces", &valid), Some("instances"));
        assert_eq!(suggest("replicas", &valid), Some("instances"));
        assert_eq!(suggest("Command", &valid), Some("command"));
        assert_eq!(suggest("zzz", &valid), None);
        assert_eq!(
            unknown_field_hint("zzz", &valid),
            "valid fields here are `command`, `instances` and `env`"
        );
    }
}
