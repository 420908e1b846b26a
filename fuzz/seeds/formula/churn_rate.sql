100 * count(*) filter (where cancelled_at >= $start and cancelled_at < $end) / nullif(count(*), 0)
