100 * count(*) filter (where event = 'open') / nullif(count(*) filter (where event = 'sent'), 0)
