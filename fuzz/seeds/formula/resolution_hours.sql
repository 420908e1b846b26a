avg(hours_between(opened_at, resolved_at))
