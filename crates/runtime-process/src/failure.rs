//! Why an instance is not running, worded for the user: a CamelCase `reason` (Kubernetes style:
//! `ExitCode3`, `Signal9`, `StartupTimeout`, `CommandNotFound`, `CrashLoopBackOff`) and a message
//! that names the revision or port and ends with the process's last output lines.

use std::process::ExitStatus;
use std::time::Duration;

use nimbus_runtime::{InstanceNotice, RevisionKey, RevisionPhase};

use crate::process::StartError;

/// Kubernetes' reason for a container killed for memory.
pub(crate) const OOM_KILLED: &str = "OOMKilled";

/// A failed instance, as reported in [`RevisionPhase::Failed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub reason: String,
    pub message: String,
}

impl Failure {
    /// The process could not be started at all.
    pub fn start(revision: &RevisionKey, error: &StartError) -> Self {
        Self {
            reason: error.reason(),
            message: format!("revision {revision}: {error}"),
        }
    }

    /// The process exited before anything listened on its port.
    pub fn exited_before_ready(status: ExitStatus, port: u16, output: &[String]) -> Self {
        let message = format!(
            "process {} before listening on port {port}{}",
            describe(status),
            tail(output)
        );
        Self {
            reason: exit_reason(status),
            message,
        }
    }

    /// Nothing listened on the port within the startup timeout.
    pub fn startup_timeout(
        revision: &RevisionKey,
        port: u16,
        timeout: Duration,
        output: &[String],
    ) -> Self {
        let message = format!(
            "revision {revision} did not listen on port {port} within {timeout:?}{}",
            tail(output)
        );
        Self {
            reason: "StartupTimeout".to_owned(),
            message,
        }
    }

    /// A ready process exited.
    pub fn crashed(instance: &str, status: ExitStatus, output: &[String]) -> Self {
        let message = format!(
            "instance {instance}: process {} after becoming ready{}",
            describe(status),
            tail(output)
        );
        Self {
            reason: exit_reason(status),
            message,
        }
    }

    /// The kernel killed the instance's process for using more memory than its limit.
    pub fn oom_killed(instance: &str, limit: Option<u64>, output: &[String]) -> Self {
        let limit = limit.map_or_else(String::new, |bytes| format!(" of {bytes} bytes"));
        Self {
            reason: OOM_KILLED.to_owned(),
            message: format!(
                "instance {instance} was killed for exceeding its memory limit{limit} (raise resources.limits.memory){}",
                tail(output)
            ),
        }
    }

    /// The startup probe did not pass.
    pub fn startup_probe(instance: &str, why: &str, output: &[String]) -> Self {
        Self {
            reason: "StartupProbeFailed".to_owned(),
            message: format!("instance {instance}: {why}{}", tail(output)),
        }
    }

    /// The liveness probe failed; the instance is restarted.
    pub fn liveness(instance: &str, why: &str) -> Self {
        Self {
            reason: "LivenessProbeFailed".to_owned(),
            message: format!("instance {instance}: {why}; restarting it"),
        }
    }

    /// The failure as the kubelet reports it in Events: `OOMKilled` or `Unhealthy` for its
    /// cause, then `BackOff` (its message names the reason, so repeats of one failure count up
    /// on one event).
    pub fn notices(&self, delay: Duration) -> Vec<InstanceNotice> {
        let cause = match self.reason.as_str() {
            OOM_KILLED => Some(OOM_KILLED),
            "LivenessProbeFailed" => Some("Unhealthy"),
            _ => None,
        };
        let mut out: Vec<InstanceNotice> = cause
            .map(|reason| InstanceNotice::warning(reason, self.message.clone()))
            .into_iter()
            .collect();
        let message = format!(
            "Back-off restarting failed instance ({}); next start in {}s",
            self.reason,
            delay.as_secs()
        );
        out.push(InstanceNotice::warning("BackOff", message));
        out
    }

    /// This failure, while waiting `delay` to restart a crashed instance. An OOM kill keeps its
    /// reason, so the status says why the instance keeps dying.
    pub fn backing_off(&self, delay: Duration) -> Self {
        let message = format!(
            "{} ({}); restarting in {delay:?}",
            self.message, self.reason
        );
        let reason = if self.reason == OOM_KILLED {
            OOM_KILLED
        } else {
            "CrashLoopBackOff"
        };
        Self {
            reason: reason.to_owned(),
            message,
        }
    }

    /// `<Reason>: <message>`, as published in [`nimbus_runtime::RevisionEndpoints::failure`].
    pub fn summary(&self) -> String {
        format!("{}: {}", self.reason, self.message)
    }

    /// As a revision phase.
    pub fn phase(&self) -> RevisionPhase {
        RevisionPhase::Failed {
            reason: self.reason.clone(),
            message: self.message.clone(),
        }
    }
}

/// `ExitCode<N>` or `Signal<N>`.
pub(crate) fn exit_reason(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("ExitCode{code}"),
        (None, Some(signal)) => format!("Signal{signal}"),
        (None, None) => "Exited".to_owned(),
    }
}

/// `exited with code N` or `was killed by signal N`.
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "exited".to_owned(),
    }
}

/// `; last output:\n<lines>` or `; no output`.
fn tail(output: &[String]) -> String {
    if output.is_empty() {
        "; no output".to_owned()
    } else {
        format!("; last output:\n{}", output.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    #[test]
    fn reasons_name_code_or_signal() {
        assert_eq!(exit_reason(ExitStatus::from_raw(3 << 8)), "ExitCode3");
        assert_eq!(exit_reason(ExitStatus::from_raw(9)), "Signal9");
    }

    #[test]
    fn early_exit_message_has_code_port_and_output() {
        let f = Failure::exited_before_ready(
            ExitStatus::from_raw(3 << 8),
            4000,
            &["boom".into(), "bye".into()],
        );
        assert_eq!(f.reason, "ExitCode3");
        assert_eq!(
            f.message,
            "process exited with code 3 before listening on port 4000; last output:\nboom\nbye"
        );
    }

    #[test]
    fn backing_off_keeps_the_cause() {
        let f = Failure::crashed("r-1", ExitStatus::from_raw(1 << 8), &[])
            .backing_off(Duration::from_secs(2));
        assert_eq!(f.reason, "CrashLoopBackOff");
        assert_eq!(
            f.message,
            "instance r-1: process exited with code 1 after becoming ready; no output (ExitCode1); restarting in 2s"
        );
    }

    #[test]
    fn notices_as_the_kubelet_reports_them() {
        let oom = Failure::oom_killed("i-1", Some(64 << 20), &[]);
        let reasons: Vec<String> = oom
            .notices(Duration::from_secs(10))
            .into_iter()
            .map(|n| n.reason)
            .collect();
        assert_eq!(reasons, ["OOMKilled", "BackOff"]);
        let live = Failure::liveness("i-1", "HTTP 500");
        let notices = live.notices(Duration::from_secs(20));
        assert_eq!(notices[0].reason, "Unhealthy");
        assert!(
            notices[1]
                .message
                .contains("(LivenessProbeFailed); next start in 20s")
        );
        let timeout = Failure::startup_timeout(&RevisionKey::new("d", "r"), 1, Duration::ZERO, &[]);
        assert_eq!(timeout.notices(Duration::ZERO).len(), 1);
    }
}
