100 * count(*) filter (where csat >= 4) / nullif(count(*), 0)
