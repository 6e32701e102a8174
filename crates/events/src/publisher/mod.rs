//! Publisher: confirmed and windowed publishing with retries, outage spool. (Filled by the publisher work.)
