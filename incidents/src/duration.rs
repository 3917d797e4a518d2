//! Durations written as text in settings and on the command line: `250ms`,
//! `30s`, `10m`, `2h`, `7d`.
//!
//! In: the text. Out: a [`Duration`]. Refused: an empty number, an unknown unit,
//! a missing unit (a bare `10` is ambiguous), and values that overflow.
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Parses `NUMBER UNIT` where UNIT is `ms`, `s`, `m`, `h` or `d`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(incidents::duration::parse("10m"), Ok(Duration::from_secs(600)));
/// assert!(incidents::duration::parse("10").is_err());
/// ```
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| {
        format!("expected a duration with a unit (ms, s, m, h, d), found `{text}`")
    })?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("expected a number before the unit, found `{text}`"))?;
    let ms_per_unit: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(format!(
                "expected a unit of ms, s, m, h or d, found `{other}` in `{text}`"
            ));
        }
    };
    n.checked_mul(ms_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration `{text}` is too large"))
}

/// Serde helper: a duration field written as text.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).map_err(serde::de::Error::custom)
}

/// Milliseconds of a duration, saturating.
pub fn as_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_refusals() {
        let table = [
            ("250ms", Some(250)),
            ("30s", Some(30_000)),
            ("10m", Some(600_000)),
            ("2h", Some(7_200_000)),
            ("7d", Some(604_800_000)),
            ("10", None),
            ("m", None),
            ("5w", None),
            ("99999999999999999999d", None),
        ];
        for (text, want) in table {
            assert_eq!(parse(text).ok().map(as_ms), want, "{text}");
        }
    }
}
