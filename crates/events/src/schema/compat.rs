//! Backward compatibility between two versions of a schema, and the checks of a whole
//! [`SchemaSet`] (what `eventctl schema check` runs).
//!
//! A new minor must be **backward compatible** with the previous minor of its major: every
//! event valid under the old minor stays valid, and a consumer written for the old minor
//! reads the new events. [`compare`] walks both documents (`properties`, `items`) and
//! reports each [`Incompatibility`] with the field (a JSON pointer into `data`; `items`
//! stands for every element of an array) and the [`Rule`] it breaks:
//!
//! - no new required field without a `default` ([`Rule::RequiredAdded`]);
//! - no removed field ([`Rule::FieldRemoved`]), no field made optional
//!   ([`Rule::RequiredRemoved`]);
//! - no changed type: narrowed refuses old events, widened (`null` added) surprises old
//!   consumers ([`Rule::TypeNarrowed`], [`Rule::TypeWidened`], [`Rule::TypeChanged`]);
//! - no narrowed enumeration, and no value added to a closed one (an enumeration is open
//!   when the old schema says `"x-open-enum": true`) ([`Rule::EnumNarrowed`],
//!   [`Rule::EnumWidened`]);
//! - no narrowed limit (`minimum`, `maxLength`, `minItems`, `uniqueItems`, ...; raising a
//!   maximum is fine), no new or changed `pattern`, `format` or `const`, no object closed
//!   with `additionalProperties: false`;
//! - any other keyword that changed ([`Rule::KeywordChanged`]): its effect is not proven
//!   compatible, so it counts as breaking. Annotations (`title`, `description`,
//!   `examples`, `default`, `$comment`, `deprecated`, `x-*`) may change freely.
//!
//! A new major (`2.0`) is compared with nothing: breaking changes are what it is for.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

use super::{SchemaError, SchemaKey, SchemaSet, pointer_token};

/// A rule of backward compatibility.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Rule {
    /// A field became required (new, or optional before) without a `default`.
    RequiredAdded,
    /// A field the old version described is gone.
    FieldRemoved,
    /// A required field became optional.
    RequiredRemoved,
    /// The new type accepts less than the old one.
    TypeNarrowed,
    /// The new type accepts more (e.g. `null`): old consumers do not expect it.
    TypeWidened,
    /// The type changed to an unrelated one.
    TypeChanged,
    /// Enumeration values were removed (or an enumeration added).
    EnumNarrowed,
    /// Values were added to a closed enumeration.
    EnumWidened,
    /// `const` changed.
    ConstChanged,
    /// A limit now refuses values the old one accepted.
    LimitNarrowed,
    /// `pattern` is new or changed.
    PatternChanged,
    /// `format` is new, changed or removed.
    FormatChanged,
    /// `additionalProperties: false` refuses fields the old version let through.
    ClosedObject,
    /// Another keyword changed; its effect cannot be proven compatible.
    KeywordChanged,
}

impl Rule {
    /// The rule's short name, as printed.
    pub fn name(self) -> &'static str {
        match self {
            Self::RequiredAdded => "required-added",
            Self::FieldRemoved => "field-removed",
            Self::RequiredRemoved => "required-removed",
            Self::TypeNarrowed => "type-narrowed",
            Self::TypeWidened => "type-widened",
            Self::TypeChanged => "type-changed",
            Self::EnumNarrowed => "enum-narrowed",
            Self::EnumWidened => "enum-widened",
            Self::ConstChanged => "const-changed",
            Self::LimitNarrowed => "limit-narrowed",
            Self::PatternChanged => "pattern-changed",
            Self::FormatChanged => "format-changed",
            Self::ClosedObject => "closed-object",
            Self::KeywordChanged => "keyword-changed",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One breaking difference between two versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    /// JSON pointer of the field in `data` (`/email`; `/roles/items` for the elements).
    pub field: String,
    /// The rule it breaks.
    pub rule: Rule,
    /// What changed, in words.
    pub detail: String,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = if self.field.is_empty() {
            "data"
        } else {
            &self.field
        };
        write!(f, "field {field}: {} ({})", self.detail, self.rule)
    }
}

/// Keywords that describe and never constrain: free to change in a minor.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "title",
    "description",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
];
/// Keywords [`compare`] understands; any other is compared for equality.
const HANDLED: &[&str] = &[
    "type",
    "enum",
    "const",
    "pattern",
    "format",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "uniqueItems",
];
/// Lower bounds: raising one narrows.
const LOWER_BOUNDS: &[&str] = &[
    "minimum",
    "exclusiveMinimum",
    "minLength",
    "minItems",
    "minProperties",
];
/// Upper bounds: lowering one narrows.
const UPPER_BOUNDS: &[&str] = &[
    "maximum",
    "exclusiveMaximum",
    "maxLength",
    "maxItems",
    "maxProperties",
];

/// The breaking differences from `old` to `new` (empty: `new` is backward compatible).
pub fn compare(old: &Value, new: &Value) -> Vec<Incompatibility> {
    let mut out = Vec::new();
    compare_at("", old, new, &mut out);
    out
}

fn compare_at(field: &str, old: &Value, new: &Value, out: &mut Vec<Incompatibility>) {
    let mut push = |rule, detail: String| {
        out.push(Incompatibility {
            field: field.to_owned(),
            rule,
            detail,
        });
    };
    let (Some(o), Some(n)) = (old.as_object(), new.as_object()) else {
        if old != new {
            push(Rule::KeywordChanged, format!("schema {old} became {new}"));
        }
        return;
    };
    compare_types(o, n, &mut push);
    compare_enums(o, n, &mut push);
    compare_limits(o, n, &mut push);
    compare_words(o, n, &mut push);
    compare_others(o, n, &mut push);
    compare_properties(field, o, n, out);
    if let (Some(oi), Some(ni)) = (o.get("items"), n.get("items")) {
        compare_at(&format!("{field}/items"), oi, ni, out);
    }
}

/// The `type` keyword as a set (absent: any type).
fn types(schema: &Map<String, Value>) -> Option<BTreeSet<String>> {
    let t = schema.get("type")?;
    let list = match t {
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Value::String(s) => BTreeSet::from([s.clone()]),
        _ => BTreeSet::new(),
    };
    Some(list)
}

fn compare_types(
    o: &Map<String, Value>,
    n: &Map<String, Value>,
    push: &mut impl FnMut(Rule, String),
) {
    let (old, new) = (types(o), types(n));
    if old == new {
        return;
    }
    let show = |t: &Option<BTreeSet<String>>| match t {
        None => "any".to_owned(),
        Some(t) => t.iter().cloned().collect::<Vec<_>>().join(" or "),
    };
    let detail = format!("type {} became {}", show(&old), show(&new));
    let rule = match (&old, &new) {
        (None, Some(_)) => Rule::TypeNarrowed,
        (Some(_), None) => Rule::TypeWidened,
        (Some(o), Some(n)) if n.is_subset(o) => Rule::TypeNarrowed,
        (Some(o), Some(n)) if n.is_superset(o) => Rule::TypeWidened,
        _ => Rule::TypeChanged,
    };
    push(rule, detail);
}

fn compare_enums(
    o: &Map<String, Value>,
    n: &Map<String, Value>,
    push: &mut impl FnMut(Rule, String),
) {
    let values = |m: &Map<String, Value>| m.get("enum").and_then(Value::as_array).cloned();
    match (values(o), values(n)) {
        (Some(old), Some(new)) => {
            let removed: Vec<String> = old
                .iter()
                .filter(|v| !new.contains(v))
                .map(Value::to_string)
                .collect();
            if !removed.is_empty() {
                push(
                    Rule::EnumNarrowed,
                    format!("enum values removed: {}", removed.join(", ")),
                );
            }
            let added: Vec<String> = new
                .iter()
                .filter(|v| !old.contains(v))
                .map(Value::to_string)
                .collect();
            let open = o.get("x-open-enum") == Some(&Value::Bool(true));
            if !added.is_empty() && !open {
                push(
                    Rule::EnumWidened,
                    format!("values added to a closed enum: {}", added.join(", ")),
                );
            }
        }
        (None, Some(_)) => push(Rule::EnumNarrowed, "enum added".to_owned()),
        (Some(_), None) => push(Rule::EnumWidened, "enum removed".to_owned()),
        (None, None) => {}
    }
    if o.get("const") != n.get("const") {
        push(
            Rule::ConstChanged,
            format!("const {:?} became {:?}", o.get("const"), n.get("const")),
        );
    }
}

fn compare_limits(
    o: &Map<String, Value>,
    n: &Map<String, Value>,
    push: &mut impl FnMut(Rule, String),
) {
    let num = |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_f64);
    for (keywords, lower) in [(LOWER_BOUNDS, true), (UPPER_BOUNDS, false)] {
        for &k in keywords {
            let narrowed = match (num(o, k), num(n, k)) {
                (None, Some(_)) => true,
                (Some(a), Some(b)) => (lower && b > a) || (!lower && b < a),
                _ => false,
            };
            if narrowed {
                let show = |v: Option<f64>| v.map_or_else(|| "none".to_owned(), |v| v.to_string());
                push(
                    Rule::LimitNarrowed,
                    format!("{k} {} became {}", show(num(o, k)), show(num(n, k))),
                );
            }
        }
    }
    let unique = |m: &Map<String, Value>| m.get("uniqueItems") == Some(&Value::Bool(true));
    if unique(n) && !unique(o) {
        push(Rule::LimitNarrowed, "uniqueItems became true".to_owned());
    }
    let closed =
        |m: &Map<String, Value>| m.get("additionalProperties") == Some(&Value::Bool(false));
    if closed(n) && !closed(o) {
        push(
            Rule::ClosedObject,
            "additionalProperties became false".to_owned(),
        );
    }
}

fn compare_words(
    o: &Map<String, Value>,
    n: &Map<String, Value>,
    push: &mut impl FnMut(Rule, String),
) {
    let (op, np) = (o.get("pattern"), n.get("pattern"));
    if np.is_some() && op != np {
        push(
            Rule::PatternChanged,
            format!("pattern {op:?} became {np:?}"),
        );
    }
    let (of, nf) = (o.get("format"), n.get("format"));
    if of != nf {
        push(Rule::FormatChanged, format!("format {of:?} became {nf:?}"));
    }
}

/// Keywords neither handled nor annotations: any change is breaking.
fn compare_others(
    o: &Map<String, Value>,
    n: &Map<String, Value>,
    push: &mut impl FnMut(Rule, String),
) {
    let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    for k in keys {
        let k = k.as_str();
        let known = ANNOTATIONS.contains(&k)
            || HANDLED.contains(&k)
            || LOWER_BOUNDS.contains(&k)
            || UPPER_BOUNDS.contains(&k)
            || k.starts_with("x-");
        if !known && o.get(k) != n.get(k) {
            push(Rule::KeywordChanged, format!("keyword {k} changed"));
        }
    }
}

fn compare_properties(
    field: &str,
    o: &Map<String, Value>,
    n: &Map<String, Value>,
    out: &mut Vec<Incompatibility>,
) {
    let empty = Map::new();
    let props = |m: &Map<String, Value>| m.get("properties").and_then(Value::as_object).cloned();
    let (op, np) = (props(o).unwrap_or_default(), props(n).unwrap_or_default());
    let required = |m: &Map<String, Value>| -> BTreeSet<String> {
        m.get("required")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let (or, nr) = (required(o), required(n));
    let at = |name: &str| format!("{field}/{}", pointer_token(name));
    let mut push = |name: &str, rule, detail: &str| {
        out.push(Incompatibility {
            field: at(name),
            rule,
            detail: detail.to_owned(),
        });
    };
    for name in op.keys() {
        if !np.contains_key(name) {
            push(name, Rule::FieldRemoved, "removed");
        }
    }
    for name in nr.difference(&or) {
        let sub = np.get(name).and_then(Value::as_object).unwrap_or(&empty);
        if !sub.contains_key("default") {
            push(
                name,
                Rule::RequiredAdded,
                "required without a default: events of the previous version lack it",
            );
        }
    }
    for name in or.difference(&nr) {
        if np.contains_key(name) || !op.contains_key(name) {
            push(
                name,
                Rule::RequiredRemoved,
                "no longer required: consumers of the previous version expect it",
            );
        }
    }
    for (name, old) in &op {
        if let Some(new) = np.get(name) {
            compare_at(&at(name), old, new, out);
        }
    }
}

/// Something `eventctl schema check` reports about a [`SchemaSet`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Problem {
    /// `key` breaks backward compatibility with `previous`, the minor before it.
    Breaking {
        /// The newer version.
        key: SchemaKey,
        /// The version it is compared with.
        previous: SchemaKey,
        /// What breaks.
        incompatibility: Incompatibility,
    },
    /// An example of the document does not validate against it.
    InvalidExample {
        /// The schema.
        key: SchemaKey,
        /// Index in `examples`.
        index: usize,
        /// Why.
        error: SchemaError,
    },
    /// The document has no `examples`: the catalog needs one.
    NoExample {
        /// The schema.
        key: SchemaKey,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Breaking {
                key,
                previous,
                incompatibility,
            } => write!(
                f,
                "{key} is not backward compatible with {}: {incompatibility}; a breaking change needs a new major ({}.0)",
                previous.version,
                key.version.major + 1
            ),
            Self::InvalidExample { key, index, error } => {
                write!(f, "{key}: examples[{index}] is invalid: {error}")
            }
            Self::NoExample { key } => {
                write!(f, "{key}: no examples (the catalog shows the first)")
            }
        }
    }
}

/// Checks every schema of `set`: each minor against the previous minor of its major, and
/// each example against its own schema. Empty: all good.
pub fn check_set(set: &SchemaSet) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut previous: Option<&super::Schema> = None;
    for schema in set.iter() {
        let key = schema.key();
        if schema.examples().is_empty() {
            out.push(Problem::NoExample { key: key.clone() });
        }
        for (index, example) in schema.examples().iter().enumerate() {
            if let Err(error) = schema.validate_value(example) {
                out.push(Problem::InvalidExample {
                    key: key.clone(),
                    index,
                    error,
                });
            }
        }
        let same_major = previous.filter(|p| {
            p.key().event_type == key.event_type && p.key().version.major == key.version.major
        });
        if let Some(prev) = same_major {
            for incompatibility in compare(prev.document(), schema.document()) {
                out.push(Problem::Breaking {
                    key: key.clone(),
                    previous: prev.key().clone(),
                    incompatibility,
                });
            }
        }
        previous = Some(schema);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;

    fn user_created_1_0() -> Value {
        let file =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/auth.user.created/1.0.json");
        serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap()
    }

    /// `auth.user.created` 1.0 as `version`, changed by `edit`.
    fn derived(version: &str, edit: impl FnOnce(&mut Value)) -> Value {
        let mut doc = user_created_1_0();
        doc["$id"] = json!(format!("urn:events:schema:auth.user.created:{version}"));
        edit(&mut doc);
        doc
    }

    fn with_phone_required(doc: &mut Value) {
        doc["properties"]["phone"] = json!({"type": "string"});
        doc["required"].as_array_mut().unwrap().push(json!("phone"));
        for ex in doc["examples"].as_array_mut().unwrap() {
            ex["phone"] = json!("+44 20 7946 0000");
        }
    }

    fn set_of(docs: Vec<Value>) -> SchemaSet {
        let mut set = SchemaSet::new();
        for doc in docs {
            set.insert_document(doc).unwrap();
        }
        set
    }

    type Edit = Box<dyn FnOnce(&mut Value)>;

    fn rules(old: &Value, new: &Value) -> Vec<(String, Rule)> {
        compare(old, new)
            .into_iter()
            .map(|i| (i.field, i.rule))
            .collect()
    }

    #[test]
    fn a_required_field_added_as_1_1_fails_naming_the_field() {
        let set = set_of(vec![
            user_created_1_0(),
            derived("1.1", with_phone_required),
        ]);
        let problems = check_set(&set);
        assert_eq!(problems.len(), 1, "{problems:?}");
        let text = problems[0].to_string();
        assert!(
            text.contains("auth.user.created 1.1 is not backward compatible with 1.0"),
            "{text}"
        );
        assert!(text.contains("field /phone"), "{text}");
        assert!(text.contains("(required-added)"), "{text}");
        assert!(text.contains("needs a new major (2.0)"), "{text}");
    }

    #[test]
    fn the_same_change_as_2_0_passes() {
        let set = set_of(vec![
            user_created_1_0(),
            derived("2.0", with_phone_required),
        ]);
        assert_eq!(check_set(&set), vec![]);
    }

    #[test]
    fn an_optional_field_or_a_required_one_with_a_default_is_compatible() {
        let old = user_created_1_0();
        let optional = derived("1.1", |d| {
            d["properties"]["phone"] = json!({"type": "string"})
        });
        assert_eq!(rules(&old, &optional), vec![]);
        let defaulted = derived("1.1", |d| {
            with_phone_required(d);
            d["properties"]["phone"]["default"] = json!("");
        });
        assert_eq!(rules(&old, &defaulted), vec![]);
        // Descriptions, titles and examples change freely; a raised maximum is a widening.
        let reworded = derived("1.1", |d| {
            d["properties"]["email"]["description"] = json!("reworded");
            d["properties"]["display_name"]["maxLength"] = json!(300);
            d["examples"] = json!([]);
        });
        assert_eq!(rules(&old, &reworded), vec![]);
    }

    #[test]
    fn each_narrowing_is_named_with_its_field_and_rule() {
        let old = user_created_1_0();
        let cases: Vec<(Edit, &str, Rule)> = vec![
            (
                Box::new(|d| {
                    d["properties"]
                        .as_object_mut()
                        .unwrap()
                        .remove("invited_by");
                }),
                "/invited_by",
                Rule::FieldRemoved,
            ),
            (
                Box::new(|d| d["required"] = json!(["user_id", "email", "display_name", "roles"])),
                "/revision",
                Rule::RequiredRemoved,
            ),
            (
                Box::new(|d| d["properties"]["invited_by"]["type"] = json!("string")),
                "/invited_by",
                Rule::TypeNarrowed,
            ),
            (
                Box::new(|d| d["properties"]["email"]["type"] = json!(["string", "null"])),
                "/email",
                Rule::TypeWidened,
            ),
            (
                Box::new(|d| d["properties"]["revision"]["type"] = json!("string")),
                "/revision",
                Rule::TypeChanged,
            ),
            (
                Box::new(|d| d["properties"]["display_name"]["maxLength"] = json!(100)),
                "/display_name",
                Rule::LimitNarrowed,
            ),
            (
                Box::new(|d| d["properties"]["revision"]["minimum"] = json!(2)),
                "/revision",
                Rule::LimitNarrowed,
            ),
            (
                Box::new(|d| d["properties"]["roles"]["items"]["pattern"] = json!("^[a-z]+$")),
                "/roles/items",
                Rule::PatternChanged,
            ),
            (
                Box::new(|d| d["properties"]["user_id"]["format"] = json!("uri")),
                "/user_id",
                Rule::FormatChanged,
            ),
            (
                Box::new(|d| d["additionalProperties"] = json!(false)),
                "",
                Rule::ClosedObject,
            ),
            (
                Box::new(|d| d["properties"]["email"]["oneOf"] = json!([{"minLength": 3}])),
                "/email",
                Rule::KeywordChanged,
            ),
        ];
        for (edit, field, rule) in cases {
            let new = derived("1.1", edit);
            assert_eq!(
                rules(&old, &new),
                vec![(field.to_owned(), rule)],
                "{field} {rule}"
            );
        }
    }

    #[test]
    fn enums_may_not_narrow_nor_grow_unless_declared_open() {
        let old = json!({"type": "string", "enum": ["a", "b"]});
        let narrowed = json!({"type": "string", "enum": ["a"]});
        let grown = json!({"type": "string", "enum": ["a", "b", "c"]});
        assert_eq!(
            rules(&old, &narrowed),
            vec![(String::new(), Rule::EnumNarrowed)]
        );
        assert_eq!(
            rules(&old, &grown),
            vec![(String::new(), Rule::EnumWidened)]
        );
        let open = json!({"type": "string", "enum": ["a", "b"], "x-open-enum": true});
        assert_eq!(rules(&open, &grown), vec![]);
        let d = compare(&old, &grown).remove(0).detail;
        assert!(d.contains("\"c\""), "{d}");
    }

    #[test]
    fn invalid_or_missing_examples_are_reported() {
        let bad = derived("1.1", |d| d["examples"] = json!([{"user_id": 1}]));
        let none = derived("1.2", |d| {
            d.as_object_mut().unwrap().remove("examples");
        });
        let problems = check_set(&set_of(vec![user_created_1_0(), bad, none]));
        let texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 2, "{texts:?}");
        assert!(
            texts[0].starts_with("auth.user.created 1.1: examples[0] is invalid"),
            "{texts:?}"
        );
        assert_eq!(
            texts[1],
            "auth.user.created 1.2: no examples (the catalog shows the first)"
        );
    }
}
