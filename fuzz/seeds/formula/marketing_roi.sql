100 * (attributed_revenue - campaign_cost) / nullif(campaign_cost, 0)
