//! Replay of a stream time window. (Filled by the dead-letter access work.)
