//! Topology: streams and consumers declared in one file, applied idempotently. (Filled by the topology work.)
