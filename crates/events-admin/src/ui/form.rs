//! Form and query fields as name/value pairs (a selection repeats `seq`), and the
//! dead-letter filter they carry: the filters of `eventctl dlq list`.

use events::dlq::{DeadLetterFilter, DeadLetterReason};
use events::{ConsumerName, EventType, OrganizationId, StreamName};
use maud::{Markup, html};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::UiError;

/// The fields of a form or query, in order. Empty values count as absent (browsers send
/// every field of a form).
#[derive(Debug, Clone, Default)]
pub(crate) struct Fields(pub(crate) Vec<(String, String)>);

impl Fields {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim())
    }

    pub(crate) fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim())
    }

    /// The CSRF token the form carried.
    pub(crate) fn csrf(&self) -> Option<&str> {
        self.get("_csrf")
    }
}

/// Names of the filter fields, as in `eventctl dlq list` and the API's query.
pub(crate) const FILTER_FIELDS: [&str; 7] = [
    "original_stream",
    "event_type",
    "organization",
    "reason",
    "consumer",
    "failed_from",
    "failed_to",
];

fn invalid(field: &str, detail: impl std::fmt::Display) -> UiError {
    UiError::bad_input(format!("invalid {field}: {detail}"))
}

fn time(f: &Fields, field: &str) -> Result<Option<OffsetDateTime>, UiError> {
    f.get(field)
        .map(|s| OffsetDateTime::parse(s, &Rfc3339).map_err(|e| invalid(field, e)))
        .transpose()
}

/// The dead-letter filter in `f`; each bad field is named.
///
/// # Errors
/// [`UiError::bad_input`] naming the field.
pub(crate) fn filter(f: &Fields) -> Result<DeadLetterFilter, UiError> {
    let mut out = DeadLetterFilter::new();
    if let Some(s) = f.get("original_stream") {
        out = out.original_stream(StreamName::new(s).map_err(|e| invalid("original_stream", e))?);
    }
    if let Some(s) = f.get("event_type") {
        out = out.event_type(EventType::new(s).map_err(|e| invalid("event_type", e))?);
    }
    if let Some(s) = f.get("organization") {
        out = out.organization(OrganizationId::new(s).map_err(|e| invalid("organization", e))?);
    }
    if let Some(s) = f.get("reason") {
        let r = DeadLetterReason::parse(s).ok_or_else(|| {
            invalid(
                "reason",
                "expected max_deliveries, permanent, undecodable or invalid",
            )
        })?;
        out = out.reason(r);
    }
    if let Some(s) = f.get("consumer") {
        out = out.consumer(ConsumerName::new(s).map_err(|e| invalid("consumer", e))?);
    }
    Ok(out.failed_between(time(f, "failed_from")?, time(f, "failed_to")?))
}

/// The filter fields of `f` as hidden inputs, so an action acts on what the page showed.
pub(crate) fn hidden_filter(f: &Fields) -> Markup {
    html! {
        @for name in FILTER_FIELDS {
            @if let Some(v) = f.get(name) { input type="hidden" name=(name) value=(v); }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        Fields(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn empty_fields_are_absent_and_bad_ones_named() {
        let f = fields(&[("reason", ""), ("seq", "3"), ("seq", " "), ("seq", "5")]);
        assert!(filter(&f).is_ok_and(|f| f.is_empty()));
        assert_eq!(f.all("seq").collect::<Vec<_>>(), ["3", "5"]);
        for (field, bad) in [
            ("reason", "bored"),
            ("event_type", "A B"),
            ("failed_from", "yesterday"),
        ] {
            let err = filter(&fields(&[(field, bad)])).expect_err(field);
            assert!(err.message.contains(field), "{}", err.message);
        }
    }
}
