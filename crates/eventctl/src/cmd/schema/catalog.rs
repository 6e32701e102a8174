//! `schema catalog`: docs/EVENT_CATALOG.md generated from the schemas (fields, types,
//! required, example `data`) and `schemas/catalog.toml` (prose, producers, consumers, the
//! example envelope). Each type gets one `## <type>` section with its attribute table,
//! field table and one complete example event, the shape `crates/events/tests/it/
//! dashboard.rs` reads and checks. The example is decoded with `events::Event::decode`
//! and validated against its schema before anything is written.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use events::Event;
use events::names::EventType;
use events::schema::{Schema, SchemaSet};
use events_admin::TypeParties;
use serde::Deserialize;
use serde_json::Value;

use super::{CatalogArgs, load};

/// `schemas/catalog.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    /// Markdown before the type sections; `{{domains_table}}` and `{{services_table}}`
    /// are replaced by the generated tables.
    head: String,
    /// Markdown after the type sections.
    tail: String,
    #[serde(default)]
    domains: Vec<DomainMeta>,
    #[serde(default)]
    services: Vec<ServiceMeta>,
    /// In the order of the sections.
    types: Vec<TypeMeta>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainMeta {
    /// `auth`, or a label such as `(dead letters)`.
    name: String,
    /// Default: the domain's stream (`AUTH_EVENTS`).
    stream: Option<String>,
    /// Default: `<name>.>`.
    subjects: Option<String>,
    /// Shown when the catalog has no type of this domain.
    #[serde(default)]
    note: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceMeta {
    name: String,
    role: String,
    consumes: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TypeMeta {
    #[serde(rename = "type")]
    event_type: String,
    /// The fact that happened, one paragraph.
    summary: String,
    /// The service that publishes it (the example's `source`).
    producer: String,
    /// Who consumes it and why (prose for the catalog).
    consumers: String,
    /// The consuming services by name, for the admin server's discovery document.
    #[serde(default)]
    consumed_by: Vec<String>,
    /// What the `subject` attribute holds.
    subject: String,
    example: ExampleMeta,
}

/// The example event's envelope; its `data` is the schema's first example.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExampleMeta {
    id: String,
    time: String,
    organizationid: String,
    subject: String,
    #[serde(default)]
    extensions: BTreeMap<String, String>,
}

/// Reads `meta_path` (`schemas/catalog.toml`).
fn read_meta(meta_path: &Path) -> anyhow::Result<Meta> {
    let text = std::fs::read_to_string(meta_path)
        .with_context(|| format!("cannot read {}", meta_path.display()))?;
    toml::from_str(&text).with_context(|| format!("{} is not valid", meta_path.display()))
}

/// The producers and consumers of each type of `meta_path`, for the discovery document.
pub(super) fn parties(meta_path: &Path) -> anyhow::Result<Vec<(String, TypeParties)>> {
    let meta = read_meta(meta_path)?;
    Ok(meta
        .types
        .into_iter()
        .map(|t| {
            let parties = TypeParties {
                producers: vec![t.producer],
                consumers: t.consumed_by,
            };
            (t.event_type, parties)
        })
        .collect())
}

/// Runs `schema catalog`.
pub(super) fn run(args: &CatalogArgs) -> anyhow::Result<()> {
    let set = load(&args.dir)?;
    let meta_path = args
        .meta
        .clone()
        .unwrap_or_else(|| args.dir.join("catalog.toml"));
    let meta = read_meta(&meta_path)?;
    let generated = generate(&set, &meta, &args.dir, &meta_path)?;
    let out = &args.out;
    if args.check {
        let current = std::fs::read_to_string(out).unwrap_or_default();
        if current != generated {
            let line = first_difference(&current, &generated);
            bail!(
                "{} is out of date (first difference at line {line}): run `eventctl schema catalog`",
                out.display()
            );
        }
        println!("{} is up to date", out.display());
        return Ok(());
    }
    std::fs::write(out, &generated).with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "{} written: {} type(s)",
        out.display(),
        set.latest().count()
    );
    Ok(())
}

/// The last component of `path`, so that the generated text does not depend on where the
/// command runs from (`schemas`, not `/home/ci/repo/schemas`).
fn shown_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn first_difference(a: &str, b: &str) -> usize {
    let same = a.lines().zip(b.lines()).take_while(|(x, y)| x == y).count();
    same + 1
}

fn generate(set: &SchemaSet, meta: &Meta, dir: &Path, meta_path: &Path) -> anyhow::Result<String> {
    let described: BTreeSet<&str> = meta.types.iter().map(|t| t.event_type.as_str()).collect();
    for schema in set.latest() {
        let ty = schema.key().event_type.as_str();
        if !described.contains(ty) {
            bail!(
                "{ty} has a schema but no [[types]] entry in {}",
                meta_path.display()
            );
        }
    }
    let mut out = format!(
        "<!-- Generated by `eventctl schema catalog` from {dir}/ and {dir}/{meta}: edit those, then run it again. -->\n\n",
        dir = shown_name(dir),
        meta = shown_name(meta_path)
    );
    let head = meta
        .head
        .replace("{{domains_table}}", domains_table(meta).trim_end())
        .replace("{{services_table}}", services_table(meta).trim_end());
    out.push_str(head.trim_end());
    out.push_str("\n\n");
    for t in &meta.types {
        let versions: Vec<&Schema> = set.versions(&t.event_type).collect();
        let Some(latest) = versions.last() else {
            bail!(
                "{} in {} has no schema in {}",
                t.event_type,
                meta_path.display(),
                dir.display()
            );
        };
        out.push_str(&section(t, latest, &versions, dir)?);
    }
    out.push_str(meta.tail.trim());
    out.push('\n');
    Ok(out)
}

fn domains_table(meta: &Meta) -> String {
    let mut s = String::from(
        "| domain | stream | subjects | event types in this catalog |\n| --- | --- | --- | --- |\n",
    );
    for d in &meta.domains {
        let types: Vec<String> = meta
            .types
            .iter()
            .filter(|t| EventType::new(&t.event_type).is_ok_and(|e| e.domain() == d.name))
            .map(|t| format!("`{}`", t.event_type))
            .collect();
        let stream = d
            .stream
            .clone()
            .unwrap_or_else(|| events::names::StreamName::for_domain(&d.name).to_string());
        let subjects = d
            .subjects
            .clone()
            .unwrap_or_else(|| format!("{}.>", d.name));
        let name = if d.name.starts_with('(') {
            d.name.clone()
        } else {
            format!("`{}`", d.name)
        };
        let listed = if types.is_empty() {
            d.note.clone()
        } else {
            types.join(", ")
        };
        let _ = writeln!(s, "| {name} | `{stream}` | `{subjects}` | {listed} |");
    }
    s
}

fn services_table(meta: &Meta) -> String {
    let mut s = String::from(
        "| service | role | publishes | consumes (group, filter) |\n| --- | --- | --- | --- |\n",
    );
    for svc in &meta.services {
        let published: Vec<String> = meta
            .types
            .iter()
            .filter(|t| t.producer == svc.name)
            .map(|t| format!("`{}`", t.event_type))
            .collect();
        let published = if published.is_empty() {
            "none".to_owned()
        } else {
            published.join(", ")
        };
        let _ = writeln!(
            s,
            "| `{}` | {} | {published} | {} |",
            svc.name, svc.role, svc.consumes
        );
    }
    s
}

fn section(
    t: &TypeMeta,
    schema: &Schema,
    versions: &[&Schema],
    dir: &Path,
) -> anyhow::Result<String> {
    let key = schema.key();
    let file = format!("{}/{}", shown_name(dir), key.file_path());
    let mut s = format!(
        "## {}\n\n{}\n\n| | |\n| --- | --- |\n",
        t.event_type,
        t.summary.trim()
    );
    let rows = [
        ("stream", format!("`{}`", key.event_type.stream_name())),
        ("producer", format!("`{}`", t.producer)),
        ("consumers", t.consumers.clone()),
        ("schemaversion", format!("`{}`", key.version)),
        ("dataschema", format!("`{}`", schema.uri())),
        ("schema", format!("[`{file}`](../{file})")),
        ("`subject`", t.subject.clone()),
    ];
    for (k, v) in rows {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    if versions.len() > 1 {
        let older: Vec<String> = versions[..versions.len() - 1]
            .iter()
            .map(|v| format!("`{}`", v.key().version))
            .collect();
        let _ = writeln!(s, "| older versions | {} |", older.join(", "));
    }
    s.push_str("\n`data`:\n\n| field | type | required | meaning |\n| --- | --- | --- | --- |\n");
    let doc = schema.document();
    for (name, prop, required) in fields(doc) {
        let meaning = prop
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("");
        let _ = writeln!(
            s,
            "| `{name}` | {} | {} | {} |",
            cell(&type_label(prop)),
            if required { "yes" } else { "no" },
            cell(meaning)
        );
    }
    let example = example_event(t, schema)?;
    let _ = write!(s, "\n```json\n{example}\n```\n\n");
    Ok(s)
}

/// Escapes `|` for a table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// Top-level fields: required ones in `required` order, then the others by name.
fn fields(doc: &Value) -> Vec<(String, &Value, bool)> {
    let Some(props) = doc.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    let required: Vec<&str> = doc
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out: Vec<(String, &Value, bool)> = required
        .iter()
        .filter_map(|n| props.get(*n).map(|p| ((*n).to_owned(), p, true)))
        .collect();
    for (name, prop) in props {
        if !required.contains(&name.as_str()) {
            out.push((name.clone(), prop, false));
        }
    }
    out
}

/// `string (UUID) or null`, `integer (≥ 1)`, `array of strings (...)`.
fn type_label(prop: &Value) -> String {
    let types: Vec<&str> = match prop.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let nullable = types.contains(&"null");
    let main: Vec<&str> = types.into_iter().filter(|t| *t != "null").collect();
    let mut label = match main.as_slice() {
        [] => "any".to_owned(),
        ["array"] => match prop.get("items") {
            Some(items) => format!("array of {}", plural(&type_label(items))),
            None => "array".to_owned(),
        },
        ts => ts.join(" or "),
    };
    let details = details(prop);
    if !details.is_empty() {
        let _ = write!(label, " ({})", details.join(", "));
    }
    if nullable {
        label.push_str(" or null");
    }
    label
}

fn plural(label: &str) -> String {
    match label.split_once(' ') {
        Some((head, rest)) => format!("{head}s {rest}"),
        None => format!("{label}s"),
    }
}

fn details(prop: &Value) -> Vec<String> {
    let num = |k: &str| prop.get(k).and_then(Value::as_f64);
    let mut d = Vec::new();
    match prop.get("format").and_then(Value::as_str) {
        Some("uuid") => d.push("UUID".to_owned()),
        Some("email") => d.push("e-mail address".to_owned()),
        Some("date-time") => d.push("RFC 3339 time".to_owned()),
        Some(other) => d.push(format!("format {other}")),
        None => {}
    }
    if let Some(values) = prop.get("enum").and_then(Value::as_array) {
        let v: Vec<String> = values
            .iter()
            .map(|v| {
                format!(
                    "`{}`",
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                )
            })
            .collect();
        d.push(format!("one of {}", v.join(", ")));
    }
    match (num("minLength"), num("maxLength")) {
        (Some(a), Some(b)) => d.push(format!("{a} to {b} characters")),
        (None, Some(b)) => d.push(format!("at most {b} characters")),
        (Some(a), None) => d.push(format!("at least {a} characters")),
        (None, None) => {}
    }
    if let Some(p) = prop.get("pattern").and_then(Value::as_str) {
        d.push(format!("pattern `{p}`"));
    }
    if let Some(m) = num("minimum") {
        d.push(format!("≥ {m}"));
    }
    if let Some(m) = num("maximum") {
        d.push(format!("≤ {m}"));
    }
    if let Some(m) = num("minItems") {
        d.push(format!("at least {m}"));
    }
    if prop.get("uniqueItems") == Some(&Value::Bool(true)) {
        d.push("no duplicates".to_owned());
    }
    d
}

/// The example event as JSON text; decoded and validated before it is returned.
fn example_event(t: &TypeMeta, schema: &Schema) -> anyhow::Result<String> {
    let key = schema.key();
    let Some(data) = schema.examples().first() else {
        bail!("{key} has no examples: the catalog shows the first");
    };
    let text = |s: &str| Value::String(s.to_owned());
    let e = &t.example;
    let mut pairs: Vec<(String, Value)> = vec![
        ("specversion".into(), text("1.0")),
        ("id".into(), text(&e.id)),
        ("source".into(), text(&t.producer)),
        ("type".into(), text(&t.event_type)),
        ("time".into(), text(&e.time)),
        ("organizationid".into(), text(&e.organizationid)),
        ("schemaversion".into(), text(&key.version.to_string())),
        ("datacontenttype".into(), text("application/json")),
        ("subject".into(), text(&e.subject)),
        ("dataschema".into(), text(schema.uri())),
    ];
    pairs.extend(e.extensions.iter().map(|(k, v)| (k.clone(), text(v))));
    let data_pairs = ordered_data(schema.document(), data);
    let mut out = String::from("{\n");
    for (k, v) in &pairs {
        let _ = writeln!(out, "  {}: {},", quoted(k), inline(v));
    }
    out.push_str("  \"data\": {\n");
    let n = data_pairs.len();
    for (i, (k, v)) in data_pairs.iter().enumerate() {
        let comma = if i + 1 < n { "," } else { "" };
        let _ = writeln!(out, "    {}: {}{comma}", quoted(k), inline(v));
    }
    out.push_str("  }\n}");
    let event = Event::decode(None, out.as_bytes())
        .with_context(|| format!("the catalog example of {key} is not a valid event"))?;
    schema
        .validate_value(&Value::Object(event.data().clone()))
        .with_context(|| format!("the catalog example of {key}"))?;
    Ok(out)
}

/// The example's members in the field-table order (then any others, by name).
fn ordered_data(doc: &Value, data: &Value) -> Vec<(String, Value)> {
    let Some(obj) = data.as_object() else {
        return Vec::new();
    };
    let mut out: Vec<(String, Value)> = fields(doc)
        .into_iter()
        .filter_map(|(name, _, _)| obj.get(&name).map(|v| (name, v.clone())))
        .collect();
    for (k, v) in obj {
        if !out.iter().any(|(n, _)| n == k) {
            out.push((k.clone(), v.clone()));
        }
    }
    out
}

fn quoted(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// One-line JSON with a space after each comma and colon: `["member", "admin"]`.
fn inline(v: &Value) -> String {
    match v {
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(inline).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", quoted(k), inline(v)))
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn type_labels_read_like_the_hand_written_catalog() {
        let cases = [
            (json!({"type": "string", "format": "uuid"}), "string (UUID)"),
            (
                json!({"type": ["string", "null"], "format": "uuid"}),
                "string (UUID) or null",
            ),
            (json!({"type": "integer", "minimum": 2}), "integer (≥ 2)"),
            (
                json!({"type": "string", "minLength": 1, "maxLength": 200}),
                "string (1 to 200 characters)",
            ),
            (
                json!({"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "minItems": 1}),
                "array of strings (one of `a`, `b`) (at least 1)",
            ),
            (
                json!({"type": "array", "items": {"type": "string"}}),
                "array of strings",
            ),
        ];
        for (prop, label) in cases {
            assert_eq!(type_label(&prop), label);
        }
    }

    #[test]
    fn fields_put_required_first_in_their_order() {
        let doc = json!({"required": ["b", "a"], "properties": {"a": {}, "b": {}, "c": {}}});
        let names: Vec<(String, bool)> = fields(&doc).into_iter().map(|(n, _, r)| (n, r)).collect();
        assert_eq!(
            names,
            [("b".into(), true), ("a".into(), true), ("c".into(), false)]
        );
    }

    #[test]
    fn inline_json_spaces_like_the_examples() {
        assert_eq!(inline(&json!(["a", 1, null])), r#"["a", 1, null]"#);
        assert_eq!(inline(&json!({"k": [true]})), r#"{ "k": [true] }"#);
    }

    #[test]
    fn first_difference_is_one_based() {
        assert_eq!(first_difference("a\nb\n", "a\nc\n"), 2);
        assert_eq!(first_difference("", "x"), 1);
    }
}
