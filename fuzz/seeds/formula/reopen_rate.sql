100 * count(*) filter (where reopened_count > 0) / nullif(count(*), 0)
