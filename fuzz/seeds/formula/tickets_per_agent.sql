count(*) / nullif(count(distinct agent_id), 0)
