//! Prometheus metrics, served as text on `GET /metrics`.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    rpc: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcNameLabel {
    rpc: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IntercomLabels {
    endpoint: &'static str,
    status: String,
}

pub struct Metrics {
    registry: Registry,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_duration: Family<RpcNameLabel, Histogram>,
    oauth_callbacks: Family<OutcomeLabel, Counter>,
    uninstall_notifications: Family<OutcomeLabel, Counter>,
    intercom_requests: Family<IntercomLabels, Counter>,
}

/// Buckets from 5 ms to about 20 s, doubling.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("intercom_installs");

        let rpc_requests = Family::default();
        registry.register(
            "rpc_requests",
            "gRPC requests by RPC and outcome",
            rpc_requests.clone(),
        );
        let rpc_duration = Family::<RpcNameLabel, Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        registry.register(
            "rpc_duration_seconds",
            "gRPC request duration by RPC",
            rpc_duration.clone(),
        );

        let oauth_callbacks = Family::default();
        registry.register(
            "oauth_callbacks",
            "OAuth callbacks by outcome",
            oauth_callbacks.clone(),
        );
        let uninstall_notifications = Family::default();
        registry.register(
            "uninstall_notifications",
            "Uninstall notifications by outcome",
            uninstall_notifications.clone(),
        );

        let intercom_requests = Family::default();
        registry.register(
            "intercom_requests",
            "Requests to Intercom by endpoint and HTTP status (\"error\" when no response arrived)",
            intercom_requests.clone(),
        );
        Self {
            registry,
            rpc_requests,
            rpc_duration,
            oauth_callbacks,
            uninstall_notifications,
            intercom_requests,
        }
    }
}

impl Metrics {
    pub fn record_rpc(&self, rpc: &'static str, outcome: &'static str, duration_seconds: f64) {
        self.rpc_requests
            .get_or_create(&RpcLabels { rpc, outcome })
            .inc();
        self.rpc_duration
            .get_or_create(&RpcNameLabel { rpc })
            .observe(duration_seconds);
    }

    pub fn record_oauth_callback(&self, outcome: &'static str) {
        self.oauth_callbacks
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    pub fn record_uninstall_notification(&self, outcome: &'static str) {
        self.uninstall_notifications
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// Counts one Intercom call; `status` is `None` when no response arrived.
    pub fn record_intercom_request(&self, endpoint: &'static str, status: Option<u16>) {
        let status = status.map_or_else(|| "error".to_owned(), |code| code.to_string());
        self.intercom_requests
            .get_or_create(&IntercomLabels { endpoint, status })
            .inc();
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
