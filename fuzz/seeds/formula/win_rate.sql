100 * count(*) filter (where status = 'won') / nullif(count(*), 0)
