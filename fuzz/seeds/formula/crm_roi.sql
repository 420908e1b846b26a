100 * (won_revenue - crm_cost) / nullif(crm_cost, 0)
