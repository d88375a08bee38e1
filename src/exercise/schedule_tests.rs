//! Table tests of the exercise schedule. Every expected instant was worked out by hand from
//! the calendar (2026-01-01 is a Thursday; in 2026 Berlin springs forward on 29 March at
//! 02:00 CET and falls back on 25 October at 03:00 CEST).

use super::*;

fn ts(text: &str) -> Timestamp {
    text.parse()
        .unwrap_or_else(|e| panic!("{text} is not a timestamp: {e}"))
}

fn zone(name: &str) -> TimeZone {
    time_zone(Some(name)).unwrap_or_else(|e| panic!("{e}"))
}

fn schedule(expr: &str) -> Schedule {
    Schedule::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"))
}

/// Each case: expression, time zone, start, then the next runs in order, each found by
/// `next_after` from the one before.
fn check_runs(cases: &[(&str, &str, &str, &[&str])]) {
    for (expr, tz, start, expected) in cases {
        let (sched, tz) = (schedule(expr), zone(tz));
        let mut at = ts(start);
        for want in *expected {
            let next = sched.next_after(at, &tz);
            assert_eq!(next, Some(ts(want)), "{expr} after {at} in {tz:?}");
            at = ts(want);
        }
    }
}

#[test]
fn steps_ranges_lists_and_names_fall_due_when_written() {
    check_runs(&[
        (
            "*/15 * * * *",
            "UTC",
            "2026-01-01T10:07:30Z",
            &[
                "2026-01-01T10:15:00Z",
                "2026-01-01T10:30:00Z",
                "2026-01-01T10:45:00Z",
                "2026-01-01T11:00:00Z",
            ],
        ),
        // Strictly after: a start on a due minute moves on.
        (
            "*/15 * * * *",
            "UTC",
            "2026-01-01T10:15:00Z",
            &["2026-01-01T10:30:00Z"],
        ),
        (
            "5-20/5 8 * * *",
            "UTC",
            "2026-01-01T08:12:00Z",
            &[
                "2026-01-01T08:15:00Z",
                "2026-01-01T08:20:00Z",
                "2026-01-02T08:05:00Z",
            ],
        ),
        (
            "10/20 * * * *",
            "UTC",
            "2026-01-01T10:00:00Z",
            &[
                "2026-01-01T10:10:00Z",
                "2026-01-01T10:30:00Z",
                "2026-01-01T10:50:00Z",
                "2026-01-01T11:10:00Z",
            ],
        ),
        (
            "0 */6 * * *",
            "UTC",
            "2026-01-01T07:00:00Z",
            &[
                "2026-01-01T12:00:00Z",
                "2026-01-01T18:00:00Z",
                "2026-01-02T00:00:00Z",
            ],
        ),
        (
            "30 4 1 JAN,jul *",
            "UTC",
            "2026-01-01T05:00:00Z",
            &["2026-07-01T04:30:00Z", "2027-01-01T04:30:00Z"],
        ),
        (
            "0 22 * dec *",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2026-12-01T22:00:00Z"],
        ),
        (
            "15,45 9-10 * * *",
            "UTC",
            "2026-01-01T09:50:00Z",
            &[
                "2026-01-01T10:15:00Z",
                "2026-01-01T10:45:00Z",
                "2026-01-02T09:15:00Z",
            ],
        ),
    ]);
}

#[test]
fn weekdays_skip_the_weekend() {
    // Friday 2 January 09:00 is the start; the next are Monday and Tuesday.
    check_runs(&[(
        "0 9 * * MON-FRI",
        "UTC",
        "2026-01-02T09:00:00Z",
        &["2026-01-05T09:00:00Z", "2026-01-06T09:00:00Z"],
    )]);
}

#[test]
fn days_of_month_skip_months_without_them() {
    check_runs(&[
        (
            "0 0 31 * *",
            "UTC",
            "2026-01-31T00:00:00Z",
            &[
                "2026-03-31T00:00:00Z",
                "2026-05-31T00:00:00Z",
                "2026-07-31T00:00:00Z",
                "2026-08-31T00:00:00Z",
            ],
        ),
        (
            "0 0 29 2 *",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"],
        ),
        (
            "0 0 29 2 *",
            "UTC",
            "2095-03-01T00:00:00Z",
            &["2096-02-29T00:00:00Z"],
        ),
    ]);
}

#[test]
fn a_schedule_that_does_not_fall_due_within_five_years_has_no_next_run() {
    let utc = TimeZone::UTC;
    for (expr, start) in [
        ("0 0 30 2 *", "2026-01-01T00:00:00Z"),
        ("0 0 31 4,6,9,11 *", "2026-01-01T00:00:00Z"),
        // 2100 is not a leap year and 2104 is past 2097 + 5.
        ("0 0 29 2 *", "2097-03-01T00:00:00Z"),
    ] {
        assert_eq!(schedule(expr).next_after(ts(start), &utc), None, "{expr}");
    }
}

#[test]
fn day_of_month_and_day_of_week_match_either_when_both_are_restricted() {
    check_runs(&[
        // April 2026: Fridays 3, 10, 17; the 13th is a Monday.
        (
            "0 0 13 * FRI",
            "UTC",
            "2026-04-09T00:00:00Z",
            &[
                "2026-04-10T00:00:00Z",
                "2026-04-13T00:00:00Z",
                "2026-04-17T00:00:00Z",
            ],
        ),
        // As in robfig/cron, `*/10` is a restriction: the 1st, 11th, 21st, 31st or Fridays.
        (
            "0 0 */10 * FRI",
            "UTC",
            "2026-04-01T12:00:00Z",
            &[
                "2026-04-03T00:00:00Z",
                "2026-04-10T00:00:00Z",
                "2026-04-11T00:00:00Z",
                "2026-04-17T00:00:00Z",
                "2026-04-21T00:00:00Z",
            ],
        ),
        // With one side `*` or `?`, both must match: only the 13th, only Fridays.
        (
            "0 0 13 * *",
            "UTC",
            "2026-04-09T00:00:00Z",
            &["2026-04-13T00:00:00Z", "2026-05-13T00:00:00Z"],
        ),
        (
            "0 0 13 * ?",
            "UTC",
            "2026-04-09T00:00:00Z",
            &["2026-04-13T00:00:00Z"],
        ),
        (
            "0 0 ? * FRI",
            "UTC",
            "2026-04-09T00:00:00Z",
            &["2026-04-10T00:00:00Z", "2026-04-17T00:00:00Z"],
        ),
        (
            "0 0 */1 * FRI",
            "UTC",
            "2026-04-09T00:00:00Z",
            &["2026-04-10T00:00:00Z", "2026-04-17T00:00:00Z"],
        ),
    ]);
}

#[test]
fn sunday_is_both_0_and_7() {
    for expr in ["0 12 * * 0", "0 12 * * 7", "0 12 * * SUN", "0 12 * * sun"] {
        check_runs(&[(
            expr,
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2026-01-04T12:00:00Z", "2026-01-11T12:00:00Z"],
        )]);
    }
    // Friday to Sunday, written with 7.
    check_runs(&[(
        "0 12 * * 5-7",
        "UTC",
        "2026-01-01T13:00:00Z",
        &[
            "2026-01-02T12:00:00Z",
            "2026-01-03T12:00:00Z",
            "2026-01-04T12:00:00Z",
            "2026-01-09T12:00:00Z",
        ],
    )]);
}

#[test]
fn macros_fall_due_as_their_fields() {
    check_runs(&[
        (
            "@hourly",
            "UTC",
            "2026-01-01T10:30:00Z",
            &["2026-01-01T11:00:00Z", "2026-01-01T12:00:00Z"],
        ),
        (
            "@daily",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2026-01-02T00:00:00Z"],
        ),
        (
            "@midnight",
            "UTC",
            "2026-01-01T12:00:00Z",
            &["2026-01-02T00:00:00Z"],
        ),
        (
            "@weekly",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"],
        ),
        (
            "@monthly",
            "UTC",
            "2026-01-15T00:00:00Z",
            &["2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"],
        ),
        (
            "@yearly",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"],
        ),
        (
            "@annually",
            "UTC",
            "2026-06-01T00:00:00Z",
            &["2027-01-01T00:00:00Z"],
        ),
    ]);
}

#[test]
fn spellings_of_the_same_schedule_parse_equal() {
    for (a, b) in [
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("0 0 * * 7", "0 0 * * 0"),
        ("0 0 * * Sun", "0 0 * * 0"),
        ("0 0 * * mon-fri", "0 0 * * 1-5"),
        ("0 0 * Jan-MAR *", "0 0 * 1-3 *"),
        ("0 0 ? * ?", "0 0 * * *"),
        ("*/1 * * * *", "* * * * *"),
        ("0 9 * * *", "  0   9 * *\t* "),
        ("0/30 * * * *", "0,30 * * * *"),
        ("0 0 * * */2", "0 0 * * 0,2,4,6"),
    ] {
        assert_eq!(schedule(a), schedule(b), "{a} and {b}");
    }
    // A step over `*` is a restriction, so it is not the same as `*`.
    assert_ne!(schedule("0 0 */1 * 1"), schedule("0 0 */2 * 1"));
}

#[test]
fn fields_are_wall_clock_times_in_the_time_zone() {
    check_runs(&[
        // Seoul is UTC+9 all year: Friday 09:00 KST is the start, Monday 09:00 KST next.
        (
            "0 9 * * MON-FRI",
            "Asia/Seoul",
            "2026-01-02T00:00:00Z",
            &["2026-01-05T09:00:00+09:00"],
        ),
        (
            "0 9 * * MON-FRI",
            "Asia/Seoul",
            "2026-01-01T23:59:59Z",
            &["2026-01-02T09:00:00+09:00"],
        ),
        // Midnight on the 1st in Seoul is 15:00 UTC on the last day of the month before.
        (
            "0 0 1 * *",
            "Asia/Seoul",
            "2026-01-31T14:00:00Z",
            &["2026-02-01T00:00:00+09:00", "2026-03-01T00:00:00+09:00"],
        ),
        (
            "0 9 * * *",
            "Europe/Berlin",
            "2026-01-05T00:00:00Z",
            &["2026-01-05T09:00:00+01:00"],
        ),
        (
            "0 9 * * *",
            "Europe/Berlin",
            "2026-07-01T00:00:00Z",
            &["2026-07-01T09:00:00+02:00"],
        ),
    ]);
}

#[test]
fn a_time_in_the_spring_gap_runs_at_the_first_instant_after_it() {
    check_runs(&[
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2026-03-28T02:30:00+01:00",
            &["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"],
        ),
        // 02:00, 02:20, 02:40 and 03:00 are one run at 03:00 CEST.
        (
            "*/20 * * * *",
            "Europe/Berlin",
            "2026-03-29T01:40:00+01:00",
            &["2026-03-29T03:00:00+02:00", "2026-03-29T03:20:00+02:00"],
        ),
    ]);
}

#[test]
fn a_time_in_the_repeated_autumn_hour_runs_once_at_its_first_pass() {
    check_runs(&[
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2026-10-24T02:30:00+02:00",
            &["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
        ),
        (
            "*/30 * * * *",
            "Europe/Berlin",
            "2026-10-25T02:00:00+02:00",
            &[
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T03:00:00+01:00",
                "2026-10-25T03:30:00+01:00",
            ],
        ),
        // Starting in the second pass: 02:30 CET repeats a time already run.
        (
            "*/30 * * * *",
            "Europe/Berlin",
            "2026-10-25T02:10:00+01:00",
            &["2026-10-25T03:00:00+01:00"],
        ),
    ]);
}

#[test]
fn schedule_errors_name_the_field_and_the_bad_part() {
    let cases: &[(&str, &str)] = &[
        (
            "",
            "schedule: is empty; write five fields (minute hour day-of-month month day-of-week) or a macro such as @daily",
        ),
        (
            "   ",
            "schedule: is empty; write five fields (minute hour day-of-month month day-of-week) or a macro such as @daily",
        ),
        (
            "* * * *",
            "schedule: \"* * * *\" has 4 fields; write five: minute hour day-of-month month day-of-week (there is no seconds field)",
        ),
        (
            "0 * * * * *",
            "schedule: \"0 * * * * *\" has 6 fields; write five: minute hour day-of-month month day-of-week (there is no seconds field)",
        ),
        ("61 * * * *", "schedule: minute 61 is out of range 0-59"),
        ("0 24 * * *", "schedule: hour 24 is out of range 0-23"),
        ("0 0 0 * *", "schedule: day-of-month 0 is out of range 1-31"),
        (
            "0 0 1-32 * *",
            "schedule: day-of-month 32 is out of range 1-31",
        ),
        ("0 0 * 13 *", "schedule: month 13 is out of range 1-12"),
        ("0 0 * * 8", "schedule: day-of-week 8 is out of range 0-7"),
        (
            "99999999999 * * * *",
            "schedule: minute 99999999999 is out of range 0-59",
        ),
        ("x * * * *", "schedule: minute \"x\" is not a number"),
        ("JAN * * * *", "schedule: minute \"JAN\" is not a number"),
        (
            "0 0 * FOO *",
            "schedule: month \"FOO\" is not a number or a month name (JAN-DEC)",
        ),
        (
            "0 0 * * MONDAY",
            "schedule: day-of-week \"MONDAY\" is not a number or a day name (SUN-SAT)",
        ),
        (
            "0 0 * MON *",
            "schedule: month \"MON\" is not a number or a month name (JAN-DEC)",
        ),
        ("+5 * * * *", "schedule: minute \"+5\" is not a number"),
        (
            "30-10 * * * *",
            "schedule: minute range \"30-10\" runs backwards; write the smaller value first",
        ),
        (
            "0 0 * * FRI-MON",
            "schedule: day-of-week range \"FRI-MON\" runs backwards; write the smaller value first",
        ),
        (
            "*/0 * * * *",
            "schedule: minute step in \"*/0\" must be a whole number of at least 1",
        ),
        (
            "*/x * * * *",
            "schedule: minute step in \"*/x\" must be a whole number of at least 1",
        ),
        (
            "0 1-5/ * * *",
            "schedule: hour step in \"1-5/\" must be a whole number of at least 1",
        ),
        (
            "1-2-3 * * * *",
            "schedule: minute \"1-2-3\" has more than one '-'",
        ),
        (
            "*/2/3 * * * *",
            "schedule: minute \"*/2/3\" has more than one '/'",
        ),
        (
            "1,,2 * * * *",
            "schedule: minute \"1,,2\" has an empty list element",
        ),
        ("-5 * * * *", "schedule: minute \"-5\" is missing a value"),
        (
            "0 0 * ? *",
            "schedule: month does not accept '?'; only day-of-month and day-of-week do, write '*'",
        ),
        (
            "? * * * *",
            "schedule: minute does not accept '?'; only day-of-month and day-of-week do, write '*'",
        ),
        (
            "@reboot",
            "schedule: unknown macro \"@reboot\"; use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly",
        ),
        (
            "@Daily",
            "schedule: unknown macro \"@Daily\"; use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly",
        ),
        (
            "@every 1h",
            "schedule: @every is not supported; write the interval as fields, e.g. \"*/30 * * * *\"",
        ),
        (
            "@every",
            "schedule: @every is not supported; write the interval as fields, e.g. \"*/30 * * * *\"",
        ),
        (
            "CRON_TZ=Europe/Berlin 0 9 * * *",
            "schedule: the CRON_TZ= prefix is not supported; set timeZone instead",
        ),
        (
            "TZ=UTC 0 9 * * *",
            "schedule: the TZ= prefix is not supported; set timeZone instead",
        ),
    ];
    for (expr, want) in cases {
        match Schedule::parse(expr) {
            Ok(s) => panic!("{expr:?} parsed as {s:?}"),
            Err(e) => assert_eq!(e.to_string(), *want, "{expr:?}"),
        }
    }
}

#[test]
fn time_zone_defaults_to_utc_and_refuses_unknown_names() {
    let at = ts("2026-07-01T00:00:00Z");
    assert_eq!(time_zone(None).map(|tz| tz.to_offset(at).seconds()), Ok(0));
    assert_eq!(zone("Asia/Seoul").to_offset(at).seconds(), 9 * 3600);
    assert_eq!(zone("Europe/Berlin").to_offset(at).seconds(), 2 * 3600);
    for name in ["Mars/Olympus_Mons", "", "Europe/Berlin "] {
        let err = time_zone(Some(name)).map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err(format!(
                "timeZone: {name:?} is not a known IANA time zone name such as \"Europe/Berlin\""
            ))
        );
    }
}

#[test]
fn the_bundled_time_zone_database_serves_images_without_tzdata() {
    // The controller's image may have no /usr/share/zoneinfo; jiff then falls back to the
    // copy compiled in by the `tzdb-bundle-always` feature.
    let bundled = k8s_openapi::jiff::tz::TimeZoneDatabase::bundled();
    let berlin = bundled.get("Europe/Berlin").map_err(|e| e.to_string());
    let at = ts("2026-07-01T00:00:00Z");
    assert_eq!(berlin.map(|tz| tz.to_offset(at).seconds()), Ok(2 * 3600));
}

fn window(start: &str, end: &str, days: &[Weekday]) -> Window {
    Window::parse(start, end, days).unwrap_or_else(|e| panic!("{e}"))
}

/// Each case: an instant and whether the window contains it.
fn check_window(w: &Window, tz: &str, cases: &[(&str, bool)]) {
    let tz = zone(tz);
    for (at, inside) in cases {
        assert_eq!(w.contains(ts(at), &tz), *inside, "{at} in {w:?}");
    }
}

#[test]
fn a_day_window_contains_its_start_but_not_its_end() {
    use Weekday::*;
    let w = window("09:00", "17:00", &[Mon, Tue, Wed, Thu, Fri]);
    check_window(
        &w,
        "UTC",
        &[
            ("2026-01-05T09:00:00Z", true),
            ("2026-01-05T16:59:59Z", true),
            ("2026-01-05T17:00:00Z", false),
            ("2026-01-05T08:59:59Z", false),
            // Saturday.
            ("2026-01-03T12:00:00Z", false),
        ],
    );
    // The same window in Seoul: Monday 09:00 KST is Monday 00:00 UTC.
    check_window(
        &w,
        "Asia/Seoul",
        &[
            ("2026-01-05T00:00:00Z", true),
            ("2026-01-05T08:00:00Z", false),
            ("2026-01-04T23:59:00Z", false),
        ],
    );
}

#[test]
fn a_window_reads_wall_clock_time_in_its_zone_across_daylight_saving() {
    let w = window("09:00", "10:00", &[]);
    check_window(
        &w,
        "Europe/Berlin",
        &[
            ("2026-07-01T07:30:00Z", true),
            ("2026-07-01T08:30:00Z", false),
            ("2026-01-05T07:30:00Z", false),
            ("2026-01-05T08:30:00Z", true),
        ],
    );
}

#[test]
fn an_over_midnight_window_belongs_to_the_day_it_opens_on() {
    let friday_night = window("22:00", "02:00", &[Weekday::Fri]);
    check_window(
        &friday_night,
        "UTC",
        &[
            ("2026-01-02T22:00:00Z", true),
            ("2026-01-02T23:00:00Z", true),
            // Saturday morning: opened on Friday.
            ("2026-01-03T01:30:00Z", true),
            ("2026-01-03T02:00:00Z", false),
            ("2026-01-02T21:59:00Z", false),
            // Saturday night: Saturday is not listed.
            ("2026-01-03T22:30:00Z", false),
            // Sunday morning: opened on Saturday.
            ("2026-01-04T01:00:00Z", false),
            // Friday morning: opened on Thursday.
            ("2026-01-02T01:00:00Z", false),
        ],
    );
    let every_night = window("22:00", "02:00", &[]);
    check_window(
        &every_night,
        "UTC",
        &[
            ("2026-01-07T01:00:00Z", true),
            ("2026-01-07T23:00:00Z", true),
            ("2026-01-07T12:00:00Z", false),
        ],
    );
    // An end of 00:00 closes the window at midnight.
    let to_midnight = window("22:00", "00:00", &[Weekday::Fri]);
    check_window(
        &to_midnight,
        "UTC",
        &[
            ("2026-01-02T23:59:59Z", true),
            ("2026-01-03T00:00:00Z", false),
        ],
    );
}

#[test]
fn window_errors_name_the_bound_and_the_bad_time() {
    for (start, end, want) in [
        (
            "9:00",
            "17:00",
            "window.start: \"9:00\" is not a time of day; write HH:MM from 00:00 to 23:59",
        ),
        (
            "24:00",
            "01:00",
            "window.start: \"24:00\" is not a time of day; write HH:MM from 00:00 to 23:59",
        ),
        (
            "09:00",
            "12:60",
            "window.end: \"12:60\" is not a time of day; write HH:MM from 00:00 to 23:59",
        ),
        (
            "09:00",
            "noon",
            "window.end: \"noon\" is not a time of day; write HH:MM from 00:00 to 23:59",
        ),
        (
            "09:00",
            "17:00:00",
            "window.end: \"17:00:00\" is not a time of day; write HH:MM from 00:00 to 23:59",
        ),
        (
            "09:00",
            "+1:00",
            "window.end: \"+1:00\" is not a time of day; write HH:MM from 00:00 to 23:59",
        ),
        (
            "09:00",
            "09:00",
            "window: start and end are both 09:00; a window needs a length",
        ),
    ] {
        let got = Window::parse(start, end, &[]).map_err(|e| e.to_string());
        assert_eq!(got, Err(want.to_string()), "{start}-{end}");
    }
}
