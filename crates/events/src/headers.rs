//! NATS header helpers shared by every writer: a value that never panics, the size of a
//! header block as the server counts it, and the copy of a stored message's headers
//! without the publish controls of its first publish.

use async_nats::HeaderMap;
use async_nats::header::HeaderValue;

/// Prefix of the headers that instruct the server (message id, expectations, rollups,
/// batch markers, TTLs): they act on the stream a message is published to, so a copy of a
/// stored message must not carry its first publish's.
pub(crate) const PUBLISH_CONTROLS: &str = "Nats-";

/// A header value from text that should hold no CR or LF. async-nats panics on CR/LF in
/// `From<&str>`; `parse` refuses them instead, and then each is replaced by a space.
pub(crate) fn value(v: &str) -> HeaderValue {
    v.parse().unwrap_or_else(|_| {
        v.replace(['\r', '\n'], " ")
            .parse()
            .unwrap_or_else(|_| HeaderValue::new())
    })
}

/// Size of `headers` on the wire: the `NATS/1.0` line, one `name: value` line per value and
/// the blank line: what the server counts against `max_payload` with the body.
pub(crate) fn block_len(headers: &HeaderMap) -> usize {
    let lines: usize = headers
        .iter()
        .map(|(name, values)| {
            let n: &str = name.as_ref();
            values
                .iter()
                .map(|v| n.len() + 2 + v.as_str().len() + 2)
                .sum::<usize>()
        })
        .sum();
    "NATS/1.0\r\n".len() + lines + "\r\n".len()
}

/// The headers of `original` except those whose name starts with one of `skip` (compared
/// in any letter case), every value of a repeated header kept in order.
pub(crate) fn copy_except(original: &HeaderMap, skip: &[&str]) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, values) in original.iter() {
        let n: &str = name.as_ref();
        if skip.iter().any(|p| starts_with_ci(n, p)) {
            continue;
        }
        for v in values {
            out.append(name.clone(), v.clone());
        }
    }
    out
}

fn starts_with_ci(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_never_panics_and_drops_line_breaks() {
        assert_eq!(value("a\r\nb").as_str(), "a  b");
        assert_eq!(value("plain").as_str(), "plain");
    }

    #[test]
    fn block_len_is_the_wire_size() {
        let mut h = HeaderMap::new();
        h.append("A", "bc");
        h.append("A", "d");
        assert_eq!(block_len(&h), "NATS/1.0\r\nA: bc\r\nA: d\r\n\r\n".len());
        assert_eq!(block_len(&HeaderMap::new()), "NATS/1.0\r\n\r\n".len());
    }

    #[test]
    fn copy_except_skips_prefixes_in_any_case_and_keeps_repeats() {
        let mut h = HeaderMap::new();
        h.append("nats-msg-id", "x");
        h.append("Nats-Expected-Stream", "S");
        h.append("Dlq-Reason", "invalid");
        h.append("X-Tag", "1");
        h.append("X-Tag", "2");
        let out = copy_except(&h, &[PUBLISH_CONTROLS]);
        assert!(out.get("nats-msg-id").is_none());
        assert!(out.get("Nats-Expected-Stream").is_none());
        assert_eq!(out.get("Dlq-Reason").map(|v| v.as_str()), Some("invalid"));
        let tags: Vec<&str> = out.get_all("X-Tag").map(|v| v.as_str()).collect();
        assert_eq!(tags, ["1", "2"]);
        assert!(
            copy_except(&h, &[PUBLISH_CONTROLS, "dlq-"])
                .get("Dlq-Reason")
                .is_none()
        );
    }
}
