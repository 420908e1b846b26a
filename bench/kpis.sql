-- Hand-written SQL for the 39 shipped KPIs, by month over 2024-2025: one query per KPI.
--
-- Written from /work/shared/kpi-catalogue.md (the same definitions as the independent
-- reference of tests/it/reference.rs, without its `{D}` dimension), in SQL that runs
-- unchanged in DataFusion and in DuckDB. Each query returns one row per month that has
-- rows: `s` (the month's first instant) and `v` (the value). A month without rows is 0
-- for the KPIs marked `empty=0` (counts and sums) and NULL for all others, as the
-- catalogue says.
--
-- Blocks: `-- setup` (run once per session, before the KPIs) and `-- kpi: NAME [empty=0]`;
-- each block is one statement, running up to the next header; other `--` lines are
-- comments. Tables are the data root's, registered under their own names (ListingTables
-- in DataFusion, views over read_parquet(..., hive_partitioning = true) in DuckDB).
--
-- The period table `p`: `s` and `e` bound the month [s, e), `y` is 1 January of its year
-- (revenue_ytd), `ps` the start of the month before (retention, growth). Its bounds are
-- TIMESTAMPTZ, as the lake's timestamps are (`Timestamp(Microsecond, "UTC")`): both engines
-- read that literal, and DuckDB compares TIMESTAMPTZ to a plain TIMESTAMP only through a
-- per-row time-zone cast, many times slower.

-- setup
CREATE VIEW p AS SELECT * FROM (VALUES
  (TIMESTAMPTZ '2024-01-01 00:00:00+00', TIMESTAMPTZ '2024-02-01 00:00:00+00', TIMESTAMPTZ '2024-01-01 00:00:00+00', TIMESTAMPTZ '2023-12-01 00:00:00+00'),
  (TIMESTAMPTZ '2024-02-01 00:00:00+00', TIMESTAMPTZ '2024-03-01 00:00:00+00', TIMESTAMPTZ '2024-01-01 00:00:00+00', TIMESTAMPTZ '2024-01-01 00:00:00+00'),
  (TIMESTAMPTZ '2024-03-01 00:00:00+00', TIMESTAMPTZ '2024-04-01 00:00:00+00', TIMESTAMPTZ '2024-01-01 00:00:00+00', TIMESTAMPTZ '2024-02-01 00:00:00+00'),
  (TIMESTAMPTZ '2024-04-01 00:00:00+00', TIMESTAMPTZ '2024-05-01 00:00:00+00', TIMESTAMPTZ '2024-01-01 00:00:00+00', TIMESTAMPTZ '2024-03-01 00:00:00+00'),
  (TIMESTAMPTZ '2024-05-01 00:00:00+00', TIMESTAMPTZ '2024-06-01 00:00:00+00', TIMESTAMPTZ '2024-01-01 00:00:00+00', TIMESTAMPTZ '2024-04-01 00:00:00+00'),
  (TIMESTAMPTZ '2024-06-01 00:00:00+00', TIMESTAMPTZ '2024-07-01 00:00:00+00', TIMESTAMPTZ '2024-01-01 00:00:00+00', TIMESTAMPTZ '2024-05-01 00:00:00+00'),
  (TIMESTAMPTZ '2024-07-01 00:00:00+00', TIMESTAMPTZ '2024-08-01 00:00:00+00', TIMESTAMPTZ '2024-01-01 00:00:00+00', TIMESTAMPTZ '2024-06-01 00:00:00+00'),
  (TIMESTAMPTZ '2024-08-01 00:00:00+00', TIMESTAMPTZ '2024-09-01 00:00:00+00', TIMESTAMPTZ '2024-01-01 00:00:00+00', TIMESTAMPTZ '2024-07-01 00:00:00+00'),
  (TIMESTAMPTZ '2024-09-01 00:00:00+00', TIMESTAMPTZ '2024-10-01 00:00:00+00', TIMESTAMPTZ '2024-01-01 00:00:00+00', TIMESTAMPTZ '2024-08-01 00:00:00+00'),
  (TIMESTAMPTZ '2024-10-01 00:00:00+00', TIMESTAMPTZ '2024-11-01 00:00:00+00', TIMESTAMPTZ '2024-01-01 00:00:00+00', TIMESTAMPTZ '2024-09-01 00:00:00+00'),
  (TIMESTAMPTZ '2024-11-01 00:00:00+00', TIMESTAMPTZ '2024-12-01 00:00:00+00', TIMESTAMPTZ '2024-01-01 00:00:00+00', TIMESTAMPTZ '2024-10-01 00:00:00+00'),
  (TIMESTAMPTZ '2024-12-01 00:00:00+00', TIMESTAMPTZ '2025-01-01 00:00:00+00', TIMESTAMPTZ '2024-01-01 00:00:00+00', TIMESTAMPTZ '2024-11-01 00:00:00+00'),
  (TIMESTAMPTZ '2025-01-01 00:00:00+00', TIMESTAMPTZ '2025-02-01 00:00:00+00', TIMESTAMPTZ '2025-01-01 00:00:00+00', TIMESTAMPTZ '2024-12-01 00:00:00+00'),
  (TIMESTAMPTZ '2025-02-01 00:00:00+00', TIMESTAMPTZ '2025-03-01 00:00:00+00', TIMESTAMPTZ '2025-01-01 00:00:00+00', TIMESTAMPTZ '2025-01-01 00:00:00+00'),
  (TIMESTAMPTZ '2025-03-01 00:00:00+00', TIMESTAMPTZ '2025-04-01 00:00:00+00', TIMESTAMPTZ '2025-01-01 00:00:00+00', TIMESTAMPTZ '2025-02-01 00:00:00+00'),
  (TIMESTAMPTZ '2025-04-01 00:00:00+00', TIMESTAMPTZ '2025-05-01 00:00:00+00', TIMESTAMPTZ '2025-01-01 00:00:00+00', TIMESTAMPTZ '2025-03-01 00:00:00+00'),
  (TIMESTAMPTZ '2025-05-01 00:00:00+00', TIMESTAMPTZ '2025-06-01 00:00:00+00', TIMESTAMPTZ '2025-01-01 00:00:00+00', TIMESTAMPTZ '2025-04-01 00:00:00+00'),
  (TIMESTAMPTZ '2025-06-01 00:00:00+00', TIMESTAMPTZ '2025-07-01 00:00:00+00', TIMESTAMPTZ '2025-01-01 00:00:00+00', TIMESTAMPTZ '2025-05-01 00:00:00+00'),
  (TIMESTAMPTZ '2025-07-01 00:00:00+00', TIMESTAMPTZ '2025-08-01 00:00:00+00', TIMESTAMPTZ '2025-01-01 00:00:00+00', TIMESTAMPTZ '2025-06-01 00:00:00+00'),
  (TIMESTAMPTZ '2025-08-01 00:00:00+00', TIMESTAMPTZ '2025-09-01 00:00:00+00', TIMESTAMPTZ '2025-01-01 00:00:00+00', TIMESTAMPTZ '2025-07-01 00:00:00+00'),
  (TIMESTAMPTZ '2025-09-01 00:00:00+00', TIMESTAMPTZ '2025-10-01 00:00:00+00', TIMESTAMPTZ '2025-01-01 00:00:00+00', TIMESTAMPTZ '2025-08-01 00:00:00+00'),
  (TIMESTAMPTZ '2025-10-01 00:00:00+00', TIMESTAMPTZ '2025-11-01 00:00:00+00', TIMESTAMPTZ '2025-01-01 00:00:00+00', TIMESTAMPTZ '2025-09-01 00:00:00+00'),
  (TIMESTAMPTZ '2025-11-01 00:00:00+00', TIMESTAMPTZ '2025-12-01 00:00:00+00', TIMESTAMPTZ '2025-01-01 00:00:00+00', TIMESTAMPTZ '2025-10-01 00:00:00+00'),
  (TIMESTAMPTZ '2025-12-01 00:00:00+00', TIMESTAMPTZ '2026-01-01 00:00:00+00', TIMESTAMPTZ '2025-01-01 00:00:00+00', TIMESTAMPTZ '2025-11-01 00:00:00+00')
) AS t (s, e, y, ps)

-- ---------------------------------------------------------------- sales and revenue

-- kpi: revenue empty=0
SELECT p.s, sum(o.amount) AS v
FROM p JOIN orders o ON o.ordered_at >= p.s AND o.ordered_at < p.e
WHERE o.status = 'paid'
GROUP BY p.s

-- kpi: paid_orders empty=0
SELECT p.s, count(*) AS v
FROM p JOIN orders o ON o.ordered_at >= p.s AND o.ordered_at < p.e
WHERE o.status = 'paid'
GROUP BY p.s

-- kpi: average_order_value
SELECT p.s, sum(o.amount) / count(*) AS v
FROM p JOIN orders o ON o.ordered_at >= p.s AND o.ordered_at < p.e
WHERE o.status = 'paid'
GROUP BY p.s

-- kpi: orders_per_customer
SELECT p.s, count(*) * 1.0 / count(DISTINCT o.customer_id) AS v
FROM p JOIN orders o ON o.ordered_at >= p.s AND o.ordered_at < p.e
WHERE o.status = 'paid'
GROUP BY p.s

-- kpi: revenue_per_rep
SELECT p.s, sum(o.amount) / count(DISTINCT o.rep_id) AS v
FROM p JOIN orders o ON o.ordered_at >= p.s AND o.ordered_at < p.e
WHERE o.status = 'paid' AND o.rep_id IS NOT NULL
GROUP BY p.s

-- kpi: cross_sell_rate
SELECT s, 100.0 * sum(CASE WHEN n >= 2 THEN 1 ELSE 0 END) / count(*) AS v
FROM (
  SELECT p.s, o.customer_id, count(DISTINCT o.category) AS n
  FROM p JOIN orders o ON o.ordered_at >= p.s AND o.ordered_at < p.e
  WHERE o.status = 'paid'
  GROUP BY p.s, o.customer_id
) c
GROUP BY s

-- Revenue of the month and of the month before, from one pass over both months.
-- kpi: revenue_growth
SELECT s, 100.0 * (coalesce(cur, 0) - prev) / nullif(prev, 0) AS v
FROM (
  SELECT p.s,
    sum(CASE WHEN o.ordered_at >= p.s THEN o.amount END) AS cur,
    sum(CASE WHEN o.ordered_at < p.s THEN o.amount END) AS prev
  FROM p JOIN orders o ON o.ordered_at >= p.ps AND o.ordered_at < p.e
  WHERE o.status = 'paid'
  GROUP BY p.s
) g

-- kpi: revenue_ytd empty=0
SELECT p.s, sum(o.amount) AS v
FROM p JOIN orders o ON o.ordered_at >= p.y AND o.ordered_at < p.e
WHERE o.status = 'paid'
GROUP BY p.s

-- kpi: won_revenue empty=0
SELECT p.s, sum(x.amount) AS v
FROM p JOIN deals x ON x.closed_at >= p.s AND x.closed_at < p.e
WHERE x.status = 'won'
GROUP BY p.s

-- kpi: win_rate
SELECT p.s, 100.0 * sum(CASE WHEN x.status = 'won' THEN 1 ELSE 0 END) / count(*) AS v
FROM p JOIN deals x ON x.closed_at >= p.s AND x.closed_at < p.e
WHERE x.status IN ('won', 'lost')
GROUP BY p.s

-- kpi: sales_cycle_days
SELECT p.s, avg((date_part('epoch', x.closed_at) - date_part('epoch', x.created_at)) / 86400.0) AS v
FROM p JOIN deals x ON x.closed_at >= p.s AND x.closed_at < p.e
WHERE x.status = 'won'
GROUP BY p.s

-- kpi: leads empty=0
SELECT p.s, count(*) AS v
FROM p JOIN leads l ON l.created_at >= p.s AND l.created_at < p.e
GROUP BY p.s

-- kpi: lead_conversion_rate
SELECT p.s, 100.0 * sum(CASE WHEN w.won > 0 THEN 1 ELSE 0 END) / count(*) AS v
FROM p JOIN leads l ON l.created_at >= p.s AND l.created_at < p.e
LEFT JOIN (
  SELECT l2.lead_id, count(*) AS won
  FROM leads l2 JOIN deals x ON x.lead_id = l2.lead_id
  WHERE x.status = 'won' AND x.closed_at >= l2.created_at
    AND x.closed_at < l2.created_at + INTERVAL '90 days'
  GROUP BY l2.lead_id
) w ON w.lead_id = l.lead_id
GROUP BY p.s

-- kpi: lead_response_hours
SELECT p.s, avg((date_part('epoch', f.first_at) - date_part('epoch', l.created_at)) / 3600.0) AS v
FROM p JOIN leads l ON l.created_at >= p.s AND l.created_at < p.e
JOIN (
  SELECT l2.lead_id, min(a.occurred_at) AS first_at
  FROM leads l2 JOIN activities a ON a.lead_id = l2.lead_id
  WHERE a.direction = 'outbound' AND a.occurred_at >= l2.created_at
  GROUP BY l2.lead_id
) f ON f.lead_id = l.lead_id
GROUP BY p.s

-- kpi: activities_per_closed_deal
SELECT s, sum(n) * 1.0 / count(*) AS v
FROM (
  SELECT p.s, x.deal_id, count(a.activity_id) AS n
  FROM p JOIN deals x ON x.closed_at >= p.s AND x.closed_at < p.e
  LEFT JOIN activities a ON a.lead_id = x.lead_id AND a.occurred_at <= x.closed_at
  WHERE x.status IN ('won', 'lost') AND x.lead_id IS NOT NULL
  GROUP BY p.s, x.deal_id
) d
GROUP BY s

-- ---------------------------------------------------------------- relationship

-- kpi: contact_frequency
SELECT p.s, count(*) * 1.0 / count(DISTINCT a.customer_id) AS v
FROM p JOIN activities a ON a.occurred_at >= p.s AND a.occurred_at < p.e
WHERE a.customer_id IS NOT NULL
GROUP BY p.s

-- kpi: customer_coverage_90d
SELECT p.s, 100.0 * coalesce(t.n, 0) / c.n AS v
FROM p
LEFT JOIN (
  SELECT p.s, count(DISTINCT a.customer_id) AS n
  FROM p JOIN activities a ON a.occurred_at >= p.e - INTERVAL '90 days' AND a.occurred_at < p.e
  GROUP BY p.s
) t ON t.s = p.s
JOIN (
  SELECT p.s, count(*) AS n
  FROM p JOIN customers c ON c.created_at < p.e
  GROUP BY p.s
) c ON c.s = p.s

-- kpi: customer_retention_rate
SELECT b.s, 100.0 * count(c.customer_id) / count(*) AS v
FROM (
  SELECT DISTINCT p.s, o.customer_id
  FROM p JOIN orders o ON o.ordered_at >= p.ps AND o.ordered_at < p.s
  WHERE o.status = 'paid'
) b
LEFT JOIN (
  SELECT DISTINCT p.s, o.customer_id
  FROM p JOIN orders o ON o.ordered_at >= p.s AND o.ordered_at < p.e
  WHERE o.status = 'paid'
) c ON c.s = b.s AND c.customer_id = b.customer_id
GROUP BY b.s

-- kpi: won_back_customers empty=0
SELECT s, count(*) AS v
FROM (
  SELECT f.s, f.customer_id, f.first_at, max(o.ordered_at) AS last_at
  FROM (
    SELECT p.s, o.customer_id, min(o.ordered_at) AS first_at
    FROM p JOIN orders o ON o.ordered_at >= p.s AND o.ordered_at < p.e
    WHERE o.status = 'paid'
    GROUP BY p.s, o.customer_id
  ) f
  JOIN orders o ON o.customer_id = f.customer_id AND o.status = 'paid' AND o.ordered_at < f.first_at
  GROUP BY f.s, f.customer_id, f.first_at
) w
WHERE date_part('epoch', first_at) - date_part('epoch', last_at) > 180 * 86400
GROUP BY s

-- ---------------------------------------------------------------- service

-- kpi: tickets_opened empty=0
SELECT p.s, count(*) AS v
FROM p JOIN tickets t ON t.opened_at >= p.s AND t.opened_at < p.e
GROUP BY p.s

-- kpi: first_response_hours
SELECT p.s, avg((date_part('epoch', t.first_response_at) - date_part('epoch', t.opened_at)) / 3600.0) AS v
FROM p JOIN tickets t ON t.opened_at >= p.s AND t.opened_at < p.e
WHERE t.first_response_at IS NOT NULL
GROUP BY p.s

-- kpi: resolution_hours
SELECT p.s, avg((date_part('epoch', t.resolved_at) - date_part('epoch', t.opened_at)) / 3600.0) AS v
FROM p JOIN tickets t ON t.resolved_at >= p.s AND t.resolved_at < p.e
GROUP BY p.s

-- Both engines' median() is exact: the mean of the two middle values for an even count.
-- kpi: resolution_median_hours
SELECT p.s, median((date_part('epoch', t.resolved_at) - date_part('epoch', t.opened_at)) / 3600.0) AS v
FROM p JOIN tickets t ON t.resolved_at >= p.s AND t.resolved_at < p.e
GROUP BY p.s

-- kpi: tickets_per_agent
SELECT p.s, count(*) * 1.0 / count(DISTINCT t.agent_id) AS v
FROM p JOIN tickets t ON t.resolved_at >= p.s AND t.resolved_at < p.e
GROUP BY p.s

-- kpi: reopen_rate
SELECT p.s, 100.0 * sum(CASE WHEN t.reopened_count > 0 THEN 1 ELSE 0 END) / count(*) AS v
FROM p JOIN tickets t ON t.resolved_at >= p.s AND t.resolved_at < p.e
GROUP BY p.s

-- kpi: csat_rate
SELECT p.s, 100.0 * sum(CASE WHEN t.csat >= 4 THEN 1 ELSE 0 END) / count(*) AS v
FROM p JOIN tickets t ON t.resolved_at >= p.s AND t.resolved_at < p.e
WHERE t.csat IS NOT NULL
GROUP BY p.s

-- Tickets opened per 100 paid orders: NULL in a month without paid orders.
-- kpi: tickets_per_100_orders
SELECT o.s, 100.0 * coalesce(t.n, 0) / o.n AS v
FROM (
  SELECT p.s, count(*) AS n
  FROM p JOIN orders o ON o.ordered_at >= p.s AND o.ordered_at < p.e
  WHERE o.status = 'paid'
  GROUP BY p.s
) o
LEFT JOIN (
  SELECT p.s, count(*) AS n
  FROM p JOIN tickets t ON t.opened_at >= p.s AND t.opened_at < p.e
  GROUP BY p.s
) t ON t.s = o.s

-- kpi: nps
SELECT p.s, 100.0 * (sum(CASE WHEN r.score >= 9 THEN 1 ELSE 0 END) - sum(CASE WHEN r.score <= 6 THEN 1 ELSE 0 END)) / count(*) AS v
FROM p JOIN nps_responses r ON r.responded_at >= p.s AND r.responded_at < p.e
GROUP BY p.s

-- ---------------------------------------------------------------- subscriptions

-- kpi: active_subscriptions empty=0
SELECT p.s, count(*) AS v
FROM p JOIN subscriptions x ON x.started_at < p.e AND (x.cancelled_at IS NULL OR x.cancelled_at >= p.e)
GROUP BY p.s

-- kpi: mrr empty=0
SELECT p.s, sum(x.mrr) AS v
FROM p JOIN subscriptions x ON x.started_at < p.e AND (x.cancelled_at IS NULL OR x.cancelled_at >= p.e)
GROUP BY p.s

-- kpi: churn_rate
SELECT p.s, 100.0 * sum(CASE WHEN x.cancelled_at >= p.s AND x.cancelled_at < p.e THEN 1 ELSE 0 END) / count(*) AS v
FROM p JOIN subscriptions x ON x.started_at < p.s AND (x.cancelled_at IS NULL OR x.cancelled_at >= p.s)
GROUP BY p.s

-- ---------------------------------------------------------------- marketing and the CRM's return

-- kpi: campaign_cost empty=0
SELECT p.s, sum(k.cost) AS v
FROM p JOIN campaigns k ON k.started_at >= p.s AND k.started_at < p.e
GROUP BY p.s

-- kpi: attributed_revenue empty=0
SELECT p.s, sum(o.amount) AS v
FROM p JOIN orders o ON o.ordered_at >= p.s AND o.ordered_at < p.e
WHERE o.status = 'paid' AND o.campaign_id IS NOT NULL
GROUP BY p.s

-- (attributed_revenue - campaign_cost) / campaign_cost, %: NULL without campaign cost.
-- kpi: marketing_roi
SELECT k.s, 100.0 * (coalesce(a.v, 0) - k.v) / nullif(k.v, 0) AS v
FROM (
  SELECT p.s, sum(k.cost) AS v
  FROM p JOIN campaigns k ON k.started_at >= p.s AND k.started_at < p.e
  GROUP BY p.s
) k
LEFT JOIN (
  SELECT p.s, sum(o.amount) AS v
  FROM p JOIN orders o ON o.ordered_at >= p.s AND o.ordered_at < p.e
  WHERE o.status = 'paid' AND o.campaign_id IS NOT NULL
  GROUP BY p.s
) a ON a.s = k.s

-- kpi: campaign_response_rate
SELECT p.s,
  100.0 * count(DISTINCT CASE WHEN ev.event = 'response' THEN ev.campaign_id * 1000000000 + ev.customer_id END)
  / count(DISTINCT CASE WHEN ev.event = 'sent' THEN ev.campaign_id * 1000000000 + ev.customer_id END) AS v
FROM p JOIN campaign_events ev ON ev.occurred_at >= p.s AND ev.occurred_at < p.e
GROUP BY p.s

-- kpi: email_open_rate
SELECT p.s, 100.0 * sum(CASE WHEN ev.event = 'open' THEN 1 ELSE 0 END) / sum(CASE WHEN ev.event = 'sent' THEN 1 ELSE 0 END) AS v
FROM p JOIN campaign_events ev ON ev.occurred_at >= p.s AND ev.occurred_at < p.e
JOIN campaigns k ON k.campaign_id = ev.campaign_id
WHERE k.channel = 'email'
GROUP BY p.s

-- kpi: unsubscribe_rate
SELECT p.s, 100.0 * sum(CASE WHEN ev.event = 'unsubscribe' THEN 1 ELSE 0 END) / sum(CASE WHEN ev.event = 'sent' THEN 1 ELSE 0 END) AS v
FROM p JOIN campaign_events ev ON ev.occurred_at >= p.s AND ev.occurred_at < p.e
JOIN campaigns k ON k.campaign_id = ev.campaign_id
WHERE k.channel = 'email'
GROUP BY p.s

-- kpi: crm_cost empty=0
SELECT p.s, sum(x.amount) AS v
FROM p JOIN crm_costs x ON x.incurred_at >= p.s AND x.incurred_at < p.e
GROUP BY p.s

-- (won_revenue - crm_cost) / crm_cost, %: NULL without CRM cost.
-- kpi: crm_roi
SELECT c.s, 100.0 * (coalesce(w.v, 0) - c.v) / nullif(c.v, 0) AS v
FROM (
  SELECT p.s, sum(x.amount) AS v
  FROM p JOIN crm_costs x ON x.incurred_at >= p.s AND x.incurred_at < p.e
  GROUP BY p.s
) c
LEFT JOIN (
  SELECT p.s, sum(x.amount) AS v
  FROM p JOIN deals x ON x.closed_at >= p.s AND x.closed_at < p.e
  WHERE x.status = 'won'
  GROUP BY p.s
) w ON w.s = c.s
