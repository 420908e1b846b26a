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

/// The widths of each column: its header or widest cell, in characters.
pub fn widths(header: &[String], rows: &[Vec<String>]) -> Vec<usize> {
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(w.len()) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    w
}

/// Splits columns `keys..` into blocks that fit `width` characters each with columns
/// `..keys` repeated in front (two spaces between columns); a column wider than the
/// terminal gets a block of its own. One block means the table fits as it is.
pub fn blocks(widths: &[usize], keys: usize, width: usize) -> Vec<std::ops::Range<usize>> {
    let key_width: usize = widths[..keys].iter().map(|w| w + 2).sum();
    let mut out = Vec::new();
    let mut start = keys;
    let mut used = key_width;
    for (i, w) in widths.iter().enumerate().skip(keys) {
        if i > start && used + w > width {
            out.push(start..i);
            start = i;
            used = key_width;
        }
        used += w + 2;
    }
    if start < widths.len() || out.is_empty() {
        out.push(start..widths.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::blocks;

    #[test]
    fn columns_split_into_blocks_that_fit() {
        // A 10-wide key, then columns of 5, 5, 5, 30: with two spaces each, a block holds
        // 12 + 7 + 7 + 7 = 33 ≤ 40 for the three narrow ones; the wide one goes alone.
        assert_eq!(blocks(&[10, 5, 5, 5, 30], 1, 40), vec![1..4, 4..5]);
        assert_eq!(blocks(&[10, 5, 5], 1, 100), vec![1..3]);
        assert_eq!(blocks(&[10, 50], 1, 20), vec![1..2]);
    }
}
