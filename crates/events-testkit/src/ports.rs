//! Free loopback ports and a source of randomness (std only).

use std::collections::HashSet;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Ports are drawn from this range, below Linux's default ephemeral range (32768–60999),
/// so the kernel never hands one of them to an outgoing connection (a client, a route)
/// between our check and the server's bind. Collisions with other test processes doing
/// the same are caught by the bind check; the rare race after it shows up as "address
/// already in use" in the server's log, and the caller starts over on new ports.
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;

/// A random u64 from std's per-process random hash keys (no rand crate needed).
pub(crate) fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// A loopback port that was free a moment ago and that this process has not handed out
/// before.
///
/// # Panics
///
/// If no free port turns up in 1000 tries (the machine is out of ports).
pub(crate) fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let span = u64::from(PORT_RANGE.end - PORT_RANGE.start);
    for _ in 0..1000 {
        // The remainder is below `span`, which fits in a u16, so the cast cannot truncate.
        let port = PORT_RANGE.start + (random_u64() % span) as u16;
        let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        let handed_out = guard.get_or_insert_with(HashSet::new);
        if handed_out.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no free loopback port found in {PORT_RANGE:?} after 1000 tries");
}

/// A loopback address for a process under test to listen on: a port from the same range as
/// the test servers' (below the ephemeral range, so no outgoing connection, the child's own
/// among them, can take it between this check and the child's bind), not handed out before
/// by this process.
///
/// # Panics
///
/// If no free port turns up in 1000 tries (the machine is out of ports).
pub fn free_loopback_addr() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], free_port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_in_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
        assert!(ports.iter().all(|p| PORT_RANGE.contains(p)));
    }
}
