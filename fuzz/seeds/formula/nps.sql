100 * (count(*) filter (where score >= 9) - count(*) filter (where score <= 6)) / nullif(count(*), 0)
