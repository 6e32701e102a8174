//! Binary mode of the CloudEvents NATS binding: attributes in `ce-<name>` headers,
//! percent-decoded (CONTRACT.md §2).
//!
//! NATS header names are case-sensitive on the wire, and async-nats keeps them so: one
//! `HeaderMap` key per spelling (`ce-type` and `CE-Type` are two keys), each with every value
//! given under that spelling, in a `HashMap` whose iteration order changes from run to run.
//! Attribute names are case-insensitive, so every spelling of one attribute is gathered here
//! first; an attribute given more than once is refused rather than "first wins", which would
//! depend on that order.

use std::collections::BTreeMap;

use async_nats::HeaderMap;
use serde_json::{Map, Value};

use super::{DecodeError, EventError};

/// Prefix of the header of each attribute.
const PREFIX: &str = "ce-";

/// Every value of the header `name`, under any letter case of the name, in a stable order
/// (by spelling, then as given).
pub(crate) fn header_values_ci<'a>(h: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    let mut spellings: Vec<(&str, Vec<&str>)> = h
        .iter()
        .filter(|(k, _)| AsRef::<str>::as_ref(*k).eq_ignore_ascii_case(name))
        .map(|(k, vs)| (k.as_ref(), vs.iter().map(|v| v.as_str()).collect()))
        .collect();
    spellings.sort_unstable_by(|a, b| a.0.cmp(b.0));
    spellings.into_iter().flat_map(|(_, vs)| vs).collect()
}

/// The `ce-*` headers by attribute name (lower case), each with every value given under any
/// spelling of its header name.
fn ce_headers(h: &HeaderMap) -> BTreeMap<String, Vec<&str>> {
    let mut out: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (name, values) in h.iter() {
        let name: &str = name.as_ref();
        let Some(attr) = name
            .get(..PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(PREFIX))
            .and_then(|_| name.get(PREFIX.len()..))
            .filter(|a| !a.is_empty())
        else {
            continue;
        };
        out.entry(attr.to_ascii_lowercase())
            .or_default()
            .extend(values.iter().map(|v| v.as_str()));
    }
    out
}

/// The one value of an attribute, or why there is not exactly one.
fn single<'a>(attr: &str, values: &[&'a str]) -> Result<Option<&'a str>, EventError> {
    match values {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => Err(EventError::new(
            attr,
            format!(
                "is given {} times in binary mode (header names that differ only in letter \
                 case name the same attribute); which one is meant is ambiguous",
                many.len()
            ),
        )),
    }
}

/// Percent-decodes a `ce-` value. A `%` that does not start a valid escape stays literal
/// (`100%`): the Go SDK 2.15 sends values unencoded (CONTRACT.md §2).
fn percent_decode(attr: &str, raw: &str) -> Result<String, EventError> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| EventError::new(attr, "percent-decodes to invalid UTF-8"))
}

/// The attributes of a binary-mode message, percent-decoded, or `None` if the message has
/// no `ce-specversion` (so it is not binary mode). `datacontenttype` travels as
/// `Content-Type` unless a `ce-datacontenttype` is given.
///
/// # Errors
/// [`DecodeError::Invalid`] naming the first attribute (in name order) given more than
/// once, or whose value percent-decodes to invalid UTF-8.
pub(super) fn binary_attributes(h: &HeaderMap) -> Result<Option<Map<String, Value>>, DecodeError> {
    let ce = ce_headers(h);
    if !ce.contains_key("specversion") {
        return Ok(None);
    }
    let mut attrs = Map::new();
    for (attr, values) in &ce {
        if let Some(raw) = single(attr, values).map_err(DecodeError::Invalid)? {
            let v = percent_decode(attr, raw).map_err(DecodeError::Invalid)?;
            attrs.insert(attr.clone(), Value::String(v));
        }
    }
    if !attrs.contains_key("datacontenttype") {
        let ct = header_values_ci(h, super::CONTENT_TYPE_HEADER);
        if let Some(ct) = single("datacontenttype", &ct).map_err(DecodeError::Invalid)? {
            attrs.insert("datacontenttype".into(), Value::String(ct.to_owned()));
        }
    }
    Ok(Some(attrs))
}

/// The string attributes `names` of a message that may not be a valid event, read as far as
/// possible, in the same mode [`super::Event::decode`] would pick: the `ce-` headers of a
/// binary-mode message, else the fields of a JSON object body. Each is `None` when it is
/// missing, not a string, given more than once, or not decodable.
pub(crate) fn lenient_attributes<const N: usize>(
    headers: Option<&HeaderMap>,
    body: &[u8],
    names: [&str; N],
) -> [Option<String>; N] {
    if let Some(ce) = headers
        .map(ce_headers)
        .filter(|ce| ce.contains_key("specversion"))
    {
        return names.map(|name| {
            let values = ce.get(name).map(Vec::as_slice).unwrap_or_default();
            let raw = single(name, values).ok().flatten()?;
            percent_decode(name, raw).ok()
        });
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => {
            names.map(|name| map.get(name).and_then(Value::as_str).map(str::to_owned))
        }
        _ => names.map(|_| None),
    }
}
