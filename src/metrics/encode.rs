//! The sums of a scrape in the OpenMetrics text format, through
//! prometheus-client's encoder (a `Collector` over the sums), so that the
//! exposition format, escaping and `# EOF` are the crate's, not ours.

use std::collections::BTreeMap;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::names::{self, Metric, Type};
use super::scrape::Totals;

/// The content type of the answer.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The series of one metric: label values and slot values.
type Family = (&'static Metric, Vec<(Vec<String>, Vec<u64>)>);

/// One scrape's series, grouped by metric.
#[derive(Debug)]
struct Sums {
    families: BTreeMap<&'static str, Family>,
}

impl Sums {
    fn new(totals: &Totals) -> Sums {
        let mut families: BTreeMap<&'static str, Family> = BTreeMap::new();
        for (key, (_, values)) in totals {
            // A series of a metric this build does not know (another
            // version's), or of another layout, is left out.
            let Some((metric, labels)) = names::parse_key(key) else {
                continue;
            };
            if values.len() != metric.slots() {
                continue;
            }
            families
                .entry(metric.name)
                .or_insert_with(|| (metric, Vec::new()))
                .1
                .push((labels, values.clone()));
        }
        Sums { families }
    }
}

/// One series as prometheus-client encodes it.
struct Series<'a> {
    metric: &'a Metric,
    values: &'a [u64],
}

impl EncodeMetric for Series<'_> {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        match self.metric.kind {
            Type::Counter => {
                let value = self.values[0] as f64 / self.metric.per_unit;
                if self.metric.per_unit == 1.0 {
                    encoder.encode_counter::<NoLabelSet, _, u64>(&self.values[0], None)
                } else {
                    encoder.encode_counter::<NoLabelSet, _, f64>(&value, None)
                }
            }
            Type::Gauge => encoder.encode_gauge(&(self.values[0] as i64)),
            Type::Histogram(bounds) => {
                // Per-bucket counts: the encoder makes them cumulative.
                let mut buckets: Vec<(f64, u64)> = bounds
                    .iter()
                    .copied()
                    .zip(self.values.iter().copied())
                    .collect();
                buckets.push((f64::INFINITY, self.values[bounds.len()]));
                let count = buckets.iter().map(|(_, n)| n).sum();
                let sum = self.values[bounds.len() + 1] as f64 / self.metric.per_unit;
                encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
            }
        }
    }

    fn metric_type(&self) -> MetricType {
        match self.metric.kind {
            Type::Counter => MetricType::Counter,
            Type::Gauge => MetricType::Gauge,
            Type::Histogram(_) => MetricType::Histogram,
        }
    }
}

impl Collector for Sums {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (metric, series) in self.families.values() {
            let metric: &Metric = metric;
            let kind = Series {
                metric,
                values: &[],
            }
            .metric_type();
            let mut family = encoder.encode_descriptor(metric.name, metric.help, None, kind)?;
            for (labels, values) in series {
                let pairs: Vec<(&str, &str)> = metric
                    .labels
                    .iter()
                    .copied()
                    .zip(labels.iter().map(String::as_str))
                    .collect();
                let series = Series { metric, values };
                series.encode(family.encode_family(&pairs)?)?;
            }
        }
        Ok(())
    }
}

/// The exposition of `totals`.
pub(crate) fn encode(totals: &Totals) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Sums::new(totals)));
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

#[cfg(test)]
mod tests {
    use super::super::file::EntryKind;
    use super::*;

    #[test]
    fn sums_are_encoded_with_baseplate_names_and_cumulative_buckets() {
        let mut totals = Totals::new();
        let mut key = Vec::new();
        names::key(
            &names::HTTP_REQUESTS,
            &["GET", "/", "true", "200"],
            &mut key,
        );
        totals.insert(key.clone(), (EntryKind::Counter, vec![12]));
        names::key(&names::THRIFT_LATENCY, &["echo", "true"], &mut key);
        let mut latency = vec![0u64; names::LATENCY_BUCKETS.len() + 2];
        latency[0] = 2; // two calls under 100 µs
        latency[2] = 1; // one under 1 ms
        latency[names::LATENCY_BUCKETS.len()] = 1; // one over 30 s
        latency[names::LATENCY_BUCKETS.len() + 1] = 31_000_500_000; // ns
        totals.insert(key.clone(), (EntryKind::Histogram, latency));
        names::key(&names::PROCESS_CPU, &[], &mut key);
        totals.insert(key.clone(), (EntryKind::Counter, vec![1_500_000]));
        names::key(&names::HTTP_ACTIVE, &["GET", "/"], &mut key);
        totals.insert(key.clone(), (EntryKind::Gauge, vec![(-1i64) as u64]));
        let text = encode(&totals);
        for line in [
            "# TYPE http_server_requests counter",
            r#"http_server_requests_total{http_method="GET",http_endpoint="/",http_success="true",http_response_code="200"} 12"#,
            r#"thrift_server_latency_seconds_bucket{le="0.0001",thrift_method="echo",thrift_success="true"} 2"#,
            r#"thrift_server_latency_seconds_bucket{le="0.001",thrift_method="echo",thrift_success="true"} 3"#,
            r#"thrift_server_latency_seconds_bucket{le="30.0",thrift_method="echo",thrift_success="true"} 3"#,
            r#"thrift_server_latency_seconds_bucket{le="+Inf",thrift_method="echo",thrift_success="true"} 4"#,
            r#"thrift_server_latency_seconds_count{thrift_method="echo",thrift_success="true"} 4"#,
            "process_cpu_seconds_total 1.5",
            r#"http_server_active_requests{http_method="GET",http_endpoint="/"} -1"#,
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }
}
