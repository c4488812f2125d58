//! The SQL, and the conversions between SQLite's signed integers and our revisions.
//!
//! Functions take a `&Connection`; pass a transaction when several must see one snapshot.

use rusqlite::types::ToSql;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::{KeyValue, StoreError, WatchEvent};

/// Columns every row query selects, in [`RawRow::read`]'s order.
const COLUMNS: &str = "revision, key, value, create_revision, deleted";

// === rows ===

/// A row of `log`, checked.
#[derive(Debug)]
pub struct LogRow {
    pub revision: u64,
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: u64,
    pub deleted: bool,
}

impl LogRow {
    pub fn into_key_value(self) -> KeyValue {
        KeyValue {
            key: self.key,
            value: self.value,
            create_revision: self.create_revision,
            mod_revision: self.revision,
        }
    }

    pub fn into_event(self) -> WatchEvent {
        if self.deleted {
            WatchEvent::Delete {
                key: self.key,
                revision: self.revision,
            }
        } else {
            WatchEvent::Put(self.into_key_value())
        }
    }
}

/// A row as SQLite returns it, before checking.
struct RawRow {
    revision: i64,
    key: String,
    value: Vec<u8>,
    create_revision: i64,
    deleted: i64,
}

impl RawRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<RawRow> {
        Ok(RawRow {
            revision: row.get(0)?,
            key: row.get(1)?,
            value: row.get(2)?,
            create_revision: row.get(3)?,
            deleted: row.get(4)?,
        })
    }

    fn check(self) -> Result<LogRow, StoreError> {
        let revision = revision_from_sql(self.revision, "revision")?;
        let create_revision = revision_from_sql(self.create_revision, "create_revision")?;
        if create_revision == 0 || create_revision > revision {
            return Err(StoreError::Corrupt(format!(
                "row {revision} of key `{}` has create_revision {create_revision}",
                self.key
            )));
        }
        Ok(LogRow {
            revision,
            key: self.key,
            value: self.value,
            create_revision,
            deleted: self.deleted != 0,
        })
    }
}

/// The row being appended by a put or a delete.
pub struct NewRow<'a> {
    pub key: &'a str,
    pub value: &'a [u8],
    /// `None`: this row creates the key, so its create revision is its own revision.
    pub create_revision: Option<u64>,
    pub prev_revision: u64,
    pub deleted: bool,
}

// === prefixes ===

/// The keys starting with a prefix, as a range `start <= key < end` an index can scan.
///
/// SQLite compares TEXT bytewise (BINARY collation), and UTF-8 byte order is code point
/// order, so "starts with `ab`" is `"ab" <= key < "ac"`: bump the last character that can
/// be bumped. No `end` means no upper bound (empty prefix, or only `char::MAX`).
#[derive(Debug, PartialEq, Eq)]
pub struct PrefixRange {
    start: String,
    end: Option<String>,
}

impl PrefixRange {
    pub fn new(prefix: &str) -> PrefixRange {
        let mut chars: Vec<char> = prefix.chars().collect();
        let mut end = None;
        while let Some(last) = chars.pop() {
            if let Some(next) = next_char(last) {
                chars.push(next);
                end = Some(chars.into_iter().collect());
                break;
            }
        }
        PrefixRange {
            start: prefix.to_string(),
            end,
        }
    }

    /// SQL condition on `key`, binding `:start` and `:end`.
    fn condition(&self) -> &'static str {
        if self.end.is_some() {
            "key >= :start AND key < :end"
        } else {
            "key >= :start"
        }
    }

    fn bind<'a>(&'a self, params: &mut Vec<(&'static str, &'a dyn ToSql)>) {
        params.push((":start", &self.start));
        if let Some(end) = &self.end {
            params.push((":end", end));
        }
    }
}

/// The next Unicode scalar value, skipping the surrogate gap.
fn next_char(c: char) -> Option<char> {
    match u32::from(c) + 1 {
        0xD800 => Some('\u{E000}'),
        next => char::from_u32(next),
    }
}

// === reads ===

/// The latest revision ever assigned. Read from `sqlite_sequence`, not `MAX(revision)`,
/// because compaction may delete the newest row (a tombstone) but never lowers the sequence.
pub fn store_revision(conn: &Connection) -> Result<u64, StoreError> {
    let seq: Option<i64> = conn
        .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'log'")?
        .query_row([], |row| row.get(0))
        .optional()?;
    seq.map_or(Ok(0), |seq| revision_from_sql(seq, "sqlite_sequence"))
}

pub fn compacted_revision(conn: &Connection) -> Result<u64, StoreError> {
    let rev: Option<i64> = conn
        .prepare_cached("SELECT value FROM meta WHERE name = 'compact_revision'")?
        .query_row([], |row| row.get(0))
        .optional()?;
    revision_from_sql(rev.unwrap_or(0), "compact_revision")
}

/// The newest row of `key`, live or tombstone.
pub fn latest_row(conn: &Connection, key: &str) -> Result<Option<LogRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM log WHERE key = ?1 ORDER BY revision DESC LIMIT 1");
    let raw = conn
        .prepare_cached(&sql)?
        .query_row([key], RawRow::read)
        .optional();
    raw.map_err(decode_error)?.map(RawRow::check).transpose()
}

/// The condition and order of the newest row of each key in `range` that is not a delete.
fn live(range: &PrefixRange) -> String {
    format!(
        "revision IN (SELECT MAX(revision) FROM log WHERE {} GROUP BY key) \
         AND deleted = 0 ORDER BY key",
        range.condition()
    )
}

/// The live value of every key in `range`, in key order.
pub fn live_rows(conn: &Connection, range: &PrefixRange) -> Result<Vec<LogRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM log WHERE {}", live(range));
    let mut params = Vec::new();
    range.bind(&mut params);
    collect(conn, &sql, &params)
}

/// The live keys in `range`, in key order, without their values.
pub fn live_keys(conn: &Connection, range: &PrefixRange) -> Result<Vec<String>, StoreError> {
    let sql = format!("SELECT key FROM log WHERE {}", live(range));
    let mut params = Vec::new();
    range.bind(&mut params);
    let mut stmt = conn.prepare_cached(&sql)?;
    let keys = stmt.query_map(&params[..], |row| row.get::<_, String>(0))?;
    keys.map(|key| key.map_err(decode_error)).collect()
}

/// Rows in `range` with revision > `after`, oldest first, at most `limit`.
pub fn rows_after(
    conn: &Connection,
    range: &PrefixRange,
    after: u64,
    limit: usize,
) -> Result<Vec<LogRow>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM log WHERE revision > :after AND {} \
         ORDER BY revision LIMIT :limit",
        range.condition()
    );
    let after = revision_to_sql(after);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut params: Vec<(&str, &dyn ToSql)> = vec![(":after", &after), (":limit", &limit)];
    range.bind(&mut params);
    collect(conn, &sql, &params)
}

fn collect(
    conn: &Connection,
    sql: &str,
    params: &[(&str, &dyn ToSql)],
) -> Result<Vec<LogRow>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, RawRow::read)?;
    rows.map(|raw| raw.map_err(decode_error)?.check()).collect()
}

// === writes ===

/// Append `row`; returns its revision.
pub fn append(conn: &Connection, row: &NewRow<'_>) -> Result<u64, StoreError> {
    conn.prepare_cached(
        "INSERT INTO log (key, value, create_revision, prev_revision, deleted) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        row.key,
        row.value,
        row.create_revision.map_or(0, revision_to_sql),
        revision_to_sql(row.prev_revision),
        row.deleted,
    ])?;
    let revision = conn.last_insert_rowid();
    if row.create_revision.is_none() {
        conn.prepare_cached("UPDATE log SET create_revision = revision WHERE revision = ?1")?
            .execute([revision])?;
    }
    revision_from_sql(revision, "revision")
}

/// Delete rows at or below `revision` that are tombstones or have a newer row for their key.
/// What remains at or below it is exactly the live value of each key. Returns rows removed.
pub fn delete_superseded(conn: &Connection, revision: u64) -> Result<usize, StoreError> {
    let removed = conn
        .prepare_cached(
            "DELETE FROM log WHERE revision <= ?1 AND (deleted <> 0 OR EXISTS \
             (SELECT 1 FROM log AS newer WHERE newer.key = log.key \
              AND newer.revision > log.revision))",
        )?
        .execute([revision_to_sql(revision)])?;
    Ok(removed)
}

pub fn set_compacted_revision(conn: &Connection, revision: u64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'compact_revision'")?
        .execute([revision_to_sql(revision)])?;
    Ok(())
}

// === conversions ===

/// Revisions are positive i64 row ids in SQLite; anything else means the file was tampered with.
fn revision_from_sql(value: i64, column: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column} is negative ({value})")))
}

/// No row id exceeds i64::MAX, so clamping keeps every comparison's meaning.
fn revision_to_sql(revision: u64) -> i64 {
    i64::try_from(revision).unwrap_or(i64::MAX)
}

/// A value of the wrong type (e.g. a NULL value or a non-UTF-8 key) is bad data, not a fault
/// of SQLite; say so.
fn decode_error(err: rusqlite::Error) -> StoreError {
    match err {
        rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => {
            StoreError::Corrupt(format!("unreadable log row: {err}"))
        }
        other => StoreError::Sqlite(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(prefix: &str) -> Option<String> {
        PrefixRange::new(prefix).end
    }

    #[test]
    fn prefix_end_bumps_the_last_character() {
        assert_eq!(end("services/"), Some("services0".to_string()));
        assert_eq!(end("a"), Some("b".to_string()));
    }

    #[test]
    fn empty_prefix_has_no_upper_bound() {
        assert_eq!(end(""), None);
        assert_eq!(end("\u{10FFFF}"), None);
    }

    #[test]
    fn prefix_end_carries_past_max_chars_and_skips_surrogates() {
        assert_eq!(end("a\u{10FFFF}"), Some("b".to_string()));
        assert_eq!(end("x\u{D7FF}"), Some("x\u{E000}".to_string()));
    }

    #[test]
    fn prefix_range_contains_exactly_the_prefixed_keys() {
        let range = PrefixRange::new("ab");
        let end = range.end.clone().unwrap_or_default();
        let inside = |k: &str| k >= range.start.as_str() && k < end.as_str();
        for key in ["ab", "ab/", "abz", "ab\u{10FFFF}", "abé"] {
            assert!(inside(key), "{key:?} should be inside");
        }
        for key in ["a", "aa", "ac", "b", "aé"] {
            assert!(!inside(key), "{key:?} should be outside");
        }
    }
}
