count(*) filter (where days_between(last_before, first_in_period) > 180)
