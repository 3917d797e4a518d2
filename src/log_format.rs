//! The JSON log line: one object per event, the shape of tracing-subscriber's
//! own `json()` format (`timestamp`, `level`, `fields`, `target`), so log
//! shippers that read one read the other.
//!
//! Why not that format itself: it writes through an adaptor that checks every
//! small piece it writes (each key, quote and comma) as UTF-8 and copies it
//! into the line one piece at a time. Measured under load that was ~8 % of the
//! proxy's CPU per allowed request, for the one access line each request
//! writes. This one serialises the whole line with `serde_json` into a reused
//! byte buffer and hands it over in one piece.
use std::cell::RefCell;
use std::fmt;

use serde::Serializer as _;
use serde::ser::SerializeMap;
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
    text: Vec<u8>,
    second: Second,
}

thread_local! {
    static LINE: RefCell<Line> = RefCell::new(Line {
        text: Vec::with_capacity(512),
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
    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, the shape of tracing-subscriber's own.
    fn timestamp(&mut self, now: std::time::SystemTime) -> Result<String, fmt::Error> {
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
        let mut text = String::with_capacity(27);
        text.push_str(&self.text);
        text.push('.');
        let micros = since.subsec_micros();
        let mut digits = [b'0'; 6];
        let mut rest = micros;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        text.push_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?);
        text.push('Z');
        Ok(text)
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
            let timestamp = second.timestamp(std::time::SystemTime::now())?;
            line.clear();
            write_line(line, &timestamp, event).map_err(|_| fmt::Error)?;
            line.push(b'\n');
            // serde_json writes valid UTF-8; checked once for the whole line.
            writer.write_str(std::str::from_utf8(line).map_err(|_| fmt::Error)?)
        })
    }
}

fn write_line(line: &mut Vec<u8>, timestamp: &str, event: &Event<'_>) -> serde_json::Result<()> {
    let meta = event.metadata();
    let mut ser = serde_json::Serializer::new(line);
    let mut map = (&mut ser).serialize_map(None)?;
    map.serialize_entry("timestamp", timestamp)?;
    map.serialize_entry("level", meta.level().as_str())?;
    map.serialize_key("fields")?;
    map.serialize_value(&Fields(event))?;
    map.serialize_entry("target", meta.target())?;
    map.end()
}

/// An event's fields as a JSON object, in the order they were written.
struct Fields<'a, 'e>(&'a Event<'e>);

impl serde::Serialize for Fields<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut visitor = FieldVisitor {
            map: serializer.serialize_map(None)?,
            error: None,
        };
        self.0.record(&mut visitor);
        match visitor.error {
            Some(e) => Err(e),
            None => visitor.map.end(),
        }
    }
}

/// Writes each field as a map entry; the first error stops the rest.
struct FieldVisitor<M: SerializeMap> {
    map: M,
    error: Option<M::Error>,
}

impl<M: SerializeMap> FieldVisitor<M> {
    fn entry<V: serde::Serialize + ?Sized>(&mut self, field: &Field, value: &V) {
        if self.error.is_none() {
            if let Err(e) = self.map.serialize_entry(field.name(), value) {
                self.error = Some(e);
            }
        }
    }
}

/// A `Debug` value serialised as a JSON string without an intermediate
/// `String` (serde's `collect_str` escapes as it formats).
struct AsDebug<'a>(&'a dyn fmt::Debug);

impl serde::Serialize for AsDebug<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{:?}", self.0))
    }
}

impl<M: SerializeMap> Visit for FieldVisitor<M> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, &value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, &value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.entry(field, &value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, &value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.entry(field, &AsDebug(&format_args!("{value}")));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, &AsDebug(value));
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
            let got = second
                .timestamp(at(secs, micros))
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
        let ours = second
            .timestamp(std::time::SystemTime::now())
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
}
