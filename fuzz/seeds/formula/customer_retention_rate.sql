100 * count(*) filter (where before > 0 and during > 0) / nullif(count(*) filter (where before > 0), 0)
