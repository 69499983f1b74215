//! The DR write gate reads a snapshot of the tasks: a task change that is being stored
//! (its fsync held open here by a metadata store that waits on the test) does not stall
//! produce, and the gate still refuses what the tasks in effect refuse.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use broker::meta::{MemoryMetaStore, MetaError, MetaStore, TaskCheckpoint, TimerKey, TopicConfig};
use broker::{Broker, BrokerConfig, BrokerError, Cursor, Partitioning};
use replicator::{Dr, Replicator, ReplicatorConfig, TaskSpec};
use topology::{ResidencySpec, Topology, TopologySpec};

/// A metadata store whose `put_task_record` (the catalog's persist step) waits, once
/// armed, until the test releases it.
#[derive(Default)]
struct HeldMeta {
    inner: MemoryMetaStore,
    /// (armed, released)
    hold: Mutex<(bool, bool)>,
    changed: Condvar,
    /// Signalled when a persist is waiting.
    entered: tokio::sync::Notify,
}

impl HeldMeta {
    fn arm(&self) {
        self.hold.lock().unwrap().0 = true;
    }

    fn release(&self) {
        self.hold.lock().unwrap().1 = true;
        self.changed.notify_all();
    }
}

impl MetaStore for HeldMeta {
    fn put_topic(&self, topic: &TopicConfig) -> Result<(), MetaError> {
        self.inner.put_topic(topic)
    }
    fn delete_topic(&self, name: &str) -> Result<(), MetaError> {
        self.inner.delete_topic(name)
    }
    fn topics(&self) -> Result<Vec<TopicConfig>, MetaError> {
        self.inner.topics()
    }
    fn put_cursor(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        cursor: &Cursor,
    ) -> Result<(), MetaError> {
        self.inner.put_cursor(group, topic, partition, cursor)
    }
    fn cursors(&self, group: &str, topic: &str) -> Result<Vec<(u32, Cursor)>, MetaError> {
        self.inner.cursors(group, topic)
    }
    fn all_cursors(&self) -> Result<Vec<(String, String, u32, Cursor)>, MetaError> {
        self.inner.all_cursors()
    }
    fn put_checkpoint(&self, checkpoint: &TaskCheckpoint) -> Result<(), MetaError> {
        self.inner.put_checkpoint(checkpoint)
    }
    fn checkpoints(&self, task: &str) -> Result<Vec<TaskCheckpoint>, MetaError> {
        self.inner.checkpoints(task)
    }
    fn checkpoint(
        &self,
        task: &str,
        topic: &str,
        partition: u32,
        origin: &str,
    ) -> Result<Option<TaskCheckpoint>, MetaError> {
        self.inner.checkpoint(task, topic, partition, origin)
    }
    fn task_started(&self, task: &str, now_ms: i64) -> Result<i64, MetaError> {
        self.inner.task_started(task, now_ms)
    }
    fn put_task_record(&self, name: &str, record: &[u8]) -> Result<(), MetaError> {
        let mut hold = self.hold.lock().unwrap();
        if hold.0 {
            self.entered.notify_one();
            while !hold.1 {
                hold = self.changed.wait(hold).unwrap();
            }
        }
        drop(hold);
        self.inner.put_task_record(name, record)
    }
    fn task_records(&self) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        self.inner.task_records()
    }
    fn put_shared_record(
        &self,
        kind: broker::meta::SharedKind,
        name: &str,
        record: &[u8],
    ) -> Result<(), MetaError> {
        self.inner.put_shared_record(kind, name, record)
    }
    fn shared_records(
        &self,
        kind: broker::meta::SharedKind,
    ) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        self.inner.shared_records(kind)
    }
    fn put_pop_states(&self, g: &str, t: &str, states: &[(u32, Vec<u8>)]) -> Result<(), MetaError> {
        self.inner.put_pop_states(g, t, states)
    }
    fn pop_states(&self, g: &str, t: &str) -> Result<Vec<(u32, Vec<u8>)>, MetaError> {
        self.inner.pop_states(g, t)
    }
    fn write_timers(&self, changes: &[(TimerKey, Option<Vec<u8>>)]) -> Result<(), MetaError> {
        self.inner.write_timers(changes)
    }
    fn timers_from(&self, from: TimerKey, n: usize) -> Result<Vec<(TimerKey, Vec<u8>)>, MetaError> {
        self.inner.timers_from(from, n)
    }
    fn timer(&self, key: TimerKey) -> Result<Option<Vec<u8>>, MetaError> {
        self.inner.timer(key)
    }
    fn flush(&self) -> Result<(), MetaError> {
        self.inner.flush()
    }
}

fn dr_task(name: &str, topic: &str, primary: &str) -> TaskSpec {
    let mut spec = TaskSpec::new(name, &["a"], &["b"], topic);
    spec.dr = Some(Dr {
        primary: primary.into(),
        epoch: 1,
        promoting: None,
    });
    spec
}

fn record(body: &str) -> broker::Record {
    broker::Record {
        body: body.as_bytes().to_vec().into(),
        ..Default::default()
    }
}

/// Runs `f` on a thread of its own; its result arrives on the receiver.
fn on_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> (std::thread::JoinHandle<()>, std::sync::mpsc::Receiver<T>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    (thread, rx)
}

/// The result from `rx` if it comes within 10 s (a bound on failure, not a wait for
/// success: a call that does not block answers at once).
async fn within<T: Send + 'static>(rx: std::sync::mpsc::Receiver<T>) -> Option<T> {
    tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(10)).ok())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_is_not_blocked_while_a_task_change_is_being_stored() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    replicator::certs::write_deployment(&certs, &["a".into(), "b".into()], 30).unwrap();
    let pem = |file: &str| std::fs::read_to_string(certs.join(file)).unwrap();
    let identity =
        replicator::tls::Identity::from_pem(&pem("ca.pem"), &pem("a.pem"), &pem("a.key")).unwrap();
    // "b" dials and never comes: the node runs alone.
    let mut spec = TopologySpec::mesh(&["a", "b"]);
    spec.links[0].dial = Some("b".into());
    let topology = Topology::new(&spec, &ResidencySpec::default(), "a").unwrap();
    let meta = Arc::new(HeldMeta::default());
    let broker = Arc::new(
        Broker::open(
            BrokerConfig {
                region: "a".into(),
                data_dir: dir.path().join("data"),
                storage: Default::default(),
                default_retention: Default::default(),
            },
            meta.clone(),
        )
        .unwrap(),
    );
    // "a" is the primary of "orders" and a read-only standby of "standby".
    let tasks = vec![
        dr_task("dr-orders", "orders", "a"),
        dr_task("dr-standby", "standby", "b"),
    ];
    let replicator = Arc::new(
        Replicator::start(
            ReplicatorConfig {
                region: "a".into(),
                identity,
                topology,
                tasks,
                settings: Default::default(),
                config_digest: String::new(),
                metrics: Default::default(),
                crew: None,
            },
            broker.clone(),
            std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
        )
        .unwrap(),
    );
    for topic in ["orders", "standby"] {
        broker.create_topic(topic, 1, None).unwrap();
    }

    // A task change from the console, held inside its persist step.
    meta.arm();
    let change = {
        let replicator = replicator.clone();
        std::thread::spawn(move || {
            replicator.create_task(
                TaskSpec::new("other", &["a"], &["b"], "other-*"),
                &replicator::Authorship::region(),
            )
        })
    };
    tokio::time::timeout(Duration::from_secs(30), meta.entered.notified())
        .await
        .expect("the task change to reach its persist step");

    // Meanwhile, produce goes through the gate: accepted where this region is primary,
    // refused where it is a standby. Each call runs on a thread of its own, so one stuck
    // on a lock blocks neither the test nor the node; it ends once the hold is released.
    let produce = |topic: &'static str| {
        let broker = broker.clone();
        on_thread(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(broker.produce(topic, vec![record("r")], Partitioning::Explicit(0)))
        })
    };
    let (accepting, accepted) = produce("orders");
    let accepted = within(accepted).await;
    let (refusing, refused) = produce("standby");
    let refused = within(refused).await;
    // The change is in effect only once it is stored.
    let (looking, visible) = {
        let replicator = replicator.clone();
        on_thread(move || replicator.task("other").is_some())
    };
    let visible_while_stored = within(visible).await;
    meta.release();
    let changed = change.join().unwrap();
    for thread in [accepting, refusing, looking] {
        thread.join().unwrap();
    }

    let accepted = accepted.expect("produce completes while a task change is being stored");
    assert_eq!(accepted.unwrap().len(), 1);
    let refused = refused.expect("a refused produce completes too");
    assert!(
        matches!(refused, Err(BrokerError::ReadOnly { .. })),
        "the gate still refuses produce on a standby's topic"
    );
    assert!(
        !visible_while_stored.expect("the tasks can be read while a change is being stored"),
        "a change takes effect once stored"
    );
    assert_eq!(changed.unwrap().version, 1);
    assert!(replicator.task("other").is_some());
    replicator.shut_down().await;
}
