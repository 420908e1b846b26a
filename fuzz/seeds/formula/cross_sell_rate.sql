100 * count(*) filter (where categories >= 2) / nullif(count(*), 0)
