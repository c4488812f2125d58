//! Message bodies on the HTTP/1.1 path: how each one is delimited, and a strict scanner of
//! chunked framing that finds where a chunked body ends as its bytes pass through unchanged.
//!
//! The scanner is the request-smuggling boundary: the proxy and the endpoint must agree on where
//! a request ends, so anything RFC 9112 §7.1 does not allow (a bare LF, a size that is not hex,
//! a size too large, junk after the data) is an error, never a guess.

use std::fmt;

/// How a message body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Framing {
    /// No body (no length, `Content-Length: 0`, a HEAD response, 1xx/204/304).
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Response only: the body runs until the endpoint closes the connection.
    UntilClose,
}

/// Chunked framing that RFC 9112 §7.1 does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadChunk;

impl fmt::Display for BadChunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("malformed chunked body")
    }
}

/// The part of a body still to be forwarded.
#[derive(Debug, Clone)]
pub(crate) enum Remaining {
    Length(u64),
    Chunked(Chunks),
    UntilClose,
}

impl Remaining {
    pub(crate) fn new(framing: Framing) -> Remaining {
        match framing {
            Framing::Empty => Remaining::Length(0),
            Framing::Length(n) => Remaining::Length(n),
            Framing::Chunked => Remaining::Chunked(Chunks::default()),
            Framing::UntilClose => Remaining::UntilClose,
        }
    }

    /// Whether the whole body has been forwarded (never, for a body that runs until close).
    pub(crate) fn done(&self) -> bool {
        match self {
            Remaining::Length(n) => *n == 0,
            Remaining::Chunked(chunks) => chunks.done(),
            Remaining::UntilClose => false,
        }
    }

    /// How many of `bytes` (the next bytes of the stream) belong to the body; records them as
    /// forwarded. Bytes past the end of the body are left for the next message.
    pub(crate) fn take(&mut self, bytes: &[u8]) -> Result<usize, BadChunk> {
        match self {
            Remaining::Length(n) => {
                let take = (*n).min(bytes.len() as u64);
                *n -= take;
                Ok(take as usize)
            }
            Remaining::Chunked(chunks) => chunks.advance(bytes),
            Remaining::UntilClose => Ok(bytes.len()),
        }
    }
}

/// Most hex digits in a chunk size: 15 digits stay below 2^60, far above any real chunk, and
/// cannot overflow. hyper allows 16 (u64); anything longer is an attack, not a body.
const MAX_SIZE_DIGITS: u8 = 15;

/// Scans chunked framing (RFC 9112 §7.1) as it passes through.
#[derive(Debug, Default, Clone)]
pub(crate) struct Chunks {
    state: State,
    /// Data bytes left in the current chunk, or the size being read.
    size: u64,
    digits: u8,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the chunk size's hex digits.
    #[default]
    Size,
    /// Whitespace after the size: only more of it, `;` or CR may follow.
    SizeSpace,
    /// A `;name=value` extension, up to CR.
    Extension,
    /// The LF ending the size line.
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// After the last chunk: a trailer field line, or the CR of the final empty line.
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

impl Chunks {
    pub(crate) fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes framing and data from `bytes` up to the end of the body; returns how many bytes
    /// belong to the body.
    pub(crate) fn advance(&mut self, bytes: &[u8]) -> Result<usize, BadChunk> {
        let mut i = 0;
        while i < bytes.len() {
            if self.state == State::Data {
                let take = self.size.min((bytes.len() - i) as u64);
                self.size -= take;
                i += take as usize;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            if self.state == State::Done {
                return Ok(i);
            }
            self.step(bytes[i])?;
            i += 1;
            if self.state == State::Done {
                return Ok(i);
            }
        }
        Ok(i)
    }

    /// One byte of framing (anything but chunk data).
    fn step(&mut self, b: u8) -> Result<(), BadChunk> {
        let expect = |wanted: u8, next: State| if b == wanted { Ok(next) } else { Err(BadChunk) };
        self.state = match self.state {
            State::Size => match hex_digit(b) {
                Some(digit) if self.digits < MAX_SIZE_DIGITS => {
                    self.size = self.size * 16 + digit;
                    self.digits += 1;
                    State::Size
                }
                Some(_) => return Err(BadChunk),
                None if self.digits == 0 => return Err(BadChunk),
                None => match b {
                    b';' => State::Extension,
                    b' ' | b'\t' => State::SizeSpace,
                    b'\r' => State::SizeLf,
                    _ => return Err(BadChunk),
                },
            },
            State::SizeSpace => match b {
                b' ' | b'\t' => State::SizeSpace,
                b';' => State::Extension,
                b'\r' => State::SizeLf,
                _ => return Err(BadChunk),
            },
            // Extensions pass through unread, but only as visible text: a bare LF or another
            // control byte here is where proxies and servers disagree (smuggling).
            State::Extension => match b {
                b'\r' => State::SizeLf,
                b'\t' | b' '..=b'~' | 0x80..=0xff => State::Extension,
                _ => return Err(BadChunk),
            },
            State::SizeLf => {
                expect(b'\n', State::Data)?;
                if self.size == 0 {
                    State::TrailerStart
                } else {
                    State::Data
                }
            }
            State::DataCr => expect(b'\r', State::DataLf)?,
            State::DataLf => {
                self.digits = 0;
                expect(b'\n', State::Size)?
            }
            State::TrailerStart => match b {
                b'\r' => State::EndLf,
                b'\n' => return Err(BadChunk),
                _ => State::TrailerLine,
            },
            State::TrailerLine => match b {
                b'\r' => State::TrailerLf,
                b'\n' => return Err(BadChunk),
                _ => State::TrailerLine,
            },
            State::TrailerLf => expect(b'\n', State::TrailerStart)?,
            State::EndLf => expect(b'\n', State::Done)?,
            State::Data | State::Done => self.state,
        };
        Ok(())
    }
}

fn hex_digit(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Runs the scanner over `input` in one piece; the body's length, or the error.
    fn scan(input: &[u8]) -> Result<usize, BadChunk> {
        let mut chunks = Chunks::default();
        let n = chunks.advance(input)?;
        if chunks.done() {
            Ok(n)
        } else {
            Err(BadChunk)
        }
    }

    #[test]
    fn a_chunked_body_ends_after_the_last_chunk_and_its_trailers() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-sum: 1\r\n\r\n";
        let mut input = body.to_vec();
        input.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(scan(&input), Ok(body.len()));
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],   // bare LF after the size
            b"5\r\nhello\n0\r\n\r\n",        // bare LF after the data
            b"5\r\nhelloXX0\r\n\r\n",        // data longer than its size
            b"-5\r\nhello\r\n0\r\n\r\n",     // not hex
            b"0x5\r\nhello\r\n0\r\n\r\n",    // not hex
            b"\r\n0\r\n\r\n",                // no size at all
            b"5;a\nb\r\nhello\r\n0\r\n\r\n", // bare LF inside an extension
            b"5;a\0\r\nhello\r\n0\r\n\r\n",  // control byte in an extension
            b"1000000000000000\r\n",         // 16 digits: past the size limit
            b"0\r\nx: 1\n\r\n",              // bare LF in a trailer
            b"0\r\n\n",                      // bare LF ending the body
            b"5 6\r\nhello\r\n0\r\n\r\n",    // junk after the size
        ] {
            assert_eq!(
                scan(bad),
                Err(BadChunk),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn whitespace_after_the_size_may_lead_to_an_extension() {
        let body = b"5 \t;a=b\r\nhello\r\n0 \r\n\r\n";
        assert_eq!(scan(body), Ok(body.len()));
    }

    #[test]
    fn a_large_size_with_leading_zeros_within_the_limit_is_read() {
        let body = b"000000000000005\r\nhello\r\n0\r\n\r\n";
        assert_eq!(scan(body), Ok(body.len()));
    }

    #[test]
    fn lengths_take_what_is_left_and_leave_the_rest() {
        let mut body = Remaining::new(Framing::Length(5));
        assert_eq!(body.take(b"abc"), Ok(3));
        assert!(!body.done());
        assert_eq!(body.take(b"defGET"), Ok(2));
        assert!(body.done());
        assert!(Remaining::new(Framing::Empty).done());
        assert!(!Remaining::new(Framing::UntilClose).done());
    }

    /// Chunked encoding of `pieces` (empty pieces skipped: a zero size ends the body).
    fn encode(pieces: &[Vec<u8>], trailers: &[(String, String)]) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in pieces.iter().filter(|p| !p.is_empty()) {
            out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n");
        for (name, value) in trailers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    proptest! {
        /// However a valid chunked body is split across reads, the scanner finds exactly its
        /// end and leaves what follows.
        #[test]
        fn the_end_is_found_across_any_split(
            pieces in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..6),
            trailers in prop::collection::vec(("[a-z]{1,8}", "[a-z0-9 ]{0,12}"), 0..3),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..5),
        ) {
            let body = encode(&pieces, &trailers);
            let mut input = body.clone();
            input.extend_from_slice(b"NEXT");
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(input.len())).collect();
            cuts.sort_unstable();
            cuts.push(input.len());
            let mut chunks = Chunks::default();
            let mut taken = 0;
            let mut from = 0;
            for cut in cuts {
                if chunks.done() || cut < from {
                    continue;
                }
                let n = chunks.advance(&input[from..cut]).unwrap();
                taken += n;
                if n < cut - from {
                    prop_assert!(chunks.done());
                }
                from = cut;
            }
            prop_assert!(chunks.done());
            prop_assert_eq!(taken, body.len());
        }

        /// Arbitrary bytes never panic the scanner, and it never claims more than it was given.
        #[test]
        fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut chunks = Chunks::default();
            if let Ok(n) = chunks.advance(&input) {
                prop_assert!(n <= input.len());
            }
        }
    }
}
