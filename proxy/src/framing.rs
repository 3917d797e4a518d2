//! Request framing: the strict reading of HTTP/1.1 request heads and bodies that
//! runs *before* hyper parses them.
//!
//! In: the raw bytes a client sends on an HTTP/1 connection (plain or inside an
//! intercepted tunnel). Out: the same bytes, released to hyper one validated head
//! at a time, or a synthetic request that names the [`Violation`] so the
//! connection answers 400/431 with a short reason and closes.
//!
//! Refused, because two parsers could read them two ways (request smuggling):
//! `Content-Length` together with `Transfer-Encoding` (hyper accepts it: measured),
//! any transfer coding other than exactly one `chunked`, malformed or conflicting
//! `Content-Length`, bare LF line ends, obs-fold, invalid header names or value
//! bytes, underscore look-alikes of the framing headers, a repeated `Host`, chunk
//! sizes that are not plain hex (chunk extensions included), request trailers, and
//! heads over 64 KiB or 100 headers (431). Nothing here trusts hyper to be strict;
//! hyper then re-frames every forwarded message, so what reaches an origin is never
//! the client's framing.
//!
//! What hyper 1.x does on its own, measured (`framing::hyper_alone`):
//!
//! | Request | hyper alone | guard |
//! |---|---|---|
//! | `Content-Length` + `Transfer-Encoding: chunked` | **accepts** (200) | 400 |
//! | `Transfer-Encoding: gzip, chunked` | **accepts** | 400 |
//! | `Transfer-Encoding: chunked, chunked` | **accepts** | 400 |
//! | `Transfer-Encoding: chunked, identity` / `xchunked` | 400 | 400 |
//! | two different `Content-Length` | 400 | 400 |
//! | `Content_Length: 3` (underscore look-alike) | **accepts**, ignores it | 400 |
//! | obs-fold, space before `:` | 400 | 400 |
//! | bare LF line ends | **accepts** | 400 |
//! | chunk extension `3;ext=1` | **accepts** | 400 |
//! | two `Host` headers | **accepts** | 400 |
//! | `HTTP/1.0` with `chunked` | 400 | 400 |
//!
//! A violation in a head is answered in order (earlier pipelined requests finish
//! first). A violation inside a chunked body cannot be answered (a response may
//! already be under way), so the connection is cut; the head of a chunked request
//! is held back until its first chunk-size line has been checked, so a malformed
//! first chunk never reaches an origin at all.
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Size limits for one request head.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest head (request line, headers, final empty line), in bytes.
    pub max_head_bytes: usize,
    /// Most header lines in one head.
    pub max_headers: usize,
}

impl Default for Limits {
    /// 64 KiB and 100 headers: far above what browsers send (a few KiB), low
    /// enough that a client cannot make the proxy hold much per connection.
    fn default() -> Self {
        Limits {
            max_head_bytes: 64 * 1024,
            max_headers: 100,
        }
    }
}

/// Why a request was refused before hyper saw it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Violation {
    /// The request line is not `METHOD SP target SP HTTP/1.x`.
    #[error("malformed request line: expected `METHOD target HTTP/1.1`")]
    BadRequestLine,
    /// A line ends in LF without CR.
    #[error("bare line feed: lines must end in CR LF")]
    BareLineFeed,
    /// A header line starts with whitespace (obsolete line folding).
    #[error("obsolete line folding in a header: not accepted")]
    ObsFold,
    /// A header name is empty or has a byte outside the token characters.
    #[error("invalid header name: expected token characters before `:`")]
    InvalidHeaderName,
    /// A header value holds a control byte.
    #[error("invalid byte in a header value")]
    InvalidHeaderValue,
    /// A header name is a framing header spelt with `_` (`content_length`).
    #[error("header name looks like a framing header spelt with `_`")]
    FramingLookalike,
    /// Both `Content-Length` and `Transfer-Encoding`.
    #[error("both content-length and transfer-encoding: expected at most one")]
    LengthAndTransferEncoding,
    /// A transfer coding other than exactly one final `chunked`.
    #[error("transfer-encoding must be exactly `chunked`")]
    BadTransferEncoding,
    /// `Content-Length` is not a plain decimal number.
    #[error("malformed content-length: expected digits")]
    BadContentLength,
    /// Two `Content-Length` headers disagree.
    #[error("conflicting content-length headers")]
    ConflictingContentLength,
    /// More than one `Host` header.
    #[error("more than one host header")]
    RepeatedHost,
    /// A header name this proxy reserves for itself.
    #[error("reserved header name")]
    ReservedHeader,
    /// A `CONNECT` request that announces a body.
    #[error("connect request with a body")]
    ConnectWithBody,
    /// A chunk-size line that is not 1 to 16 hex digits.
    #[error("malformed chunk size: expected 1 to 16 hex digits")]
    BadChunkSize,
    /// Chunk data not followed by CR LF, or a trailer section.
    #[error("malformed chunk: expected CR LF after the data and no trailers")]
    BadChunk,
    /// The head is over the byte limit.
    #[error("request head too large: the limit is 65536 bytes")]
    HeadTooLarge,
    /// The head has too many header lines.
    #[error("too many headers: the limit is 100")]
    TooManyHeaders,
}

impl Violation {
    const ALL: [Violation; 17] = [
        Violation::BadRequestLine,
        Violation::BareLineFeed,
        Violation::ObsFold,
        Violation::InvalidHeaderName,
        Violation::InvalidHeaderValue,
        Violation::FramingLookalike,
        Violation::LengthAndTransferEncoding,
        Violation::BadTransferEncoding,
        Violation::BadContentLength,
        Violation::ConflictingContentLength,
        Violation::RepeatedHost,
        Violation::ReservedHeader,
        Violation::ConnectWithBody,
        Violation::BadChunkSize,
        Violation::BadChunk,
        Violation::HeadTooLarge,
        Violation::TooManyHeaders,
    ];

    /// The status a client gets: 431 for the size limits, 400 otherwise.
    pub fn status(self) -> u16 {
        match self {
            Violation::HeadTooLarge | Violation::TooManyHeaders => 431,
            _ => 400,
        }
    }

    /// A short stable name, carried in the synthetic request and used as a log field.
    pub fn code(self) -> &'static str {
        match self {
            Violation::BadRequestLine => "bad-request-line",
            Violation::BareLineFeed => "bare-lf",
            Violation::ObsFold => "obs-fold",
            Violation::InvalidHeaderName => "bad-header-name",
            Violation::InvalidHeaderValue => "bad-header-value",
            Violation::FramingLookalike => "framing-lookalike",
            Violation::LengthAndTransferEncoding => "cl-and-te",
            Violation::BadTransferEncoding => "bad-te",
            Violation::BadContentLength => "bad-cl",
            Violation::ConflictingContentLength => "conflicting-cl",
            Violation::RepeatedHost => "repeated-host",
            Violation::ReservedHeader => "reserved-header",
            Violation::ConnectWithBody => "connect-with-body",
            Violation::BadChunkSize => "bad-chunk-size",
            Violation::BadChunk => "bad-chunk",
            Violation::HeadTooLarge => "head-too-large",
            Violation::TooManyHeaders => "too-many-headers",
        }
    }

    /// The violation a [`code`](Violation::code) names.
    pub fn from_code(code: &str) -> Option<Violation> {
        Violation::ALL.into_iter().find(|v| v.code() == code)
    }
}

/// How the body after a head is delimited.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (no `Content-Length`, no `Transfer-Encoding`).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
}

/// What a valid head says about what follows it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct HeadInfo {
    /// How the body is delimited.
    pub body: BodyFraming,
    /// A `CONNECT` request: the bytes after it belong to a tunnel.
    pub connect: bool,
    /// An upgrade request (`Upgrade` plus `Connection: upgrade`, no body): the
    /// bytes after it belong to a tunnel if the answer is `101`.
    pub upgrade: bool,
}

/// The header the synthetic "this request was refused" message carries. Client
/// heads that use it are refused ([`Violation::ReservedHeader`]), so only the
/// guard can produce it; it is honoured only on connections with a guard in front.
pub const REJECTED_HEADER: &str = "hallpass-rejected";

/// [`REJECTED_HEADER`] as a header name, for lookups that would otherwise parse it.
pub const REJECTED_HEADER_NAME: http::HeaderName = http::HeaderName::from_static(REJECTED_HEADER);
/// The path of the synthetic request that carries a rejection.
pub const REJECTED_PATH: &str = "/hallpass-rejected";

/// Checks one request head: everything up to and including the empty line.
///
/// ```
/// use hallpass_proxy::framing::{check_head, BodyFraming, Limits, Violation};
/// let ok = check_head(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n", &Limits::default());
/// assert_eq!(ok.map(|h| h.body), Ok(BodyFraming::Empty));
/// let smuggle = b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
/// assert_eq!(check_head(smuggle, &Limits::default()), Err(Violation::LengthAndTransferEncoding));
/// ```
pub fn check_head(head: &[u8], limits: &Limits) -> Result<HeadInfo, Violation> {
    // A bare LF within the size limit is reported before the size: the streaming
    // guard finds it before the head is complete, and the answer must not depend
    // on how the bytes were split into reads.
    if has_bare_lf(&head[..head.len().min(limits.max_head_bytes)]) {
        return Err(Violation::BareLineFeed);
    }
    if head.len() > limits.max_head_bytes {
        return Err(Violation::HeadTooLarge);
    }
    let body = head
        .strip_suffix(b"\r\n\r\n")
        .ok_or(Violation::BadRequestLine)?;
    let mut lines = CrlfLines { rest: body };
    let request_line = lines.next().ok_or(Violation::BadRequestLine)??;
    let (method, http10) = check_request_line(request_line)?;
    let mut framing = FramingHeaders::default();
    let mut count = 0usize;
    for line in lines {
        let line = line?;
        count += 1;
        if count > limits.max_headers {
            return Err(Violation::TooManyHeaders);
        }
        let (name, value) = split_header_line(line)?;
        framing.note(name, value)?;
    }
    let body = framing.body(http10)?;
    let connect = method == b"CONNECT";
    if connect && body != BodyFraming::Empty {
        return Err(Violation::ConnectWithBody);
    }
    let upgrade =
        !connect && body == BodyFraming::Empty && framing.upgrade && framing.connection_upgrade;
    Ok(HeadInfo {
        body,
        connect,
        upgrade,
    })
}

/// Whether a LF appears without a CR before it.
fn has_bare_lf(bytes: &[u8]) -> bool {
    bare_lf_from(bytes, 0)
}

/// Whether a LF at or after `from` appears without a CR right before it.
/// Line ends are found with `memchr`: this runs over every request head, and
/// a byte-by-byte scan was a third of the guard's cost.
fn bare_lf_from(bytes: &[u8], from: usize) -> bool {
    memchr::memchr_iter(b'\n', &bytes[from..]).any(|i| {
        let at = from + i;
        at == 0 || bytes[at - 1] != b'\r'
    })
}

/// The end (just past it) of the first `CR LF CR LF` at or after `from`.
fn head_end(bytes: &[u8], from: usize) -> Option<usize> {
    memchr::memchr_iter(b'\n', &bytes[from..])
        .map(|i| from + i)
        .find(|&at| at >= 3 && &bytes[at - 3..=at] == b"\r\n\r\n")
        .map(|at| at + 1)
}

/// Parses a chunk-size line (without its CR LF): 1 to 16 hex digits, nothing else.
/// Chunk extensions are refused: no browser sends them and they have been used to
/// hide one parser's chunk boundary from another.
pub fn parse_chunk_size(line: &[u8]) -> Result<u64, Violation> {
    if line.is_empty() || line.len() > 16 || !line.iter().all(u8::is_ascii_hexdigit) {
        return Err(Violation::BadChunkSize);
    }
    let text = std::str::from_utf8(line).map_err(|_| Violation::BadChunkSize)?;
    u64::from_str_radix(text, 16).map_err(|_| Violation::BadChunkSize)
}

/// Splits the head body into lines on CR LF; a bare LF or CR is an error.
struct CrlfLines<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for CrlfLines<'a> {
    type Item = Result<&'a [u8], Violation>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        // The first LF ends the line; it must follow a CR, and no other CR or
        // LF may be in the line.
        let (line, rest) = match memchr::memchr(b'\n', self.rest) {
            Some(i) if i > 0 && self.rest[i - 1] == b'\r' => {
                (&self.rest[..i - 1], &self.rest[i + 1..])
            }
            Some(_) => return Some(Err(Violation::BareLineFeed)),
            None => (self.rest, &[][..]),
        };
        self.rest = rest;
        if memchr::memchr(b'\r', line).is_some() {
            return Some(Err(Violation::BareLineFeed));
        }
        Some(Ok(line))
    }
}

/// `METHOD SP request-target SP HTTP/1.1`, with single spaces. Returns the method
/// and whether the version is HTTP/1.0.
fn check_request_line(line: &[u8]) -> Result<(&[u8], bool), Violation> {
    // The spaces found with memchr; a third space would be inside `version`,
    // which then matches neither version.
    let (method, rest) = split_at_space(line).ok_or(Violation::BadRequestLine)?;
    let (target, version) = split_at_space(rest).ok_or(Violation::BadRequestLine)?;
    if method.is_empty() || !method.iter().all(|&b| is_token(b)) {
        return Err(Violation::BadRequestLine);
    }
    // Visible ASCII only: browsers percent-encode everything else, and raw bytes
    // above 0x7f are read differently by different parsers.
    if target.is_empty() || !is_visible_ascii(target) {
        return Err(Violation::BadRequestLine);
    }
    match version {
        b"HTTP/1.1" => Ok((method, false)),
        b"HTTP/1.0" => Ok((method, true)),
        _ => Err(Violation::BadRequestLine),
    }
}

/// The text before the first space and the text after it.
fn split_at_space(text: &[u8]) -> Option<(&[u8], &[u8])> {
    memchr::memchr(b' ', text).map(|at| (&text[..at], &text[at + 1..]))
}

/// Every byte is visible ASCII (0x21 to 0x7e), eight at a time: a request
/// target is the longest text of most heads.
fn is_visible_ascii(text: &[u8]) -> bool {
    use policy::scan::{any_byte, has_byte, has_high, has_less};
    !any_byte(
        text,
        |word| has_less(word, 0x21) || has_byte(word, 0x7f) || has_high(word),
        |b| !(0x21..=0x7e).contains(&b),
    )
}

/// No byte of a field value is a control byte other than HTAB (obs-text,
/// 0x80 and above, is allowed), eight at a time.
fn is_field_value(value: &[u8]) -> bool {
    use policy::scan::{any_byte, has_byte, has_less};
    !any_byte(
        value,
        |word| has_less(word, 0x20) || has_byte(word, 0x7f),
        |b| b != b'\t' && (b < 0x20 || b == 0x7f),
    )
}

/// `name: value`, with no whitespace before the colon and no control bytes.
fn split_header_line(line: &[u8]) -> Result<(&[u8], &[u8]), Violation> {
    if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
        return Err(Violation::ObsFold);
    }
    let colon = memchr::memchr(b':', line).ok_or(Violation::InvalidHeaderName)?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|&b| is_token(b)) {
        return Err(Violation::InvalidHeaderName);
    }
    if !is_field_value(value) {
        return Err(Violation::InvalidHeaderValue);
    }
    Ok((name, trim_ows(value)))
}

/// The framing-relevant headers seen in one head.
#[derive(Default)]
struct FramingHeaders {
    content_length: Option<u64>,
    transfer_encoding: Vec<Vec<u8>>,
    host_seen: bool,
    upgrade: bool,
    connection_upgrade: bool,
}

impl FramingHeaders {
    fn note(&mut self, name: &[u8], value: &[u8]) -> Result<(), Violation> {
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_content_length(value)?;
            if self.content_length.is_some_and(|seen| seen != n) {
                return Err(Violation::ConflictingContentLength);
            }
            self.content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            for coding in value.split(|&b| b == b',') {
                self.transfer_encoding
                    .push(trim_ows(coding).to_ascii_lowercase());
            }
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            self.upgrade = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            self.connection_upgrade |= value
                .split(|&b| b == b',')
                .any(|t| trim_ows(t).eq_ignore_ascii_case(b"upgrade"));
        } else if name.eq_ignore_ascii_case(b"host") {
            if self.host_seen {
                return Err(Violation::RepeatedHost);
            }
            self.host_seen = true;
        } else if name.eq_ignore_ascii_case(REJECTED_HEADER.as_bytes()) {
            return Err(Violation::ReservedHeader);
        } else if name.contains(&b'_') {
            let dashed: Vec<u8> = name
                .iter()
                .map(|&b| {
                    if b == b'_' {
                        b'-'
                    } else {
                        b.to_ascii_lowercase()
                    }
                })
                .collect();
            if dashed == b"content-length" || dashed == b"transfer-encoding" {
                return Err(Violation::FramingLookalike);
            }
        }
        Ok(())
    }

    fn body(&self, http10: bool) -> Result<BodyFraming, Violation> {
        match (self.content_length, self.transfer_encoding.is_empty()) {
            (Some(_), false) => Err(Violation::LengthAndTransferEncoding),
            (Some(n), true) => Ok(BodyFraming::Length(n)),
            (None, true) => Ok(BodyFraming::Empty),
            (None, false) => {
                // HTTP/1.0 has no chunked coding; RFC 9112 §6.1 says to treat the
                // message as faulty.
                if http10 || self.transfer_encoding != [b"chunked".to_vec()] {
                    Err(Violation::BadTransferEncoding)
                } else {
                    Ok(BodyFraming::Chunked)
                }
            }
        }
    }
}

fn parse_content_length(value: &[u8]) -> Result<u64, Violation> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(Violation::BadContentLength);
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(Violation::BadContentLength)
}

fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// RFC 9110 token characters.
fn is_token(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

/// [`is_token`] as a table: header names are checked byte by byte.
static TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

/// Where the guard is in the message stream.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for a complete head.
    Head,
    /// A valid chunked head of this many bytes, held until its first chunk-size
    /// line has been checked.
    HeldForFirstChunk(usize),
    /// This many body bytes still to pass.
    Body(u64),
    /// Expecting a chunk-size line.
    ChunkSize,
    /// This many chunk-data bytes still to pass.
    ChunkData(u64),
    /// Expecting the CR LF after chunk data.
    ChunkEnd,
    /// Expecting the CR LF that ends a chunked body (no trailers).
    Trailers,
    /// After a `CONNECT` head: tunnel bytes, passed untouched.
    Passthrough,
    /// After an upgrade request: later bytes are held until the handler says
    /// whether it answered `101` (tunnel) or not (more requests).
    AwaitingUpgrade,
    /// A violation was answered or the body was cut: nothing more is read.
    Closed,
    /// A violation is being answered: reads stay pending (an end of input now
    /// would make hyper drop the connection before writing the answer, whose
    /// `connection: close` ends it).
    Refused,
}

/// An I/O wrapper that releases a client's bytes to hyper only after
/// [`check_head`] accepted the head they belong to. Writes pass straight through.
pub struct FramingGuard<T> {
    inner: T,
    limits: Limits,
    state: State,
    /// Bytes read from the client and not yet checked.
    input: Vec<u8>,
    /// How far `input` has been searched for the end of a head.
    scanned: usize,
    /// Checked bytes waiting for hyper.
    output: Vec<u8>,
    output_at: usize,
    /// Set when the body was cut: the next read returns this error.
    cut: Option<Violation>,
    /// Heads released so far (the number of the request hyper will see next).
    released: u64,
    /// Where the handler reports the outcome of upgrade requests; without one,
    /// upgrade requests are ordinary requests.
    gate: Option<Arc<UpgradeGate>>,
}

/// Tells a [`FramingGuard`] whether an upgrade request was answered with `101`.
///
/// Requests are numbered from 1 in the order hyper hands them to the handler
/// (HTTP/1.1 handles them one at a time); the guard pauses after upgrade
/// request `n` until [`settle`](UpgradeGate::settle) is called for `n`.
#[derive(Debug, Default)]
pub struct UpgradeGate {
    inner: Mutex<GateInner>,
}

#[derive(Debug, Default)]
struct GateInner {
    waiting_for: Option<u64>,
    decided: Option<bool>,
    waker: Option<Waker>,
}

impl UpgradeGate {
    /// Reports how request `request` was answered: `upgraded` when with `101`.
    /// Calls for requests the guard is not waiting on are ignored.
    pub fn settle(&self, request: u64, upgraded: bool) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.waiting_for == Some(request) && inner.decided.is_none() {
            inner.decided = Some(upgraded);
            if let Some(waker) = inner.waker.take() {
                waker.wake();
            }
        }
    }

    fn pause(&self, request: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *inner = GateInner {
            waiting_for: Some(request),
            decided: None,
            waker: None,
        };
    }

    fn poll_decision(&self, cx: &mut Context<'_>) -> Poll<bool> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match inner.decided.take() {
            Some(upgraded) => {
                inner.waiting_for = None;
                Poll::Ready(upgraded)
            }
            None => {
                inner.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<T> FramingGuard<T> {
    /// Wraps a client connection.
    pub fn new(inner: T, limits: Limits) -> Self {
        FramingGuard {
            inner,
            limits,
            state: State::Head,
            input: Vec::new(),
            scanned: 0,
            output: Vec::new(),
            output_at: 0,
            cut: None,
            released: 0,
            gate: None,
        }
    }

    /// Pauses after upgrade requests until `gate` reports their outcome.
    pub fn with_upgrade_gate(mut self, gate: Arc<UpgradeGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Moves every checkable byte of `input` to `output`.
    fn process(&mut self) {
        let input = std::mem::take(&mut self.input);
        let mut at = 0;
        // Every step either consumes bytes, waits for more, or changes state to one
        // that does (a held head, a refusal), so this loop ends.
        while at < input.len() && !matches!(self.state, State::Closed | State::Refused) {
            let rest = &input[at..];
            let step = match self.state {
                State::Head => self.step_head(rest),
                State::HeldForFirstChunk(head_len) => self.step_held(rest, head_len),
                State::Body(remaining) => {
                    let n = pass_len(remaining, rest.len());
                    self.output.extend_from_slice(&rest[..n]);
                    self.state = if remaining == n as u64 {
                        State::Head
                    } else {
                        State::Body(remaining - n as u64)
                    };
                    Step::Consumed(n)
                }
                State::ChunkSize => self.step_chunk_size(rest),
                State::ChunkData(remaining) => {
                    let n = pass_len(remaining, rest.len());
                    self.output.extend_from_slice(&rest[..n]);
                    self.state = if remaining == n as u64 {
                        State::ChunkEnd
                    } else {
                        State::ChunkData(remaining - n as u64)
                    };
                    Step::Consumed(n)
                }
                State::ChunkEnd | State::Trailers => self.step_crlf(rest),
                State::Passthrough => {
                    self.output.extend_from_slice(rest);
                    Step::Consumed(rest.len())
                }
                State::Closed | State::Refused | State::AwaitingUpgrade => Step::NeedMore,
            };
            match step {
                Step::Consumed(n) => at += n,
                Step::NeedMore => break,
            }
        }
        if !matches!(self.state, State::Closed | State::Refused) {
            self.input = input;
            self.input.drain(..at);
        }
    }

    fn step_head(&mut self, rest: &[u8]) -> Step {
        // Empty lines before a request line are tolerated (RFC 9112 §2.2): some
        // clients send a stray CR LF after a body.
        let mut skip = 0;
        while rest[skip..].starts_with(b"\r\n") && skip < 8 {
            skip += 2;
        }
        if skip > 0 {
            self.scanned = 0;
            return Step::Consumed(skip);
        }
        let from = self.scanned.saturating_sub(3);
        let Some(end) = head_end(rest, from) else {
            let limit = rest.len().min(self.limits.max_head_bytes);
            if from < limit && bare_lf_from(&rest[..limit], from) {
                return self.reject(Violation::BareLineFeed);
            }
            if rest.len() > self.limits.max_head_bytes {
                return self.reject(Violation::HeadTooLarge);
            }
            self.scanned = rest.len();
            return Step::NeedMore;
        };
        self.scanned = 0;
        match check_head(&rest[..end], &self.limits) {
            Err(v) => self.reject(v),
            Ok(info) => {
                if info.body == BodyFraming::Chunked {
                    self.state = State::HeldForFirstChunk(end);
                    return Step::Consumed(0);
                }
                self.output.extend_from_slice(&rest[..end]);
                self.released += 1;
                self.state = match (&self.gate, info.body) {
                    // After CONNECT or an upgrade request the bytes are a tunnel's
                    // only if the handler says it opened one; a refused CONNECT
                    // leaves an HTTP connection that must stay guarded.
                    (Some(gate), _) if info.connect || info.upgrade => {
                        gate.pause(self.released);
                        State::AwaitingUpgrade
                    }
                    // Without a gate nobody can say: nothing more is read.
                    (None, _) if info.connect => State::Refused,
                    (_, BodyFraming::Length(n)) if n > 0 => State::Body(n),
                    _ => State::Head,
                };
                Step::Consumed(end)
            }
        }
    }

    fn step_held(&mut self, rest: &[u8], head_len: usize) -> Step {
        match read_line(&rest[head_len..], 18) {
            LineRead::Incomplete => Step::NeedMore,
            LineRead::TooLong | LineRead::BareLf => self.reject(Violation::BadChunkSize),
            LineRead::Line(line, _) => match parse_chunk_size(line) {
                Err(v) => self.reject(v),
                Ok(_) => {
                    self.output.extend_from_slice(&rest[..head_len]);
                    self.released += 1;
                    self.state = State::ChunkSize;
                    Step::Consumed(head_len)
                }
            },
        }
    }

    fn step_chunk_size(&mut self, rest: &[u8]) -> Step {
        match read_line(rest, 18) {
            LineRead::Incomplete => Step::NeedMore,
            LineRead::TooLong | LineRead::BareLf => self.cut(Violation::BadChunkSize),
            LineRead::Line(line, len) => match parse_chunk_size(line) {
                Err(v) => self.cut(v),
                Ok(size) => {
                    self.output.extend_from_slice(&rest[..len]);
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::ChunkData(size)
                    };
                    Step::Consumed(len)
                }
            },
        }
    }

    fn step_crlf(&mut self, rest: &[u8]) -> Step {
        if rest.len() < 2 {
            return if rest.is_empty() || rest == b"\r" {
                Step::NeedMore
            } else {
                self.cut(Violation::BadChunk)
            };
        }
        if &rest[..2] != b"\r\n" {
            return self.cut(Violation::BadChunk);
        }
        self.output.extend_from_slice(b"\r\n");
        self.state = if self.state == State::Trailers {
            State::Head
        } else {
            State::ChunkSize
        };
        Step::Consumed(2)
    }

    /// Answers a violation at a head boundary: hyper gets a synthetic request
    /// naming it, then end of input.
    fn reject(&mut self, v: Violation) -> Step {
        self.output
            .extend_from_slice(synthetic_request(v).as_bytes());
        self.state = State::Refused;
        Step::Consumed(0)
    }

    /// A violation inside a body: the connection is cut.
    fn cut(&mut self, v: Violation) -> Step {
        self.cut = Some(v);
        self.state = State::Closed;
        Step::Consumed(0)
    }
}

/// The request hyper sees in place of a refused one.
fn synthetic_request(v: Violation) -> String {
    format!(
        "GET {REJECTED_PATH} HTTP/1.1\r\n{REJECTED_HEADER}: {}\r\nconnection: close\r\n\r\n",
        v.code()
    )
}

enum Step {
    Consumed(usize),
    NeedMore,
}

enum LineRead<'a> {
    /// The line without CR LF, and its length with CR LF.
    Line(&'a [u8], usize),
    Incomplete,
    TooLong,
    BareLf,
}

fn read_line(bytes: &[u8], max: usize) -> LineRead<'_> {
    match bytes.iter().position(|&b| b == b'\n') {
        Some(0) => LineRead::BareLf,
        Some(i) if bytes[i - 1] != b'\r' => LineRead::BareLf,
        Some(i) if i - 1 > max => LineRead::TooLong,
        Some(i) => LineRead::Line(&bytes[..i - 1], i + 1),
        None if bytes.len() > max + 1 => LineRead::TooLong,
        None => LineRead::Incomplete,
    }
}

fn pass_len(remaining: u64, available: usize) -> usize {
    usize::try_from(remaining).map_or(available, |r| r.min(available))
}

impl<T: AsyncRead + Unpin> AsyncRead for FramingGuard<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.output_at < this.output.len() {
                let n = (this.output.len() - this.output_at).min(buf.remaining());
                buf.put_slice(&this.output[this.output_at..this.output_at + n]);
                this.output_at += n;
                if this.output_at == this.output.len() {
                    this.output.clear();
                    this.output_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if let Some(v) = this.cut.take() {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, v)));
            }
            match this.state {
                State::Closed => return Poll::Ready(Ok(())),
                State::Refused => return Poll::Pending,
                State::AwaitingUpgrade => {
                    let Some(gate) = this.gate.clone() else {
                        this.state = State::Head;
                        continue;
                    };
                    let upgraded = ready!(gate.poll_decision(cx));
                    this.state = if upgraded {
                        State::Passthrough
                    } else {
                        State::Head
                    };
                    this.process();
                    continue;
                }
                // Tunnel bytes and plain bodies with nothing buffered skip the copy.
                State::Passthrough if this.input.is_empty() => {
                    return Pin::new(&mut this.inner).poll_read(cx, buf);
                }
                _ => {}
            }
            // Unchecked bytes are read into the spare room of hyper's own
            // buffer (no zeroed scratch buffer per read), moved into `input`,
            // and taken back out of hyper's view before anything is released.
            let before = buf.filled().len();
            let got = if buf.remaining() >= MIN_READ {
                ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                let got = buf.filled().len() - before;
                this.input.extend_from_slice(&buf.filled()[before..]);
                buf.set_filled(before);
                got
            } else {
                let mut chunk = [0u8; MIN_READ];
                let mut chunk_buf = ReadBuf::new(&mut chunk);
                ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk_buf))?;
                this.input.extend_from_slice(chunk_buf.filled());
                chunk_buf.filled().len()
            };
            if got == 0 {
                // End of input: hyper sees whatever was checked, then EOF. An
                // unfinished head is never released.
                this.state = State::Closed;
                return Poll::Ready(Ok(()));
            }
            this.process();
        }
    }
}

/// The least room a read of unchecked bytes asks for.
const MIN_READ: usize = 4096;

impl<T: AsyncWrite + Unpin> AsyncWrite for FramingGuard<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn head(text: &str) -> Result<HeadInfo, Violation> {
        check_head(text.as_bytes(), &Limits::default())
    }

    #[test]
    fn heads_table() {
        use BodyFraming::*;
        use Violation::*;
        let cases: &[(&str, Result<BodyFraming, Violation>)] = &[
            (
                "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n",
                Ok(Empty),
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
                Ok(Length(5)),
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                Ok(Length(5)),
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                Ok(Chunked),
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding:  Chunked \r\n\r\n",
                Ok(Chunked),
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                Err(LengthAndTransferEncoding),
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                Err(BadTransferEncoding),
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
                Err(BadTransferEncoding),
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                Err(BadTransferEncoding),
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
                Err(BadTransferEncoding),
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
                Err(BadTransferEncoding),
            ),
            (
                "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                Err(BadTransferEncoding),
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                Err(ConflictingContentLength),
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
                Err(BadContentLength),
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
                Err(BadContentLength),
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
                Err(BadContentLength),
            ),
            (
                "POST / HTTP/1.1\r\nContent_Length: 5\r\n\r\n",
                Err(FramingLookalike),
            ),
            (
                "POST / HTTP/1.1\r\ntransfer_encoding: chunked\r\n\r\n",
                Err(FramingLookalike),
            ),
            ("GET / HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n", Err(ObsFold)),
            ("GET / HTTP/1.1\r\n X-A: 1\r\n\r\n", Err(ObsFold)),
            ("GET / HTTP/1.1\r\nX A: 1\r\n\r\n", Err(InvalidHeaderName)),
            ("GET / HTTP/1.1\r\nX-A : 1\r\n\r\n", Err(InvalidHeaderName)),
            ("GET / HTTP/1.1\r\n: 1\r\n\r\n", Err(InvalidHeaderName)),
            ("GET / HTTP/1.1\r\nNoColon\r\n\r\n", Err(InvalidHeaderName)),
            (
                "GET / HTTP/1.1\r\nX-A: a\x00b\r\n\r\n",
                Err(InvalidHeaderValue),
            ),
            ("GET / HTTP/1.1\r\nX-A: a\nb\r\n\r\n", Err(BareLineFeed)),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                Err(RepeatedHost),
            ),
            (
                "GET / HTTP/1.1\r\nHallpass-Rejected: bad-te\r\n\r\n",
                Err(ReservedHeader),
            ),
            ("GET  / HTTP/1.1\r\n\r\n", Err(BadRequestLine)),
            ("GET / HTTP/2.0\r\n\r\n", Err(BadRequestLine)),
            ("GET /\x7f HTTP/1.1\r\n\r\n", Err(BadRequestLine)),
            (
                "CONNECT a.test:443 HTTP/1.1\r\nContent-Length: 1\r\n\r\n",
                Err(ConnectWithBody),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(head(text).map(|h| h.body), *want, "{text:?}");
        }
    }

    #[test]
    fn size_limits_are_431() {
        let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
        let err = head(&format!("GET / HTTP/1.1\r\n{many}\r\n")).expect_err("101 headers");
        assert_eq!((err, err.status()), (Violation::TooManyHeaders, 431));
        let big = "a".repeat(70_000);
        let err = head(&format!("GET / HTTP/1.1\r\nX: {big}\r\n\r\n")).expect_err("70 KB");
        assert_eq!((err, err.status()), (Violation::HeadTooLarge, 431));
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size(b"1a"), Ok(26));
        assert_eq!(parse_chunk_size(b"ffffffffffffffff"), Ok(u64::MAX));
        for bad in [
            &b""[..],
            b"1a;ext=1",
            b"-1",
            b" 1",
            b"0x1",
            b"11111111111111111",
            b"g",
        ] {
            assert_eq!(
                parse_chunk_size(bad),
                Err(Violation::BadChunkSize),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn codes_round_trip() {
        for v in Violation::ALL {
            assert_eq!(Violation::from_code(v.code()), Some(v));
        }
    }

    async fn through_guard(input: &[u8]) -> (Vec<u8>, Option<io::ErrorKind>) {
        read_through_guard(input).await
    }

    /// What hyper would read through a guard over `client`, and the error that
    /// ended it.
    async fn read_through_guard(
        client: impl AsyncRead + Unpin,
    ) -> (Vec<u8>, Option<io::ErrorKind>) {
        let mut guard = FramingGuard::new(client, Limits::default());
        let mut out = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            // A refused connection's reads stay pending: that is its end here.
            let read =
                tokio::time::timeout(std::time::Duration::from_millis(50), guard.read(&mut buf));
            match read.await {
                Err(_) | Ok(Ok(0)) => return (out, None),
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Ok(Err(e)) => return (out, Some(e.kind())),
            }
        }
    }

    /// A client that sends its bytes `step` at a time.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
    }

    impl AsyncRead for Trickle<'_> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = self.step.min(self.bytes.len()).min(buf.remaining());
            let (now, later) = self.bytes.split_at(n);
            buf.put_slice(now);
            self.bytes = later;
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn the_answer_does_not_depend_on_how_the_bytes_arrive() {
        let inputs: [&[u8]; 7] = [
            b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nUser-Agent: x/1\r\n\r\nGET /b HTTP/1.1\r\nHost: b\r\n\r\n",
            b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\rX: y\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: a\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nab",
            b"GET / HTTP/1.1\r\nHost: a\r\n\n",
        ];
        for input in inputs {
            let whole = through_guard(input).await;
            // Every split of a short head, and a spread of sizes for longer ones.
            for step in (1..input.len()).filter(|&s| s <= 8 || s % 9 == 0) {
                let (out, err) = read_through_guard(Trickle { bytes: input, step }).await;
                assert_eq!(
                    (String::from_utf8_lossy(&out), err),
                    (String::from_utf8_lossy(&whole.0), whole.1),
                    "{:?} in pieces of {step}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[tokio::test]
    async fn guard_passes_pipelined_valid_requests() {
        let input = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\r\nPOST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\nGET /c HTTP/1.1\r\n\r\n";
        let (out, err) = through_guard(input).await;
        assert_eq!(err, None);
        // The stray CR LF between requests is dropped; everything else passes.
        let mut want = input.to_vec();
        want.drain(42..44);
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&want)
        );
    }

    #[tokio::test]
    async fn guard_answers_a_bad_second_request_in_order() {
        let input = b"GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let (out, err) = through_guard(input).await;
        assert_eq!(err, None);
        let want = format!(
            "GET /a HTTP/1.1\r\n\r\n{}",
            synthetic_request(Violation::LengthAndTransferEncoding)
        );
        assert_eq!(String::from_utf8_lossy(&out), want);
    }

    #[tokio::test]
    async fn guard_holds_a_chunked_head_until_its_first_chunk_is_checked() {
        let (out, err) =
            through_guard(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").await;
        assert_eq!(
            (String::from_utf8_lossy(&out).into_owned(), err),
            (synthetic_request(Violation::BadChunkSize), None)
        );
        let (out, err) =
            through_guard(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n")
                .await;
        assert!(out.starts_with(b"POST / HTTP/1.1\r\n"), "{out:?}");
        assert_eq!(err, Some(io::ErrorKind::InvalidData));
    }

    #[tokio::test]
    async fn guard_refuses_bare_lf_heads_without_waiting_for_the_limit() {
        let (out, _) = through_guard(b"GET / HTTP/1.1\nHost: a\n\n").await;
        assert_eq!(
            String::from_utf8_lossy(&out),
            synthetic_request(Violation::BareLineFeed)
        );
    }

    #[tokio::test]
    async fn guard_passes_tunnel_bytes_after_an_accepted_connect_only() {
        let head: &[u8] = b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n";
        let tls: &[u8] = b"\x16\x03\x01\x00\x05hello";
        let input = [head, tls].concat();
        // Without a gate, nothing after a CONNECT is released.
        let (out, err) = through_guard(&input).await;
        assert_eq!((out.as_slice(), err), (head, None));
        // With one, the bytes pass once the handler reports the tunnel open ...
        let gate = Arc::new(UpgradeGate::default());
        let mut guard =
            FramingGuard::new(&input[..], Limits::default()).with_upgrade_gate(gate.clone());
        let mut buf = vec![0u8; 4096];
        let n = guard.read(&mut buf).await.expect("head");
        assert_eq!(&buf[..n], head);
        gate.settle(1, true);
        let n = guard.read(&mut buf).await.expect("tunnel bytes");
        assert_eq!(&buf[..n], tls);
        // ... and are parsed as HTTP (here: refused) when it was not.
        let smuggled = [head, b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"].concat();
        let gate = Arc::new(UpgradeGate::default());
        let mut guard =
            FramingGuard::new(&smuggled[..], Limits::default()).with_upgrade_gate(gate.clone());
        let _ = guard.read(&mut buf).await.expect("head");
        gate.settle(1, false);
        let n = guard.read(&mut buf).await.expect("refusal");
        assert!(
            buf[..n].starts_with(b"GET /hallpass-rejected"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }

    #[tokio::test]
    async fn guard_holds_bytes_after_an_upgrade_request_until_settled() {
        let input: &[u8] = b"GET /ws HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\nGET /next HTTP/1.1\r\n\r\n";
        let gate = Arc::new(UpgradeGate::default());
        let mut guard = FramingGuard::new(input, Limits::default()).with_upgrade_gate(gate.clone());
        let mut buf = vec![0u8; 4096];
        let n = guard.read(&mut buf).await.expect("head");
        assert!(buf[..n].ends_with(b"Upgrade: websocket\r\n\r\n"));
        let held =
            tokio::time::timeout(std::time::Duration::from_millis(50), guard.read(&mut buf)).await;
        assert!(
            held.is_err(),
            "bytes after an upgrade request wait for the answer"
        );
        gate.settle(2, false);
        let still =
            tokio::time::timeout(std::time::Duration::from_millis(50), guard.read(&mut buf)).await;
        assert!(
            still.is_err(),
            "another request's answer does not release them"
        );
        gate.settle(1, false);
        let n = guard.read(&mut buf).await.expect("next request");
        assert_eq!(
            &buf[..n],
            b"GET /next HTTP/1.1\r\n\r\n",
            "not upgraded: parsed as HTTP again"
        );
    }

    #[tokio::test]
    async fn guard_never_releases_an_unfinished_head() {
        let (out, err) = through_guard(b"GET / HTTP/1.1\r\nHost: a").await;
        assert_eq!((out, err), (Vec::new(), None));
    }
}

/// What hyper 1 does *without* the guard, measured on every case the guard
/// refuses; the table in the module docs comes from this test's output
/// (`cargo test -p hallpass-proxy hyper_alone -- --nocapture`). It fails when
/// hyper's behaviour changes, so the docs cannot silently go stale.
#[cfg(test)]
mod hyper_alone {
    use std::convert::Infallible;

    use http_body_util::BodyExt;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Sends one request to a bare hyper server; returns the status it answered
    /// (0: it closed without answering) and the body bytes the service received.
    async fn bare_hyper(request: &[u8]) -> (u16, String) {
        let (client, server) = tokio::io::duplex(1 << 20);
        let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let seen_tx = seen_tx.clone();
            async move {
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let _ = seen_tx.send(String::from_utf8_lossy(&body).into_owned());
                Ok::<_, Infallible>(hyper::Response::new(
                    http_body_util::Empty::<bytes::Bytes>::new(),
                ))
            }
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(server), svc),
        );
        let (mut rd, mut wr) = tokio::io::split(client);
        wr.write_all(request).await.expect("write");
        // The write half stays open: an end of input would make hyper drop a
        // request in flight, which would hide what it accepted.
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        while !out.windows(4).any(|w| w == b"\r\n\r\n") {
            match tokio::time::timeout(std::time::Duration::from_millis(500), rd.read(&mut buf))
                .await
            {
                Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        drop(wr);
        let text = String::from_utf8_lossy(&out);
        let status = text
            .strip_prefix("HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let seen = seen_rx.try_recv().unwrap_or_default();
        (status, seen)
    }

    #[tokio::test]
    async fn hyper_alone_is_lenient_where_the_guard_is_strict() {
        let cases: &[(&str, &str, u16)] = &[
            (
                "CL+TE",
                "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                200,
            ),
            (
                "TE gzip,chunked",
                "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
                200,
            ),
            (
                "TE chunked,chunked",
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
                200,
            ),
            (
                "TE chunked,identity",
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
                400,
            ),
            (
                "TE xchunked",
                "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
                400,
            ),
            (
                "CL twice, different",
                "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
                400,
            ),
            (
                "CL_ underscore",
                "POST / HTTP/1.1\r\nContent_Length: 3\r\n\r\nabc",
                200,
            ),
            (
                "obs-fold",
                "GET / HTTP/1.1\r\nX-A: 1\r\n  folded\r\n\r\n",
                400,
            ),
            (
                "space before colon",
                "GET / HTTP/1.1\r\nX-A : 1\r\n\r\n",
                400,
            ),
            ("bare LF", "GET / HTTP/1.1\nHost: a\n\n", 200),
            (
                "chunk extension",
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\n\r\n",
                200,
            ),
            (
                "two Host headers",
                "GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
                200,
            ),
            (
                "HTTP/1.0 chunked",
                "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                400,
            ),
        ];
        let mut changed = Vec::new();
        for (name, request, expected) in cases {
            let (status, _) = bare_hyper(request.as_bytes()).await;
            println!("{name:>22}: hyper alone answers {status}");
            if status != *expected {
                changed.push(format!(
                    "{name}: expected {expected}, hyper now answers {status}"
                ));
            }
        }
        assert!(
            changed.is_empty(),
            "hyper's behaviour changed; update the module docs: {changed:?}"
        );
    }
}
