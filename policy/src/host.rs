//! Canonical hosts: the one spelling of a host that is decided, dialled and logged.
//!
//! In: a host as a browser, a `CONNECT` line, a `Host` header or a list entry spells
//! it (any case, trailing dot, percent-encoded bytes, Unicode or punycode, IPv6 in
//! brackets, any IPv4 spelling a browser accepts). Out: a [`CanonicalHost`]
//! (and, from [`canonicalize_authority`], the port that was given).
//! Refused, with a [`HostError`]: anything a browser would refuse or that could be
//! read two ways.
//!
//! # How a host is canonicalised
//!
//! The heavy lifting is the WHATWG URL standard's host parser, as implemented by
//! the `url` crate, because the invariant that matters is "the proxy decides on
//! what the browser would dial". That parser:
//!
//! - percent-decodes the host (`%65xample.com` is `example.com`);
//! - applies UTS-46 mapping and converts to A-labels, which lower-cases and folds
//!   fullwidth letters, the ideographic full stop `。` and ignorable characters
//!   such as zero-width space and soft hyphen (`bücher.de` is `xn--bcher-kva.de`);
//! - reads a name whose last label is a number as IPv4 in every spelling browsers
//!   accept (`2130706433`, `0x7f000001`, `0x7f.1`, `0177.0.0.1`, `127.1`).
//!
//! On top of that, this module:
//!
//! - strips **one** trailing dot (`example.com.` is `example.com`, `example.com..`
//!   is refused) and refuses empty labels, labels over 63 bytes and names over 253
//!   bytes (RFC 1035 limits that the URL standard leaves to the resolver);
//! - refuses labels with anything but ASCII letters, digits, `-` and `_` after
//!   mapping. The URL standard lets through `!`, `"`, `{`, `~` and friends, which no
//!   resolvable name uses; refusing them keeps odd bytes out of `Host` headers,
//!   logs and block pages. Underscores stay: browsers accept them and real lists
//!   contain them;
//! - turns IPv4-mapped IPv6 (`[::ffff:127.0.0.1]`) into IPv4 and refuses IPv6 zone
//!   ids (`[fe80::1%25eth0]`): a zone names an interface of the proxy itself;
//! - in an authority, drops the userinfo (the host is what follows the **last**
//!   `@`, as in the WHATWG parser, so the proxy dials what a browser would),
//!   refuses `\`, control bytes and spaces anywhere, refuses `/`, `?` and `#`
//!   (they end an authority in a URL, so an authority holding one reads two ways),
//!   insists on brackets around IPv6 and on a decimal port in `1..=65535`.
//!
//! Error messages are lower-case, name what was expected and what was found, and
//! never contain the userinfo.
//!
//! # Fast path
//!
//! Most hosts are already canonical (`www.example.com`). [`canonicalize`] checks
//! for that first, in one pass over the bytes, and skips the IDNA machinery. It
//! only takes names made of `a-z`, `0-9`, `-`, `_` and single dots, with no `xn--`
//! label and a last label that cannot be read as a number; everything else takes
//! the full path. The property tests check that both paths agree, and
//! [`canonicalize_without_fast_path`] exists so that they (and the fuzz targets)
//! can.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The longest label DNS can carry (RFC 1035 §2.3.4), in bytes.
pub const MAX_LABEL_LEN: usize = 63;

/// The longest name DNS can carry without its trailing dot (RFC 1035 §2.3.4), in
/// bytes.
pub const MAX_NAME_LEN: usize = 253;

/// How much of a refused host an error message quotes, in characters. Hosts can
/// be long; a message that names the problem needs only the start.
const QUOTE_LIMIT: usize = 80;

/// A host in canonical form.
///
/// Build one with [`canonicalize`], [`canonicalize_authority`],
/// [`CanonicalHost::from_ipv4`] or [`CanonicalHost::from_ipv6`]; the text is then
/// guaranteed canonical, so `canonicalize(h.as_str()) == Ok(h)`.
///
/// ```
/// use hallpass_policy::host::canonicalize;
///
/// let host = canonicalize("WWW.Example.COM.").unwrap();
/// assert_eq!(host.as_str(), "www.example.com");
/// assert_eq!(canonicalize("0x7f.1").unwrap().as_str(), "127.0.0.1");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CanonicalHost {
    text: Box<str>,
    ip: Option<IpAddr>,
}

/// Appends `ip` as its `Display` form would write it (`10.1.4.23`, `::1`),
/// without the formatting machinery or an allocation for IPv4: it runs for
/// every request to an IP address, every access line and every stored block
/// event, and `to_string` was ~1 % of such a request's CPU.
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(_) => {
            use std::fmt::Write as _;
            // Writing to a String cannot fail.
            let _ = write!(out, "{ip}");
        }
    }
}

/// Appends `value` in decimal, zero-padded to at least `width` digits, without
/// the formatting machinery (ports in `Host` headers, numbers and timestamps in
/// access lines: once or more for every request).
pub fn push_decimal(out: &mut String, mut value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut at = digits.len();
    while value > 0 || digits.len() - at < width.max(1) {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
    }
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
}

/// An address's `Display` text (see [`push_ip`]).
pub fn ip_text(ip: IpAddr) -> String {
    let mut text = String::with_capacity(15);
    push_ip(&mut text, ip);
    text
}

impl CanonicalHost {
    /// The canonical text: lower-case A-labels without a trailing dot, a dotted
    /// quad for IPv4, or the RFC 5952 form (no brackets) for IPv6.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The address, when the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }

    /// Builds a host from an IPv4 address.
    pub fn from_ipv4(ip: Ipv4Addr) -> Self {
        CanonicalHost {
            text: ip_text(IpAddr::V4(ip)).into(),
            ip: Some(IpAddr::V4(ip)),
        }
    }

    /// Builds a host from an IPv6 address (an IPv4-mapped address becomes IPv4).
    pub fn from_ipv6(ip: Ipv6Addr) -> Self {
        match ip.to_ipv4_mapped() {
            Some(v4) => Self::from_ipv4(v4),
            None => CanonicalHost {
                text: ip.to_string().into(),
                ip: Some(IpAddr::V6(ip)),
            },
        }
    }

    /// Builds a host from an IP address (an IPv4-mapped IPv6 address becomes IPv4).
    pub fn from_ip(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::from_ipv4(v4),
            IpAddr::V6(v6) => Self::from_ipv6(v6),
        }
    }

    /// True when the host is an IPv6 literal, which needs brackets in a URL or an
    /// authority (`[::1]:443`).
    pub fn is_ipv6(&self) -> bool {
        matches!(self.ip, Some(IpAddr::V6(_)))
    }

    /// A domain name whose text is already known to be canonical.
    fn domain(text: &str) -> Self {
        CanonicalHost {
            text: text.into(),
            ip: None,
        }
    }
}

impl std::fmt::Display for CanonicalHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a host or an authority was refused.
///
/// Every message is lower-case and says what was expected and what was found.
/// A message may quote the host (escaped, and cut at 80 characters) but never the
/// userinfo or the port text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// Nothing where a host was expected (``, `user@`, `:443`, `.`).
    #[error("expected a host, found nothing")]
    Empty,
    /// A control byte, a space or a `\` somewhere in the host or the authority.
    #[error(
        "expected a host without control bytes, spaces or '\\', found {} at byte {at}",
        describe_byte(*.byte)
    )]
    ForbiddenByte {
        /// The offending byte.
        byte: u8,
        /// Its offset in the input.
        at: usize,
    },
    /// A `/`, `?` or `#`: these end an authority inside a URL, so an authority
    /// holding one could be read two ways.
    #[error(
        "expected a host[:port] without a path, query or fragment, found {} at byte {at}",
        describe_byte(*.byte)
    )]
    Delimiter {
        /// The offending byte.
        byte: u8,
        /// Its offset in the input.
        at: usize,
    },
    /// An `@` in a bare host: userinfo belongs to an authority.
    #[error("expected a host without userinfo, found '@'")]
    Userinfo,
    /// A `:port` after a bare host.
    #[error("expected a host without a port, found ':'")]
    UnexpectedPort,
    /// UTS-46/IDNA processing refused the name (a disallowed code point, bad
    /// punycode, a joiner out of context, a forbidden domain code point such as
    /// `%`, `<` or `^` after percent-decoding, or bytes that are not UTF-8).
    #[error("expected a valid internationalised domain name, found {found}")]
    Idna {
        /// The host, quoted.
        found: String,
    },
    /// A label holds something other than ASCII letters, digits, `-` or `_` after
    /// mapping.
    #[error(
        "expected labels of letters, digits, '-' or '_', found {} in {found}",
        describe_char(*.ch)
    )]
    LabelCharacter {
        /// The offending character.
        ch: char,
        /// The host, quoted.
        found: String,
    },
    /// Two dots in a row, a leading dot, or more than one trailing dot.
    #[error("expected labels separated by single dots, found an empty label in {found}")]
    EmptyLabel {
        /// The host, quoted.
        found: String,
    },
    /// A label longer than [`MAX_LABEL_LEN`].
    #[error("expected labels of at most 63 bytes, found one of {len} bytes")]
    LabelTooLong {
        /// The label's length in bytes (as an A-label).
        len: usize,
    },
    /// A name longer than [`MAX_NAME_LEN`].
    #[error("expected a name of at most 253 bytes, found {len} bytes")]
    NameTooLong {
        /// The name's length in bytes (as A-labels, without a trailing dot).
        len: usize,
    },
    /// The name ends in a number, so it must be an IPv4 address, and is not one
    /// (`1.2.3.4.5`, `256.1.1.1`, `example.09`).
    #[error("expected an ipv4 address (the name ends in a number), found {found}")]
    Ipv4 {
        /// The host, quoted.
        found: String,
    },
    /// Brackets or colons that do not hold an IPv6 address.
    #[error("expected an ipv6 address, found {found}")]
    Ipv6 {
        /// The host, quoted.
        found: String,
    },
    /// An IPv6 address without brackets in an authority (`::1:443` reads two ways).
    #[error("expected an ipv6 address in brackets, found {found}")]
    UnbracketedIpv6 {
        /// The host, quoted.
        found: String,
    },
    /// An IPv6 zone id (`%25eth0`): it names an interface of the proxy itself.
    #[error("expected an ipv6 address without a zone id, found '%' in {found}")]
    ZoneId {
        /// The host, quoted.
        found: String,
    },
    /// Something other than `:port` after the closing `]` of an IPv6 address.
    #[error("expected ':' or nothing after ']', found {}", describe_byte(*.byte))]
    AfterBracket {
        /// The byte after `]`.
        byte: u8,
    },
    /// A port that is empty, not decimal digits, 0 or above 65535.
    #[error("expected a port of 1 to 65535 in decimal digits, found {found}")]
    Port {
        /// What was found, described without quoting it (a missing `@` can turn
        /// a password into a "port").
        found: PortProblem,
    },
}

/// What was wrong with a port (see [`HostError::Port`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortProblem {
    /// `host:` with nothing after the colon.
    Empty,
    /// A byte other than `0`–`9` (a sign, a letter, a second colon).
    NotDecimal,
    /// Port 0, which cannot be dialled.
    Zero,
    /// A number above 65535.
    TooLarge,
}

impl std::fmt::Display for PortProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PortProblem::Empty => "nothing after ':'",
            PortProblem::NotDecimal => "a byte that is not a decimal digit",
            PortProblem::Zero => "0",
            PortProblem::TooLarge => "a number above 65535",
        })
    }
}

/// Describes a byte for an error message: printable ASCII quoted, others in hex.
fn describe_byte(byte: u8) -> String {
    match byte {
        b' ' => "a space".to_owned(),
        b'\\' => "'\\'".to_owned(),
        0x21..=0x7e => format!("'{}'", char::from(byte)),
        _ => format!("byte 0x{byte:02x}"),
    }
}

/// Describes a character for an error message, escaping anything unprintable.
fn describe_char(ch: char) -> String {
    if ch.is_ascii_graphic() {
        format!("'{ch}'")
    } else {
        format!("'{}'", ch.escape_debug())
    }
}

/// Quotes (part of) a host for an error message: escaped, cut at
/// [`QUOTE_LIMIT`] characters.
fn quote(host: &str) -> String {
    let mut quoted = String::with_capacity(host.len().min(QUOTE_LIMIT) + 2);
    quoted.push('"');
    for (count, ch) in host.chars().enumerate() {
        if count == QUOTE_LIMIT {
            quoted.push_str("...");
            break;
        }
        quoted.extend(ch.escape_debug());
    }
    quoted.push('"');
    quoted
}

/// Canonicalises one host (no port, no userinfo; IPv6 may be in brackets, and may
/// also be bare so that every canonical text canonicalises to itself).
///
/// This is the one function that both requests and list entries go through.
///
/// ```
/// use hallpass_policy::host::canonicalize;
///
/// assert_eq!(canonicalize("B\u{fc}cher.DE.").unwrap().as_str(), "xn--bcher-kva.de");
/// assert_eq!(canonicalize("%65xample.com").unwrap().as_str(), "example.com");
/// assert_eq!(canonicalize("2130706433").unwrap().as_str(), "127.0.0.1");
/// assert_eq!(canonicalize("[::ffff:10.0.0.1]").unwrap().as_str(), "10.0.0.1");
/// assert!(canonicalize("example.com..").is_err());
/// ```
///
/// # Errors
///
/// A [`HostError`] naming what was expected and what was found.
pub fn canonicalize(input: &str) -> Result<CanonicalHost, HostError> {
    if let Some(text) = fast_path(input) {
        return Ok(CanonicalHost::domain(text));
    }
    // A plain dotted quad (four decimal octets, no leading zeros: the only form
    // std accepts) means the same address to the URL standard; every other
    // spelling (octal, hex, fewer parts, a trailing dot) takes the full parse.
    if let Ok(ip) = input.parse::<std::net::Ipv4Addr>() {
        return Ok(CanonicalHost::from_ipv4(ip));
    }
    canonicalize_without_fast_path(input)
}

/// [`canonicalize`] without the fast path for names that are already canonical:
/// always the full WHATWG/UTS-46 parse. It gives exactly what [`canonicalize`]
/// gives; it is public so that tests, fuzz targets and benches can check and
/// measure that.
///
/// # Errors
///
/// As [`canonicalize`].
pub fn canonicalize_without_fast_path(input: &str) -> Result<CanonicalHost, HostError> {
    if input.is_empty() {
        return Err(HostError::Empty);
    }
    check_raw_bytes(input)?;
    check_delimiters(input)?;
    if input.contains('@') {
        return Err(HostError::Userinfo);
    }
    if input.starts_with('[') {
        return bracketed_ipv6(input);
    }
    match input.bytes().filter(|&b| b == b':').count() {
        0 => host_without_colon(input),
        1 => Err(HostError::UnexpectedPort),
        // Bare IPv6 is accepted here (not in an authority) so that the canonical
        // text of an IPv6 host, which has no brackets, canonicalises to itself.
        _ => ipv6(input, input),
    }
}

/// Splits an authority (`[userinfo@]host[:port]`) into a canonical host and an
/// optional port. The userinfo is dropped and never returned.
///
/// The host is what follows the **last** `@`, as in the WHATWG URL parser, so the
/// proxy decides on (and dials) the host a browser would.
///
/// ```
/// use hallpass_policy::host::canonicalize_authority;
///
/// let (host, port) = canonicalize_authority("user:secret@Example.COM:8080").unwrap();
/// assert_eq!((host.as_str(), port), ("example.com", Some(8080)));
/// let (host, port) = canonicalize_authority("[::ffff:127.0.0.1]").unwrap();
/// assert_eq!((host.as_str(), port), ("127.0.0.1", None));
/// assert!(canonicalize_authority("::1").is_err()); // IPv6 needs brackets here
/// assert!(canonicalize_authority("example.com:0").is_err());
/// ```
///
/// # Errors
///
/// A [`HostError`]; its message never contains the userinfo.
pub fn canonicalize_authority(input: &str) -> Result<(CanonicalHost, Option<u16>), HostError> {
    check_raw_bytes(input)?;
    check_delimiters(input)?;
    let host_port = match input.rfind('@') {
        Some(at) => &input[at + 1..],
        None => input,
    };
    let (host, port) = split_port(host_port)?;
    let port = port.map(parse_port).transpose()?;
    if host.is_empty() {
        return Err(HostError::Empty);
    }
    let host = if host.starts_with('[') {
        bracketed_ipv6(host)?
    } else {
        // `split_port` left no colon in an unbracketed host.
        canonicalize(host)?
    };
    Ok((host, port))
}

/// Splits `host[:port]`, where the host may be a bracketed IPv6 address.
fn split_port(host_port: &str) -> Result<(&str, Option<&str>), HostError> {
    if host_port.starts_with('[') {
        let Some(close) = host_port.find(']') else {
            return Err(HostError::Ipv6 {
                found: quote(host_port),
            });
        };
        let (host, rest) = host_port.split_at(close + 1);
        return match rest.as_bytes().first() {
            None => Ok((host, None)),
            Some(b':') => Ok((host, Some(&rest[1..]))),
            Some(&byte) => Err(HostError::AfterBracket { byte }),
        };
    }
    let mut colons = host_port.match_indices(':');
    match (colons.next(), colons.next()) {
        (None, _) => Ok((host_port, None)),
        (Some((colon, _)), None) => Ok((&host_port[..colon], Some(&host_port[colon + 1..]))),
        // The whole text is the host part, after any userinfo, so it may be quoted.
        (Some(_), Some(_)) => Err(HostError::UnbracketedIpv6 {
            found: quote(host_port),
        }),
    }
}

/// Parses a port: 1 to 65535, decimal digits only (no sign, no spaces, not empty).
/// Leading zeros are accepted, as by the WHATWG parser; they cannot change the
/// value.
fn parse_port(text: &str) -> Result<u16, HostError> {
    let problem = |found| HostError::Port { found };
    if text.is_empty() {
        return Err(problem(PortProblem::Empty));
    }
    let mut value: u32 = 0;
    for byte in text.bytes() {
        if !byte.is_ascii_digit() {
            return Err(problem(PortProblem::NotDecimal));
        }
        value = value * 10 + u32::from(byte - b'0');
        if value > u32::from(u16::MAX) {
            return Err(problem(PortProblem::TooLarge));
        }
    }
    match u16::try_from(value) {
        Ok(0) => Err(problem(PortProblem::Zero)),
        Ok(port) => Ok(port),
        Err(_) => Err(problem(PortProblem::TooLarge)),
    }
}

/// Refuses control bytes (C0 and DEL), spaces and `\` anywhere in the raw input.
/// The WHATWG parser would strip some of these and read `\` as `/`; a proxy
/// refuses instead of guessing.
fn check_raw_bytes(input: &str) -> Result<(), HostError> {
    match input
        .bytes()
        .position(|b| b <= b' ' || b == 0x7f || b == b'\\')
    {
        Some(at) => Err(HostError::ForbiddenByte {
            byte: input.as_bytes()[at],
            at,
        }),
        None => Ok(()),
    }
}

/// Refuses `/`, `?` and `#`, which end an authority inside a URL: an authority
/// (or a host) holding one could be read two ways (`evil.com/x@good.com`).
fn check_delimiters(input: &str) -> Result<(), HostError> {
    match input.bytes().position(|b| matches!(b, b'/' | b'?' | b'#')) {
        Some(at) => Err(HostError::Delimiter {
            byte: input.as_bytes()[at],
            at,
        }),
        None => Ok(()),
    }
}

/// `[v6]`, with or without a zone id (which is refused).
fn bracketed_ipv6(host: &str) -> Result<CanonicalHost, HostError> {
    let inner = host
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'));
    match inner {
        Some(inner) => ipv6(inner, host),
        None => Err(HostError::Ipv6 { found: quote(host) }),
    }
}

/// Parses the text of an IPv6 address (no brackets). `shown` is what an error
/// quotes.
fn ipv6(inner: &str, shown: &str) -> Result<CanonicalHost, HostError> {
    if inner.contains('%') {
        return Err(HostError::ZoneId {
            found: quote(shown),
        });
    }
    // The WHATWG IPv6 parser: compression, embedded IPv4, any hex case. Brackets
    // are what tell `Host::parse` to use it.
    match url::Host::parse(&format!("[{inner}]")) {
        Ok(url::Host::Ipv6(ip)) => Ok(CanonicalHost::from_ipv6(ip)),
        _ => Err(HostError::Ipv6 {
            found: quote(shown),
        }),
    }
}

/// A domain name or an IPv4 address, through the WHATWG host parser.
fn host_without_colon(input: &str) -> Result<CanonicalHost, HostError> {
    match url::Host::parse(input) {
        Ok(url::Host::Domain(domain)) => finish_domain(&domain, input),
        Ok(url::Host::Ipv4(ip)) => Ok(CanonicalHost::from_ipv4(ip)),
        Ok(url::Host::Ipv6(ip)) => Ok(CanonicalHost::from_ipv6(ip)),
        Err(url::ParseError::EmptyHost) => Err(HostError::Empty),
        Err(url::ParseError::InvalidIpv4Address) => Err(HostError::Ipv4 {
            found: quote(input),
        }),
        Err(_) => Err(HostError::Idna {
            found: quote(input),
        }),
    }
}

/// The checks the URL standard leaves to DNS: one trailing dot stripped, then no
/// empty label, labels of at most 63 bytes of `[a-z0-9_-]`, at most 253 bytes.
/// `domain` is the parser's output (lower-case A-labels); `input` is what the
/// caller gave, for messages.
fn finish_domain(domain: &str, input: &str) -> Result<CanonicalHost, HostError> {
    let name = domain.strip_suffix('.').unwrap_or(domain);
    if name.is_empty() {
        return Err(HostError::Empty);
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(HostError::EmptyLabel {
                found: quote(input),
            });
        }
        if let Some(ch) = label.chars().find(|&c| !is_label_char(c)) {
            return Err(HostError::LabelCharacter {
                ch,
                found: quote(input),
            });
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(HostError::LabelTooLong { len: label.len() });
        }
    }
    if name.len() > MAX_NAME_LEN {
        return Err(HostError::NameTooLong { len: name.len() });
    }
    Ok(CanonicalHost::domain(name))
}

/// The characters a canonical label is made of. Upper case never reaches here:
/// UTS-46 mapping lower-cases.
fn is_label_char(ch: char) -> bool {
    ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '_'
}

/// The fast path: `Some(canonical text)` when `input` is already canonical apart
/// from at most one trailing dot, in one pass over the bytes; `None` sends the
/// input down the full path (which may accept it or refuse it).
///
/// The conditions are exactly those under which the full path is the identity
/// (up to the trailing dot): only `[a-z0-9_-]` and single dots, no empty label,
/// no label over 63 bytes, at most 253 bytes, no `xn--` label (punycode is
/// validated by IDNA) and a last label that the WHATWG parser would not read as
/// an IPv4 number.
fn fast_path(input: &str) -> Option<&str> {
    let name = input.strip_suffix('.').unwrap_or(input);
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return None;
    }
    let bytes = name.as_bytes();
    let mut label_start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        match byte {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => {}
            b'.' => {
                if !fast_label_ok(&bytes[label_start..i]) {
                    return None;
                }
                label_start = i + 1;
            }
            _ => return None,
        }
    }
    let last = &bytes[label_start..];
    if !fast_label_ok(last) || may_be_ipv4_number(last) {
        return None;
    }
    Some(name)
}

/// A label the fast path may pass through unchanged.
fn fast_label_ok(label: &[u8]) -> bool {
    !label.is_empty() && label.len() <= MAX_LABEL_LEN && !label.starts_with(b"xn--")
}

/// Whether the WHATWG "ends in a number" check could fire on this (lower-case)
/// last label: all decimal digits, or `0x` followed by hex digits. (Octal labels
/// such as `017` are all decimal digits, so they are covered.)
fn may_be_ipv4_number(label: &[u8]) -> bool {
    let all = |bytes: &[u8], pred: fn(&u8) -> bool| bytes.iter().all(pred);
    all(label, u8::is_ascii_digit)
        || label
            .strip_prefix(b"0x")
            .is_some_and(|hex| all(hex, u8::is_ascii_hexdigit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_plain_and_zero_padded_to_the_width() {
        for (value, width, expected) in [
            (0, 1, "0"),
            (7, 6, "000007"),
            (999_999, 6, "999999"),
            (u64::MAX, 1, "18446744073709551615"),
        ] {
            let mut out = String::new();
            push_decimal(&mut out, value, width);
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn push_ip_writes_what_display_writes() {
        let mut addresses: Vec<IpAddr> = (0..=255u8)
            .flat_map(|o| {
                [
                    IpAddr::from([o, 0, 9, 10]),
                    IpAddr::from([99, o, 100, 255]),
                    IpAddr::from([1, 2, o, 3]),
                    IpAddr::from([0, 0, 0, o]),
                ]
            })
            .collect();
        for v6 in [
            "::1",
            "::",
            "fe80::1:2",
            "::ffff:10.1.2.3",
            "2001:db8::8a2e:370:7334",
        ] {
            addresses.push(v6.parse().expect("v6"));
        }
        let mut out = String::new();
        for ip in addresses {
            out.clear();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string());
        }
    }

    #[test]
    fn the_dotted_quad_fast_path_agrees_with_the_full_parse() {
        for input in [
            "127.0.0.1",
            "255.255.255.255",
            "0.0.0.0",
            "010.0.0.1",
            "1.2.3.4.",
            "0x7f.1",
            "127.1",
            "256.1.1.1",
            "1.2.3.04",
        ] {
            assert_eq!(
                canonicalize(input).map(|h| h.to_string()),
                canonicalize_without_fast_path(input).map(|h| h.to_string()),
                "{input}"
            );
        }
    }

    #[test]
    fn fast_path_takes_plain_names_only() {
        assert_eq!(fast_path("www.example.com"), Some("www.example.com"));
        assert_eq!(fast_path("www.example.com."), Some("www.example.com"));
        assert_eq!(fast_path("a_b.example.com"), Some("a_b.example.com"));
        for other in [
            "",
            ".",
            "Example.com",
            "example.com..",
            "a..b",
            ".a",
            "xn--bcher-kva.de",
            "127.0.0.1",
            "foo.0x1f",
            "foo.0x",
            "foo.017",
            "b\u{fc}cher.de",
            "%65xample.com",
        ] {
            assert_eq!(fast_path(other), None, "{other:?}");
        }
    }

    #[test]
    fn ipv4_number_detection_matches_whatwg_for_lower_case() {
        for (label, number) in [
            ("1", true),
            ("0x", true),
            ("0xff", true),
            ("017", true),
            ("0xg", false),
            ("1a", false),
            ("x1", false),
            ("com", false),
        ] {
            assert_eq!(may_be_ipv4_number(label.as_bytes()), number, "{label}");
        }
    }

    #[test]
    fn port_parsing_is_strict() {
        assert_eq!(parse_port("443"), Ok(443));
        assert_eq!(parse_port("00080"), Ok(80));
        assert_eq!(parse_port("65535"), Ok(65535));
        for (text, problem) in [
            ("", PortProblem::Empty),
            ("+80", PortProblem::NotDecimal),
            ("-1", PortProblem::NotDecimal),
            ("8o", PortProblem::NotDecimal),
            ("0", PortProblem::Zero),
            ("65536", PortProblem::TooLarge),
            ("99999999999999999999", PortProblem::TooLarge),
        ] {
            assert_eq!(
                parse_port(text),
                Err(HostError::Port { found: problem }),
                "{text:?}"
            );
        }
    }

    /// Regression guard: a missing `@` must not put a password into an error
    /// message through the port ("user:hunter2" reads as host "user", port
    /// "hunter2").
    #[test]
    fn port_errors_never_quote_the_port_text() {
        let err = canonicalize_authority("user:hunter2").expect_err("not a port");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
