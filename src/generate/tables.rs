//! The twelve CRM tables: their schemas, and each row as a function of its id.

use std::path::Path;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use datafusion::arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;

use super::sink::{Layout, Sink};
use super::{GenError, GenOptions, hash, month_start};
use crate::source::utc_timestamp;

/// Tables in the order they are written.
pub const TABLES: [&str; 12] = [
    "reps",
    "customers",
    "leads",
    "activities",
    "deals",
    "orders",
    "tickets",
    "nps_responses",
    "campaigns",
    "campaign_events",
    "subscriptions",
    "crm_costs",
];

const DAY: i64 = 86_400_000_000;
const HOUR: i64 = 3_600_000_000;
const SECOND: i64 = 1_000_000;

const REGIONS: [&str; 5] = ["BR-SP", "BR-RJ", "ES-MD", "ES-CT", "PT-LI"];
const FIRST: [&str; 8] = [
    "João", "María", "Núria", "Zoë", "Ana", "Øystein", "Léa", "Chloé",
];
const LAST: [&str; 8] = [
    "Silva",
    "Puig",
    "Gonçalves",
    "Müller",
    "Ibáñez",
    "Łukasz",
    "Souza",
    "Ferrer",
];
const CAMPAIGN: [&str; 6] = [
    "Campaña Primavera",
    "Promoção São João",
    "Black Friday",
    "Año Nuevo",
    "Webinar Ação",
    "Feira de Lisboa",
];

#[derive(Clone, Copy)]
enum Kind {
    I64,
    F64,
    Str,
    Ts,
}

enum V {
    I(Option<i64>),
    F(Option<f64>),
    S(Option<String>),
    T(Option<i64>),
}

/// Row counts and the time line every table shares.
pub struct World {
    seed: u64,
    start: i64,
    end: i64,
    scale: f64,
    /// The month with no orders at all (UTC month start), when the range is long enough.
    gap: Option<NaiveDate>,
    leap_day: Option<NaiveDate>,
}

fn micros(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        .timestamp_micros()
}

fn date_of(t: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp_micros(t)
        .unwrap_or_default()
        .date_naive()
}

impl World {
    pub fn new(o: &GenOptions) -> World {
        let months =
            (o.to.year() - o.from.year()) * 12 + o.to.month() as i32 - o.from.month() as i32;
        let gap = (months >= 9).then(|| {
            month_start(o.from)
                .checked_add_months(chrono::Months::new(7))
                .expect("in range")
        });
        let leap = NaiveDate::from_ymd_opt(2024, 2, 29).filter(|d| *d >= o.from && *d < o.to);
        World {
            seed: o.seed,
            start: micros(o.from),
            end: micros(o.to),
            scale: o.scale,
            gap,
            leap_day: leap,
        }
    }

    fn count(&self, table: &str) -> u64 {
        let months = ((self.end - self.start) / (30 * DAY)).max(1) as f64;
        let per_scale = match table {
            "reps" => return (12.0 * self.scale.sqrt()).round().max(8.0) as u64,
            "campaigns" => return (months * 2.0 * self.scale.sqrt().max(1.0)).round() as u64,
            "crm_costs" => return (months * 4.0).round() as u64,
            "customers" => 300.0,
            "leads" => 800.0,
            "activities" => 2500.0,
            "deals" => 350.0,
            "orders" => 1500.0,
            "tickets" => 500.0,
            "nps_responses" => 250.0,
            "campaign_events" => 2000.0,
            "subscriptions" => 200.0,
            _ => 0.0,
        };
        // Per-scale counts are for two years; other ranges scale with their length.
        ((per_scale * self.scale * months / 24.0).round() as u64).max(1)
    }

    fn h(&self, table: u64, id: u64, field: u64) -> u64 {
        hash(self.seed, &[table, id, field])
    }

    /// A uniform number in `[0, 1)`.
    fn u(&self, table: u64, id: u64, field: u64) -> f64 {
        (self.h(table, id, field) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a>(&self, table: u64, id: u64, field: u64, items: &[&'a str]) -> &'a str {
        items[(self.h(table, id, field) % items.len() as u64) as usize]
    }

    /// The time of row `i` of a table of `n` rows: an even spread with jitter, in order,
    /// whole seconds; some rows snapped to their month's first instant (period
    /// boundaries) or moved to the leap day.
    fn slot(&self, t: u64, i: u64, n: u64) -> i64 {
        let span = (self.end - self.start) as f64;
        let at = self.start + ((i as f64 + self.u(t, i, 0)) / n as f64 * span) as i64;
        let at = at - at.rem_euclid(SECOND);
        let d = date_of(at);
        match self.h(t, i, 1) % 50 {
            0 => micros(month_start(d)),
            1 if self
                .leap_day
                .is_some_and(|l| l.year() == d.year() && l.month() == d.month()) =>
            {
                micros(self.leap_day.expect("checked")) + (at.rem_euclid(DAY))
            }
            _ => at,
        }
    }

    /// The index of the first row of a table of `n` rows whose slot is at or after `t`.
    fn index_at(&self, n: u64, t: i64) -> u64 {
        let span = (self.end - self.start) as f64;
        (((t - self.start) as f64 / span * n as f64).floor().max(0.0) as u64).min(n)
    }

    /// A customer that exists at `t` (created before it), or the first one.
    fn customer_at(&self, t: u64, id: u64, field: u64, at: i64) -> i64 {
        let c = self.count("customers");
        let existing = self.index_at(c, at).max(1);
        (self.h(t, id, field) % existing) as i64 + 1
    }

    fn rep(&self, t: u64, id: u64, field: u64, team: &str) -> i64 {
        let r = self.count("reps");
        let sales = (r * 2 / 3).max(1);
        match team {
            "sales" => (self.h(t, id, field) % sales) as i64 + 1,
            _ => (sales + self.h(t, id, field) % (r - sales).max(1)) as i64 + 1,
        }
    }

    fn schema(table: &str) -> Vec<(&'static str, Kind, bool)> {
        use Kind::*;
        match table {
            "customers" => vec![
                ("customer_id", I64, false),
                ("created_at", Ts, false),
                ("region", Str, true),
                ("segment", Str, false),
                ("channel", Str, false),
                ("owner_rep_id", I64, false),
            ],
            "reps" => vec![
                ("rep_id", I64, false),
                ("name", Str, false),
                ("team", Str, false),
                ("region", Str, false),
            ],
            "leads" => vec![
                ("lead_id", I64, false),
                ("created_at", Ts, false),
                ("channel", Str, false),
                ("campaign_id", I64, true),
                ("region", Str, true),
                ("rep_id", I64, true),
                ("customer_id", I64, true),
            ],
            "activities" => vec![
                ("activity_id", I64, false),
                ("occurred_at", Ts, false),
                ("rep_id", I64, false),
                ("lead_id", I64, true),
                ("customer_id", I64, true),
                ("kind", Str, false),
                ("direction", Str, false),
            ],
            "deals" => vec![
                ("deal_id", I64, false),
                ("lead_id", I64, true),
                ("customer_id", I64, true),
                ("rep_id", I64, false),
                ("created_at", Ts, false),
                ("closed_at", Ts, true),
                ("status", Str, false),
                ("amount", F64, false),
            ],
            "orders" => vec![
                ("order_id", I64, false),
                ("customer_id", I64, false),
                ("rep_id", I64, true),
                ("ordered_at", Ts, false),
                ("amount", F64, false),
                ("status", Str, false),
                ("category", Str, false),
                ("campaign_id", I64, true),
            ],
            "tickets" => vec![
                ("ticket_id", I64, false),
                ("customer_id", I64, false),
                ("agent_id", I64, false),
                ("opened_at", Ts, false),
                ("first_response_at", Ts, true),
                ("resolved_at", Ts, true),
                ("reopened_count", I64, false),
                ("channel", Str, false),
                ("csat", I64, true),
            ],
            "nps_responses" => vec![
                ("response_id", I64, false),
                ("customer_id", I64, false),
                ("responded_at", Ts, false),
                ("score", I64, false),
            ],
            "campaigns" => vec![
                ("campaign_id", I64, false),
                ("name", Str, false),
                ("channel", Str, false),
                ("started_at", Ts, false),
                ("cost", F64, false),
            ],
            "campaign_events" => vec![
                ("event_id", I64, false),
                ("campaign_id", I64, false),
                ("customer_id", I64, false),
                ("occurred_at", Ts, false),
                ("event", Str, false),
            ],
            "subscriptions" => vec![
                ("subscription_id", I64, false),
                ("customer_id", I64, false),
                ("plan", Str, false),
                ("started_at", Ts, false),
                ("cancelled_at", Ts, true),
                ("mrr", F64, false),
            ],
            "crm_costs" => vec![
                ("cost_id", I64, false),
                ("incurred_at", Ts, false),
                ("category", Str, false),
                ("amount", F64, false),
            ],
            _ => vec![],
        }
    }

    fn later(&self, at: i64, by: i64) -> Option<i64> {
        let t = at + by;
        (t < self.end).then_some(t - t.rem_euclid(SECOND))
    }

    fn money(&self, t: u64, id: u64, field: u64, lo: f64, hi: f64) -> f64 {
        let v = lo + (hi - lo) * self.u(t, id, field).powi(2);
        (v * 100.0).round() / 100.0
    }

    /// Row `i` of `table`, with the time that partitions it; `None` skips the row.
    fn row(&self, table: &str, i: u64) -> Option<(i64, Vec<V>)> {
        use V::*;
        let t = TABLES
            .iter()
            .position(|x| *x == table)
            .expect("known table") as u64;
        let n = self.count(table);
        let id = i as i64 + 1;
        let at = self.slot(t, i, n);
        let null = |field: u64, p: f64| self.u(t, i, field) < p;
        let s = |x: &str| S(Some(x.to_string()));
        Some(match table {
            "reps" => {
                let sales = (n * 2 / 3).max(1);
                let name = format!(
                    "{} {}",
                    self.pick(t, i, 2, &FIRST),
                    self.pick(t, i, 3, &LAST)
                );
                (
                    self.start,
                    vec![
                        I(Some(id)),
                        S(Some(name)),
                        s(if i < sales { "sales" } else { "support" }),
                        s(self.pick(t, i, 4, &REGIONS)),
                    ],
                )
            }
            "customers" => (
                at,
                vec![
                    I(Some(id)),
                    T(Some(at)),
                    S((!null(2, 0.05)).then(|| self.pick(t, i, 3, &REGIONS).to_string())),
                    s(match self.u(t, i, 4) {
                        x if x < 0.6 => "smb",
                        x if x < 0.9 => "mid_market",
                        _ => "enterprise",
                    }),
                    s(self.pick(t, i, 5, &["web", "referral", "event", "outbound"])),
                    I(Some(self.rep(t, i, 6, "sales"))),
                ],
            ),
            "leads" => {
                let converts = self.u(t, i, 7) < 0.25;
                let customer = converts.then(|| {
                    let c = self.count("customers");
                    let when = at + (self.u(t, i, 8) * 60.0) as i64 * DAY;
                    (self.index_at(c, when).min(c - 1) + 1) as i64
                });
                let campaigns = self.count("campaigns");
                let campaign = (self.u(t, i, 9) < 0.4 && self.index_at(campaigns, at) > 0)
                    .then(|| self.index_at(campaigns, at) as i64);
                (
                    at,
                    vec![
                        I(Some(id)),
                        T(Some(at)),
                        s(self.pick(
                            t,
                            i,
                            2,
                            &["web_form", "newsletter", "event", "referral", "ads"],
                        )),
                        I(campaign),
                        S((!null(3, 0.08)).then(|| self.pick(t, i, 4, &REGIONS).to_string())),
                        I((!null(5, 0.1)).then(|| self.rep(t, i, 6, "sales"))),
                        I(customer),
                    ],
                )
            }
            "activities" => {
                let leads = self.count("leads");
                let here = self.index_at(leads, at);
                let lead = match self.u(t, i, 2) {
                    // Mostly a lead created shortly before; a few before their lead exists.
                    x if x < 0.6 => Some(here.saturating_sub(self.h(t, i, 3) % 30).max(1) as i64),
                    x if x < 0.63 => Some((here + 1 + self.h(t, i, 3) % 5).min(leads) as i64),
                    _ => None,
                };
                let customer = (!null(4, 0.5)).then(|| self.customer_at(t, i, 5, at));
                (
                    at,
                    vec![
                        I(Some(id)),
                        T(Some(at)),
                        I(Some(self.rep(t, i, 6, "sales"))),
                        I(lead),
                        I(customer),
                        s(self.pick(t, i, 7, &["call", "email", "meeting", "message"])),
                        s(if self.u(t, i, 8) < 0.6 {
                            "outbound"
                        } else {
                            "inbound"
                        }),
                    ],
                )
            }
            "deals" => {
                let leads = self.count("leads");
                let lead = (!null(2, 0.2)).then(|| {
                    self.index_at(leads, at)
                        .saturating_sub(self.h(t, i, 3) % 20)
                        .max(1) as i64
                });
                let closed = (self.u(t, i, 4) < 0.85)
                    .then(|| self.later(at, DAY + (self.u(t, i, 5) * 120.0 * DAY as f64) as i64))
                    .flatten();
                let status = match closed {
                    None => "open",
                    Some(_) if self.u(t, i, 6) < 0.45 => "won",
                    Some(_) => "lost",
                };
                (
                    at,
                    vec![
                        I(Some(id)),
                        I(lead),
                        I((!null(7, 0.15)).then(|| self.customer_at(t, i, 8, at))),
                        I(Some(self.rep(t, i, 9, "sales"))),
                        T(Some(at)),
                        T(closed),
                        s(status),
                        F(Some(self.money(t, i, 10, 500.0, 50_000.0))),
                    ],
                )
            }
            "orders" => {
                if self.gap.is_some_and(|g| month_start(date_of(at)) == g) {
                    return None;
                }
                let customer = self.customer_at(t, i, 2, at);
                let cats = ["software", "services", "training", "hardware"];
                let favourite = cats[(hash(self.seed, &[99, customer as u64]) % 4) as usize];
                let category = if self.u(t, i, 3) < 0.7 {
                    favourite
                } else {
                    self.pick(t, i, 4, &cats)
                };
                let campaigns = self.count("campaigns");
                let campaign = (self.u(t, i, 5) < 0.3 && self.index_at(campaigns, at) > 0)
                    .then(|| self.index_at(campaigns, at) as i64);
                (
                    at,
                    vec![
                        I(Some(id)),
                        I(Some(customer)),
                        I((!null(6, 0.2)).then(|| self.rep(t, i, 7, "sales"))),
                        T(Some(at)),
                        F(Some(self.money(t, i, 8, 20.0, 2_000.0))),
                        s(match self.u(t, i, 9) {
                            x if x < 0.85 => "paid",
                            x if x < 0.93 => "refunded",
                            _ => "cancelled",
                        }),
                        s(category),
                        I(campaign),
                    ],
                )
            }
            "tickets" => {
                let first = (!null(2, 0.1))
                    .then(|| {
                        self.later(
                            at,
                            5 * 60 * SECOND + (self.u(t, i, 3) * 48.0 * HOUR as f64) as i64,
                        )
                    })
                    .flatten();
                let resolved = (!null(4, 0.15))
                    .then(|| self.later(at, HOUR + (self.u(t, i, 5) * 20.0 * DAY as f64) as i64))
                    .flatten();
                let csat = (!null(6, 0.4))
                    .then(|| [1, 2, 3, 4, 4, 5, 5, 5][(self.h(t, i, 7) % 8) as usize]);
                (
                    at,
                    vec![
                        I(Some(id)),
                        I(Some(self.customer_at(t, i, 8, at))),
                        I(Some(self.rep(t, i, 9, "support"))),
                        T(Some(at)),
                        T(first),
                        T(resolved),
                        I(Some(
                            [0, 0, 0, 0, 1, 0, 2, 0][(self.h(t, i, 10) % 8) as usize],
                        )),
                        s(self.pick(t, i, 11, &["email", "phone", "chat"])),
                        I(csat),
                    ],
                )
            }
            "nps_responses" => (
                at,
                vec![
                    I(Some(id)),
                    I(Some(self.customer_at(t, i, 2, at))),
                    T(Some(at)),
                    I(Some(
                        [0, 3, 5, 6, 7, 7, 8, 8, 9, 9, 10, 10][(self.h(t, i, 3) % 12) as usize],
                    )),
                ],
            ),
            "campaigns" => (
                at,
                vec![
                    I(Some(id)),
                    S(Some(format!("{} {}", self.pick(t, i, 2, &CAMPAIGN), id))),
                    s(match self.u(t, i, 3) {
                        x if x < 0.5 => "email",
                        x if x < 0.8 => "ads",
                        _ => "event",
                    }),
                    T(Some(at)),
                    F(Some(self.money(t, i, 4, 1_000.0, 20_000.0))),
                ],
            ),
            "campaign_events" => {
                let campaigns = self.count("campaigns");
                let c = self
                    .index_at(campaigns, at)
                    .saturating_sub(self.h(t, i, 2) % 3)
                    .max(1);
                (
                    at,
                    vec![
                        I(Some(id)),
                        I(Some(c as i64)),
                        I(Some(self.customer_at(t, i, 3, at))),
                        T(Some(at)),
                        s(match self.u(t, i, 4) {
                            x if x < 0.55 => "sent",
                            x if x < 0.8 => "open",
                            x if x < 0.9 => "click",
                            x if x < 0.96 => "response",
                            _ => "unsubscribe",
                        }),
                    ],
                )
            }
            "subscriptions" => {
                let plan = self.pick(t, i, 2, &["basic", "pro", "enterprise"]);
                let mrr = match plan {
                    "basic" => 19.0,
                    "pro" => 49.0,
                    _ => 199.0,
                };
                let cancel = (self.u(t, i, 3) < 0.4)
                    .then(|| {
                        self.later(at, 30 * DAY + (self.u(t, i, 4) * 400.0 * DAY as f64) as i64)
                    })
                    .flatten();
                // Some cancellations land exactly on a month's first instant.
                let cancel = cancel.map(|c| {
                    if self.u(t, i, 5) < 0.3 {
                        micros(month_start(date_of(c))).max(at + SECOND)
                    } else {
                        c
                    }
                });
                (
                    at,
                    vec![
                        I(Some(id)),
                        I(Some(self.customer_at(t, i, 6, at))),
                        s(plan),
                        T(Some(at)),
                        T(cancel),
                        F(Some(mrr)),
                    ],
                )
            }
            "crm_costs" => (
                at,
                vec![
                    I(Some(id)),
                    T(Some(at)),
                    s(self.pick(
                        t,
                        i,
                        2,
                        &["license", "implementation", "training", "integration"],
                    )),
                    F(Some(self.money(t, i, 3, 200.0, 8_000.0))),
                ],
            ),
            _ => return None,
        })
    }

    /// Writes one table; returns its row count.
    pub fn write_table(
        &self,
        table: &str,
        out: &Path,
        layout: Layout,
        progress: &mut dyn FnMut(&str, u64),
    ) -> Result<u64, GenError> {
        let cols = World::schema(table);
        let schema: SchemaRef = Arc::new(Schema::new(
            cols.iter()
                .map(|(n, k, nullable)| {
                    let dt = match k {
                        Kind::I64 => DataType::Int64,
                        Kind::F64 => DataType::Float64,
                        Kind::Str => DataType::Utf8,
                        Kind::Ts => utc_timestamp(),
                    };
                    Field::new(*n, dt, *nullable)
                })
                .collect::<Vec<_>>(),
        ));
        let mut sink = Sink::new(out, table, layout)?;
        let n = self.count(table);
        let mut rows: Vec<Vec<V>> = Vec::new();
        let mut part: Option<(i32, u32)> = None;
        let mut written = 0u64;
        let flush =
            |rows: &mut Vec<Vec<V>>, part: (i32, u32), sink: &mut Sink| -> Result<(), GenError> {
                let batch = build(&schema, &cols, rows);
                rows.clear();
                sink.write(part, &batch)
            };
        for i in 0..n {
            let Some((at, row)) = self.row(table, i) else {
                continue;
            };
            let d = date_of(at);
            let p = (d.year(), d.month());
            if part.is_some_and(|q| q != p) || rows.len() >= 65_536 {
                flush(&mut rows, part.expect("set"), &mut sink)?;
            }
            part = Some(p);
            rows.push(row);
            written += 1;
            if written.is_multiple_of(1_000_000) {
                progress(table, written);
            }
        }
        let last = part.unwrap_or_else(|| {
            let d = date_of(self.start);
            (d.year(), d.month())
        });
        flush(&mut rows, last, &mut sink)?;
        sink.close()?;
        progress(table, written);
        Ok(written)
    }
}

fn build(schema: &SchemaRef, cols: &[(&str, Kind, bool)], rows: &[Vec<V>]) -> RecordBatch {
    let arrays: Vec<ArrayRef> = cols
        .iter()
        .enumerate()
        .map(|(c, (_, k, _))| -> ArrayRef {
            match k {
                Kind::I64 => {
                    let mut b = Int64Builder::with_capacity(rows.len());
                    rows.iter()
                        .for_each(|r| b.append_option(if let V::I(v) = r[c] { v } else { None }));
                    Arc::new(b.finish())
                }
                Kind::F64 => {
                    let mut b = Float64Builder::with_capacity(rows.len());
                    rows.iter()
                        .for_each(|r| b.append_option(if let V::F(v) = r[c] { v } else { None }));
                    Arc::new(b.finish())
                }
                Kind::Str => {
                    let mut b = StringBuilder::new();
                    rows.iter().for_each(|r| {
                        b.append_option(if let V::S(v) = &r[c] {
                            v.as_deref()
                        } else {
                            None
                        })
                    });
                    Arc::new(b.finish())
                }
                Kind::Ts => {
                    let mut b = TimestampMicrosecondBuilder::with_capacity(rows.len())
                        .with_timezone(crate::source::UTC);
                    rows.iter()
                        .for_each(|r| b.append_option(if let V::T(v) = r[c] { v } else { None }));
                    Arc::new(b.finish())
                }
            }
        })
        .collect();
    RecordBatch::try_new(schema.clone(), arrays).expect("columns match the schema")
}
