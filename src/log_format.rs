//! The JSON log line: one object per event, the shape of tracing-subscriber's
//! own `json()` format (`timestamp`, `level`, `fields`, `target`), so log
//! shippers that read one read the other.
//!
//! Why not that format itself: it writes through an adaptor that checks every
//! small piece it writes (each key, quote and comma) as UTF-8 and copies it
//! into the line one piece at a time. Measured under load that was ~8 % of the
//! proxy's CPU per allowed request, for the one access line each request
//! writes. This one builds the whole line in a reused buffer and hands it over
//! in one piece.
//!
//! Strings are where the time goes (field names, hosts, URLs: ~150 bytes a
//! line). Nearly all need no escaping, so one pass checks that and copies them
//! whole; only a string with a quote, backslash or control character goes
//! through `serde_json`'s escaper. Counted with callgrind, serialising every
//! piece through `serde_json` cost ~3,000 instructions per access line, ~6 %
//! of an allowed request.
use std::cell::RefCell;
use std::fmt::{self, Write as _};

use policy::host::push_decimal;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The formatter (see the module).
pub struct JsonLine;

/// A thread's line buffer and the second its last timestamp fell in.
struct Line {
    /// The line being built, kept between events so its memory is reused.
    text: String,
    second: Second,
}

thread_local! {
    static LINE: RefCell<Line> = RefCell::new(Line {
        text: String::with_capacity(512),
        second: Second::default(),
    });
}

/// The date and time to the second, formatted once per second: the calendar
/// arithmetic and formatting of a whole RFC 3339 timestamp for every line was
/// ~1 % of an allowed request's CPU. Only the microseconds change within it.
#[derive(Default)]
struct Second {
    unix: Option<u64>,
    /// `YYYY-MM-DDTHH:MM:SS`, UTC.
    text: String,
}

impl Second {
    /// Appends `YYYY-MM-DDTHH:MM:SS.ffffffZ`, the shape of tracing-subscriber's own.
    fn push(&mut self, out: &mut String, now: std::time::SystemTime) -> fmt::Result {
        let since = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| fmt::Error)?;
        if self.unix != Some(since.as_secs()) {
            let at = time::OffsetDateTime::from_unix_timestamp(since.as_secs() as i64)
                .map_err(|_| fmt::Error)?;
            self.text = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                at.year(),
                u8::from(at.month()),
                at.day(),
                at.hour(),
                at.minute(),
                at.second()
            );
            self.unix = Some(since.as_secs());
        }
        out.push_str(&self.text);
        out.push('.');
        push_decimal(out, u64::from(since.subsec_micros()), 6);
        out.push('Z');
        Ok(())
    }
}

/// The bytes JSON requires escaped in a string: control characters, `"` and `\\`.
static NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = b < 0x20 || b == b'"' as usize || b == b'\\' as usize;
        b += 1;
    }
    table
};

/// Whether any byte of `text` must be escaped in a JSON string, eight bytes at
/// a time (~2 instructions a byte where the table alone costs ~5; the strings
/// of an access line are ~150 bytes).
#[inline]
fn needs_escape(text: &[u8]) -> bool {
    use policy::scan::{any_byte, has_byte, has_less};
    any_byte(
        text,
        |word| has_less(word, 0x20) || has_byte(word, b'"') || has_byte(word, b'\\'),
        |b| NEEDS_ESCAPE[usize::from(b)],
    )
}

/// Appends `text` as a JSON string: copied whole when nothing in it needs
/// escaping, else through `serde_json`.
///
/// Inlined where it is used (a line writes ~14 strings, most a few bytes
/// long); the rare escaping path is kept out of line.
#[inline]
fn push_json_str(out: &mut String, text: &str) {
    if needs_escape(text.as_bytes()) {
        push_escaped(out, text);
    } else {
        out.reserve(text.len() + 2);
        out.push('"');
        out.push_str(text);
        out.push('"');
    }
}

#[cold]
#[inline(never)]
fn push_escaped(out: &mut String, text: &str) {
    // Serialising a str cannot fail; the fallback only guards the shape.
    match serde_json::to_string(text) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            let Line { text: line, second } = &mut *line;
            line.clear();
            write_line(line, second, std::time::SystemTime::now(), event)?;
            writer.write_str(line)
        })
    }
}

fn write_line(
    line: &mut String,
    second: &mut Second,
    now: std::time::SystemTime,
    event: &Event<'_>,
) -> fmt::Result {
    let meta = event.metadata();
    line.push_str("{\"timestamp\":\"");
    second.push(line, now)?;
    line.push_str("\",\"level\":\"");
    line.push_str(meta.level().as_str());
    line.push_str("\",\"fields\":{");
    event.record(&mut FieldWriter {
        line: &mut *line,
        first: true,
    });
    line.push_str("},\"target\":");
    push_json_str(line, meta.target());
    line.push_str("}\n");
    Ok(())
}

/// Writes each field as `"name":value`, in the order they were written.
struct FieldWriter<'a> {
    line: &'a mut String,
    first: bool,
}

impl FieldWriter<'_> {
    fn key(&mut self, field: &Field) -> &mut String {
        if !self.first {
            self.line.push(',');
        }
        self.first = false;
        push_json_str(self.line, field.name());
        self.line.push(':');
        self.line
    }

    /// A number or other value as `serde_json` writes it (`null` for a
    /// non-finite float).
    fn json<V: serde::Serialize>(&mut self, field: &Field, value: V) {
        let text = serde_json::to_string(&value).unwrap_or_else(|_| "null".into());
        self.key(field).push_str(&text);
    }
}

impl Visit for FieldWriter<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        push_json_str(self.key(field), value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        push_decimal(self.key(field), value, 1);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        let line = self.key(field);
        if value < 0 {
            line.push('-');
        }
        push_decimal(line, value.unsigned_abs(), 1);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.json(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field)
            .push_str(if value { "true" } else { "false" });
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let text = value.to_string();
        push_json_str(self.key(field), &text);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut text = String::new();
        // Writing into a String only fails if the value's Debug does.
        let _ = write!(text, "{value:?}");
        push_json_str(self.key(field), &text);
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// Lines written by `emit` under the JSON-lines formatter, parsed.
    fn lines(emit: impl FnOnce()) -> Vec<serde_json::Value> {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .event_format(JsonLine)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn an_access_line_is_one_json_object_with_every_field() {
        let ip: std::net::IpAddr = "10.1.2.3".parse().expect("ip");
        let got = lines(|| {
            tracing::info!(
                target: "hallpass::access",
                client = %ip,
                who = "year5",
                group = "ks2",
                method = "GET",
                url = "http://example.com/a?b=\"c\"\n",
                verdict = "allow",
                status = 200u16,
            );
        });
        assert_eq!(got.len(), 1);
        let line = &got[0];
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["target"], "hallpass::access");
        let fields = &line["fields"];
        assert_eq!(fields["client"], "10.1.2.3");
        assert_eq!(fields["who"], "year5");
        assert_eq!(fields["group"], "ks2");
        assert_eq!(fields["method"], "GET");
        assert_eq!(fields["url"], "http://example.com/a?b=\"c\"\n");
        assert_eq!(fields["verdict"], "allow");
        assert_eq!(fields["status"], 200);
        let time = line["timestamp"].as_str().expect("timestamp");
        assert!(time.ends_with('Z') && time.contains('T'), "{time}");
    }

    #[test]
    fn timestamps_have_the_stock_formatters_shape_and_follow_the_clock() {
        let mut second = Second::default();
        let at = |secs: u64, micros: u64| {
            std::time::UNIX_EPOCH + std::time::Duration::from_micros(secs * 1_000_000 + micros)
        };
        // In order, so the cached second is reused and then moves on, across
        // a day and a year (2026-11-24T03:33:40Z is 1795491220).
        for (secs, micros, expected) in [
            (1_795_491_220, 7, "2026-11-24T03:33:40.000007Z"),
            (1_795_491_220, 999_999, "2026-11-24T03:33:40.999999Z"),
            (1_795_491_221, 120_000, "2026-11-24T03:33:41.120000Z"),
            (1_798_761_599, 1, "2026-12-31T23:59:59.000001Z"),
            (1_798_761_600, 0, "2027-01-01T00:00:00.000000Z"),
        ] {
            let mut got = String::new();
            second
                .push(&mut got, at(secs, micros))
                .expect("a time after 1970");
            assert_eq!(got, expected);
        }
        // The same shape as tracing-subscriber's formatter.
        let mut stock = String::new();
        tracing_subscriber::fmt::time::FormatTime::format_time(
            &tracing_subscriber::fmt::time::SystemTime,
            &mut Writer::new(&mut stock),
        )
        .expect("a time after 1970");
        let mut ours = String::new();
        second
            .push(&mut ours, std::time::SystemTime::now())
            .expect("a time after 1970");
        assert_eq!(ours.len(), stock.len(), "{ours} / {stock}");
        let shape = |t: &str| {
            t.chars()
                .map(|c| if c.is_ascii_digit() { '9' } else { c })
                .collect::<String>()
        };
        assert_eq!(shape(&ours), shape(&stock));
    }

    #[test]
    fn messages_errors_and_debug_values_are_escaped_strings() {
        let error = io::Error::other("disk \"full\"");
        let got = lines(|| {
            tracing::warn!(error = &error as &dyn std::error::Error, retry = true, ratio = 0.5, at = ?("x", 1), "store failed: {}", "tab\there");
        });
        let fields = &got[0]["fields"];
        assert_eq!(got[0]["level"], "WARN");
        assert_eq!(fields["message"], "store failed: tab\there");
        assert_eq!(fields["error"], "disk \"full\"");
        assert_eq!(fields["retry"], true);
        assert_eq!(fields["ratio"], 0.5);
        assert_eq!(fields["at"], "(\"x\", 1)");
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        for text in [
            "",
            "plain http://example.com/a?b=c",
            "quote \" backslash \\ slash /",
            "controls \u{0}\u{1f}\t\r\n and del \u{7f}",
            "unicode é ✓ 🎒 \u{2028}",
        ] {
            let mut ours = String::new();
            push_json_str(&mut ours, text);
            assert_eq!(
                ours,
                serde_json::to_string(text).expect("a str"),
                "{text:?}"
            );
        }
    }

    /// The word test (policy::scan, tested there byte by byte) finds exactly
    /// the bytes of the table, in words and in the tail.
    #[test]
    fn the_escape_check_finds_what_the_table_names() {
        for b in 0..=255u8 {
            let mut text = *b"0123456789abcdefghi";
            for at in [0, 7, 8, 15, 16, 18] {
                text[at] = b;
                assert_eq!(
                    needs_escape(&text),
                    NEEDS_ESCAPE[usize::from(b)],
                    "{b:#04x} at {at}"
                );
                text[at] = b'x';
            }
        }
        assert!(!needs_escape("é✓🎒 \u{2028} ok".as_bytes()));
    }

    #[test]
    fn numbers_are_plain_decimal_and_bad_floats_are_null() {
        let got = lines(|| {
            tracing::info!(
                low = i64::MIN,
                zero = 0i64,
                high = u64::MAX,
                nan = f64::NAN,
                ok = false
            );
        });
        let fields = &got[0]["fields"];
        assert_eq!(fields["low"], i64::MIN);
        assert_eq!(fields["zero"], 0);
        assert_eq!(fields["high"], u64::MAX);
        assert!(fields["nan"].is_null(), "{fields}");
        assert_eq!(fields["ok"], false);
    }
}
