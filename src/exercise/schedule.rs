//! When a `RolloutExercise` may run: its cron `schedule`, its `timeZone` and its `window`.
//!
//! Everything here is pure: the caller passes the instant to start from and the time zone,
//! and gets an instant back. Nothing reads a clock.
//!
//! # The schedule
//!
//! Five fields, `minute hour day-of-month month day-of-week`, read as Kubernetes CronJob
//! reads them (robfig/cron's standard parser):
//!
//! - `*`, a number, a range `a-b`, a list `a,b,c`, and steps `*/n`, `a-b/n` and `a/n`
//!   (`a/n` is `a-<last>/n`).
//! - Months `JAN`-`DEC` and days `SUN`-`SAT` by name, in any case.
//! - Day-of-week 0-7, where 0 and 7 are both Sunday. (robfig/cron v3 refuses 7; accepting it
//!   matches the crontab manual.) `*`, `*/n` and `a/n` run over 0-6.
//! - `?` means `*` in the two day fields, and is refused elsewhere.
//! - The macros `@yearly` (= `@annually`), `@monthly`, `@weekly`, `@daily` (= `@midnight`)
//!   and `@hourly`, in lower case as robfig/cron spells them.
//! - No seconds field. `@every` and a `CRON_TZ=` or `TZ=` prefix are refused: the interval
//!   is written as fields and the zone goes in `timeZone`.
//!
//! Day-of-month and day-of-week combine as in cron: when both are restricted a day matches
//! if either matches (`0 0 13 * FRI` runs on every 13th and every Friday); when either is
//! unrestricted both must match. As in robfig/cron, a field is unrestricted when one of its
//! list elements is `*` or `?` without a step (or with step 1); `*/2` counts as restricted.
//!
//! # Time zones and daylight saving
//!
//! The fields are wall-clock times in `timeZone` (UTC by default). Where the clocks jump:
//!
//! - A wall-clock time that does not exist (the skipped hour in spring) runs at the first
//!   instant after the gap: in Berlin, `30 2 * * *` runs at 03:00 CEST on the last Sunday
//!   of March. Several skipped times fold into that one run.
//! - A wall-clock time that happens twice (the repeated hour in autumn) runs once, at its
//!   first occurrence: `30 2 * * *` runs at 02:30 CEST, not again at 02:30 CET, and
//!   `*/30 * * * *` does not run during the second pass over the hour.
//!
//! This is what ISC cron does for fixed-time jobs. robfig/cron v3, and so Kubernetes
//! CronJob, differs: it skips a time inside the gap altogether and runs a time in the
//! repeated hour twice.
//!
//! [`Schedule::next_after`] walks months, then days, then looks up the hour and minute in
//! bit sets, so even a schedule that never falls due (`0 0 30 2 *`) costs a few hundred day
//! checks. Like robfig/cron it gives up after the fifth calendar year following the start.
//!
//! # The window
//!
//! A [`Window`] is a wall-clock span `start..end` (start included, end excluded) on some
//! days of the week. When `end` is earlier than `start` the window runs over midnight, and
//! its days name the day it opens on: `22:00`-`02:00` on Friday covers Friday 22:00 to
//! Saturday 02:00. An `end` of `00:00` closes the window at midnight.

use std::fmt;

use k8s_openapi::jiff::{
    Timestamp,
    civil::{Date, DateTime, Time},
    tz::{AmbiguousOffset, TimeZone},
};

/// A field of the cron expression, to name it in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::DayOfWeek => "day-of-week",
        })
    }
}

/// Which end of the window, to name it in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Start,
    End,
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Bound::Start => "start",
            Bound::End => "end",
        })
    }
}

/// Why a schedule, time zone or window was refused. Each message names the spec field and
/// the part that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "schedule: is empty; write five fields (minute hour day-of-month month day-of-week) or a macro such as @daily"
    )]
    Empty,
    #[error(
        "schedule: {expr:?} has {found} fields; write five: minute hour day-of-month month day-of-week (there is no seconds field)"
    )]
    FieldCount { expr: String, found: usize },
    #[error("schedule: {field} {value} is out of range {min}-{max}")]
    OutOfRange {
        field: Field,
        value: String,
        min: u32,
        max: u32,
    },
    #[error("schedule: {field} {value:?} is not {expected}")]
    NotAValue {
        field: Field,
        value: String,
        expected: &'static str,
    },
    #[error("schedule: {field} range {part:?} runs backwards; write the smaller value first")]
    Backwards { field: Field, part: String },
    #[error("schedule: {field} step in {part:?} must be a whole number of at least 1")]
    BadStep { field: Field, part: String },
    #[error("schedule: {field} {part:?} {problem}")]
    Malformed {
        field: Field,
        part: String,
        problem: &'static str,
    },
    #[error(
        "schedule: {field} does not accept '?'; only day-of-month and day-of-week do, write '*'"
    )]
    QuestionMark { field: Field },
    #[error(
        "schedule: unknown macro {0:?}; use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly"
    )]
    UnknownMacro(String),
    #[error(
        "schedule: @every is not supported; write the interval as fields, e.g. \"*/30 * * * *\""
    )]
    Every,
    #[error("schedule: the {0} prefix is not supported; set timeZone instead")]
    TimeZonePrefix(&'static str),
    #[error("timeZone: {0:?} is not a known IANA time zone name such as \"Europe/Berlin\"")]
    UnknownTimeZone(String),
    #[error("window.{bound}: {value:?} is not a time of day; write HH:MM from 00:00 to 23:59")]
    BadTime { bound: Bound, value: String },
    #[error("window: start and end are both {0}; a window needs a length")]
    EmptyWindow(String),
}

/// A set of small numbers (0-63) as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bits(u64);

impl Bits {
    fn has(self, v: i8) -> bool {
        (0..64).contains(&v) && self.0 & (1 << v) != 0
    }

    /// The smallest member that is `v` or larger.
    fn first_from(self, v: i8) -> Option<i8> {
        if !(0..64).contains(&v) {
            return None;
        }
        let rest = self.0 & (u64::MAX << v);
        (rest != 0).then(|| rest.trailing_zeros() as i8)
    }
}

/// A parsed cron expression. Two expressions that fall due at the same times compare equal
/// (`@daily` and `0 0 * * *`, `7` and `SUN`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: Bits,
    hours: Bits,
    days_of_month: Bits,
    months: Bits,
    /// Sunday is 0.
    days_of_week: Bits,
    /// Whether day-of-month and day-of-week are unrestricted (`*` or `?`): see the module
    /// docs for how the two combine.
    any_day_of_month: bool,
    any_day_of_week: bool,
}

/// One field's values and whether it was `*`.
struct Parsed {
    bits: Bits,
    any: bool,
}

const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Field {
    /// The smallest and largest value written in this field.
    fn bounds(self) -> (u32, u32) {
        match self {
            Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            Field::DayOfWeek => (0, 7),
        }
    }

    /// The last value that `*` and `a/n` run to (day-of-week 7 is only ever written out).
    fn last(self) -> u32 {
        match self {
            Field::DayOfWeek => 6,
            _ => self.bounds().1,
        }
    }

    /// Names for values, with the value of the first name.
    fn names(self) -> (&'static [&'static str], u32) {
        match self {
            Field::Month => (&MONTH_NAMES, 1),
            Field::DayOfWeek => (&DAY_NAMES, 0),
            _ => (&[], 0),
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Field::Month => "a number or a month name (JAN-DEC)",
            Field::DayOfWeek => "a number or a day name (SUN-SAT)",
            _ => "a number",
        }
    }

    fn is_day(self) -> bool {
        matches!(self, Field::DayOfMonth | Field::DayOfWeek)
    }
}

impl Schedule {
    /// Parses a cron expression or macro, as described in the module docs.
    pub fn parse(expr: &str) -> Result<Schedule, ScheduleError> {
        let expr = expr.trim();
        if expr.is_empty() {
            return Err(ScheduleError::Empty);
        }
        if let Some(prefix) = ["CRON_TZ=", "TZ="]
            .into_iter()
            .find(|p| expr.starts_with(p))
        {
            return Err(ScheduleError::TimeZonePrefix(prefix));
        }
        if expr.starts_with('@') {
            return Schedule::parse(expand_macro(expr)?);
        }
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields.as_slice() else {
            return Err(ScheduleError::FieldCount {
                expr: expr.to_string(),
                found: fields.len(),
            });
        };
        let dom = parse_field(Field::DayOfMonth, dom)?;
        let dow = parse_field(Field::DayOfWeek, dow)?;
        Ok(Schedule {
            minutes: parse_field(Field::Minute, minute)?.bits,
            hours: parse_field(Field::Hour, hour)?.bits,
            days_of_month: dom.bits,
            months: parse_field(Field::Month, month)?.bits,
            days_of_week: dow.bits,
            any_day_of_month: dom.any,
            any_day_of_week: dow.any,
        })
    }

    /// The first time strictly after `after` that the schedule falls due, reading the fields
    /// as wall-clock times in `tz`. `None` when it does not fall due before the end of the
    /// fifth calendar year after `after` (as for `0 0 30 2 *`).
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let local = tz.to_datetime(after);
        let last_year = local.year().checked_add(5)?;
        let mut from = next_minute(local)?;
        loop {
            let due = self.next_wall_clock(from, last_year)?;
            let at = resolve(due, tz)?;
            // Every wall-clock time after `local` maps to an instant after `after`, except
            // in the repeated hour of autumn when `after` lies in its second pass.
            if at > after {
                return Some(at);
            }
            from = next_minute(due)?;
        }
    }

    /// The first matching wall-clock minute at or after `from`, up to the end of `last_year`.
    fn next_wall_clock(&self, from: DateTime, last_year: i16) -> Option<DateTime> {
        let mut date = from.date();
        let mut earliest = (from.hour(), from.minute());
        while date.year() <= last_year {
            if !self.months.has(date.month()) {
                date = first_of_next_month(date)?;
                earliest = (0, 0);
                continue;
            }
            if self.day_matches(date)
                && let Some((hour, minute)) = self.time_from(earliest)
            {
                return Some(date.at(hour, minute, 0, 0));
            }
            date = date.tomorrow().ok()?;
            earliest = (0, 0);
        }
        None
    }

    fn day_matches(&self, date: Date) -> bool {
        let dom = self.days_of_month.has(date.day());
        let dow = self
            .days_of_week
            .has(date.weekday().to_sunday_zero_offset());
        if self.any_day_of_month || self.any_day_of_week {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first matching hour and minute of a day at or after `(hour, minute)`.
    fn time_from(&self, (hour, minute): (i8, i8)) -> Option<(i8, i8)> {
        let first_minute = self.minutes.first_from(0)?;
        let h = self.hours.first_from(hour)?;
        if h > hour {
            return Some((h, first_minute));
        }
        match self.minutes.first_from(minute) {
            Some(m) => Some((h, m)),
            None => Some((self.hours.first_from(hour + 1)?, first_minute)),
        }
    }
}

/// The five-field expression a macro stands for.
fn expand_macro(expr: &str) -> Result<&'static str, ScheduleError> {
    match expr {
        "@yearly" | "@annually" => Ok("0 0 1 1 *"),
        "@monthly" => Ok("0 0 1 * *"),
        "@weekly" => Ok("0 0 * * 0"),
        "@daily" | "@midnight" => Ok("0 0 * * *"),
        "@hourly" => Ok("0 * * * *"),
        _ if expr == "@every" || expr.starts_with("@every ") => Err(ScheduleError::Every),
        _ => Err(ScheduleError::UnknownMacro(expr.to_string())),
    }
}

/// Parses one field: a comma-separated list of values, ranges and steps.
fn parse_field(field: Field, text: &str) -> Result<Parsed, ScheduleError> {
    let mut parsed = Parsed {
        bits: Bits(0),
        any: false,
    };
    for part in text.split(',') {
        if part.is_empty() {
            return Err(ScheduleError::Malformed {
                field,
                part: text.to_string(),
                problem: "has an empty list element",
            });
        }
        let (start, end, step, star) = parse_part(field, part)?;
        parsed.any |= star && step == 1;
        for v in (start..=end).step_by(step as usize) {
            // Day-of-week 7 is Sunday, which is 0.
            let bit = if field == Field::DayOfWeek { v % 7 } else { v };
            parsed.bits.0 |= 1 << bit;
        }
    }
    Ok(parsed)
}

/// One list element as `(start, end, step, written as * or ?)`, checked against the bounds.
fn parse_part(field: Field, part: &str) -> Result<(u32, u32, u32, bool), ScheduleError> {
    let malformed = |problem| ScheduleError::Malformed {
        field,
        part: part.to_string(),
        problem,
    };
    let (range, step) = match part.split_once('/') {
        Some((_, step)) if step.contains('/') => return Err(malformed("has more than one '/'")),
        Some((range, step)) => (range, Some(parse_step(field, part, step)?)),
        None => (part, None),
    };
    let star = range == "*" || range == "?";
    if range == "?" && !field.is_day() {
        return Err(ScheduleError::QuestionMark { field });
    }
    let (start, end) = if star {
        (field.bounds().0, field.last())
    } else {
        match range.split_once('-') {
            Some((_, b)) if b.contains('-') => return Err(malformed("has more than one '-'")),
            Some((a, b)) => (value(field, part, a)?, value(field, part, b)?),
            None if step.is_some() => (value(field, part, range)?, field.last()),
            None => (value(field, part, range)?, value(field, part, range)?),
        }
    };
    if start > end {
        return Err(ScheduleError::Backwards {
            field,
            part: part.to_string(),
        });
    }
    Ok((start, end, step.unwrap_or(1), star))
}

fn parse_step(field: Field, part: &str, step: &str) -> Result<u32, ScheduleError> {
    match step.parse::<u32>() {
        Ok(n) if n >= 1 && step.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(ScheduleError::BadStep {
            field,
            part: part.to_string(),
        }),
    }
}

/// A number or a name, within the field's bounds.
fn value(field: Field, part: &str, text: &str) -> Result<u32, ScheduleError> {
    if text.is_empty() {
        return Err(ScheduleError::Malformed {
            field,
            part: part.to_string(),
            problem: "is missing a value",
        });
    }
    let (names, first) = field.names();
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(first + i as u32);
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ScheduleError::NotAValue {
            field,
            value: text.to_string(),
            expected: field.expected(),
        });
    }
    let (min, max) = field.bounds();
    match text.parse::<u32>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(ScheduleError::OutOfRange {
            field,
            value: text.to_string(),
            min,
            max,
        }),
    }
}

/// The wall-clock minute after the one `dt` falls in.
fn next_minute(dt: DateTime) -> Option<DateTime> {
    if dt.minute() < 59 {
        Some(dt.date().at(dt.hour(), dt.minute() + 1, 0, 0))
    } else if dt.hour() < 23 {
        Some(dt.date().at(dt.hour() + 1, 0, 0, 0))
    } else {
        Some(dt.date().tomorrow().ok()?.at(0, 0, 0, 0))
    }
}

fn first_of_next_month(date: Date) -> Option<Date> {
    let next = if date.month() == 12 {
        Date::new(date.year().checked_add(1)?, 1, 1)
    } else {
        Date::new(date.year(), date.month() + 1, 1)
    };
    next.ok()
}

/// The instant a wall-clock time stands for in `tz`: in a gap, the first instant after it;
/// in a repeated hour, the first pass.
fn resolve(dt: DateTime, tz: &TimeZone) -> Option<Timestamp> {
    match tz.to_ambiguous_timestamp(dt).offset() {
        AmbiguousOffset::Unambiguous { offset } | AmbiguousOffset::Fold { before: offset, .. } => {
            offset.to_timestamp(dt).ok()
        }
        AmbiguousOffset::Gap { after, .. } => {
            // Read with the offset after the gap, the time lies before the gap; the next
            // transition from there is where the gap begins.
            let before_gap = after.to_timestamp(dt).ok()?;
            tz.following(before_gap).next().map(|t| t.timestamp())
        }
    }
}

/// The time zone named by `timeZone`: UTC when there is none.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, ScheduleError> {
    match name {
        None => Ok(TimeZone::UTC),
        Some(name) => {
            TimeZone::get(name).map_err(|_| ScheduleError::UnknownTimeZone(name.to_string()))
        }
    }
}

/// A day of the week, as the window's `days` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    /// Monday is 0.
    fn index(self) -> u8 {
        self as u8
    }
}

/// When scheduled runs may start: a wall-clock span on some days of the week.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    start: Time,
    end: Time,
    /// Bit `i` for the day `i` days after Monday; 0 means every day.
    days: u8,
}

impl Window {
    /// Parses `start` and `end` (`HH:MM`) and the days the window opens on (none: every day).
    pub fn parse(start: &str, end: &str, days: &[Weekday]) -> Result<Window, ScheduleError> {
        let start_time = parse_hh_mm(Bound::Start, start)?;
        let end_time = parse_hh_mm(Bound::End, end)?;
        if start_time == end_time {
            return Err(ScheduleError::EmptyWindow(start.to_string()));
        }
        Ok(Window {
            start: start_time,
            end: end_time,
            days: days.iter().fold(0, |bits, d| bits | 1 << d.index()),
        })
    }

    /// Whether `t`, read as a wall-clock time in `tz`, lies inside the window.
    pub fn contains(&self, t: Timestamp, tz: &TimeZone) -> bool {
        let local = tz.to_datetime(t);
        let (date, time) = (local.date(), local.time());
        if self.start < self.end {
            return self.opens_on(date) && self.start <= time && time < self.end;
        }
        // Over midnight: the evening part opens today, the morning part opened yesterday.
        (self.start <= time && self.opens_on(date))
            || (time < self.end && date.yesterday().is_ok_and(|d| self.opens_on(d)))
    }

    fn opens_on(&self, date: Date) -> bool {
        self.days == 0 || self.days & (1 << date.weekday().to_monday_zero_offset()) != 0
    }
}

/// Parses `HH:MM`, two digits each.
fn parse_hh_mm(bound: Bound, text: &str) -> Result<Time, ScheduleError> {
    let bad = || ScheduleError::BadTime {
        bound,
        value: text.to_string(),
    };
    let (hh, mm) = text.split_once(':').ok_or_else(bad)?;
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(hh) || !two_digits(mm) {
        return Err(bad());
    }
    let hour = hh.parse::<i8>().map_err(|_| bad())?;
    let minute = mm.parse::<i8>().map_err(|_| bad())?;
    Time::new(hour, minute, 0, 0).map_err(|_| bad())
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
