//! The publisher's metrics, checked through a minimal in-test recorder.

use async_nats::jetstream;
use events::Event;
use events::publisher::Publisher;
use events_testkit::NatsServer;

use super::{config, create_stream};

/// A minimal global metrics recorder: sums counters and counts histogram samples by
/// `name{label=value,...}`.
mod recorder {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};

    use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};

    type Values = Arc<Mutex<HashMap<String, f64>>>;

    struct Handle(String, Values);

    impl metrics::CounterFn for Handle {
        fn increment(&self, value: u64) {
            *self.1.lock().unwrap().entry(self.0.clone()).or_default() += value as f64;
        }
        fn absolute(&self, value: u64) {
            self.1.lock().unwrap().insert(self.0.clone(), value as f64);
        }
    }

    impl metrics::HistogramFn for Handle {
        fn record(&self, _value: f64) {
            *self.1.lock().unwrap().entry(self.0.clone()).or_default() += 1.0;
        }
    }

    struct Recorder(Values);

    fn id(key: &Key) -> String {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        format!("{}{{{}}}", key.name(), labels.join(","))
    }

    impl metrics::Recorder for Recorder {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(Arc::new(Handle(id(key), self.0.clone())))
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(Arc::new(Handle(id(key), self.0.clone())))
        }
    }

    /// Installs the recorder once per process and returns its values.
    pub(super) fn install() -> Values {
        static VALUES: OnceLock<Values> = OnceLock::new();
        VALUES
            .get_or_init(|| {
                let values = Values::default();
                // Another recorder can only be there if a test installed one first.
                let _ = metrics::set_global_recorder(Recorder(values.clone()));
                values
            })
            .clone()
    }
}

#[tokio::test]
async fn publisher_records_metrics_by_event_type_and_status() {
    let values = recorder::install();
    let nats = NatsServer::start().await;
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    // A type no other test publishes, so the counts are exact even in a shared process.
    create_stream(&js, "METRICPROBE_EVENTS", "metricprobe.>", 1).await;
    let publisher = Publisher::new(client, config()).await.unwrap();
    let mk = |blob: usize| {
        Event::builder("metricprobe.thing.happened")
            .source("auth-service")
            .organization("org-1")
            .data(&serde_json::json!({ "blob": "x".repeat(blob) }))
            .build()
            .unwrap()
    };
    let (a, b) = (mk(1), mk(2));
    publisher.publish(&a).await.unwrap();
    publisher.publish(&b).await.unwrap();
    publisher.publish(&a).await.unwrap();
    assert!(publisher.publish(&mk(2 * 1024 * 1024)).await.is_err());

    let v = values.lock().unwrap().clone();
    let get = |k: &str| v.get(k).copied().unwrap_or(0.0);
    let t = "event_type=metricprobe.thing.happened";
    assert_eq!(
        get(&format!("events_published_total{{{t},status=ok}}")),
        2.0
    );
    assert_eq!(
        get(&format!("events_published_total{{{t},status=duplicate}}")),
        1.0
    );
    assert_eq!(
        get(&format!(
            "events_published_total{{{t},status=payload_too_large}}"
        )),
        1.0
    );
    assert_eq!(get(&format!("event_publish_duration_seconds{{{t}}}")), 3.0);
}
