avg(hours_between(opened_at, first_response_at))
