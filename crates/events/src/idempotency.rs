//! Idempotency helper: remembers processed event ids. (Filled by the consumer work.)
