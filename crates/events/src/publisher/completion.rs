//! How a publish ends, whichever path sent it (inline, the acker, a batch, the spool): its
//! outcome counted in the metrics, its window slot given back, and its handle told.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tracing::{Span, debug, warn};

use super::{PublishError, PublishOutcome};
use crate::metrics::{EVENT_PUBLISH_DURATION_SECONDS, EVENTS_PUBLISHED_TOTAL, HandleCache};

/// A submitted event whose outcome is not known yet: what completing it needs.
pub(super) struct Pending {
    /// Where the outcome goes ([`super::PublishHandle`]).
    pub(super) tx: oneshot::Sender<Result<PublishOutcome, PublishError>>,
    /// The window slot, given back on completion.
    pub(super) permit: OwnedSemaphorePermit,
    pub(super) started: Instant,
    pub(super) event_type: String,
    pub(super) span: Span,
}

impl Pending {
    /// The one completion path: records `res`, gives back the window slot, then tells the
    /// handle (so that a caller woken by it sees the slot free).
    pub(super) fn complete(self, outcomes: &Outcomes, res: Result<PublishOutcome, PublishError>) {
        let _enter = self.span.enter();
        outcomes.record(&self.event_type, res.as_ref(), self.started);
        drop(self.permit);
        let _ = self.tx.send(res);
    }
}

/// The metric handles of one event type for the common outcomes, registered once per
/// publisher (building a labelled key per event costs several allocations).
struct TypeMetrics {
    ok: metrics::Counter,
    duplicate: metrics::Counter,
    spooled: metrics::Counter,
    duration: metrics::Histogram,
}

impl TypeMetrics {
    fn new(event_type: &str) -> Self {
        let c = |status: &'static str| metrics::counter!(EVENTS_PUBLISHED_TOTAL, "event_type" => event_type.to_owned(), "status" => status);
        Self {
            ok: c("ok"),
            duplicate: c("duplicate"),
            spooled: c("spooled"),
            duration: metrics::histogram!(EVENT_PUBLISH_DURATION_SECONDS, "event_type" => event_type.to_owned()),
        }
    }
}

/// The metric handles of a publisher, per event type (registered with the recorder
/// installed when the publisher first sees the type).
#[derive(Default)]
pub(super) struct Outcomes {
    metrics: HandleCache<Arc<TypeMetrics>>,
}

impl Outcomes {
    /// Counts `res` (and the duration of a stored event) and logs it.
    pub(super) fn record(
        &self,
        event_type: &str,
        res: Result<&PublishOutcome, &PublishError>,
        started: Instant,
    ) {
        let status = match res {
            Ok(o) => o.status(),
            Err(e) => e.kind(),
        };
        let h = self
            .metrics
            .get(event_type, || Arc::new(TypeMetrics::new(event_type)));
        match res {
            Ok(PublishOutcome::Stored(ack)) => {
                if ack.duplicate {
                    h.duplicate.increment(1);
                } else {
                    h.ok.increment(1);
                }
                h.duration.record(started.elapsed().as_secs_f64());
            }
            Ok(PublishOutcome::Spooled) => h.spooled.increment(1),
            Err(_) => {
                metrics::counter!(EVENTS_PUBLISHED_TOTAL, "event_type" => event_type.to_owned(), "status" => status)
                    .increment(1);
            }
        }
        match res {
            Ok(_) => debug!(status, "published"),
            Err(e) if e.is_transient() => warn!(error = %e, "publish failed"),
            Err(e) => debug!(error = %e, "publish refused"),
        }
    }
}
