sum(cost)
