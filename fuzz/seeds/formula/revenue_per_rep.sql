sum(amount) / nullif(count(distinct rep_id), 0)
