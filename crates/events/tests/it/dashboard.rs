//! Integration tests: the Grafana dashboard names only exported metrics; the event
//! catalog's examples are valid events.
//!
//! No server is needed: the dashboard JSON (`deploy/grafana/dashboards/events.json`) is
//! compiled in and checked against what the crate itself declares:
//!
//! - the metric names of [`events::metrics::ALL`];
//! - each metric's kind (counter, gauge, histogram), read by running
//!   [`events::metrics::describe`] under a recording [`metrics::Recorder`];
//! - each metric's labels, read from the `name{label,...}` in the doc comment of its
//!   constant in `src/metrics.rs` (the same text as CONTRACT.md §5).
//!
//! Every PromQL expression of every panel and template variable goes through a small PromQL
//! lexer, so that a metric, function or label typo, a `_bucket` on a counter, a counter
//! graphed without `rate`, or a label the metric does not carry all fail the test, with
//! the panel named. The `checker_*` tests feed it known-bad queries to show that it can.
//!
//! The same file checks the example events of `docs/EVENT_CATALOG.md`: each decodes with
//! [`events::Event::decode`] and matches the table of its section (type, stream, producer,
//! schema version, dataschema, `data` fields).
//!
//! The provisioning YAML files are not parsed here: no YAML crate is in the lock file and
//! adding one for two small files is not worth it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use serde_json::Value;

/// The dashboard, compiled in so that editing it rebuilds and reruns this test.
const DASHBOARD: &str = include_str!("../../../../deploy/grafana/dashboards/events.json");
/// The metric constants and their doc comments (the labels are read from them).
const METRICS_RS: &str = include_str!("../../src/metrics.rs");
/// The plan's lag alert (issue #5: `eventctl lag` flags the same threshold).
const LAG_ALERT_THRESHOLD: f64 = 1000.0;
/// Grafana's grid is 24 columns wide.
const GRID_COLUMNS: i64 = 24;
/// The datasource every panel and target must use: the dashboard's datasource variable.
const DS_UID: &str = "${DS_PROMETHEUS}";
/// Labels Prometheus adds at scrape time (`service` comes from deploy/prometheus.yml).
const TARGET_LABELS: &[&str] = &["job", "instance", "service"];

const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "count_over_time",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_avg",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_sum",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "time",
    "timestamp",
    "vector",
    "year",
];
/// Keywords that take a parenthesised label list.
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// Binary operators and modifiers spelled as words.
const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "atan2"];
/// Functions whose argument is a per-second or per-window change: counters go in here.
const RATE_FUNCTIONS: &[&str] = &["rate", "irate", "increase"];
/// Series a Prometheus histogram is exported as.
const HISTOGRAM_SUFFIXES: &[&str] = &["_bucket", "_sum", "_count"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A recorder that only remembers what `describe_*` said about each metric.
#[derive(Default)]
struct KindRecorder(Mutex<BTreeMap<String, Kind>>);

impl KindRecorder {
    fn note(&self, key: metrics::KeyName, kind: Kind) {
        self.0.lock().unwrap().insert(key.as_str().to_owned(), kind);
    }
}

impl metrics::Recorder for KindRecorder {
    fn describe_counter(
        &self,
        key: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
        self.note(key, Kind::Counter);
    }
    fn describe_gauge(
        &self,
        key: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
        self.note(key, Kind::Gauge);
    }
    fn describe_histogram(
        &self,
        key: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
        self.note(key, Kind::Histogram);
    }
    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::noop()
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

/// What the crate declares about its metrics: kind and labels, per name of `ALL`.
struct Catalog {
    kinds: BTreeMap<&'static str, Kind>,
    labels: BTreeMap<&'static str, BTreeSet<String>>,
}

impl Catalog {
    fn load() -> Self {
        let recorder = KindRecorder::default();
        metrics::with_local_recorder(&recorder, events::metrics::describe);
        let described = recorder.0.into_inner().unwrap();
        let mut kinds = BTreeMap::new();
        let mut labels = BTreeMap::new();
        for &name in events::metrics::ALL {
            let kind = *described
                .get(name)
                .unwrap_or_else(|| panic!("metrics::describe() does not describe `{name}`"));
            kinds.insert(name, kind);
            labels.insert(name, documented_labels(name));
        }
        Self { kinds, labels }
    }

    /// Splits `event_handler_duration_seconds_bucket` into the exported metric and suffix.
    fn resolve<'a>(&self, series: &'a str) -> Option<(&'static str, Option<&'a str>)> {
        if let Some((&name, _)) = self.kinds.get_key_value(series) {
            return Some((name, None));
        }
        HISTOGRAM_SUFFIXES.iter().find_map(|suffix| {
            let base = series.strip_suffix(suffix)?;
            let (&name, _) = self.kinds.get_key_value(base)?;
            Some((name, Some(&series[base.len()..])))
        })
    }
}

/// The labels in the `name{a,b}` of the metric's doc comment in `src/metrics.rs`.
fn documented_labels(name: &str) -> BTreeSet<String> {
    let needle = format!("`{name}{{");
    let start = METRICS_RS.find(&needle).unwrap_or_else(|| {
        panic!("src/metrics.rs documents no `{name}{{labels}}`; the dashboard test reads labels from there")
    }) + needle.len();
    let end = start
        + METRICS_RS[start..]
            .find("}`")
            .unwrap_or_else(|| panic!("unterminated label list of `{name}` in src/metrics.rs"));
    METRICS_RS[start..end]
        .split(',')
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

// ---------------------------------------------------------------------------------------
// A PromQL lexer and a walk over its tokens: enough to find metric names, functions,
// matcher labels and grouping labels, and to know which functions enclose each metric.

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    /// A number, a duration (`5m`) or a Grafana variable (`$__rate_interval`).
    Scalar,
    Open(char),
    Close(char),
    Comma,
    Op(String),
}

fn lex(expr: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let ident_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' || c == '`' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(format!("unterminated string in `{expr}`")),
                    Some(&q) if q == c => break,
                    Some('\\') if c != '`' => {
                        s.push(*chars.get(i + 1).ok_or("dangling backslash")?);
                        i += 2;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            i += 1;
            out.push(Tok::Str(s));
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && ident_char(chars[i]) {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() || c == '.' || c == '$' {
            i += 1;
            while i < chars.len() && (ident_char(chars[i]) || chars[i] == '.') {
                i += 1;
            }
            out.push(Tok::Scalar);
        } else if "({[".contains(c) {
            out.push(Tok::Open(c));
            i += 1;
        } else if ")}]".contains(c) {
            out.push(Tok::Close(c));
            i += 1;
        } else if c == ',' {
            out.push(Tok::Comma);
            i += 1;
        } else if "=!~<>+-*/%^".contains(c) {
            let start = i;
            while i < chars.len() && "=!~<>+-*/%^".contains(chars[i]) {
                i += 1;
            }
            out.push(Tok::Op(chars[start..i].iter().collect()));
        } else {
            return Err(format!("unexpected character {c:?} in `{expr}`"));
        }
    }
    Ok(out)
}

/// One metric selector in an expression.
#[derive(Debug)]
struct MetricRef {
    /// The series name as written (`..._bucket` included).
    series: String,
    /// Functions and aggregations enclosing it, outermost first.
    enclosing: Vec<String>,
    /// Label names of its matchers.
    matcher_labels: Vec<String>,
}

#[derive(Debug, Default)]
struct Parsed {
    metrics: Vec<MetricRef>,
    /// Labels named in `by (...)`, `without (...)`, `on (...)`, ...
    grouping_labels: Vec<String>,
}

enum Ctx {
    Call(String),
    Paren,
    Group,
    /// Matchers of the metrics at these indices of `Parsed::metrics`.
    Matchers(Vec<usize>),
    Range,
}

impl Ctx {
    fn closer(&self) -> char {
        match self {
            Ctx::Call(_) | Ctx::Paren | Ctx::Group => ')',
            Ctx::Matchers(_) => '}',
            Ctx::Range => ']',
        }
    }
}

fn parse(expr: &str) -> Result<Parsed, String> {
    let toks = lex(expr)?;
    let mut out = Parsed::default();
    let mut stack: Vec<Ctx> = Vec::new();
    let mut pending_aggregation: Option<String> = None;
    let enclosing = |stack: &[Ctx]| -> Vec<String> {
        stack
            .iter()
            .filter_map(|c| match c {
                Ctx::Call(f) => Some(f.clone()),
                _ => None,
            })
            .collect()
    };
    let mut i = 0;
    while i < toks.len() {
        let next = toks.get(i + 1);
        let in_range = matches!(stack.last(), Some(Ctx::Range));
        let in_group = matches!(stack.last(), Some(Ctx::Group));
        let matcher_owners = match stack.last() {
            Some(Ctx::Matchers(o)) => Some(o.clone()),
            _ => None,
        };
        match &toks[i] {
            Tok::Close(c) => match stack.pop() {
                Some(ctx) if ctx.closer() == *c => {}
                _ => return Err(format!("unbalanced `{c}` in `{expr}`")),
            },
            _ if in_range => {}
            Tok::Ident(label) if matcher_owners.is_some() => {
                let mut owners = matcher_owners.unwrap_or_default();
                if label == "__name__" {
                    let (Some(Tok::Op(op)), Some(Tok::Str(names))) = (next, toks.get(i + 2)) else {
                        return Err(format!("`__name__` without a matcher in `{expr}`"));
                    };
                    if op != "=" && op != "=~" {
                        return Err(format!("`__name__{op}` selects no names in `{expr}`"));
                    }
                    for name in names.split('|') {
                        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                            return Err(format!(
                                "`__name__` alternative {name:?} is not a plain metric name in `{expr}`"
                            ));
                        }
                        owners.push(out.metrics.len());
                        out.metrics.push(MetricRef {
                            series: name.to_owned(),
                            enclosing: enclosing(&stack),
                            matcher_labels: Vec::new(),
                        });
                    }
                    if let Some(Ctx::Matchers(o)) = stack.last_mut() {
                        *o = owners;
                    }
                } else {
                    for o in owners {
                        out.metrics[o].matcher_labels.push(label.clone());
                    }
                }
                // The label, its operator and its value.
                i += 3;
                continue;
            }
            Tok::Ident(label) if in_group => out.grouping_labels.push(label.clone()),
            Tok::Ident(word) => {
                let w = word.as_str();
                if next == Some(&Tok::Open('(')) {
                    if GROUPING.contains(&w) {
                        stack.push(Ctx::Group);
                    } else if FUNCTIONS.contains(&w) || AGGREGATIONS.contains(&w) {
                        stack.push(Ctx::Call(word.clone()));
                    } else {
                        return Err(format!("unknown function `{w}` in `{expr}`"));
                    }
                    i += 2;
                    continue;
                }
                if AGGREGATIONS.contains(&w)
                    && matches!(next, Some(Tok::Ident(k)) if k == "by" || k == "without")
                {
                    pending_aggregation = Some(word.clone());
                } else if w == "offset" {
                    i += 2;
                    continue;
                } else if KEYWORDS.contains(&w) || GROUPING.contains(&w) {
                    // `and`, `or`, `bool`, or a grouping keyword whose list follows.
                } else {
                    out.metrics.push(MetricRef {
                        series: word.clone(),
                        enclosing: enclosing(&stack),
                        matcher_labels: Vec::new(),
                    });
                    if next == Some(&Tok::Open('{')) {
                        stack.push(Ctx::Matchers(vec![out.metrics.len() - 1]));
                        i += 2;
                        continue;
                    }
                }
            }
            Tok::Open('(') => match pending_aggregation.take() {
                Some(agg) => stack.push(Ctx::Call(agg)),
                None => stack.push(Ctx::Paren),
            },
            Tok::Open('{') => stack.push(Ctx::Matchers(Vec::new())),
            Tok::Open('[') => stack.push(Ctx::Range),
            _ => {}
        }
        i += 1;
    }
    if let Some(ctx) = stack.last() {
        return Err(format!("missing `{}` in `{expr}`", ctx.closer()));
    }
    Ok(out)
}

/// Grafana variables used in an expression (`$consumer`, `${consumer}`), builtins excluded.
fn variables_in(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (pos, _) in expr.match_indices('$') {
        let rest = expr[pos + 1..].trim_start_matches('{');
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && !name.starts_with("__") {
            out.insert(name);
        }
    }
    out
}

/// Where a query comes from: a panel target or a template variable.
#[derive(Clone, Copy, PartialEq)]
enum Use {
    Panel,
    Variable,
}

/// Checks one expression against the catalog. Returns the exported metrics it names, or
/// every problem found.
fn check_expr(
    cat: &Catalog,
    expr: &str,
    used_as: Use,
) -> Result<BTreeSet<&'static str>, Vec<String>> {
    let parsed = parse(expr).map_err(|e| vec![e])?;
    let mut problems = Vec::new();
    let mut named = BTreeSet::new();
    let mut allowed_grouping: BTreeSet<String> =
        TARGET_LABELS.iter().map(|l| (*l).to_owned()).collect();
    if parsed.metrics.is_empty() {
        problems.push(format!("`{expr}` names no metric"));
    }
    for m in &parsed.metrics {
        let Some((name, suffix)) = cat.resolve(&m.series) else {
            problems.push(format!(
                "`{}` is not an exported metric (events::metrics::ALL, optionally with _bucket/_sum/_count)",
                m.series
            ));
            continue;
        };
        named.insert(name);
        let kind = cat.kinds[name];
        let in_rate = m
            .enclosing
            .iter()
            .any(|f| RATE_FUNCTIONS.contains(&f.as_str()));
        match (kind, suffix) {
            (Kind::Histogram, None) => problems.push(format!(
                "`{name}` is a histogram: query `{name}_bucket` (or _sum/_count), the bare name has no series"
            )),
            (Kind::Counter | Kind::Gauge, Some(s)) => problems.push(format!(
                "`{}`: `{name}` is a {kind:?}, it has no `{s}` series",
                m.series
            )),
            (Kind::Gauge, None) if in_rate => problems.push(format!(
                "`{name}` is a gauge: rate/irate/increase of a gauge is meaningless"
            )),
            (Kind::Counter, _) | (Kind::Histogram, Some(_)) if used_as == Use::Panel && !in_rate => {
                problems.push(format!(
                    "`{}` is a counter: graph it through rate() or increase()",
                    m.series
                ))
            }
            _ => {}
        }
        if suffix == Some("_bucket")
            && used_as == Use::Panel
            && !m.enclosing.iter().any(|f| f == "histogram_quantile")
        {
            problems.push(format!("`{}` outside histogram_quantile()", m.series));
        }
        let mut labels = cat.labels[name].clone();
        if suffix == Some("_bucket") {
            labels.insert("le".to_owned());
        }
        labels.extend(TARGET_LABELS.iter().map(|l| (*l).to_owned()));
        for l in &m.matcher_labels {
            if !labels.contains(l) {
                problems.push(format!(
                    "`{}` has no label `{l}` (it has {:?})",
                    m.series, cat.labels[name]
                ));
            }
        }
        allowed_grouping.extend(labels);
    }
    for l in &parsed.grouping_labels {
        if !allowed_grouping.contains(l) {
            problems.push(format!(
                "grouping by `{l}`, a label none of the metrics of `{expr}` has"
            ));
        }
    }
    if problems.is_empty() {
        Ok(named)
    } else {
        Err(problems)
    }
}

/// Checks a variable query `label_values(<selector>, <label>)`: the selector as PromQL,
/// and the label on every metric it selects.
fn check_label_values(cat: &Catalog, query: &str) -> Result<(), Vec<String>> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .ok_or_else(|| {
            vec![format!(
                "`{query}` is not label_values(<selector>, <label>)"
            )]
        })?;
    let (selector, label) = inner
        .rsplit_once(',')
        .ok_or_else(|| vec![format!("`{query}` has no label argument")])?;
    let label = label.trim();
    check_expr(cat, selector, Use::Variable)?;
    let parsed = parse(selector).map_err(|e| vec![e])?;
    let problems: Vec<String> = parsed
        .metrics
        .iter()
        .filter_map(|m| {
            let (name, _) = cat.resolve(&m.series)?;
            (!cat.labels[name].contains(label))
                .then(|| format!("`{query}`: `{}` has no label `{label}`", m.series))
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

// ---------------------------------------------------------------------------------------
// Reading the dashboard.

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("deploy/grafana/dashboards/events.json is not JSON")
}

fn str_field<'a>(v: &'a Value, key: &str, what: &str) -> &'a str {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| panic!("{what}: `{key}` missing, empty or not a string"))
}

fn panels(dash: &Value) -> &Vec<Value> {
    dash["panels"]
        .as_array()
        .expect("dashboard: `panels` is not an array")
}

fn is_row(panel: &Value) -> bool {
    panel["type"] == "row"
}

/// `(panel title, refId, expr)` of every target of every panel.
fn panel_exprs(dash: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for p in panels(dash).iter().filter(|p| !is_row(p)) {
        let title = str_field(p, "title", "panel");
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                title.to_owned(),
                str_field(t, "refId", title).to_owned(),
                str_field(t, "expr", title).to_owned(),
            ));
        }
    }
    out
}

fn variables(dash: &Value) -> &Vec<Value> {
    dash["templating"]["list"]
        .as_array()
        .expect("dashboard: `templating.list` is not an array")
}

fn variable_query(var: &Value) -> &str {
    match &var["query"] {
        Value::String(s) => s,
        q => q["query"]
            .as_str()
            .unwrap_or_else(|| panic!("variable {}: no query string", var["name"])),
    }
}

// ---------------------------------------------------------------------------------------
// The tests.

#[test]
fn dashboard_has_the_shape_grafana_loads() {
    let dash = dashboard();
    let what = "dashboard";
    str_field(&dash, "title", what);
    let uid = str_field(&dash, "uid", what);
    assert!(
        uid.len() <= 40,
        "dashboard uid {uid:?} is longer than Grafana's 40 characters"
    );
    let schema = dash["schemaVersion"]
        .as_i64()
        .expect("dashboard: `schemaVersion` is not an integer");
    assert!(
        (36..=41).contains(&schema),
        "schemaVersion {schema} is not one of Grafana 10/11's"
    );
    assert!(
        dash["id"].is_null(),
        "a provisioned dashboard must not carry a database id"
    );

    let panels = panels(&dash);
    assert!(!panels.is_empty(), "dashboard has no panels");
    let mut ids = BTreeSet::new();
    let mut boxes: Vec<(String, [i64; 4])> = Vec::new();
    for p in panels {
        let title = str_field(p, "title", "panel");
        str_field(p, "type", title);
        let id = p["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("panel {title:?}: `id` is not an integer"));
        assert!(ids.insert(id), "panel {title:?}: id {id} is used twice");
        let g = &p["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| {
            g[k].as_i64()
                .unwrap_or_else(|| panic!("panel {title:?}: gridPos.{k} is not an integer"))
        });
        assert!(
            x >= 0 && y >= 0 && w > 0 && h > 0 && x + w <= GRID_COLUMNS,
            "panel {title:?}: gridPos {g} is outside the {GRID_COLUMNS}-column grid"
        );
        for (other, [ox, oy, ow, oh]) in &boxes {
            let overlap = x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h;
            assert!(!overlap, "panels {title:?} and {other:?} overlap");
        }
        boxes.push((title.to_owned(), [x, y, w, h]));

        if is_row(p) {
            assert!(
                p.get("targets").is_none(),
                "row {title:?} must not have targets"
            );
            continue;
        }
        assert_eq!(
            p["datasource"]["uid"], DS_UID,
            "panel {title:?}: datasource must be the DS_PROMETHEUS variable"
        );
        let targets = p["targets"]
            .as_array()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| panic!("panel {title:?}: no targets"));
        let mut refs = BTreeSet::new();
        for t in targets {
            let r = str_field(t, "refId", title);
            assert!(refs.insert(r), "panel {title:?}: refId {r} is used twice");
            str_field(t, "expr", title);
            assert_eq!(
                t["datasource"]["uid"], DS_UID,
                "panel {title:?} target {r}: datasource must be the DS_PROMETHEUS variable"
            );
        }
    }

    let vars = variables(&dash);
    let find = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("templating has no variable `{name}`"))
    };
    let ds = find("DS_PROMETHEUS");
    assert_eq!(
        ds["type"], "datasource",
        "DS_PROMETHEUS must be a datasource variable"
    );
    assert_eq!(
        ds["query"], "prometheus",
        "DS_PROMETHEUS must list Prometheus datasources"
    );
    for name in ["event_type", "consumer"] {
        let v = find(name);
        assert_eq!(
            v["type"], "query",
            "variable `{name}` must be a query variable"
        );
        assert_eq!(
            v["datasource"]["uid"], DS_UID,
            "variable `{name}` must query the DS_PROMETHEUS datasource"
        );
    }
}

#[test]
fn dashboard_queries_name_only_exported_metrics_with_their_labels() {
    let cat = Catalog::load();
    let dash = dashboard();
    let defined: BTreeSet<String> = variables(&dash)
        .iter()
        .map(|v| str_field(v, "name", "variable").to_owned())
        .collect();
    let mut problems = Vec::new();
    let exprs = panel_exprs(&dash);
    assert!(!exprs.is_empty(), "no panel has a query");
    for (title, ref_id, expr) in &exprs {
        if let Err(p) = check_expr(&cat, expr, Use::Panel) {
            problems.extend(
                p.into_iter()
                    .map(|p| format!("panel {title:?} {ref_id}: {p}")),
            );
        }
        for var in variables_in(expr).difference(&defined) {
            problems.push(format!(
                "panel {title:?} {ref_id}: `${var}` is not a template variable"
            ));
        }
    }
    for v in variables(&dash).iter().filter(|v| v["type"] == "query") {
        let q = variable_query(v);
        if let Err(p) = check_label_values(&cat, q) {
            problems.extend(
                p.into_iter()
                    .map(|p| format!("variable {}: {p}", v["name"])),
            );
        }
    }
    assert!(
        problems.is_empty(),
        "dashboard queries that do not match the exported metrics:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn dashboard_shows_every_exported_metric() {
    let cat = Catalog::load();
    let mut shown = BTreeSet::new();
    for (title, ref_id, expr) in panel_exprs(&dashboard()) {
        let named = check_expr(&cat, &expr, Use::Panel)
            .unwrap_or_else(|p| panic!("panel {title:?} {ref_id}: {p:?}"));
        shown.extend(named);
    }
    let missing: Vec<&str> = events::metrics::ALL
        .iter()
        .copied()
        .filter(|m| !shown.contains(m))
        .collect();
    assert!(
        missing.is_empty(),
        "exported metrics no panel shows: {missing:?}"
    );
}

#[test]
fn dashboard_lag_panel_marks_the_alert_threshold() {
    let dash = dashboard();
    let lag_panels: Vec<&Value> = panels(&dash)
        .iter()
        .filter(|p| {
            p["targets"].as_array().into_iter().flatten().any(|t| {
                parse(t["expr"].as_str().unwrap_or_default()).is_ok_and(|q| {
                    q.metrics
                        .iter()
                        .any(|m| m.series == events::metrics::SUBSCRIPTION_LAG)
                })
            })
        })
        .collect();
    assert!(!lag_panels.is_empty(), "no panel shows subscription_lag");
    for p in lag_panels {
        let defaults = &p["fieldConfig"]["defaults"];
        let steps: Vec<f64> = defaults["thresholds"]["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["value"].as_f64())
            .collect();
        assert!(
            steps.contains(&LAG_ALERT_THRESHOLD),
            "panel {}: thresholds {steps:?} lack the alert at {LAG_ALERT_THRESHOLD}",
            p["title"]
        );
        let style = defaults["custom"]["thresholdsStyle"]["mode"]
            .as_str()
            .unwrap_or("off");
        assert_ne!(
            style, "off",
            "panel {}: the threshold is not drawn",
            p["title"]
        );
    }
}

// The checker itself: known-bad queries must be refused, with a message naming the problem.

fn refused(expr: &str, used_as: Use) -> String {
    match check_expr(&Catalog::load(), expr, used_as) {
        Ok(named) => panic!("`{expr}` was accepted (names {named:?})"),
        Err(p) => p.join("; "),
    }
}

#[test]
fn checker_accepts_a_correct_query() {
    let named = check_expr(
        &Catalog::load(),
        r#"histogram_quantile(0.9, sum by (le, consumer) (rate(event_end_to_end_seconds_bucket{consumer=~"$consumer"}[5m])))"#,
        Use::Panel,
    )
    .unwrap();
    assert_eq!(
        named,
        BTreeSet::from([events::metrics::EVENT_END_TO_END_SECONDS])
    );
}

#[test]
fn checker_refuses_a_misspelt_metric() {
    let p = refused("sum(rate(events_publish_total[5m]))", Use::Panel);
    assert!(
        p.contains("`events_publish_total` is not an exported metric"),
        "{p}"
    );
}

#[test]
fn checker_refuses_an_unknown_function() {
    let p = refused(
        "histgram_quantile(0.5, sum by (le) (rate(event_handler_duration_seconds_bucket[5m])))",
        Use::Panel,
    );
    assert!(p.contains("unknown function `histgram_quantile`"), "{p}");
}

#[test]
fn checker_refuses_a_label_the_metric_lacks() {
    // events_consumed_total is labelled by event_type and status, not by consumer.
    let p = refused(
        r#"sum(rate(events_consumed_total{consumer="c"}[5m]))"#,
        Use::Panel,
    );
    assert!(p.contains("has no label `consumer`"), "{p}");
    let p = refused(
        "sum by (reason) (rate(events_published_total[5m]))",
        Use::Panel,
    );
    assert!(p.contains("grouping by `reason`"), "{p}");
}

#[test]
fn checker_refuses_kind_mistakes() {
    let p = refused("rate(events_published_total_bucket[5m])", Use::Panel);
    assert!(p.contains("it has no `_bucket` series"), "{p}");
    let p = refused("rate(subscription_lag[5m])", Use::Panel);
    assert!(p.contains("is a gauge"), "{p}");
    let p = refused("sum(events_dead_lettered_total)", Use::Panel);
    assert!(p.contains("graph it through rate() or increase()"), "{p}");
    let p = refused("rate(event_publish_duration_seconds[5m])", Use::Panel);
    assert!(p.contains("is a histogram"), "{p}");
}

#[test]
fn checker_reads_name_matchers_and_variable_queries() {
    let cat = Catalog::load();
    check_label_values(
        &cat,
        r#"label_values({__name__=~"subscription_lag|event_handler_duration_seconds_count"}, consumer)"#,
    )
    .unwrap();
    let p = check_label_values(
        &cat,
        r#"label_values({__name__=~"subscription_lag|events_published_total"}, consumer)"#,
    )
    .unwrap_err()
    .join("; ");
    assert!(
        p.contains("`events_published_total` has no label `consumer`"),
        "{p}"
    );
    let p = check_label_values(
        &cat,
        r#"label_values({__name__="subscripton_lag"}, stream)"#,
    )
    .unwrap_err()
    .join("; ");
    assert!(
        p.contains("`subscripton_lag` is not an exported metric"),
        "{p}"
    );
}

// ---------------------------------------------------------------------------------------
// docs/EVENT_CATALOG.md: its example events are valid events that match their section.

/// The catalog, compiled in so that editing it reruns these tests.
const CATALOG: &str = include_str!("../../../../docs/EVENT_CATALOG.md");
/// The types the example services publish (issue #5); the catalog must describe each.
const CATALOGUED: &[&str] = &[
    "auth.user.created",
    "auth.user.updated",
    "auth.user.deleted",
    "auth.organization.created",
];

/// One `## <type>` section of the catalog.
#[derive(Debug, Default)]
struct CatalogEntry {
    ty: String,
    /// Rows of the attribute table: `stream`, `producer`, `schemaversion`, `dataschema`, ...
    rows: BTreeMap<String, String>,
    /// `data` fields and whether each is required.
    fields: BTreeMap<String, bool>,
    /// The example events (```json blocks).
    examples: Vec<String>,
}

/// Backticks removed, trimmed.
fn cell(s: &str) -> String {
    s.trim().trim_matches('`').trim().to_owned()
}

/// Sections whose heading is an event type; the template (inside a ```` fence) is skipped.
fn catalog_entries() -> Vec<CatalogEntry> {
    let mut out: Vec<CatalogEntry> = Vec::new();
    let mut in_template = false;
    let mut example: Option<String> = None;
    for line in CATALOG.lines() {
        if line.starts_with("````") {
            in_template = !in_template;
            continue;
        }
        if in_template {
            continue;
        }
        if let Some(buf) = example.as_mut() {
            if line.trim_end() == "```" {
                let done = example.take().unwrap_or_default();
                let entry = out
                    .last_mut()
                    .expect("a ```json example outside an event section");
                entry.examples.push(done);
            } else {
                buf.push_str(line);
                buf.push('\n');
            }
            continue;
        }
        if let Some(heading) = line.strip_prefix("## ") {
            // A section that is not an event type ends the previous event's section.
            let ty = events::names::EventType::new(heading.trim())
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default();
            out.push(CatalogEntry {
                ty,
                ..CatalogEntry::default()
            });
            continue;
        }
        let Some(entry) = out.last_mut().filter(|e| !e.ty.is_empty()) else {
            continue;
        };
        if line.trim_end() == "```json" {
            example = Some(String::new());
        } else if line.starts_with('|') {
            let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
            match cells.len() {
                2 => {
                    entry.rows.insert(cell(cells[0]), cell(cells[1]));
                }
                4 if cells[0].trim().starts_with('`') => {
                    let required = match cell(cells[2]).as_str() {
                        "yes" => true,
                        "no" => false,
                        other => panic!("{}: field {}: required is {other:?}", entry.ty, cells[0]),
                    };
                    entry.fields.insert(cell(cells[0]), required);
                }
                _ => {}
            }
        }
    }
    out.retain(|e| !e.ty.is_empty());
    out
}

#[test]
fn catalog_examples_are_valid_events_matching_their_section() {
    let entries = catalog_entries();
    let described: BTreeSet<&str> = entries.iter().map(|e| e.ty.as_str()).collect();
    for ty in CATALOGUED {
        assert!(
            described.contains(ty),
            "docs/EVENT_CATALOG.md has no section `## {ty}`"
        );
    }
    for e in &entries {
        let ty = &e.ty;
        assert_eq!(e.examples.len(), 1, "{ty}: expected one example event");
        let event = events::Event::decode(None, e.examples[0].as_bytes())
            .unwrap_or_else(|err| panic!("{ty}: the example is not a valid event: {err:?}"));
        assert_eq!(
            event.event_type().as_str(),
            ty,
            "{ty}: example has another type"
        );
        let row = |k: &str| {
            e.rows
                .get(k)
                .unwrap_or_else(|| panic!("{ty}: no `{k}` row in the section's table"))
        };
        assert_eq!(
            event.event_type().stream_name().as_str(),
            row("stream"),
            "{ty}: stream row"
        );
        assert_eq!(
            event.source(),
            row("producer"),
            "{ty}: producer row vs source"
        );
        assert_eq!(
            event.schema_version(),
            row("schemaversion"),
            "{ty}: schemaversion"
        );
        assert_eq!(
            event.data_schema(),
            Some(row("dataschema").as_str()),
            "{ty}: dataschema"
        );
        assert!(
            event.subject().is_some(),
            "{ty}: the example sets no subject"
        );
        let data = event.data();
        for (field, required) in &e.fields {
            assert!(
                !required || data.contains_key(field),
                "{ty}: required field `{field}` missing from the example"
            );
        }
        for key in data.keys() {
            assert!(
                e.fields.contains_key(key),
                "{ty}: the example has `{key}`, which the field table does not describe"
            );
        }
        // Encoding the decoded event gives the same JSON value back: nothing in the
        // example is dropped or invented by the library.
        let original: Value = serde_json::from_str(&e.examples[0]).unwrap();
        let reencoded: Value = serde_json::from_slice(&event.to_json_bytes()).unwrap();
        let norm_time = |mut v: Value| {
            // The library writes `time` in its own RFC 3339 form; compare it as an instant.
            v["time"] = Value::Null;
            v
        };
        assert_eq!(
            norm_time(reencoded),
            norm_time(original.clone()),
            "{ty}: re-encoding changes the example"
        );
        assert_eq!(
            event.time(),
            time::OffsetDateTime::parse(
                original["time"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339
            )
            .unwrap(),
            "{ty}: time"
        );
    }
}
