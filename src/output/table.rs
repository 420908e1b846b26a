//! Aligned text tables for terminals.

/// Renders `header` and `rows` as a space-aligned table. Columns whose index is in
/// `right` are right-aligned (numbers); the rest are left-aligned.
pub fn align<const N: usize>(header: &[&str; N], rows: &[[String; N]], right: &[usize]) -> String {
    let header: Vec<String> = header.iter().map(|s| s.to_string()).collect();
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.to_vec()).collect();
    align_dyn(&header, &rows, right)
}

/// [`align`] for a number of columns known at run time.
pub fn align_dyn(header: &[String], rows: &[Vec<String>], right: &[usize]) -> String {
    let n = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate().take(n) {
            let pad = widths[i] - c.chars().count();
            let last = i + 1 == n;
            if right.contains(&i) {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                if !last {
                    s.push_str(&" ".repeat(pad));
                }
            }
            if !last {
                s.push_str("  ");
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(header);
    let rule: Vec<String> = widths.iter().map(|w| "─".repeat(*w)).collect();
    line(&rule);
    for r in rows {
        line(r);
    }
    out
}
