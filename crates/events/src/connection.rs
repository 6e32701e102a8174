//! Connection: builds an async-nats client from a config. (Filled by the connection work.)
