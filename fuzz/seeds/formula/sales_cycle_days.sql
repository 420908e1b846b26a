avg(days_between(created_at, closed_at))
