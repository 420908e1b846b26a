//! Periods: calendar-aligned, half-open `[start, end)` intervals of a grain in a time zone.
//!
//! Everything is computed here in Rust with chrono-tz, from local dates: a period is named
//! by the local date it starts on, and its bounds are the instants of local midnight, so
//! months and days keep their calendar meaning across daylight-saving changes. A local
//! midnight that does not exist (a DST gap at midnight) is resolved exactly as DataFusion's
//! `date_trunc` resolves it, so that these periods are the ones `date_trunc` would give
//! (rows are bucketed by a search among these bounds, [`super::bucket`]).

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveDateTime, TimeDelta, TimeZone};
use chrono_tz::Tz;

use crate::spec::{Grain, Window};
use crate::validate::Shift;

/// One period: the local date it starts on, and its bounds in UTC microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Period {
    pub date: NaiveDate,
    pub start: i64,
    pub end: i64,
}

/// A grain in a zone: the rules for cutting time into periods.
#[derive(Debug, Clone, Copy)]
pub struct Calendar {
    pub grain: Grain,
    pub tz: Tz,
}

impl Calendar {
    pub fn new(grain: Grain, tz: Tz) -> Self {
        Calendar { grain, tz }
    }

    /// The instant of local midnight starting `date`.
    pub fn midnight(&self, date: NaiveDate) -> i64 {
        let naive = date.and_hms_opt(0, 0, 0).expect("midnight exists");
        local_instant(self.tz, naive)
    }

    /// The local date of a UTC instant.
    pub fn local_date(&self, micros: i64) -> NaiveDate {
        let utc = DateTime::from_timestamp_micros(micros).unwrap_or_default();
        utc.with_timezone(&self.tz).date_naive()
    }

    /// The first day of the `grain` period containing local date `d`.
    pub fn truncate(d: NaiveDate, grain: Grain) -> NaiveDate {
        match grain {
            Grain::Day => d,
            Grain::Week => d - Days::new(u64::from(d.weekday().num_days_from_monday())),
            Grain::Month => d.with_day(1).expect("day 1"),
            Grain::Quarter => NaiveDate::from_ymd_opt(d.year(), (d.month0() / 3) * 3 + 1, 1)
                .expect("quarter start"),
            Grain::Year => NaiveDate::from_ymd_opt(d.year(), 1, 1).expect("1 January"),
        }
    }

    /// Moves `d` by `n` periods of `grain` (negative: back).
    pub fn add(d: NaiveDate, grain: Grain, n: i64) -> NaiveDate {
        let months = |m: i64| {
            if m >= 0 {
                d.checked_add_months(Months::new(m as u32))
            } else {
                d.checked_sub_months(Months::new((-m) as u32))
            }
        };
        let days = |k: i64| {
            if k >= 0 {
                d.checked_add_days(Days::new(k as u64))
            } else {
                d.checked_sub_days(Days::new((-k) as u64))
            }
        };
        match grain {
            Grain::Day => days(n),
            Grain::Week => days(7 * n),
            Grain::Month => months(n),
            Grain::Quarter => months(3 * n),
            Grain::Year => months(12 * n),
        }
        .unwrap_or(d)
    }

    /// The period starting on local date `date` (which must be a period start).
    pub fn period(&self, date: NaiveDate) -> Period {
        Period {
            date,
            start: self.midnight(date),
            end: self.midnight(Calendar::add(date, self.grain, 1)),
        }
    }

    /// The period containing instant `micros`.
    pub fn period_of(&self, micros: i64) -> Period {
        self.period(Calendar::truncate(self.local_date(micros), self.grain))
    }

    /// Every period overlapping `[from, to)`, in order.
    pub fn periods(&self, from: i64, to: i64) -> Vec<Period> {
        let mut out = Vec::new();
        if to <= from {
            return out;
        }
        let mut p = self.period_of(from);
        while p.start < to {
            out.push(p);
            let next = self.period(Calendar::add(p.date, self.grain, 1));
            if next.start <= p.start {
                break;
            }
            p = next;
        }
        out
    }

    /// The period a shift leads to from `p`.
    pub fn shift(&self, p: Period, shift: &[Shift]) -> Period {
        let mut d = p.date;
        for s in shift {
            d = match s {
                Shift::Periods(n) => Calendar::add(d, self.grain, -i64::from(*n)),
                Shift::Year => match self.grain {
                    // 52 weeks keeps weeks on Mondays.
                    Grain::Week => Calendar::add(d, Grain::Week, -52),
                    _ => Calendar::truncate(Calendar::add(d, Grain::Year, -1), self.grain),
                },
            };
        }
        self.period(d)
    }

    /// The first instant a window over period `p` sees (`None`: no lower bound).
    pub fn window_start(&self, p: Period, window: Option<Window>) -> Option<i64> {
        let end_date = Calendar::add(p.date, self.grain, 1);
        Some(match window {
            None => p.start,
            Some(Window::Trailing { n, unit }) => {
                self.midnight(Calendar::add(end_date, unit, -i64::from(n)))
            }
            Some(Window::Periods(n)) => {
                self.midnight(Calendar::add(p.date, self.grain, 1 - i64::from(n)))
            }
            Some(Window::ToDate(g)) => self.midnight(Calendar::truncate(p.date, g)),
            Some(Window::All) => return None,
        })
    }
}

/// The instant of a local time, resolving gaps and overlaps like DataFusion's date_trunc.
fn local_instant(tz: Tz, naive: NaiveDateTime) -> i64 {
    use chrono::LocalResult;
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => t.timestamp_micros(),
        LocalResult::Ambiguous(a, _) => a.timestamp_micros(),
        LocalResult::None => {
            let three = TimeDelta::try_hours(3).expect("3 hours");
            match tz.from_local_datetime(&(naive - three)) {
                LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                    (t + three).timestamp_micros()
                }
                LocalResult::None => tz.from_utc_datetime(&naive).timestamp_micros(),
            }
        }
    }
}

/// Parses `YYYY-MM-DD` (local midnight in `tz`) or an RFC 3339 instant.
pub fn parse_instant(s: &str, tz: Tz) -> Option<i64> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(Calendar::new(Grain::Day, tz).midnight(d));
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn utc(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros()
    }

    #[test]
    fn months_in_utc_are_half_open_and_cover_a_range() {
        let cal = Calendar::new(Grain::Month, chrono_tz::UTC);
        let ps = cal.periods(utc("2024-01-15T00:00:00Z"), utc("2024-03-01T00:00:00Z"));
        assert_eq!(
            ps.iter().map(|p| p.date).collect::<Vec<_>>(),
            vec![d(2024, 1, 1), d(2024, 2, 1)]
        );
        assert_eq!(ps[1].start, utc("2024-02-01T00:00:00Z"));
        assert_eq!(ps[1].end, utc("2024-03-01T00:00:00Z")); // leap year: 29 days
        assert_eq!(ps[1].end - ps[1].start, 29 * 86_400_000_000);
    }

    #[test]
    fn madrid_months_start_at_local_midnight_across_dst() {
        let cal = Calendar::new(Grain::Month, chrono_tz::Europe::Madrid);
        let march = cal.period(d(2025, 3, 1));
        assert_eq!(march.start, utc("2025-02-28T23:00:00Z")); // CET, +01:00
        assert_eq!(march.end, utc("2025-03-31T22:00:00Z")); // CEST, +02:00
        assert_eq!(march.end - march.start, (31 * 24 - 1) * 3_600_000_000);
    }

    #[test]
    fn weeks_start_on_monday_and_shifts_move_calendar_periods() {
        let cal = Calendar::new(Grain::Week, chrono_tz::UTC);
        assert_eq!(
            cal.period_of(utc("2025-03-02T12:00:00Z")).date,
            d(2025, 2, 24)
        );
        let m = Calendar::new(Grain::Month, chrono_tz::UTC);
        let p = m.period(d(2024, 3, 1));
        assert_eq!(m.shift(p, &[Shift::Periods(1)]).date, d(2024, 2, 1));
        assert_eq!(m.shift(p, &[Shift::Year]).date, d(2023, 3, 1));
        let day = Calendar::new(Grain::Day, chrono_tz::UTC);
        assert_eq!(
            day.shift(day.period(d(2024, 2, 29)), &[Shift::Year]).date,
            d(2023, 2, 28)
        );
    }

    #[test]
    fn windows_end_at_the_period_end() {
        let cal = Calendar::new(Grain::Month, chrono_tz::UTC);
        let p = cal.period(d(2024, 3, 1));
        assert_eq!(
            cal.window_start(
                p,
                Some(Window::Trailing {
                    n: 90,
                    unit: Grain::Day
                })
            ),
            Some(utc("2024-04-01T00:00:00Z") - 90 * 86_400_000_000)
        );
        assert_eq!(
            cal.window_start(p, Some(Window::Periods(2))),
            Some(utc("2024-02-01T00:00:00Z"))
        );
        assert_eq!(
            cal.window_start(p, Some(Window::ToDate(Grain::Year))),
            Some(utc("2024-01-01T00:00:00Z"))
        );
        assert_eq!(cal.window_start(p, Some(Window::All)), None);
    }
}
