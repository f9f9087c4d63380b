//! Field ownership (`metadata.managedFields`) for server-side apply and conflict detection,
//! shared by the API server (users' applies) and the controller's embedded writes.
//!
//! A deliberately small model of Kubernetes' structured-merge-diff, on JSON values:
//!
//! - A **field** is the path of a leaf of the object: a scalar, a list, or an empty map. Lists
//!   are atomic (owned and replaced as a whole), which is what Kubernetes does for custom
//!   resources whose schema declares no list type. Only `spec` (and the other top-level
//!   fields of kinds without one: a Secret's `data`, `type`...), `metadata.labels` and
//!   `metadata.annotations` are tracked; `status` belongs to the `/status` subresource.
//! - Each manager entry is keyed by (manager, operation): `Apply` entries come from apply
//!   patches, `Update` entries from create, replace and the other patch types.
//! - An **update** gives its manager every field whose value it changed, and takes those fields
//!   away from everyone else.
//! - An **apply** sets every field of the applied configuration, removes the fields the same
//!   manager applied last time but no longer mentions (unless another manager owns them too),
//!   and then owns exactly the applied fields. A field owned by another manager *conflicts* when
//!   the apply changes its value; with `force` the applier takes it, otherwise nothing is written.
//!   Equal values are shared, never a conflict.
//! - Fields that no longer exist are dropped from every entry; empty entries disappear.
//!
//! Entries are stored as Kubernetes `FieldsV1` (`{"f:spec":{"f:traffic":{}}}`), so kubectl can
//! read and migrate them. Paths of entries written by a real Kubernetes (`k:`/`v:` keys) are
//! read as owning the enclosing list.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// A field an apply would change although another manager owns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldConflict {
    /// The other manager.
    pub manager: String,
    /// The field, as Kubernetes writes it: `.spec.traffic`.
    pub field: String,
}

/// A field: the keys from the object's root to a leaf.
pub type Path = Vec<String>;
/// A set of fields.
pub type FieldSet = BTreeSet<Path>;

/// How a manager changed the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Apply,
    Update,
}

/// One `metadata.managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: Operation,
    /// RFC 3339, when the manager last changed a field.
    pub time: String,
    pub fields: FieldSet,
    /// `status` for entries of the status subresource; empty for the main resource.
    pub subresource: String,
}

// === fields of a value ===

/// The tracked fields of an object (see the module docs for which).
pub fn fields_of(obj: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    let untracked = ["apiVersion", "kind", "metadata", "status"];
    for (field, value) in obj.as_object().into_iter().flatten() {
        if !untracked.contains(&field.as_str()) {
            leaves(value, &mut vec![field.clone()], &mut out);
        }
    }
    for map in ["labels", "annotations"] {
        if let Some(Value::Object(m)) = obj.get("metadata").and_then(|m| m.get(map)) {
            for key in m.keys() {
                out.insert(vec!["metadata".into(), map.into(), key.clone()]);
            }
        }
    }
    out
}

fn leaves(value: &Value, path: &mut Path, out: &mut FieldSet) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                path.push(k.clone());
                leaves(v, path, out);
                path.pop();
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The value at `path`, if present.
pub fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, k| v.get(k))
}

/// Set the value at `path`, creating maps on the way. An empty map never replaces a map.
fn set_at(obj: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut v = obj;
    for k in parents {
        if !v.is_object() {
            *v = Value::Object(Map::new());
        }
        v = v
            .as_object_mut()
            .expect("made an object above")
            .entry(k.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    let map = v.as_object_mut().expect("made an object above");
    let keep =
        value.as_object().is_some_and(Map::is_empty) && map.get(last).is_some_and(Value::is_object);
    if !keep {
        map.insert(last.clone(), value);
    }
}

fn remove_at(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let parent = parents.iter().try_fold(obj, |v, k| v.get_mut(k));
    if let Some(Value::Object(m)) = parent {
        m.remove(last);
    }
}

/// `.spec.traffic`, as Kubernetes prints field paths in conflicts.
pub fn display(path: &[String]) -> String {
    path.iter().map(|k| format!(".{k}")).collect()
}

// === updates and applies ===

/// Ownership after an update by `manager` that turned `old` into `new`.
pub fn track_update(
    old: &Value,
    new: &Value,
    mut entries: Vec<Entry>,
    manager: &str,
    now: &str,
) -> Vec<Entry> {
    let changed: FieldSet = fields_of(new)
        .into_iter()
        .filter(|p| value_at(old, p) != value_at(new, p))
        .collect();
    if !changed.is_empty() {
        for e in entries
            .iter_mut()
            .filter(|e| !e.is(manager, Operation::Update))
        {
            e.fields.retain(|p| !changed.contains(p));
        }
        let mine = entry_mut(&mut entries, manager, Operation::Update);
        mine.fields.extend(changed);
        mine.time = now.to_string();
    }
    prune(entries, new)
}

/// The object an apply of `config` by `manager` asks for, before defaulting and validation:
/// `live` with the manager's dropped fields removed and every applied field set.
pub fn merge_applied(live: &Value, config: &Value, entries: &[Entry], manager: &str) -> Value {
    let applied = fields_of(config);
    let others: FieldSet = entries
        .iter()
        .filter(|e| !e.is(manager, Operation::Apply))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let mut out = live.clone();
    if let Some(previous) = entries.iter().find(|e| e.is(manager, Operation::Apply)) {
        for p in previous.fields.difference(&applied) {
            if !others.contains(p) {
                remove_at(&mut out, p);
            }
        }
    }
    for p in &applied {
        if let Some(v) = value_at(config, p) {
            set_at(&mut out, p, v.clone());
        }
    }
    out
}

/// The manager kubectl uses for `apply --server-side`; its applies may take over fields from
/// client-side apply (see [`forgiven_conflicts`]).
pub const KUBECTL_APPLY_MANAGER: &str = "kubectl";
/// The annotation client-side `kubectl apply` keeps its configuration in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Conflicts an apply by `manager` may take without `force`: Kubernetes lets kubectl's
/// server-side apply take over every field the object's client-side apply configuration (the
/// `last-applied-configuration` annotation) names, so switching `kubectl apply` to
/// `--server-side` does not conflict with the user's own earlier applies.
pub fn forgiven_conflicts(live: &Value, manager: &str) -> FieldSet {
    if manager != KUBECTL_APPLY_MANAGER {
        return FieldSet::new();
    }
    live.pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .map(|last| fields_of(&last))
        .unwrap_or_default()
}

/// Ownership after an apply of `config` that turned `live` into `new` (defaulted and valid), or
/// the conflicts when the apply changes fields other managers own. With `force`, or for fields
/// in `forgiven`, the applier takes those fields instead.
#[allow(clippy::too_many_arguments)]
pub fn settle_apply(
    live: &Value,
    new: &Value,
    config: &Value,
    mut entries: Vec<Entry>,
    manager: &str,
    force: bool,
    forgiven: &FieldSet,
    now: &str,
) -> Result<Vec<Entry>, Vec<FieldConflict>> {
    let applied: FieldSet = fields_of(config)
        .into_iter()
        .filter(|p| value_at(new, p).is_some())
        .collect();
    let changed = |p: &Path| value_at(live, p) != value_at(new, p);
    let mut conflicts = Vec::new();
    for e in entries
        .iter_mut()
        .filter(|e| !e.is(manager, Operation::Apply))
    {
        let taken: Vec<Path> = e
            .fields
            .intersection(&applied)
            .filter(|p| changed(p))
            .cloned()
            .collect();
        for p in taken {
            if !forgiven.contains(&p) {
                conflicts.push(FieldConflict {
                    manager: e.manager.clone(),
                    field: display(&p),
                });
            }
            e.fields.remove(&p);
        }
    }
    if !conflicts.is_empty() && !force {
        conflicts.sort_by(|a, b| (&a.manager, &a.field).cmp(&(&b.manager, &b.field)));
        return Err(conflicts);
    }
    let mine = entry_mut(&mut entries, manager, Operation::Apply);
    mine.fields = applied;
    mine.time = now.to_string();
    Ok(prune(entries, new))
}

fn entry_mut<'a>(
    entries: &'a mut Vec<Entry>,
    manager: &str,
    operation: Operation,
) -> &'a mut Entry {
    let at = match entries.iter().position(|e| e.is(manager, operation)) {
        Some(i) => i,
        None => {
            entries.push(Entry {
                manager: manager.to_string(),
                operation,
                time: String::new(),
                fields: FieldSet::new(),
                subresource: String::new(),
            });
            entries.len() - 1
        }
    };
    &mut entries[at]
}

/// Drop fields that no longer exist in `obj`, then entries left empty.
fn prune(mut entries: Vec<Entry>, obj: &Value) -> Vec<Entry> {
    for e in entries.iter_mut().filter(|e| e.subresource.is_empty()) {
        e.fields.retain(|p| value_at(obj, p).is_some());
    }
    entries.retain(|e| !e.fields.is_empty());
    entries
}

// === impl Entry ===

impl Entry {
    fn is(&self, manager: &str, operation: Operation) -> bool {
        self.manager == manager && self.operation == operation && self.subresource.is_empty()
    }

    /// Read `metadata.managedFields`; entries that cannot be read are dropped.
    pub fn read_all(obj: &Value) -> Vec<Entry> {
        let Some(Value::Array(list)) = obj.get("metadata").and_then(|m| m.get("managedFields"))
        else {
            return Vec::new();
        };
        list.iter().filter_map(Entry::from_json).collect()
    }

    /// Write `metadata.managedFields` (removed when there are no entries), recorded against
    /// the object's `apiVersion`.
    pub fn write_all(obj: &mut Value, entries: &[Entry]) {
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or(crate::API_VERSION)
            .to_string();
        let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
            return;
        };
        if entries.is_empty() {
            meta.remove("managedFields");
        } else {
            let list = entries.iter().map(|e| e.to_json(&api_version)).collect();
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }

    fn from_json(v: &Value) -> Option<Entry> {
        let operation = match v.get("operation")?.as_str()? {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return None,
        };
        let mut fields = FieldSet::new();
        read_fields_v1(v.get("fieldsV1")?, &mut Vec::new(), &mut fields);
        Some(Entry {
            manager: v.get("manager")?.as_str()?.to_string(),
            operation,
            time: v
                .get("time")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            fields,
            subresource: v
                .get("subresource")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        })
    }

    fn to_json(&self, api_version: &str) -> Value {
        let operation = match self.operation {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        };
        let mut v = json!({
            "manager": self.manager,
            "operation": operation,
            "apiVersion": api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": fields_v1(&self.fields),
        });
        if !self.subresource.is_empty() {
            v["subresource"] = json!(self.subresource);
        }
        if self.time.is_empty() {
            v.as_object_mut().map(|m| m.remove("time"));
        }
        v
    }
}

/// `{"f:spec":{"f:traffic":{}}}`; a path that is also a parent is marked with `".": {}`.
fn fields_v1(fields: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut node = &mut root;
        for k in path {
            node = node
                .entry(format!("f:{k}"))
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("only maps are inserted");
        }
        if !node.is_empty() {
            node.insert(".".into(), json!({}));
        }
    }
    for path in fields {
        mark_parent(&mut root, path);
    }
    Value::Object(root)
}

/// A path that is an owned leaf and also has owned children gets its `"."` marker.
fn mark_parent(root: &mut Map<String, Value>, path: &[String]) {
    let node = path.iter().try_fold(root, |m, k| {
        m.get_mut(&format!("f:{k}")).and_then(Value::as_object_mut)
    });
    if let Some(node) = node
        && node.keys().any(|k| k != ".")
    {
        node.insert(".".into(), json!({}));
    }
}

fn read_fields_v1(v: &Value, path: &mut Path, out: &mut FieldSet) {
    let Value::Object(m) = v else { return };
    let items = m
        .keys()
        .any(|k| k.starts_with("k:") || k.starts_with("v:") || k.starts_with("i:"));
    if !path.is_empty() && (m.is_empty() || m.contains_key(".") || items) {
        out.insert(path.clone());
    }
    if items {
        return; // items of a keyed list or set: Nimbus owns lists whole
    }
    for (k, child) in m {
        if let Some(name) = k.strip_prefix("f:") {
            path.push(name.to_string());
            read_fields_v1(child, path, out);
            path.pop();
        }
    }
}

#[cfg(test)]
#[path = "fields_tests.rs"]
mod tests;
