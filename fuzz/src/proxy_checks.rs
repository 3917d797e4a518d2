//! Checks for the proxy's request-head validator, its streaming framing guard
//! and its CONNECT target parser: the first code a client's bytes reach.
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use policy::host::canonicalize;
use proxy::framing::{BodyFraming, FramingGuard, Limits, check_head, parse_chunk_size};
use proxy::target::{authority_text, parse_connect_target};
use tokio::io::{AsyncRead, ReadBuf};

/// `proxy::framing`: `check_head` and `parse_chunk_size` never panic; an
/// accepted head is well-formed (CR LF lines only, no obs-fold, framing that
/// matches its headers); and the guard releases exactly the same bytes however
/// the input is split into reads.
pub fn request_head(data: &[u8]) {
    let limits = Limits::default();
    if let Ok(info) = check_head(data, &limits) {
        check_accepted_head(data, info.body);
    }
    let _ = parse_chunk_size(data);

    // The first byte picks the read size; the rest is the stream.
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let whole = through_guard(stream, usize::MAX);
    let pieces = through_guard(stream, usize::from(split % 16) + 1);
    assert_eq!(
        whole, pieces,
        "the guard's output depends on how the input was split"
    );
}

fn check_accepted_head(head: &[u8], body: BodyFraming) {
    assert!(
        head.ends_with(b"\r\n\r\n"),
        "accepted head without its empty line"
    );
    for (i, &b) in head.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && head[i - 1] == b'\r', "accepted a bare LF");
        }
    }
    assert!(
        !head
            .windows(3)
            .any(|w| w == b"\n \x20" || w[..2] == *b"\n " || w[..2] == *b"\n\t"),
        "accepted obs-fold"
    );
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let has = |name: &str| {
        text.split("\r\n")
            .skip(1)
            .any(|line| line.starts_with(&format!("{name}:")))
    };
    match body {
        BodyFraming::Chunked => assert!(has("transfer-encoding") && !has("content-length")),
        BodyFraming::Length(_) => assert!(has("content-length") && !has("transfer-encoding")),
        BodyFraming::Empty => assert!(!has("content-length") && !has("transfer-encoding")),
    }
}

/// A reader that hands out at most `max` bytes per read.
struct Trickle<'a> {
    data: &'a [u8],
    max: usize,
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.data.len().min(self.max).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

/// Everything the guard releases for `data` read `max` bytes at a time, until
/// end of input, a cut (error) or a refusal (pending).
fn through_guard(data: &[u8], max: usize) -> (Vec<u8>, bool) {
    let mut guard = FramingGuard::new(Trickle { data, max }, Limits::default());
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // Each round releases bytes or ends; the bound only guards the fuzzer.
    for _ in 0..(data.len() + 16) * 4 {
        let mut read = ReadBuf::new(&mut buf);
        match Pin::new(&mut guard).poll_read(&mut cx, &mut read) {
            Poll::Ready(Ok(())) if read.filled().is_empty() => return (out, false),
            Poll::Ready(Ok(())) => out.extend_from_slice(read.filled()),
            Poll::Ready(Err(_)) => return (out, true),
            Poll::Pending => return (out, false),
        }
    }
    panic!("the guard kept releasing bytes past its input");
}

/// `proxy::target::parse_connect_target`: never panics; an accepted target has
/// a port from 1 to 65535, no userinfo or path, a canonical host, and its
/// canonical `host:port` parses back to itself.
pub fn connect_target(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok((host, port)) = parse_connect_target(&text) else {
        return;
    };
    assert_ne!(port, 0, "port 0 accepted in {text:?}");
    assert!(
        !text.contains('@') && !text.contains('/'),
        "userinfo or path accepted in {text:?}"
    );
    assert_eq!(
        canonicalize(host.as_str()).as_ref(),
        Ok(&host),
        "{text:?} gave a non-canonical host"
    );
    let again = authority_text(&host, port);
    assert_eq!(
        parse_connect_target(&again).ok(),
        Some((host, port)),
        "{text:?} -> {again:?} does not parse back"
    );
}
