//! The dashboard's logins: `ebb ui` asks for a one-time code (with the API token), the browser
//! trades the code for a session cookie. The API token never appears in a URL, a browser's
//! history or a referrer; the code is good once and for [`LOGIN_CODE_TTL`].
//!
//! Codes and sessions are kept by the SHA-256 of their secret, so that a lookup's timing says
//! nothing about the secret, and in memory only: a restarted server forgets them (run `ebb ui`
//! again). Both tables are bounded; the oldest entry goes first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a login URL works: a minute, long enough to click it, short enough that one left in
/// a terminal's scrollback is useless. Slack's and Notion's magic links last longer (10–15 min)
/// because they travel by e-mail; this one goes from a terminal to a browser on the same desk.
pub const LOGIN_CODE_TTL: Duration = Duration::from_secs(60);

/// How long a session lasts: a working day (8 h). Then `ebb ui` gives a new one in a second.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// At most this many unused codes: each `ebb ui` makes one, so more means a loop or an attack.
const MAX_CODES: usize = 64;

/// At most this many live sessions (about 100 bytes each).
const MAX_SESSIONS: usize = 1024;

/// The cookie that carries a session.
pub const COOKIE: &str = "ebb_session";

/// One-time login codes and the sessions they opened.
#[derive(Default)]
pub struct Sessions {
    tables: Mutex<Tables>,
}

#[derive(Default)]
struct Tables {
    /// Code hash → when it stops working.
    codes: HashMap<String, Instant>,
    /// Session hash → when it ends.
    sessions: HashMap<String, Instant>,
}

impl Sessions {
    /// A new one-time login code, good until `now` + [`LOGIN_CODE_TTL`].
    pub fn issue_code(&self, now: Instant) -> String {
        let code = crate::auth::random_token();
        let mut tables = self.lock();
        insert_bounded(
            &mut tables.codes,
            hash(&code),
            now + LOGIN_CODE_TTL,
            now,
            MAX_CODES,
        );
        code
    }

    /// Trades a code for a new session's secret; None if the code is unknown, used or expired.
    pub fn redeem(&self, code: &str, now: Instant) -> Option<String> {
        let mut tables = self.lock();
        let expires = tables.codes.remove(&hash(code))?;
        if expires <= now {
            return None;
        }
        let session = crate::auth::random_token();
        let ends = now + SESSION_TTL;
        insert_bounded(
            &mut tables.sessions,
            hash(&session),
            ends,
            now,
            MAX_SESSIONS,
        );
        Some(session)
    }

    /// Whether `session` is a live session.
    pub fn valid(&self, session: &str, now: Instant) -> bool {
        self.lock()
            .sessions
            .get(&hash(session))
            .is_some_and(|ends| *ends > now)
    }

    /// Ends a session (logout); unknown ones are ignored.
    pub fn end(&self, session: &str) {
        self.lock().sessions.remove(&hash(session));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Inserts after dropping what expired; when still full, drops the entry that ends first.
fn insert_bounded(
    table: &mut HashMap<String, Instant>,
    key: String,
    ends: Instant,
    now: Instant,
    max: usize,
) {
    table.retain(|_, until| *until > now);
    if table.len() >= max {
        if let Some(first) = table.iter().min_by_key(|(_, until)| **until) {
            let first = first.0.clone();
            table.remove(&first);
        }
    }
    table.insert(key, ends);
}

fn hash(secret: &str) -> String {
    ebb_core::hash::sha256_hex(secret.as_bytes())
}

/// The value of cookie `name` in a `Cookie` header (`a=1; b=2`).
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_opens_one_session_once() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let code = sessions.issue_code(now);
        let session = sessions.redeem(&code, now).unwrap();
        assert!(sessions.valid(&session, now));
        assert_eq!(sessions.redeem(&code, now), None, "a code works once");
        assert!(!sessions.valid(&code, now), "a code is not a session");
    }

    #[test]
    fn codes_and_sessions_expire() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let stale = sessions.issue_code(now);
        assert_eq!(sessions.redeem(&stale, now + LOGIN_CODE_TTL), None);
        let code = sessions.issue_code(now);
        let session = sessions.redeem(&code, now).unwrap();
        assert!(sessions.valid(&session, now + SESSION_TTL - Duration::from_secs(1)));
        assert!(!sessions.valid(&session, now + SESSION_TTL));
        sessions.end(&session);
        assert!(!sessions.valid(&session, now));
    }

    #[test]
    fn the_tables_are_bounded_and_drop_the_oldest() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let first = sessions.issue_code(now);
        for i in 1..=MAX_CODES as u64 {
            sessions.issue_code(now + Duration::from_millis(i));
        }
        assert_eq!(sessions.lock().codes.len(), MAX_CODES);
        assert_eq!(sessions.redeem(&first, now), None, "the oldest code went");
    }

    #[test]
    fn a_cookie_is_found_among_others() {
        let header = "theme=dark; ebb_session=abc123; other=1";
        assert_eq!(cookie(header, COOKIE), Some("abc123"));
        assert_eq!(cookie("ebb_session_x=1", COOKIE), None);
        assert_eq!(cookie("", COOKIE), None);
    }
}
