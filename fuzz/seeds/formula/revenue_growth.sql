100 * (revenue - prev(revenue)) / nullif(prev(revenue), 0)
