//! The attribute rules of CONTRACT.md §2, one function per rule, shared by the builder and
//! the decoders; and the two wire helpers (time format, header value) built on them.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::names::EventType;

use super::{DATA_CONTENT_TYPE, EventError, MAX_ID_LEN, MAX_TEXT_LEN};

/// A valid event type outside the `dlq.` domain, which is reserved for dead letters
/// (CONTRACT.md §2): an event that claims it, built or decoded, would pass for a dead letter
/// in DLQ_EVENTS.
pub(super) fn check_type(ty: &str) -> Result<EventType, EventError> {
    let ty = EventType::new(ty).map_err(|e| EventError::from_name("type", e))?;
    if ty.as_str().starts_with(crate::dlq::DLQ_SUBJECT_PREFIX) {
        return Err(EventError::new(
            "type",
            format!(
                "`{}` is in the reserved `dlq.` domain, which holds only dead letters",
                ty.as_str()
            ),
        ));
    }
    Ok(ty)
}

/// A UUID in its usual 8-4-4-4-12 hex form, not the nil UUID.
pub(super) fn check_uuid(id: &str) -> Result<(), EventError> {
    match Uuid::try_parse(id) {
        Ok(u) if id.len() == 36 && !u.is_nil() => Ok(()),
        _ => Err(EventError::new(
            "id",
            format!(
                "{id:?} is not a UUID (8-4-4-4-12 hex digits, such as \
                 0190f6a8-7b3c-7def-8123-456789abcdef); leave it unset for a new UUID v7"
            ),
        )),
    }
}

/// Printable ASCII without spaces (safe in a NATS header), 1..=MAX_ID_LEN bytes.
pub(super) fn check_id(attr: &str, v: &str) -> Result<(), EventError> {
    if v.is_empty() {
        return Err(EventError::new(attr, "must not be empty"));
    }
    if v.len() > MAX_ID_LEN {
        return Err(EventError::new(
            attr,
            format!("is longer than {MAX_ID_LEN} bytes"),
        ));
    }
    if let Some(c) = v.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(EventError::new(
            attr,
            format!("contains {c:?}; only printable ASCII without spaces is allowed"),
        ));
    }
    Ok(())
}

/// Non-empty text without control characters, at most `max` bytes.
pub(super) fn check_text(attr: &str, v: &str, max: usize) -> Result<(), EventError> {
    if v.is_empty() {
        return Err(EventError::new(attr, "must not be empty"));
    }
    if v.len() > max {
        return Err(EventError::new(attr, format!("is longer than {max} bytes")));
    }
    if let Some(c) = v.chars().find(|c| c.is_control()) {
        return Err(EventError::new(
            attr,
            format!("contains the control character {c:?}"),
        ));
    }
    Ok(())
}

pub(super) fn check_uri(attr: &str, v: &str) -> Result<(), EventError> {
    check_text(attr, v, MAX_TEXT_LEN)?;
    if v.contains(char::is_whitespace) || !v.contains(':') {
        return Err(EventError::new(
            attr,
            "must be an absolute URI (scheme:...) without whitespace",
        ));
    }
    Ok(())
}

pub(super) fn check_schema_version(v: &str) -> Result<(), EventError> {
    let ok = !v.is_empty()
        && v.len() <= 32
        && v.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(EventError::new(
            "schemaversion",
            format!("{v:?} is not a dotted version of digits such as \"1.0\""),
        ))
    }
}

pub(super) fn check_data_content_type(v: &str) -> Result<(), EventError> {
    let base = v.split(';').next().unwrap_or_default().trim();
    if base.eq_ignore_ascii_case(DATA_CONTENT_TYPE) {
        check_text("datacontenttype", v, MAX_TEXT_LEN)
    } else {
        Err(EventError::new(
            "datacontenttype",
            format!("is {v:?}; only {DATA_CONTENT_TYPE:?} is accepted"),
        ))
    }
}

pub(super) fn check_traceparent(v: &str) -> Result<(), EventError> {
    let parts: Vec<&str> = v.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let ok = parts.len() == 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && parts[1] != "0".repeat(32)
        && hex(parts[2], 16)
        && parts[2] != "0".repeat(16)
        && hex(parts[3], 2);
    if ok {
        Ok(())
    } else {
        Err(EventError::new(
            "traceparent",
            format!("{v:?} is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)"),
        ))
    }
}

pub(super) fn check_extension(name: &str, value: &Value) -> Result<(), EventError> {
    if name.is_empty()
        || name.len() > 20
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(EventError::new(
            name,
            "extension names are 1 to 20 lower-case letters or digits",
        ));
    }
    match value {
        Value::String(s) => check_text(name, s, MAX_TEXT_LEN),
        Value::Number(_) | Value::Bool(_) => Ok(()),
        other => Err(EventError::new(
            name,
            format!(
                "extension values are strings, numbers or booleans, found {}",
                json_kind(other)
            ),
        )),
    }
}

pub(super) fn parse_time(v: &str) -> Result<OffsetDateTime, EventError> {
    OffsetDateTime::parse(v, &Rfc3339)
        .map(|t| t.to_offset(time::UtcOffset::UTC))
        .map_err(|e| EventError::new("time", format!("{v:?} is not RFC 3339: {e}")))
}

/// RFC 3339 in UTC (`...Z`), with as many fractional digits as needed.
pub(crate) fn format_time(t: OffsetDateTime) -> String {
    // Invariant: a UTC OffsetDateTime with a four-digit year always formats as RFC 3339;
    // years outside 0..=9999 are refused on parse and never produced by now_utc().
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

pub(super) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
