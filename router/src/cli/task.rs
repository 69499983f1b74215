//! `georouter task create|list|show|pause|resume|delete`: the console API's task routes
//! from the command line (`--console HOST:PORT`, `--token`), with `--json` for scripts.
//! Changes read the task's version first and send it in `If-Match`, like the web console.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(clap::Args, Clone)]
pub struct ConsoleArg {
    /// The region's console address.
    #[arg(
        long,
        env = "GEOROUTER_CONSOLE",
        default_value = "127.0.0.1:7300",
        global = true
    )]
    console: String,
    /// A console bearer token (`[console] admin_tokens` or `read_tokens`).
    #[arg(long, env = "GEOROUTER_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Print the API's JSON instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(clap::Subcommand)]
pub enum TaskCommand {
    /// List every task with its state and lag.
    List(ConsoleArg),
    /// Show one task with its per-sub-log status.
    Show {
        name: String,
        #[command(flatten)]
        console: ConsoleArg,
    },
    /// Create a task.
    Create {
        #[command(flatten)]
        spec: Box<SpecArgs>,
        #[command(flatten)]
        console: ConsoleArg,
    },
    /// Pause a task (it keeps its checkpoints).
    Pause {
        name: String,
        #[command(flatten)]
        console: ConsoleArg,
    },
    /// Resume a paused task from its checkpoints.
    Resume {
        name: String,
        #[command(flatten)]
        console: ConsoleArg,
    },
    /// Delete a task.
    Delete {
        name: String,
        #[command(flatten)]
        console: ConsoleArg,
    },
}

#[derive(clap::Args)]
pub struct SpecArgs {
    /// Task name.
    name: String,
    /// Source regions, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    sources: Vec<String>,
    /// Target regions, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    targets: Vec<String>,
    /// Topic glob.
    #[arg(long)]
    topics: String,
    /// one-way or two-way.
    #[arg(long, default_value = "one-way")]
    direction: String,
    /// Topic name at the target; {topic} is the source name.
    #[arg(long)]
    rename: Option<String>,
    /// Only records with these tags, comma-separated.
    #[arg(long, value_delimiter = ',')]
    tags: Vec<String>,
    /// earliest, latest or an RFC 3339 time.
    #[arg(long, default_value = "earliest")]
    start: String,
    #[arg(long)]
    max_records_per_s: Option<u32>,
    #[arg(long)]
    max_bytes_per_s: Option<u32>,
    /// Make it a DR task with this region as its primary (the others are read-only).
    #[arg(long)]
    dr_primary: Option<String>,
    /// Consumer groups (a glob) whose cursors sync among the task's regions.
    #[arg(long)]
    groups: Option<String>,
}

pub(crate) struct Console {
    arg: ConsoleArg,
    client: Client<HttpConnector, Full<Bytes>>,
}

pub(crate) struct Reply {
    status: u16,
    etag: Option<String>,
    pub body: serde_json::Value,
}

impl Console {
    pub(crate) fn new(arg: ConsoleArg) -> Self {
        Console {
            arg,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        version: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Result<Reply> {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.arg.console));
        if let Some(token) = &self.arg.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(v) = version {
            request = request.header("if-match", v);
        }
        let bytes = match body {
            Some(b) => {
                request = request.header("content-type", "application/json");
                serde_json::to_vec(&b)?
            }
            None => Vec::new(),
        };
        let response = self
            .client
            .request(request.body(Full::new(Bytes::from(bytes)))?)
            .await
            .with_context(|| format!("reaching the console at {}", self.arg.console))?;
        let status = response.status().as_u16();
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let raw = response.into_body().collect().await?.to_bytes();
        let body = if raw.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&raw).unwrap_or_else(|_| String::from_utf8_lossy(&raw).into())
        };
        if status >= 400 {
            let error = &body["error"];
            let field = error["field"]
                .as_str()
                .map(|f| format!(" (field {f})"))
                .unwrap_or_default();
            bail!(
                "{} {}: {}{field}",
                status,
                error["code"].as_str().unwrap_or("ERROR"),
                error["message"].as_str().unwrap_or("request failed")
            );
        }
        Ok(Reply { status, etag, body })
    }

    /// Reads the task's version and sends the change with it.
    async fn change(&self, method: &str, name: &str, suffix: &str) -> Result<Reply> {
        let path = format!("/api/v1/tasks/{name}");
        let current = self.call("GET", &path, None, None).await?;
        let version = current.etag.context("the console sent no task version")?;
        self.call(method, &format!("{path}{suffix}"), Some(&version), None)
            .await
    }
}

fn print_task(task: &serde_json::Value) {
    let spec = &task["spec"];
    let list = |v: &serde_json::Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    println!(
        "{:<24} {:<8} v{:<4} {} -> {} topics {} lag {} records {:.1} s, {:.0} records/s{}",
        task["name"].as_str().unwrap_or_default(),
        task["state"].as_str().unwrap_or_default(),
        task["version"],
        list(&spec["sources"]),
        list(&spec["targets"]),
        spec["topics"].as_str().unwrap_or_default(),
        task["status"]["lag_records"],
        task["status"]["lag_seconds"].as_f64().unwrap_or(0.0),
        task["status"]["records_per_s"].as_f64().unwrap_or(0.0),
        task["status"]["last_error"]
            .as_str()
            .map(|e| format!(" (last error: {e})"))
            .unwrap_or_default(),
    );
}

fn output(json: bool, body: &serde_json::Value) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(body)?);
    } else if let Some(tasks) = body["tasks"].as_array() {
        if tasks.is_empty() {
            println!("no tasks");
        }
        tasks.iter().for_each(print_task);
    } else {
        print_task(body);
    }
    Ok(())
}

pub async fn run(command: TaskCommand) -> Result<()> {
    match command {
        TaskCommand::List(arg) => {
            let json = arg.json;
            let reply = Console::new(arg)
                .call("GET", "/api/v1/tasks", None, None)
                .await?;
            output(json, &reply.body)
        }
        TaskCommand::Show { name, console } => {
            let json = console.json;
            let reply = Console::new(console)
                .call("GET", &format!("/api/v1/tasks/{name}"), None, None)
                .await?;
            output(json, &reply.body)?;
            if !json {
                for s in reply.body["status"]["sub_logs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    println!(
                        "  {}/{}@{}  from {}  local end {}  lag {} records",
                        s["topic"].as_str().unwrap_or_default(),
                        s["partition"],
                        s["origin"].as_str().unwrap_or_default(),
                        s["source"].as_str().unwrap_or("-"),
                        s["local_end"],
                        s["lag_records"]
                    );
                }
            }
            Ok(())
        }
        TaskCommand::Create { spec, console } => {
            let json = console.json;
            let mut body = serde_json::json!({
                "name": spec.name, "sources": spec.sources, "targets": spec.targets,
                "topics": spec.topics, "direction": spec.direction, "start": spec.start,
                "tags": spec.tags,
            });
            if let Some(r) = spec.rename {
                body["rename"] = r.into();
            }
            if let Some(n) = spec.max_records_per_s {
                body["max_records_per_s"] = n.into();
            }
            if let Some(n) = spec.max_bytes_per_s {
                body["max_bytes_per_s"] = n.into();
            }
            if let Some(primary) = spec.dr_primary {
                body["dr"] = serde_json::json!({ "primary": primary });
            }
            if let Some(groups) = spec.groups {
                body["groups"] = groups.into();
            }
            let reply = Console::new(console)
                .call("POST", "/api/v1/tasks", None, Some(body))
                .await?;
            debug_assert_eq!(reply.status, 201);
            output(json, &reply.body)
        }
        TaskCommand::Pause { name, console } => set_state(name, console, "/pause").await,
        TaskCommand::Resume { name, console } => set_state(name, console, "/resume").await,
        TaskCommand::Delete { name, console } => {
            let json = console.json;
            Console::new(console).change("DELETE", &name, "").await?;
            if json {
                println!("{}", serde_json::json!({"deleted": name}));
            } else {
                println!("deleted task {name}");
            }
            Ok(())
        }
    }
}

async fn set_state(name: String, console: ConsoleArg, action: &str) -> Result<()> {
    let json = console.json;
    let reply = Console::new(console).change("POST", &name, action).await?;
    output(json, &reply.body)
}
