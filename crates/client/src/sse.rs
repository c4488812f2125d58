//! Reading server-sent events (`text/event-stream`) as `GET /v1/events/stream` writes them:
//! `id:` and `data:` fields, a blank line ending each event, `:` comments as keep-alives.

/// The most one event may take before its blank line: ebb's events are a few hundred bytes, so
/// a longer one means a broken or hostile server, not a reason to grow memory.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// One event: its id (the last one seen, as the standard says) and its data lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The event's `id:` field, if it had one.
    pub id: Option<String>,
    /// Its `data:` lines, joined by newlines.
    pub data: String,
}

/// Splits a byte stream into [`Message`]s.
#[derive(Debug, Default)]
pub struct Parser {
    pending: Vec<u8>,
    /// How much of `pending` is known to hold no newline: each byte is looked at once.
    scanned: usize,
    id: Option<String>,
    data: Vec<String>,
}

impl Parser {
    /// Takes the next chunk; returns the events it completed, or an error past
    /// [`MAX_EVENT_BYTES`].
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Message>, String> {
        self.pending.extend_from_slice(chunk);
        let mut done = Vec::new();
        let mut start = 0;
        while let Some(at) = self.pending[self.scanned..]
            .iter()
            .position(|b| *b == b'\n')
        {
            let end = self.scanned + at;
            let line = String::from_utf8_lossy(&self.pending[start..end]).into_owned();
            start = end + 1;
            self.scanned = start;
            if let Some(message) = self.line(line.trim_end_matches('\r')) {
                done.push(message);
            }
        }
        self.pending.drain(..start);
        self.scanned = self.pending.len();
        let held = self.pending.len() + self.data.iter().map(String::len).sum::<usize>();
        if held > MAX_EVENT_BYTES {
            return Err(format!(
                "an event of more than {MAX_EVENT_BYTES} bytes: not an ebb event stream"
            ));
        }
        Ok(done)
    }

    fn line(&mut self, line: &str) -> Option<Message> {
        if line.is_empty() {
            if self.data.is_empty() {
                return None;
            }
            let data = std::mem::take(&mut self.data).join("\n");
            return Some(Message {
                id: self.id.clone(),
                data,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "data" => self.data.push(value.to_string()),
            "id" => self.id = Some(value.to_string()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_come_out_whole() {
        let mut parser = Parser::default();
        let stream = b"retry: 1000\n\n: keep-alive\n\nid: 7\ndata: {\"a\":1}\n\nid: 8\r\ndata: x\ndata: y\n\n";
        let mut got = Vec::new();
        for chunk in stream.chunks(5) {
            got.extend(parser.push(chunk).unwrap());
        }
        assert_eq!(
            got,
            [
                Message {
                    id: Some("7".into()),
                    data: "{\"a\":1}".into()
                },
                Message {
                    id: Some("8".into()),
                    data: "x\ny".into()
                },
            ]
        );
    }

    #[test]
    fn an_endless_event_is_refused() {
        let mut parser = Parser::default();
        let line = vec![b'a'; 64 * 1024];
        let mut result = Ok(Vec::new());
        for _ in 0..20 {
            result = parser.push(&line);
            if result.is_err() {
                break;
            }
        }
        assert!(result.is_err());
    }
}
