//! kpi's integration tests, in one binary so that DataFusion is linked once.

mod broken;
mod catalogue;
mod cli;
mod diff;
mod errors;
mod explain;
mod fuzz;
mod reference;
mod run;
mod schema;
mod testing;
mod validate;

/// The path of a file or folder of the repository.
pub fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The KPI names of `../shared/kpi-catalogue.md`, in its order (the shipped list if the
/// catalogue is not beside the repository).
pub fn catalogue_names() -> Vec<&'static str> {
    vec![
        "revenue",
        "paid_orders",
        "average_order_value",
        "orders_per_customer",
        "revenue_per_rep",
        "cross_sell_rate",
        "revenue_growth",
        "revenue_ytd",
        "won_revenue",
        "win_rate",
        "sales_cycle_days",
        "leads",
        "lead_conversion_rate",
        "lead_response_hours",
        "activities_per_closed_deal",
        "contact_frequency",
        "customer_coverage_90d",
        "customer_retention_rate",
        "won_back_customers",
        "tickets_opened",
        "first_response_hours",
        "resolution_hours",
        "resolution_median_hours",
        "tickets_per_agent",
        "reopen_rate",
        "csat_rate",
        "tickets_per_100_orders",
        "nps",
        "active_subscriptions",
        "mrr",
        "churn_rate",
        "campaign_cost",
        "attributed_revenue",
        "marketing_roi",
        "campaign_response_rate",
        "email_open_rate",
        "unsubscribe_rate",
        "crm_cost",
        "crm_roi",
    ]
}
