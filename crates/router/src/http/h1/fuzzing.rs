//! The HTTP/1.1 parsers as fuzz targets (see `crate::fuzz`): each takes arbitrary bytes, never
//! panics, and checks what must hold of any input.

use super::body::{Chunks, Remaining};
use super::head::{self, Answering, Rewrite};

/// A request head as a client may send it: parsed and rewritten for the endpoint.
pub(crate) fn request_head(data: &[u8]) {
    let rewrite = Rewrite {
        client_ip: b"10.0.0.1",
        hash_header: Some("x-user"),
        https: data.first().is_some_and(|b| b & 1 == 1),
    };
    let mut out = Vec::new();
    if let Ok(Some(request)) = head::parse_request(data, &rewrite, &mut out) {
        assert!(request.len <= data.len(), "a head longer than its input");
        assert!(
            out.ends_with(b"\r\n\r\n"),
            "a rewritten head must end its header block"
        );
        // What goes upstream is itself a complete, well-formed head.
        let mut headers = [httparse::EMPTY_HEADER; 256];
        let mut again = httparse::Request::new(&mut headers);
        assert_eq!(again.parse(&out), Ok(httparse::Status::Complete(out.len())));
        // The body's framing is one the body decoder can follow.
        let _ = Remaining::new(request.framing);
    }
}

/// A response head as an endpoint may send it, answering a request described by the first byte.
pub(crate) fn response_head(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let answering = Answering {
        is_head: flags & 1 != 0,
        http10: flags & 2 != 0,
        upgrade: flags & 4 != 0,
        close: flags & 8 != 0,
    };
    let mut out = Vec::new();
    if let Ok(Some(response)) = head::parse_response(rest, answering, &mut out) {
        assert!(response.len <= rest.len(), "a head longer than its input");
        assert!(
            out.ends_with(b"\r\n\r\n"),
            "a rewritten head must end its header block"
        );
        let mut headers = [httparse::EMPTY_HEADER; 256];
        let mut again = httparse::Response::new(&mut headers);
        assert_eq!(again.parse(&out), Ok(httparse::Status::Complete(out.len())));
    }
}

/// A chunked body, whole and split in two where the first two bytes say: the decoder must find
/// the same end (or the same refusal) however the bytes arrive.
pub(crate) fn chunked(data: &[u8]) {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let at = usize::from(split).min(body.len());
    let whole = decode(&[body]);
    let pieces = decode(&[&body[..at], &body[at..]]);
    assert_eq!(whole, pieces, "split at {at}");
}

/// Feeds `pieces` in order until the body ends: (bytes of the body, ended), or the refusal.
fn decode(pieces: &[&[u8]]) -> Result<(usize, bool), super::body::BadChunk> {
    let mut chunks = Chunks::default();
    let mut total = 0;
    for piece in pieces {
        let n = chunks.advance(piece)?;
        assert!(n <= piece.len(), "consumed more than given");
        total += n;
        if chunks.done() {
            break;
        }
        assert_eq!(n, piece.len(), "stopped early without ending the body");
    }
    Ok((total, chunks.done()))
}
