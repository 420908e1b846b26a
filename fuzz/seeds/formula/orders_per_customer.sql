count(*) / nullif(count(distinct customer_id), 0)
