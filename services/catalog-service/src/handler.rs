//! The subscriber's handler: applies each event to the projection (with its inbox record,
//! in one transaction) and says which failures are permanent (dead-letter now) and which
//! are transient (retry later).

use events::Event;
use events::subscriber::{DeliveryContext, Handler, HandlerError};
use tracing::debug;

use crate::projection::{Projection, ProjectionError};

/// Applies `auth.user.*` events to a [`Projection`].
///
/// - [`ApplyError`](crate::projection::ApplyError) (unsupported major, data that does not
///   match its schema) is **permanent**: no retry can fix the event, so it goes to
///   `DLQ_EVENTS` with reason `permanent` at once;
/// - a database failure is **transient**: nothing was written, the message is NAKed with a
///   growing delay and applied on redelivery;
/// - a redelivery of an event already applied is acknowledged without effect (the inbox).
#[derive(Debug, Clone)]
pub struct CatalogHandler {
    projection: Projection,
}

impl CatalogHandler {
    /// A handler updating `projection`.
    pub fn new(projection: Projection) -> Self {
        Self { projection }
    }
}

impl Handler for CatalogHandler {
    async fn handle(&self, event: Event, ctx: DeliveryContext) -> Result<(), HandlerError> {
        let applied = match self.projection.apply(&event).await {
            Ok(applied) => applied,
            Err(e @ ProjectionError::Apply(_)) => return Err(HandlerError::permanent(e)),
            Err(e) => return Err(HandlerError::transient(e)),
        };
        debug!(
            event_id = %event.id(),
            event_type = %event.event_type(),
            delivered = ctx.delivered,
            ?applied, // Ignored or Duplicate: acknowledged without effect
            "handled"
        );
        Ok(())
    }
}
