//! Node labels interned into integer columns, so the hot loop compares `u32`s, not strings.
//!
//! Each label key seen on any node gets a column with one entry per node: the id of that node's
//! value, or [`ABSENT`]. A constraint is resolved once per request into a [`Check`] on one column.

use crate::{Constraint, Operator};
use std::collections::{BTreeMap, HashMap};

/// The column entry of a node that does not have the label.
const ABSENT: u32 = u32::MAX;

/// A constraint resolved against the interned labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// No node can satisfy it: `key=value` where no node has ever had that key or value.
    Never,
    /// Every node satisfies it: `key!=value` where no node has ever had that key or value.
    Always,
    /// The node's entry in `column` must be `value`.
    Equal { column: u32, value: u32 },
    /// The node's entry in `column` must not be `value` (absent passes).
    NotEqual { column: u32, value: u32 },
}

#[derive(Debug, Clone, Default)]
pub(crate) struct LabelIndex {
    keys: HashMap<String, u32>,
    values: HashMap<String, u32>,
    /// `columns[key][node]`: the node's value id for that key.
    columns: Vec<Vec<u32>>,
    nodes: usize,
}

impl LabelIndex {
    /// Appends a node with these labels.
    pub(crate) fn push_node(&mut self, labels: &BTreeMap<String, String>) {
        for column in &mut self.columns {
            column.push(ABSENT);
        }
        self.nodes += 1;
        self.set_node(self.nodes - 1, labels);
    }

    /// Replaces the labels of node `node` (which must have been pushed).
    pub(crate) fn set_node(&mut self, node: usize, labels: &BTreeMap<String, String>) {
        for column in &mut self.columns {
            column[node] = ABSENT;
        }
        for (key, value) in labels {
            let column = self.column_for(key);
            let value = intern(&mut self.values, value);
            self.columns[column][node] = value;
        }
    }

    fn column_for(&mut self, key: &str) -> usize {
        let id = intern(&mut self.keys, key) as usize;
        if id == self.columns.len() {
            self.columns.push(vec![ABSENT; self.nodes]);
        }
        id
    }

    /// Resolves a constraint for the current labels. Valid until the labels change.
    pub(crate) fn resolve(&self, constraint: &Constraint) -> Check {
        let column = self.keys.get(constraint.key.as_str()).copied();
        let value = self.values.get(constraint.value.as_str()).copied();
        match (constraint.operator, column, value) {
            (Operator::Equal, Some(column), Some(value)) => Check::Equal { column, value },
            (Operator::NotEqual, Some(column), Some(value)) => Check::NotEqual { column, value },
            (Operator::Equal, _, _) => Check::Never,
            (Operator::NotEqual, _, _) => Check::Always,
        }
    }

    /// Whether node `node` passes `check`.
    #[inline]
    pub(crate) fn passes(&self, check: Check, node: usize) -> bool {
        match check {
            Check::Never => false,
            Check::Always => true,
            Check::Equal { column, value } => self.columns[column as usize][node] == value,
            Check::NotEqual { column, value } => self.columns[column as usize][node] != value,
        }
    }
}

/// The id of `text` in `table`, adding it if new. Ids are dense from 0; the value table would
/// need four billion distinct strings to reach [`ABSENT`].
fn intern(table: &mut HashMap<String, u32>, text: &str) -> u32 {
    if let Some(&id) = table.get(text) {
        return id;
    }
    let id = u32::try_from(table.len()).unwrap_or(ABSENT - 1);
    table.insert(text.to_owned(), id);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn checks_agree_with_the_string_definition() {
        let mut index = LabelIndex::default();
        let nodes = [
            labels(&[("zone", "a")]),
            labels(&[("zone", "b"), ("disk", "ssd")]),
            labels(&[]),
        ];
        for node in &nodes {
            index.push_node(node);
        }
        let constraints = [
            Constraint::equal("zone", "a"),
            Constraint::not_equal("zone", "a"),
            Constraint::equal("disk", "ssd"),
            Constraint::not_equal("disk", "ssd"),
            Constraint::equal("gpu", "yes"),
            Constraint::not_equal("gpu", "yes"),
            Constraint::equal("zone", "ssd"),
            Constraint::equal("zone", "c"),
        ];
        for constraint in &constraints {
            let check = index.resolve(constraint);
            for (i, node) in nodes.iter().enumerate() {
                let expected = constraint.matches(node.get(&constraint.key).map(String::as_str));
                assert_eq!(index.passes(check, i), expected, "{constraint} on node {i}");
            }
        }
    }

    #[test]
    fn relabelling_a_node_clears_its_old_labels() {
        let mut index = LabelIndex::default();
        index.push_node(&labels(&[("zone", "a"), ("disk", "ssd")]));
        index.set_node(0, &labels(&[("zone", "b")]));
        assert!(!index.passes(index.resolve(&Constraint::equal("zone", "a")), 0));
        assert!(index.passes(index.resolve(&Constraint::equal("zone", "b")), 0));
        assert!(!index.passes(index.resolve(&Constraint::equal("disk", "ssd")), 0));
    }
}
