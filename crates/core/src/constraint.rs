//! Node-label constraints as the deploy file writes them: `constraints = ["zone=a", "disk!=hdd"]`.

use std::fmt;
use std::str::FromStr;

/// How a constraint compares a node's label with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key=value`: the node has the label `key` and its value is `value`.
    Equal,
    /// `key!=value`: the node does not have `key` set to `value`; a node without the label
    /// passes, as with Nomad's `!=` and Kubernetes' `NotIn`, because "not in zone a" is true of
    /// a node that is in no zone.
    NotEqual,
}

impl Operator {
    fn symbol(self) -> &'static str {
        match self {
            Operator::Equal => "=",
            Operator::NotEqual => "!=",
        }
    }
}

/// One condition on a node's labels. Build it with [`Constraint::parse`] (or `str::parse`), which
/// checks the text, or with [`Constraint::equal`] / [`Constraint::not_equal`] from parts already
/// checked elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Constraint {
    /// The label's name, e.g. `zone`.
    pub key: String,
    /// The comparison.
    pub operator: Operator,
    /// The value compared with, e.g. `a`.
    pub value: String,
}

/// Why a constraint string was refused. Each message quotes the input and says what to write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    /// The string is empty or only whitespace.
    #[error("empty constraint: write `key=value` or `key!=value`, e.g. `zone=a`")]
    Empty,
    /// No `=` or `!=` in the string.
    #[error(
        "constraint `{0}` has no operator: write `key=value` or `key!=value`, e.g. `{0}=value`"
    )]
    NoOperator(String),
    /// Nothing before the operator.
    #[error("constraint `{0}` has no label name before the operator: write e.g. `zone{1}a`")]
    EmptyKey(String, &'static str),
    /// Nothing after the operator.
    #[error("constraint `{0}` has no value after the operator: write e.g. `{1}a`")]
    EmptyValue(String, String),
    /// `==`, a second `=`, or some other operator text.
    #[error(
        "constraint `{0}` has more than one operator: write `key=value` or `key!=value` \
         (a single `=`)"
    )]
    ExtraOperator(String),
    /// A character outside the allowed set in the key or the value.
    #[error(
        "constraint `{input}` has `{bad}` in its {part}: labels use letters, digits, \
         `-`, `_`, `.`{slash}"
    )]
    BadCharacter {
        /// The whole constraint as given.
        input: String,
        /// The first offending character.
        bad: char,
        /// `"label name"` or `"value"`.
        part: &'static str,
        /// `", /"` for keys (which may be prefixed like `node.ebb/zone`), empty for values.
        slash: &'static str,
    },
}

impl Constraint {
    /// `key=value`.
    pub fn equal(key: impl Into<String>, value: impl Into<String>) -> Self {
        Constraint {
            key: key.into(),
            operator: Operator::Equal,
            value: value.into(),
        }
    }

    /// `key!=value`.
    pub fn not_equal(key: impl Into<String>, value: impl Into<String>) -> Self {
        Constraint {
            key: key.into(),
            operator: Operator::NotEqual,
            value: value.into(),
        }
    }

    /// Parses `key=value` or `key!=value`. Whitespace around the whole string and around the
    /// operator is ignored; keys use letters, digits, `-`, `_`, `.` and `/` (for prefixes such as
    /// `node.ebb/zone`), values the same without `/`. Never panics: anything else is a
    /// [`ConstraintError`] whose message says what to write instead.
    pub fn parse(text: &str) -> Result<Constraint, ConstraintError> {
        let input = text.trim();
        if input.is_empty() {
            return Err(ConstraintError::Empty);
        }
        let (key, operator, value) = split_operator(input)?;
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() {
            return Err(ConstraintError::EmptyKey(
                input.to_owned(),
                operator.symbol(),
            ));
        }
        if value.is_empty() {
            let hint = format!("{key}{}", operator.symbol());
            return Err(ConstraintError::EmptyValue(input.to_owned(), hint));
        }
        if value.contains(['=', '!']) {
            return Err(ConstraintError::ExtraOperator(input.to_owned()));
        }
        check_chars(input, key, true)?;
        check_chars(input, value, false)?;
        Ok(Constraint {
            key: key.to_owned(),
            operator,
            value: value.to_owned(),
        })
    }

    /// Whether a node whose label `key` has `label` (None: not set) satisfies this constraint.
    /// The scheduler's hot loop compares interned ids instead; this is the readable definition
    /// it must agree with.
    pub fn matches(&self, label: Option<&str>) -> bool {
        let equal = label == Some(self.value.as_str());
        match self.operator {
            Operator::Equal => equal,
            Operator::NotEqual => !equal,
        }
    }
}

/// Splits at the first `!=` or `=`, whichever comes first.
fn split_operator(input: &str) -> Result<(&str, Operator, &str), ConstraintError> {
    let at = input
        .find('=')
        .ok_or_else(|| ConstraintError::NoOperator(input.to_owned()))?;
    let before = &input[..at];
    let after = &input[at + 1..];
    match before.strip_suffix('!') {
        Some(key) => Ok((key, Operator::NotEqual, after)),
        None => Ok((before, Operator::Equal, after)),
    }
}

fn check_chars(input: &str, part: &str, is_key: bool) -> Result<(), ConstraintError> {
    let allowed =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') || (is_key && c == '/');
    match part.chars().find(|&c| !allowed(c)) {
        None => Ok(()),
        Some(bad) if is_key && bad == '!' => Err(ConstraintError::ExtraOperator(input.to_owned())),
        Some(bad) => Err(ConstraintError::BadCharacter {
            input: input.to_owned(),
            bad,
            part: if is_key { "label name" } else { "value" },
            slash: if is_key { ", `/`" } else { "" },
        }),
    }
}

impl FromStr for Constraint {
    type Err = ConstraintError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Constraint::parse(text)
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.key, self.operator.symbol(), self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Constraint::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn equal_and_not_equal_parse_and_print_back() {
        let eq = Constraint::parse("zone=a").unwrap();
        assert_eq!(eq, Constraint::equal("zone", "a"));
        assert_eq!(eq.to_string(), "zone=a");
        let ne: Constraint = " disk != hdd ".parse().unwrap();
        assert_eq!(ne, Constraint::not_equal("disk", "hdd"));
        assert_eq!(ne.to_string(), "disk!=hdd");
        assert_eq!(
            Constraint::parse("node.ebb/zone=eu-west_1.a").unwrap(),
            Constraint::equal("node.ebb/zone", "eu-west_1.a")
        );
    }

    #[test]
    fn a_bare_key_says_an_operator_is_missing() {
        let message = err("zone");
        assert!(message.contains("`zone` has no operator"), "{message}");
        assert!(message.contains("`zone=value`"), "{message}");
    }

    #[test]
    fn empty_parts_are_named() {
        assert!(err("").contains("empty constraint"));
        assert!(err("   ").contains("empty constraint"));
        assert!(err("=a").contains("no label name"), "{}", err("=a"));
        assert!(err("!=a").contains("no label name"));
        let message = err("zone=");
        assert!(
            message.contains("no value") && message.contains("`zone=a`"),
            "{message}"
        );
        assert!(err("zone!=").contains("`zone!=a`"));
    }

    #[test]
    fn doubled_or_unknown_operators_are_refused() {
        assert!(err("zone==a").contains("more than one operator"));
        assert!(err("a=b=c").contains("more than one operator"));
        assert!(err("zone!!=a").contains("more than one operator"));
        assert!(err("zone=!a").contains("more than one operator"));
        let message = err("zone<a=b");
        assert!(message.contains("`<` in its label name"), "{message}");
        assert!(err("zone=a b").contains("` ` in its value"));
        assert!(err("zone=a/b").contains("`/` in its value"));
    }

    #[test]
    fn not_equal_passes_nodes_without_the_label() {
        let ne = Constraint::not_equal("zone", "a");
        assert!(ne.matches(None));
        assert!(ne.matches(Some("b")));
        assert!(!ne.matches(Some("a")));
        let eq = Constraint::equal("zone", "a");
        assert!(!eq.matches(None));
        assert!(eq.matches(Some("a")));
    }
}
