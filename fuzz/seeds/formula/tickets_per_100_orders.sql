100 * tickets_opened / nullif(paid_orders, 0)
