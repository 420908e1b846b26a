sum(touches) / nullif(count(*), 0)
