revenue / nullif(paid_orders, 0)
