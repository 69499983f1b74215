//! One node's connection to its region's JetStream cluster. The client runs on a runtime
//! of its own (one worker thread), so that the broker's synchronous storage calls can wait
//! for an answer from any thread, a worker of the node's runtime included, without the
//! connection ever waiting for the thread that waits for it.

use std::future::Future;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use async_nats::jetstream;

use crate::settings::JetStreamSettings;

/// Why the engine could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("{0}")]
    Settings(String),
    #[error("connecting to JetStream at {servers}: {source}")]
    Connect {
        servers: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("JetStream: {what}: {source}")]
    Request {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("JetStream: {what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("the JetStream engine's runtime: {0}")]
    Runtime(#[from] std::io::Error),
    #[error("the JetStream engine has shut down")]
    Stopped,
}

impl EngineError {
    /// Whether trying again may succeed: a request that got no answer or an error from
    /// the cluster, not a refusal of what was asked.
    pub fn is_transient(&self) -> bool {
        matches!(self, EngineError::Request { .. })
    }

    /// A failed request, said with what it was for.
    pub fn request(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        EngineError::Request {
            what: what.into(),
            source: Box::new(source),
        }
    }
}

/// What the broker's storage seam reports when the engine fails: `storage-engine`.
impl From<EngineError> for broker::error::BrokerError {
    fn from(e: EngineError) -> Self {
        broker::error::BrokerError::Engine {
            reason: e.to_string(),
        }
    }
}

/// A connected client and the runtime it runs on.
pub struct Engine {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    client: async_nats::Client,
    context: jetstream::Context,
    settings: JetStreamSettings,
}

impl Engine {
    /// Connects to the cluster `settings` name; fails when no server answers.
    pub fn connect(settings: JetStreamSettings) -> Result<Arc<Engine>, EngineError> {
        if let Some(problem) = settings.problem() {
            return Err(EngineError::Settings(problem));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("jetstream")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let options = connect_options(&settings);
        let servers = settings.servers.clone();
        let client = wait_for(&handle, async move { options.connect(servers).await })?.map_err(
            |source| EngineError::Connect {
                servers: settings.servers.join(","),
                source,
            },
        )?;
        // The context starts a task of its own: on the engine's runtime.
        let _on_engine = handle.enter();
        let context = jetstream::ContextBuilder::new()
            .timeout(settings.request_timeout)
            .build(client.clone());
        Ok(Arc::new(Engine {
            runtime: Some(runtime),
            handle,
            client,
            context,
            settings,
        }))
    }

    /// Runs `work` on the engine's runtime and waits for its answer, from any thread but
    /// the engine's own.
    pub fn run<F>(&self, work: F) -> Result<F::Output, EngineError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        wait_for(&self.handle, work)
    }

    /// Runs `work` on the engine's runtime; for async callers on another runtime.
    pub async fn spawn<F>(&self, work: F) -> Result<F::Output, EngineError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle
            .spawn(work)
            .await
            .map_err(|_| EngineError::Stopped)
    }

    /// Starts `work` on the engine's runtime and leaves it running (until it ends, or is
    /// aborted through the handle returned).
    pub fn detach<F>(&self, work: F) -> tokio::task::AbortHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.handle.spawn(work).abort_handle()
    }

    /// [`Engine::run`] of work that may fail itself: one error either way.
    pub fn run_fallible<T, F>(&self, work: F) -> Result<T, EngineError>
    where
        F: Future<Output = Result<T, EngineError>> + Send + 'static,
        T: Send + 'static,
    {
        self.run(work)?
    }

    /// Runs the work `attempt` makes, again while it fails transiently, for up to
    /// `retry_for` (`attempt` must be safe to repeat: every caller's is idempotent or
    /// fenced).
    pub fn run_retrying<F, Fut, T>(&self, attempt: F) -> Result<T, EngineError>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, EngineError>> + Send + 'static,
        T: Send + 'static,
    {
        self.run(retrying(self.settings.retry_for, attempt))?
    }

    /// [`Engine::run_retrying`] for async callers.
    pub async fn spawn_retrying<F, Fut, T>(&self, attempt: F) -> Result<T, EngineError>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, EngineError>> + Send + 'static,
        T: Send + 'static,
    {
        self.spawn(retrying(self.settings.retry_for, attempt))
            .await?
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn context(&self) -> &jetstream::Context {
        &self.context
    }

    pub fn settings(&self) -> &JetStreamSettings {
        &self.settings
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Dropping a runtime waits for its tasks, which a runtime's own thread may not do:
        // let them go in the background instead.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn retrying<F, Fut, T>(retry_for: Duration, attempt: F) -> Result<T, EngineError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, EngineError>>,
{
    let started = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        match attempt().await {
            Err(e) if e.is_transient() && started.elapsed() + pause < retry_for => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            done => return done,
        }
    }
}

fn wait_for<F>(handle: &tokio::runtime::Handle, work: F) -> Result<F::Output, EngineError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(work.await);
    });
    rx.recv().map_err(|_| EngineError::Stopped)
}

fn connect_options(settings: &JetStreamSettings) -> async_nats::ConnectOptions {
    let mut options = async_nats::ConnectOptions::new()
        .name("georouter")
        .connection_timeout(settings.request_timeout)
        .request_timeout(Some(settings.request_timeout));
    if let (Some(user), Some(password)) = (&settings.user, &settings.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &settings.token {
        options = options.token(token.clone());
    }
    if let Some(ca) = &settings.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&settings.tls_cert, &settings.tls_key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    options
}
