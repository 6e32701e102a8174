//! What [`apply`](super::apply) did or would do: per stream and consumer, with a human diff
//! as `Display`.

use std::fmt;

/// Whether a changed field can be applied in place, and at what cost.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChangeRisk {
    /// No stored message is lost.
    Safe,
    /// Stored messages may be removed (a limit shrinks, a subject goes); applied only with
    /// `force`. The text says why.
    DropsData(String),
    /// The server cannot make this change in place; never applied. The text says what to do.
    Impossible(String),
}

/// One declared field whose server value differs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FieldChange {
    /// Field name as written in the spec file (`max_age`, `subjects`).
    pub field: &'static str,
    /// The server's value, rendered.
    pub from: String,
    /// The declared value, rendered.
    pub to: String,
    /// Whether it can be applied.
    pub risk: ChangeRisk,
}

impl fmt::Display for FieldChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} -> {}", self.field, self.from, self.to)?;
        match &self.risk {
            ChangeRisk::Safe => Ok(()),
            ChangeRisk::DropsData(why) => write!(f, " (drops data: {why})"),
            ChangeRisk::Impossible(why) => write!(f, " (impossible: {why})"),
        }
    }
}

/// What kind of resource an item is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResourceKind {
    /// A stream.
    Stream,
    /// A durable consumer.
    Consumer,
}

/// What happened to one resource (or, in a dry run, would happen).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// It was missing and is created.
    Created,
    /// It drifted and is updated; the changed fields.
    Updated(Vec<FieldChange>),
    /// It matches the spec.
    Unchanged,
    /// It drifted, but the update is not made; nothing about it was changed.
    Refused {
        /// Why (a change drops data without `force`, or the server cannot do it).
        reason: String,
        /// All the differences found.
        changes: Vec<FieldChange>,
    },
}

/// One stream or consumer in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ItemReport {
    /// Stream or consumer.
    pub kind: ResourceKind,
    /// Its name; consumers as `STREAM/durable`.
    pub name: String,
    /// What was (or would be) done.
    pub action: Action,
}

/// The plan or result of an apply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ApplyReport {
    /// True if nothing was changed on the server (the report is a plan).
    pub dry_run: bool,
    /// Streams first, then consumers, in spec order.
    pub items: Vec<ItemReport>,
}

impl ApplyReport {
    /// True if nothing was (or would be) created or updated.
    pub fn is_unchanged(&self) -> bool {
        self.items
            .iter()
            .all(|i| matches!(i.action, Action::Unchanged | Action::Refused { .. }))
    }

    /// Items that were refused.
    pub fn refused(&self) -> impl Iterator<Item = &ItemReport> {
        self.items
            .iter()
            .filter(|i| matches!(i.action, Action::Refused { .. }))
    }

    /// The item for the stream (or `STREAM/durable` consumer) `name`.
    pub fn item(&self, name: &str) -> Option<&ItemReport> {
        self.items.iter().find(|i| i.name == name)
    }

    fn count(&self, f: impl Fn(&Action) -> bool) -> usize {
        self.items.iter().filter(|i| f(&i.action)).count()
    }
}

impl fmt::Display for ApplyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (created, updated) = if self.dry_run {
            ("would create", "would update")
        } else {
            ("created", "updated")
        };
        for item in &self.items {
            let kind = match item.kind {
                ResourceKind::Stream => "stream",
                ResourceKind::Consumer => "consumer",
            };
            match &item.action {
                Action::Created => writeln!(f, "{kind} {}: {created}", item.name)?,
                Action::Unchanged => writeln!(f, "{kind} {}: unchanged", item.name)?,
                Action::Updated(changes) => {
                    writeln!(f, "{kind} {}: {updated}", item.name)?;
                    for c in changes {
                        writeln!(f, "    {c}")?;
                    }
                }
                Action::Refused { reason, changes } => {
                    writeln!(f, "{kind} {}: refused: {reason}", item.name)?;
                    for c in changes {
                        writeln!(f, "    {c}")?;
                    }
                }
            }
        }
        let streams = self
            .items
            .iter()
            .filter(|i| i.kind == ResourceKind::Stream)
            .count();
        let consumers = self.items.len() - streams;
        let n_created = self.count(|a| matches!(a, Action::Created));
        let n_updated = self.count(|a| matches!(a, Action::Updated(_)));
        let n_unchanged = self.count(|a| matches!(a, Action::Unchanged));
        let n_refused = self.count(|a| matches!(a, Action::Refused { .. }));
        if n_created + n_updated + n_refused == 0 {
            write!(
                f,
                "no changes: {streams} stream(s) and {consumers} consumer(s) match the spec"
            )
        } else {
            write!(
                f,
                "{}{n_created} {created}, {n_updated} {updated}, {n_unchanged} unchanged, \
                 {n_refused} refused",
                if self.dry_run {
                    "dry run, nothing changed: "
                } else {
                    ""
                }
            )
        }
    }
}
