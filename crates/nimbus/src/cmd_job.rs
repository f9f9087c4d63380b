//! `nimbus job`: run a Job (create an Execution from its template, as Cloud Run's
//! `gcloud run jobs execute`), list its executions, show one's tasks, cancel one, and read its
//! tasks' output.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context as _, bail};
use nimbus_api::jobs::*;
use nimbus_api::{ConditionStatus, Execution, Job, Kind, Object};

use crate::ClientOpts;
use crate::client::Client;

#[derive(clap::Subcommand)]
pub enum JobCommand {
    /// Start an execution of a job and print its name; with --wait, follow it to the end
    /// (the exit status says whether every task succeeded).
    Run {
        job: String,
        /// Run this many tasks instead of the job's taskCount.
        #[arg(long)]
        tasks: Option<i64>,
        /// Wait until the execution completes, showing its progress.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// List a job's executions, newest last.
    Executions {
        job: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Show an execution's tasks: state, attempts, exit code and why the last attempt ended.
    Tasks {
        execution: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Cancel an execution: running tasks are stopped, pending ones never start.
    Cancel {
        execution: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Print an execution's task output (each line starts with EXECUTION-INDEX-ATTEMPT).
    Logs {
        execution: String,
        /// Only this task (its index).
        #[arg(long)]
        task: Option<i64>,
        #[command(flatten)]
        client: ClientOpts,
    },
}

pub async fn run(command: &JobCommand) -> anyhow::Result<()> {
    match command {
        JobCommand::Run {
            job,
            tasks,
            wait,
            client,
        } => {
            let client = Client::new(client).await?;
            let name = start(&client, job, *tasks).await?;
            println!("{name}");
            if *wait {
                return follow(&client, &name).await;
            }
            Ok(())
        }
        JobCommand::Executions { job, client } => {
            let client = Client::new(client).await?;
            get_job(&client, job).await?;
            let mut executions: Vec<Object> = client
                .list(Kind::Execution, false)
                .await?
                .into_iter()
                .filter(|o| label(o, LABEL_JOB) == Some(job.as_str()))
                .collect();
            executions.sort_by_key(|o| o.metadata().creation_timestamp.as_ref().map(|t| t.0));
            if executions.is_empty() {
                println!("job \"{job}\" has no executions yet; `nimbus job run {job}` starts one");
                return Ok(());
            }
            print!(
                "{}",
                crate::cmd_get::table(Kind::Execution, &executions, false)
            );
            Ok(())
        }
        JobCommand::Tasks { execution, client } => {
            let client = Client::new(client).await?;
            let e = get_execution(&client, execution).await?;
            print!("{}", tasks_table(&e));
            Ok(())
        }
        JobCommand::Cancel { execution, client } => {
            let client = Client::new(client).await?;
            let mut e = get_execution(&client, execution).await?;
            if e.status.as_ref().is_some_and(ExecutionStatus::is_finished) {
                bail!("execution \"{execution}\" has already completed; nothing to cancel");
            }
            e.spec.cancelled = Some(true);
            client.replace(&Object::Execution(e)).await?;
            println!("execution \"{execution}\" cancelled");
            Ok(())
        }
        JobCommand::Logs {
            execution,
            task,
            client,
        } => {
            let client = Client::new(client).await?;
            get_execution(&client, execution).await?;
            let resp = client
                .get_stream(Kind::Execution, execution, "log", &[])
                .await?;
            let text = resp.text().await.context("reading the log")?;
            let prefix = task.map(|t| format!("{execution}-{t}-"));
            let mut out = std::io::stdout().lock();
            for line in text.lines() {
                if prefix.as_deref().is_none_or(|p| line.starts_with(p)) {
                    writeln!(out, "{line}")?;
                }
            }
            Ok(())
        }
    }
}

fn label<'a>(o: &'a Object, key: &str) -> Option<&'a str> {
    o.metadata().labels.as_ref()?.get(key).map(String::as_str)
}

async fn get_job(client: &Client, name: &str) -> anyhow::Result<Job> {
    match client.get(Kind::Job, name).await? {
        Some(Object::Job(job)) => Ok(job),
        _ => bail!(
            "job \"{name}\" not found in namespace \"{}\"; `nimbus get jobs` lists them",
            client.namespace
        ),
    }
}

async fn get_execution(client: &Client, name: &str) -> anyhow::Result<Execution> {
    match client.get(Kind::Execution, name).await? {
        Some(Object::Execution(e)) => Ok(e),
        _ => bail!(
            "execution \"{name}\" not found in namespace \"{}\"; `nimbus job executions JOB` lists a job's",
            client.namespace
        ),
    }
}

/// Create an execution of `job` (named `<job>-<random>`); returns its name.
async fn start(client: &Client, job: &str, tasks: Option<i64>) -> anyhow::Result<String> {
    let job = get_job(client, job).await?;
    let mut execution = nimbus_controller::new_execution(
        &job,
        None,
        Some(format!(
            "{}-",
            job.metadata.name.as_deref().unwrap_or("job")
        )),
        &[],
        &[],
    );
    execution.metadata.namespace = Some(client.namespace.clone());
    if let Some(n) = tasks {
        execution.spec.task_count = Some(n);
    }
    let created = client.create(&Object::Execution(execution)).await?;
    Ok(created.name().to_string())
}

/// Print progress until the execution completes; fail unless it succeeded.
async fn follow(client: &Client, name: &str) -> anyhow::Result<()> {
    let mut last = String::new();
    loop {
        let e = get_execution(client, name).await?;
        let st = e.status.clone().unwrap_or_default();
        let line = format!(
            "{} of {} tasks succeeded, {} running, {} failed, {} retried",
            st.succeeded_count,
            e.spec.task_count(),
            st.running_count,
            st.failed_count,
            st.retried_count
        );
        if line != last {
            eprintln!("{line}");
            last = line;
        }
        if let Some(c) = st
            .completed()
            .filter(|c| c.status != ConditionStatus::Unknown)
        {
            if c.status == ConditionStatus::True {
                return Ok(());
            }
            eprint!("{}", tasks_table(&e));
            bail!(
                "execution {name} did not succeed ({}): {}",
                c.reason.as_deref().unwrap_or(""),
                c.message.as_deref().unwrap_or("")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn tasks_table(e: &Execution) -> String {
    let mut rows = vec![
        [
            "INDEX",
            "STATE",
            "ATTEMPTS",
            "EXIT CODE",
            "REASON",
            "MESSAGE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for t in e.status.iter().flat_map(|s| &s.tasks) {
        // The first line of the message; the rest is the task's output (`nimbus job logs`).
        let message = t.message.as_deref().unwrap_or("");
        rows.push(vec![
            t.index.to_string(),
            t.state.clone(),
            t.attempts.to_string(),
            t.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            t.reason.clone().unwrap_or_default(),
            message.lines().next().unwrap_or("").to_string(),
        ]);
    }
    crate::cmd_get::render(&rows)
}
