//! Knative's printer columns (its CRDs' `additionalPrinterColumns`), so `kubectl get ksvc`
//! prints the same columns against the embedded API server (which renders them into a
//! `Table` itself) and against a cluster (where the CRDs carry them as JSONPaths).
//!
//! Each column says where its cell comes from as a [`Source`]; the JSONPath a CRD declares
//! and the cell the embedded server renders are both derived from it.

use serde_json::Value;

use crate::constants::{LABEL_CONFIGURATION, LABEL_CONFIGURATION_GENERATION};
use crate::object::Kind;

/// One column after NAME (which every kind has).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrinterColumn {
    /// The header, as Knative spells it (`LatestCreated`, `Config Name`).
    pub name: &'static str,
    /// `string` or `integer`.
    pub type_: &'static str,
    pub description: &'static str,
    pub source: Source,
}

/// Where a column's cell is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The value at a path of field names (a label's key is one name).
    Field(&'static [&'static str]),
    /// A field of the `Ready` condition in `status.conditions`.
    Ready(&'static str),
    /// A field of the condition of this type in `status.conditions`.
    Condition(&'static str, &'static str),
    /// How many keys the maps at these top-level fields hold together (a Secret's `DATA`).
    Keys(&'static [&'static str]),
    /// A field of every item of the list at a path, comma-separated (`[*].name`).
    Each(&'static [&'static str], &'static str),
}

/// Knative's columns of `kind`, after NAME.
pub fn columns(kind: Kind) -> &'static [PrinterColumn] {
    match kind {
        Kind::Service => &[URL, LATEST_CREATED, LATEST_READY, READY, REASON],
        Kind::Configuration => &[LATEST_CREATED, LATEST_READY, READY, REASON],
        Kind::Revision => &[
            CONFIG_NAME,
            GENERATION,
            READY,
            REASON,
            ACTUAL_REPLICAS,
            DESIRED_REPLICAS,
        ],
        Kind::Route => &[URL, READY, REASON],
        Kind::PodAutoscaler => &[DESIRED_SCALE, ACTUAL_SCALE, READY, REASON],
        Kind::Ingress => &[READY, REASON],
        Kind::Secret => &[SECRET_TYPE, SECRET_DATA],
        Kind::ConfigMap => &[CONFIG_MAP_DATA],
        // kubectl's own columns (LAST SEEN, TYPE, REASON, OBJECT, MESSAGE) are rendered by the
        // API server's event table; a CRD never carries them.
        Kind::Event => &[],
        Kind::Job => &[TASKS, LATEST_EXECUTION, READY, REASON],
        Kind::Execution => &[
            JOB,
            TASKS_SPEC,
            RUNNING,
            SUCCEEDED,
            FAILED,
            COMPLETED,
            COMPLETED_REASON,
        ],
        Kind::Schedule => &[SCHEDULE, TIME_ZONE, SUSPEND, LAST_SCHEDULE],
        Kind::ScaledObject => &[
            SCALE_TARGET_KIND,
            SCALE_TARGET_NAME,
            MIN,
            MAX,
            TRIGGERS,
            AUTHENTICATIONS,
            KEDA_READY,
            KEDA_ACTIVE,
        ],
        Kind::TriggerAuthentication => &[AUTH_SECRET],
        Kind::RedisStreamSource
        | Kind::RabbitmqSource
        | Kind::RedisListSource
        | Kind::NatsJetStreamSource => &[SINK, READY, REASON],
    }
}

const TASKS: PrinterColumn = PrinterColumn {
    name: "Tasks",
    type_: "integer",
    description: "Tasks each execution runs (.spec.template.spec.taskCount).",
    source: Source::Field(&["spec", "template", "spec", "taskCount"]),
};
const LATEST_EXECUTION: PrinterColumn = PrinterColumn {
    name: "LatestExecution",
    type_: "string",
    description: "The execution created last.",
    source: Source::Field(&["status", "latestCreatedExecution", "name"]),
};
const JOB: PrinterColumn = PrinterColumn {
    name: "Job",
    type_: "string",
    description: "The job this runs.",
    source: Source::Field(&["metadata", "labels", crate::jobs::LABEL_JOB]),
};
const TASKS_SPEC: PrinterColumn = PrinterColumn {
    name: "Tasks",
    type_: "integer",
    description: "Tasks in this execution (.spec.taskCount).",
    source: Source::Field(&["spec", "taskCount"]),
};
const RUNNING: PrinterColumn = PrinterColumn {
    name: "Running",
    type_: "integer",
    description: "Tasks running now.",
    source: Source::Field(&["status", "runningCount"]),
};
const SUCCEEDED: PrinterColumn = PrinterColumn {
    name: "Succeeded",
    type_: "integer",
    description: "Tasks that succeeded.",
    source: Source::Field(&["status", "succeededCount"]),
};
const FAILED: PrinterColumn = PrinterColumn {
    name: "Failed",
    type_: "integer",
    description: "Tasks that failed for good.",
    source: Source::Field(&["status", "failedCount"]),
};
const COMPLETED: PrinterColumn = PrinterColumn {
    name: "Completed",
    type_: "string",
    description: "The status of the Completed condition.",
    source: Source::Condition("Completed", "status"),
};
const COMPLETED_REASON: PrinterColumn = PrinterColumn {
    name: "Reason",
    type_: "string",
    description: "The reason of the Completed condition.",
    source: Source::Condition("Completed", "reason"),
};
const SCHEDULE: PrinterColumn = PrinterColumn {
    name: "Schedule",
    type_: "string",
    description: "The cron expression.",
    source: Source::Field(&["spec", "schedule"]),
};
const TIME_ZONE: PrinterColumn = PrinterColumn {
    name: "TimeZone",
    type_: "string",
    description: "The time zone of the schedule.",
    source: Source::Field(&["spec", "timeZone"]),
};
const SUSPEND: PrinterColumn = PrinterColumn {
    name: "Suspend",
    type_: "boolean",
    description: "Whether runs are suspended.",
    source: Source::Field(&["spec", "suspend"]),
};
const LAST_SCHEDULE: PrinterColumn = PrinterColumn {
    name: "LastSchedule",
    type_: "string",
    description: "When it last ran.",
    source: Source::Field(&["status", "lastScheduleTime"]),
};
// KEDA's columns (kedacore/keda `apis/keda/v1alpha1/scaledobject_types.go` printcolumns).
const SCALE_TARGET_KIND: PrinterColumn = PrinterColumn {
    name: "ScaleTargetKind",
    type_: "string",
    description: "The kind of the scaled workload (.status.scaleTargetKind).",
    source: Source::Field(&["status", "scaleTargetKind"]),
};
const SCALE_TARGET_NAME: PrinterColumn = PrinterColumn {
    name: "ScaleTargetName",
    type_: "string",
    description: "The scaled workload (.spec.scaleTargetRef.name).",
    source: Source::Field(&["spec", "scaleTargetRef", "name"]),
};
const MIN: PrinterColumn = PrinterColumn {
    name: "Min",
    type_: "integer",
    description: "The fewest instances (.spec.minReplicaCount).",
    source: Source::Field(&["spec", "minReplicaCount"]),
};
const MAX: PrinterColumn = PrinterColumn {
    name: "Max",
    type_: "integer",
    description: "The most instances (.spec.maxReplicaCount).",
    source: Source::Field(&["spec", "maxReplicaCount"]),
};
const TRIGGERS: PrinterColumn = PrinterColumn {
    name: "Triggers",
    type_: "string",
    description: "The trigger types (.status.triggersTypes).",
    source: Source::Field(&["status", "triggersTypes"]),
};
const AUTHENTICATIONS: PrinterColumn = PrinterColumn {
    name: "Authentications",
    type_: "string",
    description: "The TriggerAuthentications used (.status.authenticationsTypes).",
    source: Source::Field(&["status", "authenticationsTypes"]),
};
const KEDA_READY: PrinterColumn = PrinterColumn {
    name: "Ready",
    type_: "string",
    description: "The status of the Ready condition.",
    source: Source::Condition("Ready", "status"),
};
const KEDA_ACTIVE: PrinterColumn = PrinterColumn {
    name: "Active",
    type_: "string",
    description: "The status of the Active condition: a trigger is above its activation threshold.",
    source: Source::Condition("Active", "status"),
};
const AUTH_SECRET: PrinterColumn = PrinterColumn {
    name: "Secret",
    type_: "string",
    description: "The Secrets parameters are read from (.spec.secretTargetRef[*].name).",
    source: Source::Each(&["spec", "secretTargetRef"], "name"),
};

const SINK: PrinterColumn = PrinterColumn {
    name: "Sink",
    type_: "string",
    description: "Where events are delivered (.status.sinkUri).",
    source: Source::Field(&["status", "sinkUri"]),
};
const URL: PrinterColumn = PrinterColumn {
    name: "URL",
    type_: "string",
    description: "The URL where the resource is reachable (.status.url).",
    source: Source::Field(&["status", "url"]),
};
const LATEST_CREATED: PrinterColumn = PrinterColumn {
    name: "LatestCreated",
    type_: "string",
    description: "The latest revision created (.status.latestCreatedRevisionName).",
    source: Source::Field(&["status", "latestCreatedRevisionName"]),
};
const LATEST_READY: PrinterColumn = PrinterColumn {
    name: "LatestReady",
    type_: "string",
    description: "The latest revision ready to serve (.status.latestReadyRevisionName).",
    source: Source::Field(&["status", "latestReadyRevisionName"]),
};
const READY: PrinterColumn = PrinterColumn {
    name: "Ready",
    type_: "string",
    description: "The status of the Ready condition.",
    source: Source::Ready("status"),
};
const REASON: PrinterColumn = PrinterColumn {
    name: "Reason",
    type_: "string",
    description: "The reason of the Ready condition.",
    source: Source::Ready("reason"),
};
const CONFIG_NAME: PrinterColumn = PrinterColumn {
    name: "Config Name",
    type_: "string",
    description: "The Configuration that created this revision.",
    source: Source::Field(&["metadata", "labels", LABEL_CONFIGURATION]),
};
const GENERATION: PrinterColumn = PrinterColumn {
    name: "Generation",
    type_: "string",
    description: "The Configuration generation this revision was created from.",
    source: Source::Field(&["metadata", "labels", LABEL_CONFIGURATION_GENERATION]),
};
const ACTUAL_REPLICAS: PrinterColumn = PrinterColumn {
    name: "Actual Replicas",
    type_: "integer",
    description: "Instances running now (.status.actualReplicas).",
    source: Source::Field(&["status", "actualReplicas"]),
};
const DESIRED_REPLICAS: PrinterColumn = PrinterColumn {
    name: "Desired Replicas",
    type_: "integer",
    description: "Instances the autoscaler wants (.status.desiredReplicas).",
    source: Source::Field(&["status", "desiredReplicas"]),
};
const SECRET_TYPE: PrinterColumn = PrinterColumn {
    name: "Type",
    type_: "string",
    description: "What the secret's data is for (.type).",
    source: Source::Field(&["type"]),
};
const SECRET_DATA: PrinterColumn = PrinterColumn {
    name: "Data",
    type_: "integer",
    description: "How many values the secret holds.",
    source: Source::Keys(&["data"]),
};
const CONFIG_MAP_DATA: PrinterColumn = PrinterColumn {
    name: "Data",
    type_: "integer",
    description: "How many values the config map holds (data and binaryData).",
    source: Source::Keys(&["data", "binaryData"]),
};
const DESIRED_SCALE: PrinterColumn = PrinterColumn {
    name: "DesiredScale",
    type_: "integer",
    description: "The instances the autoscaler wants.",
    source: Source::Field(&["status", "desiredScale"]),
};
const ACTUAL_SCALE: PrinterColumn = PrinterColumn {
    name: "ActualScale",
    type_: "integer",
    description: "The instances ready to take traffic.",
    source: Source::Field(&["status", "actualScale"]),
};

// === impl PrinterColumn ===

impl PrinterColumn {
    /// The cell of this column for an object's JSON; null (an empty cell) when absent.
    pub fn cell(&self, obj: &Value) -> Value {
        let found = match self.source {
            Source::Field(path) => path.iter().try_fold(obj, |v, k| v.get(*k)),
            Source::Ready(field) => condition(obj, "Ready", field),
            Source::Condition(type_, field) => condition(obj, type_, field),
            Source::Each(path, field) => {
                let items = path.iter().try_fold(obj, |v, k| v.get(*k));
                let names: Vec<&str> = items
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|i| i[field].as_str()).collect())
                    .unwrap_or_default();
                return match names.is_empty() {
                    true => Value::Null,
                    false => Value::from(names.join(",")),
                };
            }
            Source::Keys(fields) => {
                let count = |f: &&str| {
                    obj.get(*f)
                        .and_then(Value::as_object)
                        .map_or(0, |m| m.len())
                };
                return Value::from(fields.iter().map(count).sum::<usize>());
            }
        };
        found.cloned().unwrap_or(Value::Null)
    }

    /// The column as a kubectl JSONPath, as Knative's CRDs write it
    /// (`.status.url`, `.metadata.labels['serving\.knative\.dev/configuration']`,
    /// `.status.conditions[?(@.type=='Ready')].status`).
    pub fn json_path(&self) -> String {
        match self.source {
            Source::Field(path) => path.iter().map(|name| json_path_step(name)).collect(),
            Source::Ready(field) => format!(".status.conditions[?(@.type=='Ready')].{field}"),
            Source::Condition(type_, field) => {
                format!(".status.conditions[?(@.type=='{type_}')].{field}")
            }
            Source::Each(path, field) => {
                let list: String = path.iter().map(|name| json_path_step(name)).collect();
                format!("{list}[*].{field}")
            }
            // JSONPath cannot count; the core kinds this serves are never CRDs.
            Source::Keys(fields) => format!(".{}", fields[0]),
        }
    }
}

/// The `field` of the condition of `type_` in `obj.status.conditions`.
fn condition<'a>(obj: &'a Value, type_: &str, field: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .and_then(|c| c.get(field))
}

/// `.name`, or `['a\.b/c']` for a name that is not a plain identifier.
fn json_path_step(name: &str) -> String {
    match name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        true => format!(".{name}"),
        false => format!("['{}']", name.replace('.', "\\.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_paths_are_knatives() {
        let paths: Vec<String> = columns(Kind::Revision)
            .iter()
            .map(PrinterColumn::json_path)
            .collect();
        assert_eq!(
            paths,
            [
                r".metadata.labels['serving\.knative\.dev/configuration']",
                r".metadata.labels['serving\.knative\.dev/configurationGeneration']",
                ".status.conditions[?(@.type=='Ready')].status",
                ".status.conditions[?(@.type=='Ready')].reason",
                ".status.actualReplicas",
                ".status.desiredReplicas",
            ]
        );
        assert_eq!(columns(Kind::Service)[0].json_path(), ".status.url");
    }

    #[test]
    fn data_cells_count_keys() {
        let cm = json!({"data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(columns(Kind::ConfigMap)[0].cell(&cm), json!(3));
        let secret = json!({"type": "Opaque", "data": {"password": "eA=="}});
        let cells: Vec<Value> = columns(Kind::Secret)
            .iter()
            .map(|c| c.cell(&secret))
            .collect();
        assert_eq!(cells, [json!("Opaque"), json!(1)]);
    }

    #[test]
    fn cells_read_fields_labels_and_the_ready_condition() {
        let rev = json!({"metadata": {"labels": {LABEL_CONFIGURATION: "hello"}},
            "status": {"actualReplicas": 1, "conditions": [{"type": "Ready", "status": "True"}]}});
        let cells: Vec<Value> = columns(Kind::Revision)
            .iter()
            .map(|c| c.cell(&rev))
            .collect();
        assert_eq!(
            cells,
            [
                json!("hello"),
                Value::Null,
                json!("True"),
                Value::Null,
                json!(1),
                Value::Null
            ]
        );
    }
}
