sum(mrr)
