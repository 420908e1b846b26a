sum(amount)
