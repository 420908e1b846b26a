//! `kpi report`: a run's results as one self-contained HTML page — a line chart per metric
//! (inline SVG, no script, nothing fetched), one line per `--by` value, the compared
//! period dashed, and the numbers as a table, with the run's parameters.
//!
//! A NULL value is a gap in its line, never a point: which periods are 0 and which are
//! NULL is the metric's empty rule, already applied by the run.

use std::fmt::Write as _;

use crate::exec::RunOutput;
use crate::spec::Unit;

/// What the page says about the run and each metric, beside the numbers.
pub struct Page {
    pub title: String,
    /// `(name, value)` pairs: metrics folder, data root, range, grain, zone, …
    pub parameters: Vec<(String, String)>,
    pub metrics: Vec<MetricInfo>,
    /// How many leading columns are keys: the period, then each `--by` dimension.
    pub keys: usize,
}

/// One charted metric.
pub struct MetricInfo {
    pub name: String,
    pub description: Option<String>,
    pub unit: Option<Unit>,
}

impl MetricInfo {
    /// The charted metrics of `out`, in its column order: the catalogue's metrics among
    /// the columns after the `keys` leading ones (`_previous` and `_change_pct` columns
    /// are not metrics and are skipped).
    pub fn of_run(out: &RunOutput, catalog: &crate::validate::Catalog, keys: usize) -> Vec<Self> {
        out.schema
            .fields()
            .iter()
            .skip(keys)
            .filter_map(|f| catalog.metrics.iter().find(|m| m.name == *f.name()))
            .map(|m| MetricInfo {
                name: m.name.clone(),
                description: m.spec.description.clone(),
                unit: m.spec.unit.as_ref().map(|u| u.value),
            })
            .collect()
    }
}

/// One line of a chart: a `--by` value (or the metric itself), current or compared.
struct Series {
    label: String,
    previous: bool,
    /// One value per period, `None` for NULL.
    values: Vec<Option<f64>>,
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
];
const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 36.0;

/// The report page of `out`.
pub fn html(out: &RunOutput, page: &Page) -> Result<String, String> {
    let rows = out.rows(page.keys)?;
    let names: Vec<String> = out
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut periods: Vec<String> = Vec::new();
    let mut groups: Vec<String> = Vec::new();
    for (key, _) in &rows {
        let p = key[0].clone().unwrap_or_default();
        if !periods.contains(&p) {
            periods.push(p);
        }
        let g = group_label(&key[1..]);
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let mut body = String::new();
    for m in &page.metrics {
        let series = series_of(m, &names, page.keys, &rows, &periods, &groups);
        body.push_str(&chart(m, &series, &periods));
    }
    body.push_str(&table(out, page, &rows, &names));
    Ok(document(page, &body))
}

/// `smb · BR-SP` for a row's `--by` values, `all` without any.
fn group_label(dims: &[Option<String>]) -> String {
    if dims.is_empty() {
        return "all".into();
    }
    dims.iter()
        .map(|d| d.clone().unwrap_or_else(|| "(none)".into()))
        .collect::<Vec<_>>()
        .join(" · ")
}

fn series_of(
    m: &MetricInfo,
    names: &[String],
    keys: usize,
    rows: &[crate::exec::ValueRow],
    periods: &[String],
    groups: &[String],
) -> Vec<Series> {
    let column = |name: &str| names.iter().position(|n| n == name).map(|i| i - keys);
    let current = column(&m.name);
    let previous = column(&format!("{}_previous", m.name));
    let mut out = Vec::new();
    for (col, is_previous) in [(current, false), (previous, true)] {
        let Some(col) = col else { continue };
        for g in groups {
            let mut values = vec![None; periods.len()];
            for (key, v) in rows {
                if group_label(&key[1..]) == *g {
                    let p = key[0].clone().unwrap_or_default();
                    if let Some(i) = periods.iter().position(|x| *x == p) {
                        values[i] = v[col];
                    }
                }
            }
            out.push(Series {
                label: if is_previous {
                    format!("{g} (compared period)")
                } else {
                    g.clone()
                },
                previous: is_previous,
                values,
            });
        }
    }
    out
}

fn chart(m: &MetricInfo, series: &[Series], periods: &[String]) -> String {
    let values = series.iter().flat_map(|s| s.values.iter().flatten());
    let (mut lo, mut hi) = values.fold((0.0f64, 0.0f64), |(a, b), v| (a.min(*v), b.max(*v)));
    if hi == lo {
        hi = lo + 1.0;
        lo -= 0.0;
    }
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |i: usize| {
        if periods.len() <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (periods.len() - 1) as f64
        }
    };
    let y = |v: f64| TOP + plot_h * (hi - v) / (hi - lo);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" data-metric="{}" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{}">"#,
        esc(&m.name),
        esc(&m.name)
    );
    // Axes, the zero line, and the extreme values on the y axis.
    let _ = write!(
        svg,
        r##"<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}" stroke="#888"/><line class="axis" x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#888"/>"##,
        TOP + plot_h,
        y(lo.max(0.0).min(hi)),
        LEFT + plot_w,
        y(lo.max(0.0).min(hi))
    );
    for v in [lo, hi] {
        let _ = write!(
            svg,
            r#"<text class="ylabel" x="{:.1}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"#,
            LEFT - 6.0,
            y(v) + 4.0,
            esc(&crate::output::write::number(v, m.unit))
        );
    }
    // About eight labels; the last period's too, unless it would crowd the one before.
    let n = periods.len();
    let step = n.div_ceil(8).max(1);
    for (i, p) in periods.iter().enumerate() {
        let last = i + 1 == n;
        if (i % step == 0 && n - 1 - i >= step) || last {
            let _ = write!(
                svg,
                r#"<text class="xlabel" x="{:.1}" y="{:.1}" text-anchor="{}" font-size="11">{}</text>"#,
                x(i),
                HEIGHT - 12.0,
                if last && n > 1 { "end" } else { "middle" },
                esc(p)
            );
        }
    }
    let lines: Vec<&Series> = series.iter().filter(|s| !s.previous).collect();
    for s in series {
        let index = lines
            .iter()
            .position(|l| s.label.starts_with(&l.label))
            .unwrap_or(0);
        let color = COLORS[index % COLORS.len()];
        let mut d = String::new();
        let mut pen_down = false;
        for (i, v) in s.values.iter().enumerate() {
            match v {
                Some(v) => {
                    let _ = write!(
                        d,
                        "{}{:.1},{:.1} ",
                        if pen_down { "L" } else { "M" },
                        x(i),
                        y(*v)
                    );
                    pen_down = true;
                }
                // A NULL breaks the line: the next value starts a new segment.
                None => pen_down = false,
            }
        }
        let points = s.values.iter().flatten().count();
        let dash = if s.previous {
            r#" stroke-dasharray="5 4" opacity="0.7""#
        } else {
            ""
        };
        let _ = write!(
            svg,
            r#"<path class="series" data-series="{}" data-points="{points}" d="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
            esc(&s.label),
            d.trim_end()
        );
        for (i, v) in s.values.iter().enumerate() {
            if let Some(v) = v {
                let _ = write!(
                    svg,
                    r#"<circle class="point" data-series="{}" cx="{:.1}" cy="{:.1}" r="3" fill="{color}"><title>{} {}: {}</title></circle>"#,
                    esc(&s.label),
                    x(i),
                    y(*v),
                    esc(&periods[i]),
                    esc(&s.label),
                    esc(&crate::output::write::number(*v, m.unit))
                );
            }
        }
    }
    svg.push_str("</svg>");
    let legend: String = series
        .iter()
        .filter(|_| series.len() > 1)
        .map(|s| {
            let index = lines
                .iter()
                .position(|l| s.label.starts_with(&l.label))
                .unwrap_or(0);
            format!(
                r#"<li><span class="swatch{}" style="border-color:{}"></span>{}</li>"#,
                if s.previous { " dashed" } else { "" },
                COLORS[index % COLORS.len()],
                esc(&s.label)
            )
        })
        .collect();
    let unit = m
        .unit
        .map(|u| format!(r#" <span class="unit">({})</span>"#, esc(u.name())))
        .unwrap_or_default();
    format!(
        r#"<section class="metric" id="m-{name}"><h2>{name}{unit}</h2><p class="description">{desc}</p>{svg}{legend}</section>"#,
        name = esc(&m.name),
        desc = esc(m.description.as_deref().unwrap_or("")),
        legend = if legend.is_empty() {
            String::new()
        } else {
            format!(r#"<ul class="legend">{legend}</ul>"#)
        }
    )
}

fn table(out: &RunOutput, page: &Page, rows: &[crate::exec::ValueRow], names: &[String]) -> String {
    let mut t = String::from(r#"<section><h2>The numbers</h2><table class="numbers"><thead><tr>"#);
    for n in names {
        let _ = write!(t, "<th>{}</th>", esc(n));
    }
    t.push_str("</tr></thead><tbody>");
    for (key, values) in rows {
        t.push_str("<tr>");
        for k in key {
            let _ = write!(t, "<td>{}</td>", esc(k.as_deref().unwrap_or("—")));
        }
        for (i, v) in values.iter().enumerate() {
            let unit = out.units.get(page.keys + i).copied().flatten();
            let cell = v.map_or("—".to_string(), |v| crate::output::write::number(v, unit));
            let _ = write!(t, r#"<td class="num">{}</td>"#, esc(&cell));
        }
        t.push_str("</tr>");
    }
    t.push_str("</tbody></table></section>");
    t
}

fn document(page: &Page, body: &str) -> String {
    let params: String = page
        .parameters
        .iter()
        .map(|(k, v)| format!("<dt>{}</dt><dd>{}</dd>", esc(k), esc(v)))
        .collect();
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 820px; color: #222; background: #fff; }}
h1 {{ font-size: 1.6em; }} h2 {{ font-size: 1.15em; margin: 1.6em 0 .2em; }}
.unit {{ color: #666; font-weight: normal; }} .description {{ color: #555; margin: 0 0 .4em; }}
dl.parameters {{ display: grid; grid-template-columns: max-content auto; gap: .1em 1em; color: #444; }}
dt {{ font-weight: 600; }} dd {{ margin: 0; }}
ul.legend {{ list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: .3em 1.2em; }}
.swatch {{ display: inline-block; width: 18px; border-top: 3px solid; margin-right: .4em; vertical-align: middle; }}
.swatch.dashed {{ border-top-style: dashed; }}
table.numbers {{ border-collapse: collapse; font-size: 12px; display: block; overflow-x: auto; }}
table.numbers td, table.numbers th {{ padding: 2px 8px; border-bottom: 1px solid #eee; white-space: nowrap; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
</style></head>
<body><h1>{title}</h1><dl class="parameters">{params}</dl>
{body}
</body></html>
"#,
        title = esc(&page.title),
    )
}

/// `s` safe inside HTML text and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn text_is_escaped_for_html() {
        assert_eq!(
            esc(r#"<b a="1">'&'"#),
            "&lt;b a=&quot;1&quot;&gt;&#39;&amp;&#39;"
        );
    }
}
