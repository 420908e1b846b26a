100 * count(*) filter (where won_deals > 0) / nullif(count(*), 0)
