100 * count(*) filter (where event = 'unsubscribe') / nullif(count(*) filter (where event = 'sent'), 0)
