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
            "description": DURATION_DESCRIPTION
        })
    }
}

/// What the schema tells people about a duration.
pub const DURATION_DESCRIPTION: &str = "A duration such as 30s, 5m, 1h30m or 250ms (units ns, us, ms, s, m, h; at most 12 digits before and 9 after a decimal point, at most 8 parts); a bare whole number means seconds.";

/// Digits allowed before a decimal point (and in a bare number of seconds).
const MAX_WHOLE_DIGITS: usize = 12;
/// Digits allowed after a decimal point.
const MAX_FRACTION_DIGITS: usize = 9;
/// Number-and-unit parts allowed in one duration.
const MAX_PARTS: usize = 8;

/// Accepted by the API server for every duration field. It accepts exactly the strings
/// `parse_duration` parses (a unit test checks both ways); the bounds on digits and parts keep
/// every accepted duration far below `Duration::MAX`, so none overflows.
pub const DURATION_PATTERN: &str =
    r"^([0-9]{1,12}|([0-9]{1,12}(\.[0-9]{1,9})?(ns|us|µs|μs|ms|s|m|h)){1,8})$";

/// Units, longest first where one is a prefix of another (`ms` before `m`), in nanoseconds.
/// Go spells microseconds `us`, `µs` (micro sign) or `μs` (Greek mu); so does Sluice.
const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

impl DurationString {
    pub fn parse(&self) -> Result<Duration, DurationError> {
        parse_duration(&self.0)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("duration {0:?} is empty")]
    Empty(String),
    #[error(
        "duration {0:?} is not a whole number of seconds nor numbers each followed by ns, us, ms, s, m or h (such as 1h30m or 1.5s)"
    )]
    Malformed(String),
    #[error("duration {0:?} is negative")]
    Negative(i64),
    #[error(
        "duration {0:?} is too long: at most 12 digits before and 9 after a decimal point, at most 8 parts"
    )]
    TooLong(String),
}

/// Parses a duration as Go's `time.ParseDuration` writes them (`1h30m`, `1.5s`, `250ms`), or a
/// whole number of seconds. Exactly the strings `DURATION_PATTERN` accepts: no sign, no
/// spaces, a digit on both sides of a decimal point, and bounded digits and parts. Fractions
/// below a nanosecond are dropped, as Go drops them.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    if s.is_empty() {
        return Err(DurationError::Empty(s.to_string()));
    }
    let malformed = || DurationError::Malformed(s.to_string());
    let too_long = || DurationError::TooLong(s.to_string());
    let digits = |t: &str| t.bytes().take_while(u8::is_ascii_digit).count();
    if digits(s) == s.len() {
        if s.len() > MAX_WHOLE_DIGITS {
            return Err(too_long());
        }
        return s.parse().map(Duration::from_secs).map_err(|_| malformed());
    }
    let mut nanos: u128 = 0;
    let mut rest = s;
    let mut parts = 0;
    while !rest.is_empty() {
        parts += 1;
        let whole_len = digits(rest);
        if whole_len == 0 {
            return Err(malformed());
        }
        let whole: u128 = rest[..whole_len].parse().map_err(|_| malformed())?;
        rest = &rest[whole_len..];
        let (fraction, fraction_len) = match rest.strip_prefix('.') {
            Some(after) => {
                let n = digits(after);
                if n == 0 {
                    return Err(malformed());
                }
                let f: u128 = after[..n].parse().map_err(|_| malformed())?;
                rest = &after[n..];
                (f, n)
            }
            None => (0, 0),
        };
        let Some((unit, scale)) = UNITS.iter().find(|(u, _)| rest.starts_with(u)) else {
            return Err(malformed());
        };
        rest = &rest[unit.len()..];
        if whole_len > MAX_WHOLE_DIGITS || fraction_len > MAX_FRACTION_DIGITS || parts > MAX_PARTS {
            return Err(too_long());
        }
        let fraction_nanos = fraction * scale / 10u128.pow(fraction_len as u32);
        nanos += whole * scale + fraction_nanos;
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_long())?;
    let sub = u32::try_from(nanos % 1_000_000_000).map_err(|_| too_long())?;
    Ok(Duration::new(secs, sub))
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

    /// Whether the API server would accept `s` for a duration field (Go's RE2 and the `regex`
    /// crate agree on this pattern: ASCII classes, no look-around, `$` only at the very end).
    fn schema_accepts(s: &str) -> bool {
        static RE: std::sync::LazyLock<regex::Regex> =
            std::sync::LazyLock::new(|| regex::Regex::new(DURATION_PATTERN).expect("pattern"));
        RE.is_match(s)
    }

    /// Strings near the edges of the grammar, and whether both must accept them.
    const TRICKY: &[(&str, bool)] = &[
        ("0", true),
        ("30", true),
        ("007", true),
        ("999999999999", true),
        ("30s", true),
        ("1h30m", true),
        ("1m1m", true),
        ("2h45m30.5s", true),
        ("0.000000001s", true),
        ("1.5ns", true),
        ("1us", true),
        ("1\u{b5}s", true),
        ("1\u{3bc}s", true),
        ("999999999999h", true),
        ("999999999999.999999999h", true),
        ("1s2s3s4s5s6s7s8s", true),
        ("5m5", false),
        ("5.5", false),
        ("5m5.5", false),
        ("", false),
        ("s", false),
        ("5x", false),
        ("5S", false),
        ("5sec", false),
        ("5mm", false),
        ("1d", false),
        ("m5", false),
        ("-5s", false),
        ("+5s", false),
        ("+5", false),
        ("-0", false),
        (" 5s", false),
        ("5s ", false),
        ("5 s", false),
        ("5s\n", false),
        ("1h 30m", false),
        (".5s", false),
        ("5.s", false),
        ("1..5s", false),
        ("1.2.3s", false),
        ("1e3s", false),
        ("0x10s", false),
        ("NaNs", false),
        ("infs", false),
        ("5\u{b5}", false),
        ("\u{661}s", false),
        ("\u{ff15}s", false),
        ("9999999999999", false),
        ("9999999999999s", false),
        ("1.0000000001s", false),
        ("1s2s3s4s5s6s7s8s9s", false),
        ("18446744073709551616", false),
    ];

    #[test]
    fn the_schema_and_the_parser_agree_on_tricky_strings() {
        for (input, valid) in TRICKY {
            assert_eq!(schema_accepts(input), *valid, "the schema on {input:?}");
            let parsed = parse_duration(input);
            assert_eq!(
                parsed.is_ok(),
                *valid,
                "the parser on {input:?}: {parsed:?}"
            );
        }
    }

    #[test]
    fn parts_add_up_exactly() {
        let cases = [
            ("1m1m", Duration::from_secs(120)),
            ("1.5ns", Duration::from_nanos(1)),
            ("0.000000001s", Duration::from_nanos(1)),
            ("2h45m30.5s", Duration::from_millis(9_930_500)),
            ("1\u{3bc}s", Duration::from_micros(1)),
            (
                "999999999999.999999999h",
                Duration::from_secs(999_999_999_999 * 3_600)
                    + Duration::from_nanos(999_999_999 * 3_600),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input), Ok(want), "{input}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]

        /// Strings over the characters durations are made of (and some they are not): the API
        /// server accepts exactly those the parser parses.
        #[test]
        fn the_schema_accepts_exactly_what_parses(s in "[0-9.smhnu\u{b5}\u{3bc}x+ -]{0,24}") {
            proptest::prop_assert_eq!(schema_accepts(&s), parse_duration(&s).is_ok(), "{:?}", s);
        }

        /// Every string the pattern can produce parses.
        #[test]
        fn every_string_the_schema_accepts_parses(
            s in DURATION_PATTERN.trim_start_matches('^').trim_end_matches('$')
        ) {
            proptest::prop_assert!(schema_accepts(&s), "{:?}", s);
            proptest::prop_assert!(parse_duration(&s).is_ok(), "{:?}: {:?}", s, parse_duration(&s));
        }

        /// Parts in any order and unit mean what they say.
        #[test]
        fn parts_mean_what_they_say(h in 0u64..100_000, m in 0u64..1000, s in 0u64..1000, ms in 0u64..1000) {
            let text = format!("{h}h{m}m{s}s{ms}ms");
            let want = Duration::from_secs(h * 3600 + m * 60 + s) + Duration::from_millis(ms);
            proptest::prop_assert_eq!(parse_duration(&text), Ok(want));
            let reversed = format!("{ms}ms{s}s{m}m{h}h");
            proptest::prop_assert_eq!(parse_duration(&reversed), Ok(want));
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
