//! Walking a parsed TOML document with the location of every key and value at hand.
//!
//! We walk a `toml_edit` document by hand instead of deserializing with serde because serde stops
//! at the first error, while a user fixing a deploy file wants to see every problem at once, each
//! with its exact span.

use crate::diagnostic::{unknown_field_hint, Source, SpecError};
use std::ops::Range;
use toml_edit::{Item, TableLike, Value};

/// Collects errors found in one file.
pub(crate) struct Ctx {
    pub source: Source,
    pub errors: Vec<SpecError>,
}

impl Ctx {
    pub fn new(source: Source) -> Self {
        Ctx {
            source,
            errors: Vec::new(),
        }
    }

    pub fn text(&self) -> &str {
        self.source.inner()
    }

    /// Records an error about `field` at `span` (the start of the file when the span is unknown).
    pub fn error(&mut self, span: Option<Range<usize>>, field: &str, message: impl Into<String>) {
        let e = self.make(span, field, message);
        self.errors.push(e);
    }

    /// Records an error with a hint on how to fix it.
    pub fn error_hint(
        &mut self,
        span: Option<Range<usize>>,
        field: &str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let e = self.make(span, field, message).with_hint(hint);
        self.errors.push(e);
    }

    fn make(
        &self,
        span: Option<Range<usize>>,
        field: &str,
        message: impl Into<String>,
    ) -> SpecError {
        let field = (!field.is_empty()).then(|| field.to_string());
        SpecError::at(&self.source, span, field, message)
    }

    /// Reports every key of `entries` that is not in `valid`, with a suggestion.
    pub fn check_fields(&mut self, entries: &[Entry<'_>], valid: &[&str]) {
        for e in entries.iter().filter(|e| !valid.contains(&e.name)) {
            self.error_hint(
                e.key_span.clone(),
                &e.field,
                format!("unknown field `{}`", e.name),
                unknown_field_hint(e.name, valid),
            );
        }
    }

    /// The entry as a table, or an error saying it should be one.
    pub fn table<'a>(&mut self, e: &Entry<'a>) -> Option<&'a dyn TableLike> {
        if let Some(t) = e.item.as_table_like() {
            return Some(t);
        }
        let message = format!("expected a table, found {}", describe(e.item));
        if e.item.is_array_of_tables() {
            self.error_hint(
                e.key_span.clone(),
                &e.field,
                message,
                "use single brackets, e.g. [services.web], not [[services.web]]",
            );
        } else {
            self.error(e.value_span(), &e.field, message);
        }
        None
    }

    /// Reports a value of the wrong type.
    pub fn wrong_type(&mut self, e: &Entry<'_>, expected: &str) {
        self.error(
            e.value_span(),
            &e.field,
            format!("expected {expected}, found {}", describe(e.item)),
        );
    }
}

/// One table of an array of tables, `[[a.b]]` or `b = [{ ... }, ...]`.
pub(crate) struct Element<'a> {
    pub table: &'a dyn TableLike,
    /// Its `[[...]]` header, or the inline table.
    pub span: Option<Range<usize>>,
    /// `parent.key[i]`
    pub field: String,
}

impl Ctx {
    /// The entry as an array of tables, or an error saying it should be one; `header` is how
    /// to write one element as a header, e.g. `[[services.web.autoscale.schedule]]`.
    pub fn tables<'a>(&mut self, e: &Entry<'a>, header: &str) -> Option<Vec<Element<'a>>> {
        let len = match e.item {
            Item::ArrayOfTables(a) => a.len(),
            Item::Value(Value::Array(a)) => a.len(),
            Item::Table(_) | Item::Value(Value::InlineTable(_)) => {
                self.error_hint(
                    e.key_span.clone(),
                    &e.field,
                    format!("expected an array of tables, found {}", describe(e.item)),
                    format!("use double brackets, {header}, once per element"),
                );
                return None;
            }
            _ => {
                self.wrong_type(e, "an array of tables");
                return None;
            }
        };
        let mut out = Vec::with_capacity(len);
        for i in 0..len {
            let field = format!("{}[{i}]", e.field);
            match element(self.text(), e.item, i) {
                Some(ArrayElement {
                    table: Some(table),
                    span,
                }) => out.push(Element { table, span, field }),
                Some(ArrayElement { table: None, span }) => {
                    let found = match e.item {
                        Item::Value(Value::Array(a)) => a.get(i).map_or("nothing", describe_value),
                        _ => "nothing",
                    };
                    self.error(span, &field, format!("expected a table, found {found}"));
                }
                None => {}
            }
        }
        Some(out)
    }
}

/// An element of an array, of tables or inline.
pub(crate) struct ArrayElement<'a> {
    /// The element as a table, if it is one.
    pub table: Option<&'a dyn TableLike>,
    /// Where to point at it: an `[[...]]` element's header, or the value.
    pub span: Option<Range<usize>>,
}

/// Element `i` of an array (of tables, or inline).
pub(crate) fn element<'a>(text: &str, item: &'a Item, i: usize) -> Option<ArrayElement<'a>> {
    match item {
        Item::ArrayOfTables(a) => {
            let table = a.get(i)?;
            let span = table.span().map(|s| {
                let close = text
                    .get(s.start..s.end)
                    .and_then(|body| body.find("]]"))
                    .map_or(s.end, |at| s.start + at + 2);
                s.start..close
            });
            Some(ArrayElement {
                table: Some(table as &dyn TableLike),
                span,
            })
        }
        Item::Value(Value::Array(a)) => {
            let v = a.get(i)?;
            Some(ArrayElement {
                table: v.as_inline_table().map(|t| t as &dyn TableLike),
                span: v.span(),
            })
        }
        _ => None,
    }
}

/// One key of a table: its name, where the key and the value are, and its dotted path.
pub(crate) struct Entry<'a> {
    pub name: &'a str,
    pub key_span: Option<Range<usize>>,
    pub item: &'a Item,
    pub field: String,
}

impl Entry<'_> {
    /// Where to point for a problem with the value: the value itself, or its key for tables
    /// (whose own span runs over their whole body).
    pub fn value_span(&self) -> Option<Range<usize>> {
        match self.item {
            Item::Value(v) => v.span().or_else(|| self.key_span.clone()),
            _ => self.key_span.clone().or_else(|| self.item.span()),
        }
    }

    pub fn value(&self) -> Option<&Value> {
        self.item.as_value()
    }
}

/// The keys of a table in file order, with `parent.key` field paths.
pub(crate) fn entries<'a>(table: &'a dyn TableLike, parent: &str) -> Vec<Entry<'a>> {
    let mut out: Vec<Entry<'a>> = table
        .iter()
        .map(|(name, item)| Entry {
            name,
            key_span: table.key(name).and_then(|k| k.span()),
            item,
            field: if parent.is_empty() {
                name.to_string()
            } else {
                format!("{parent}.{name}")
            },
        })
        .collect();
    // Implicit tables can be stored after the keys that follow them; report in file order.
    out.sort_by_key(|e| e.key_span.as_ref().map_or(usize::MAX, |s| s.start));
    out
}

/// "a string", "an integer", ...: what a user wrote, in words.
pub(crate) fn describe(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
        Item::Value(v) => describe_value(v),
    }
}

pub(crate) fn describe_value(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::InlineTable(_) => "a table",
    }
}

/// The header of a standard table such as `[services.NAME]`, from its `[` to its `]`; for tables
/// written otherwise (inline, dotted keys), the name's key.
pub(crate) fn header_span(text: &str, e: &Entry<'_>) -> Range<usize> {
    let key = e.key_span.clone().unwrap_or(0..0);
    if let Item::Table(t) = e.item {
        if let Some(span) = t.span().filter(|_| !t.is_implicit() && !t.is_dotted()) {
            let close = text
                .get(key.end..)
                .and_then(|rest| rest.find(']'))
                .map(|i| key.end + i + 1);
            if let Some(end) = close.filter(|&end| end > span.start) {
                return span.start..end;
            }
        }
    }
    key
}

// === syntax errors ===

/// Turns a TOML syntax error into a located [`SpecError`], guessing the field from the text.
pub(crate) fn syntax_error(source: &Source, err: &toml_edit::TomlError) -> SpecError {
    let text = source.inner();
    let span = err.span();
    let message = err
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(": ");
    let message = if message.is_empty() {
        "invalid TOML".to_string()
    } else {
        format!("invalid TOML: {message}")
    };
    let field = guess_field(text, span.as_ref().map_or(0, |s| s.start.min(text.len())));
    let e = SpecError::at(source, span, field, message);
    if e.message.contains("duplicate key") {
        e.with_hint("a table or key may appear only once in a file: merge the two or rename one")
    } else {
        e
    }
}

/// A best-effort dotted path for the line holding `offset`: the table header on that line, or
/// the last header above plus the key being assigned. Syntax errors carry no field otherwise.
fn guess_field(text: &str, offset: usize) -> Option<String> {
    let offset = (0..=offset).rev().find(|&i| text.is_char_boundary(i))?;
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = text[line_start..line_end].trim();
    if let Some(header) = header_path(line) {
        return Some(header);
    }
    let key = line
        .split('=')
        .next()
        .map(compact)
        .filter(|k| line.contains('=') && !k.is_empty() && !k.contains(['[', '{', '"', '\'']));
    let table = text[..line_start]
        .lines()
        .rev()
        .find_map(|l| header_path(l.trim()));
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(t), None) => Some(t),
        (None, None) => None,
    }
}

/// `services.web` for a line `[services.web]` or `[[services.web]]` (comments allowed after).
fn header_path(line: &str) -> Option<String> {
    let inner = line.strip_prefix('[')?;
    let inner = inner.strip_prefix('[').unwrap_or(inner);
    let end = inner.find(']')?;
    let path = compact(&inner[..end]);
    (!path.is_empty()).then_some(path)
}

/// Removes blanks around the dots of a dotted key.
fn compact(key: &str) -> String {
    key.split('.').map(str::trim).collect::<Vec<_>>().join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_field_of_a_syntax_error_is_guessed_from_header_and_key() {
        let text = "[services.web]\ncommand = [\ninstances = = 3\n";
        let at = text.find("= 3").unwrap();
        assert_eq!(
            guess_field(text, at).as_deref(),
            Some("services.web.instances")
        );
        assert_eq!(guess_field(text, 3).as_deref(), Some("services.web"));
        assert_eq!(guess_field("x = ", 4).as_deref(), Some("x"));
        assert_eq!(guess_field("", 0), None);
    }
}
