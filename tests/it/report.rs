//! `kpi report` in a real browser: headless Chromium (Debian's `chromium`, which
//! `.ci/run` installs) loads the page; its DOM must hold one chart per metric, one line per
//! series with one point per non-NULL value of `kpi run`'s output, and its screenshot
//! must not be blank.

use std::path::Path;
use std::process::Command;

use crate::run::kpi_in;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Chromium headless, as the machine's notes say it runs here.
fn chromium(dir: &Path, args: &[&str]) -> std::process::Output {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: `apt-get install chromium` (`.ci/run` does)"
    );
    let profile = tempfile::tempdir().unwrap();
    Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// The page as Chromium parsed it.
fn dom(dir: &Path, page: &str) -> String {
    dom_of(dir, &format!("file://{}", dir.join(page).display()))
}

/// The page at `url` as Chromium loaded and parsed it.
pub fn dom_of(dir: &Path, url: &str) -> String {
    let out = chromium(dir, &["--dump-dom", url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The value of attribute `name` in each opening tag `<tag ` of `html`, in order.
pub fn attributes(html: &str, tag: &str, name: &str) -> Vec<String> {
    html.split(&format!("<{tag} "))
        .skip(1)
        .map(|t| {
            let head = &t[..t.find('>').unwrap()];
            let at = head.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            head[at..at + head[at..].find('"').unwrap()].to_string()
        })
        .collect()
}

/// How many non-empty cells each column of `kpi run`'s CSV has, by column name, for the
/// rows whose `by` column (if any) is `value`.
fn non_null(csv: &str, by: Option<(&str, &str)>) -> Vec<(String, usize)> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    header
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let n = rows
                .iter()
                .filter(|r| {
                    by.is_none_or(|(c, v)| r[header.iter().position(|x| x == &c).unwrap()] == v)
                })
                .filter(|r| !r[i].is_empty())
                .count();
            (h.to_string(), n)
        })
        .collect()
}

#[test]
fn the_report_charts_every_series_with_a_point_per_value_of_kpi_run() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = crate::repo("metrics");
    let data = crate::repo("sample_data");
    let common = [
        "--metrics",
        metrics.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--compare",
        "previous_year",
    ];
    let names = ["revenue", "paid_orders", "churn_rate", "nps"];
    let report = [&["report"][..], &names, &common, &["--out", "r.html"]].concat();
    let (code, _, err) = kpi_in(dir.path(), &report);
    assert_eq!(code, 0, "{err}");
    let run = [&["run"][..], &names, &common, &["--format", "csv"]].concat();
    let (code, csv, err) = kpi_in(dir.path(), &run);
    assert_eq!(code, 0, "{err}");
    let counts = non_null(&csv, None);
    let count = |c: &str| counts.iter().find(|(n, _)| n == c).unwrap().1;

    let page = dom(dir.path(), "r.html");
    assert_eq!(attributes(&page, "svg", "data-metric"), names);
    let series = attributes(&page, "path", "data-series");
    let points = attributes(&page, "path", "data-points");
    // Per metric: its line, then the compared period's.
    assert_eq!(series.len(), 2 * names.len());
    for (i, m) in names.iter().enumerate() {
        assert_eq!(series[2 * i], "all");
        assert_eq!(series[2 * i + 1], "all (compared period)");
        assert_eq!(points[2 * i], count(m).to_string(), "{m}");
        assert_eq!(
            points[2 * i + 1],
            count(&format!("{m}_previous")).to_string(),
            "{m}_previous"
        );
    }
    // The points drawn are those counted: a NULL is a gap, never a point.
    let circles = page.matches("<circle class=\"point\"").count();
    let expected: usize = names
        .iter()
        .map(|m| count(m) + count(&format!("{m}_previous")))
        .sum();
    assert_eq!(circles, expected);
    assert!(
        count("churn_rate_previous") < 24,
        "the sample must have NULL periods"
    );
    assert!(
        !page.contains("<script") && !page.contains(" src=") && !page.contains(" href="),
        "the page fetches nothing"
    );

    // The screenshot is not blank: far larger than one of an empty page of the same size.
    std::fs::write(
        dir.path().join("empty.html"),
        "<!DOCTYPE html><html><body></body></html>",
    )
    .unwrap();
    let shot = |page: &str, png: &str| {
        let out = chromium(
            dir.path(),
            &[
                "--window-size=900,1400",
                &format!("--screenshot={}", dir.path().join(png).display()),
                &format!("file://{}", dir.path().join(page).display()),
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::metadata(dir.path().join(png)).unwrap().len()
    };
    let (full, empty) = (shot("r.html", "r.png"), shot("empty.html", "e.png"));
    assert!(full > 10 * empty, "report {full} bytes, empty page {empty}");
}

#[test]
fn by_draws_one_line_per_value_with_a_legend() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = crate::repo("metrics");
    let data = crate::repo("sample_data");
    let common = [
        "average_order_value",
        "--metrics",
        metrics.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--by",
        "segment",
    ];
    let (code, _, err) = kpi_in(
        dir.path(),
        &[&["report"][..], &common, &["--out", "r.html"]].concat(),
    );
    assert_eq!(code, 0, "{err}");
    let (code, csv, err) = kpi_in(
        dir.path(),
        &[&["run"][..], &common, &["--format", "csv"]].concat(),
    );
    assert_eq!(code, 0, "{err}");
    let page = dom(dir.path(), "r.html");
    let series = attributes(&page, "path", "data-series");
    assert_eq!(series, ["enterprise", "mid_market", "smb"]);
    let points = attributes(&page, "path", "data-points");
    for (s, p) in series.iter().zip(&points) {
        let n = non_null(&csv, Some(("segment", s)))
            .into_iter()
            .find(|(c, _)| c == "average_order_value")
            .unwrap()
            .1;
        assert_eq!(*p, n.to_string(), "{s}");
    }
    let legend = page.split("<ul class=\"legend\">").nth(1).unwrap();
    for s in &series {
        assert!(legend.contains(s.as_str()), "{s} missing from the legend");
    }
}
