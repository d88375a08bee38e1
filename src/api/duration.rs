//! Durations as users write them: `30`, `"30"`, `"30s"`, `"5m"`, `"1h30m"`, `"250ms"`.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A Go-style duration string such as `30s`, `5m` or `1h30m` (a bare number means seconds).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct DurationString(pub String);

impl JsonSchema for DurationString {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DurationString".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration such as 30s, 5m, 1h30m or 250ms; a bare number means seconds."
        })
    }
}

/// Accepted by the API server for every duration field.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h)?)+$";

impl DurationString {
    pub fn parse(&self) -> Result<Duration, DurationError> {
        parse_duration(&self.0)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("duration {0:?} is empty")]
    Empty(String),
    #[error("duration {0:?} is not a number followed by ns, us, ms, s, m or h")]
    Malformed(String),
    #[error("duration {0:?} is negative")]
    Negative(i64),
    #[error("duration {0:?} is too long")]
    Overflow(String),
}

/// Parses a duration the way Go's `time.ParseDuration` does, plus a bare number as seconds.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(DurationError::Empty(s.to_string()));
    }
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(DurationError::Malformed(s.to_string()));
        }
        let value: f64 = rest[..num_len]
            .parse()
            .map_err(|_| DurationError::Malformed(s.to_string()))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(DurationError::Malformed(s.to_string())),
        };
        rest = &rest[unit_len..];
        total += value * factor;
    }
    Duration::try_from_secs_f64(total).map_err(|_| DurationError::Overflow(s.to_string()))
}

/// A pause or delay given as an integer (seconds) or a duration string.
pub fn int_or_string_duration(v: &IntOrString) -> Result<Duration, DurationError> {
    match v {
        IntOrString::Int(i) if *i < 0 => Err(DurationError::Negative(i64::from(*i))),
        IntOrString::Int(i) => Ok(Duration::from_secs(u64::from(i.unsigned_abs()))),
        IntOrString::String(s) => parse_duration(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_users_write() {
        let cases = [
            ("30", 30.0),
            ("30s", 30.0),
            ("5m", 300.0),
            ("1h30m", 5400.0),
            ("250ms", 0.25),
            ("1.5h", 5400.0),
            ("0", 0.0),
        ];
        for (input, secs) in cases {
            assert_eq!(
                parse_duration(input),
                Ok(Duration::from_secs_f64(secs)),
                "{input}"
            );
        }
    }

    #[test]
    fn rejects_malformed_durations() {
        for input in ["", "s", "5x", "m5", "1h-3m", "abc", "-5s"] {
            assert!(
                parse_duration(input).is_err(),
                "{input:?} should be refused"
            );
        }
    }

    #[test]
    fn int_or_string_accepts_both_and_refuses_negative() {
        assert_eq!(
            int_or_string_duration(&IntOrString::Int(10)),
            Ok(Duration::from_secs(10))
        );
        assert_eq!(
            int_or_string_duration(&IntOrString::String("2m".into())),
            Ok(Duration::from_secs(120))
        );
        assert_eq!(
            int_or_string_duration(&IntOrString::Int(-1)),
            Err(DurationError::Negative(-1))
        );
    }
}
