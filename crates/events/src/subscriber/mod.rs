//! Subscriber: durable pull consumers, outcomes, backoff, dead letters, drain. (Filled by the consumer work.)
