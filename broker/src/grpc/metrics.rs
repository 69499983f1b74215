//! Metrics of the client API: produce requests, records and latency; fetch streams and the
//! records they deliver. Registered by the node into the console's `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

pub struct ApiMetrics {
    pub produce_requests: Family<OutcomeLabels, Counter>,
    pub produced_records: Counter,
    /// From the request's arrival to its acknowledgement (fsync included).
    pub produce_latency: Histogram,
    pub fetch_streams: Counter,
    pub fetched_records: Counter,
    /// One read of a fetch stream's partitions (records found or caught up).
    pub fetch_read_latency: Histogram,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        ApiMetrics {
            produce_requests: Family::default(),
            produced_records: Counter::default(),
            // 50 µs to about 26 s.
            produce_latency: Histogram::new(exponential_buckets(0.000_05, 2.0, 20)),
            fetch_streams: Counter::default(),
            fetched_records: Counter::default(),
            fetch_read_latency: Histogram::new(exponential_buckets(0.000_005, 2.0, 20)),
        }
    }
}

impl ApiMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("georouter");
        r.register(
            "produce_requests",
            "Produce requests, by outcome (ok, error)",
            self.produce_requests.clone(),
        );
        r.register(
            "produced_records",
            "Records acknowledged to producers",
            self.produced_records.clone(),
        );
        r.register(
            "produce_latency_seconds",
            "Produce request latency, arrival to acknowledgement (fsync included)",
            self.produce_latency.clone(),
        );
        r.register(
            "fetch_streams",
            "Fetch streams opened",
            self.fetch_streams.clone(),
        );
        r.register(
            "fetched_records",
            "Records delivered to consumers",
            self.fetched_records.clone(),
        );
        r.register(
            "fetch_read_latency_seconds",
            "Time of one read of a fetch stream's partitions",
            self.fetch_read_latency.clone(),
        );
    }
}
