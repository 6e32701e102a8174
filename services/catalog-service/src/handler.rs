//! The subscriber's handler: applies each event to the projection and says which failures
//! are permanent (dead-letter now) and which are transient (retry later).

use std::sync::Arc;

use events::Event;
use events::subscriber::{DeliveryContext, Handler, HandlerError};
use tracing::debug;

use crate::projection::Projection;

/// Applies `auth.user.*` events to a [`Projection`].
///
/// - [`ApplyError`](crate::projection::ApplyError) (unsupported major, data that does not
///   match its schema) is **permanent**: no retry can fix the event, so it goes to
///   `DLQ_EVENTS` with reason `permanent` at once;
/// - failing to save the projection file is **transient**: the message is NAKed with a
///   growing delay and the write is retried on redelivery.
#[derive(Debug, Clone)]
pub struct CatalogHandler {
    projection: Arc<Projection>,
}

impl CatalogHandler {
    /// A handler updating `projection`.
    pub fn new(projection: Arc<Projection>) -> Self {
        Self { projection }
    }
}

impl Handler for CatalogHandler {
    async fn handle(&self, event: Event, ctx: DeliveryContext) -> Result<(), HandlerError> {
        let applied = self
            .projection
            .apply(&event)
            .map_err(HandlerError::permanent)?;
        self.projection
            .persist()
            .await
            .map_err(HandlerError::transient)?;
        debug!(
            event_id = %event.id(),
            event_type = %event.event_type(),
            delivered = ctx.delivered,
            ?applied, // Ignored: a type this service does not handle, acknowledged
            "handled"
        );
        Ok(())
    }
}
