avg(hours_between(created_at, first_touch))
