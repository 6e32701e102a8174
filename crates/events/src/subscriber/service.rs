//! Tower integration: run a `tower::Service<Delivery>` (with its layers: timeouts, rate
//! limits, ...) as a [`Handler`].

use tower::{Service, ServiceExt};

use super::context::DeliveryContext;
use super::handler::{Handler, HandlerError};
use crate::Event;
use crate::error::BoxError;

/// One delivery, as a tower request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Delivery {
    /// The decoded event.
    pub event: Event,
    /// What is known about the delivery.
    pub ctx: DeliveryContext,
}

/// Marks an error raised inside a tower stack as permanent (dead-letter now); every other
/// error, tower's `Elapsed` included, counts as transient.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Permanent(pub BoxError);

impl Permanent {
    /// Wraps `err`.
    pub fn new(err: impl Into<BoxError>) -> Self {
        Self(err.into())
    }
}

/// A [`Handler`] that calls a cloneable tower service (one clone per delivery, as
/// `tower::steer` and axum do).
#[derive(Debug, Clone)]
pub struct ServiceHandler<S>(S);

/// Turns `service` into a [`Handler`]:
/// `service_handler(ServiceBuilder::new().timeout(d).service_fn(f))`.
pub fn service_handler<S>(service: S) -> ServiceHandler<S> {
    ServiceHandler(service)
}

fn classify(err: BoxError) -> HandlerError {
    match err.downcast::<Permanent>() {
        Ok(p) => HandlerError::Permanent(p.0),
        Err(other) => HandlerError::Transient(other),
    }
}

impl<S> Handler for ServiceHandler<S>
where
    S: Service<Delivery, Response = ()> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    async fn handle(&self, event: Event, ctx: DeliveryContext) -> Result<(), HandlerError> {
        let svc = self.0.clone();
        svc.oneshot(Delivery { event, ctx })
            .await
            .map_err(|e| classify(e.into()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tower::ServiceBuilder;

    use super::*;

    fn ctx() -> DeliveryContext {
        super::super::context::test_context(b"{}")
    }

    fn event(n: u64) -> Event {
        Event::builder("auth.user.created")
            .source("s")
            .organization("o")
            .data(&serde_json::json!({ "n": n }))
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn errors_are_classified_and_layers_apply() {
        let svc = ServiceBuilder::new()
            .timeout(Duration::from_millis(50))
            .service_fn(|d: Delivery| async move {
                match d.event.data()["n"].as_u64() {
                    Some(0) => Ok(()),
                    Some(1) => Err(BoxError::from(Permanent::new("bad data"))),
                    Some(2) => Err(BoxError::from("flaky")),
                    _ => {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        Ok(())
                    }
                }
            });
        let h = service_handler(svc);
        assert!(h.handle(event(0), ctx()).await.is_ok());
        let e = h.handle(event(1), ctx()).await.unwrap_err();
        assert!(e.is_permanent());
        assert_eq!(e.chain_string(), "bad data");
        assert!(!h.handle(event(2), ctx()).await.unwrap_err().is_permanent());
        let timed_out = h.handle(event(3), ctx()).await.unwrap_err();
        assert!(!timed_out.is_permanent(), "tower's Elapsed is transient");
    }
}
