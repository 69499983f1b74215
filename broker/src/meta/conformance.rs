//! What every [`MetaStore`] engine must do, as one check the engines' tests run (the sled
//! and in-memory stores here, the JetStream store in its crate): each operation, read back.

use super::{MessageType, MetaStore, Retention, SharedKind, TaskCheckpoint, TopicConfig};
use crate::cursor::Cursor;

/// Exercises every operation of `store` and checks what it reads back. `store` must be
/// empty.
pub fn exercise(store: &dyn MetaStore) {
    store.put_task_record("t1", b"one").unwrap();
    store.put_task_record("t1", b"two").unwrap();
    assert_eq!(
        store.task_records().unwrap(),
        vec![("t1".to_string(), b"two".to_vec())]
    );
    store
        .put_shared_record(SharedKind::Groups, "g1", b"group")
        .unwrap();
    assert_eq!(
        store.shared_records(SharedKind::Groups).unwrap(),
        vec![("g1".to_string(), b"group".to_vec())]
    );
    assert!(
        store
            .shared_records(SharedKind::Principals)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.task_records().unwrap().len(),
        1,
        "separate from tasks"
    );
    let topic = TopicConfig {
        name: "orders".into(),
        partitions: 3,
        retention: Retention {
            max_bytes: 10,
            max_age_ms: 0,
        },
        message_type: MessageType::Fifo,
        incarnation: 7,
    };
    store.put_topic(&topic).unwrap();
    store
        .put_topic(&TopicConfig {
            name: "audit".into(),
            ..topic.clone()
        })
        .unwrap();
    let cursor: Cursor = [("eu", 4u64), ("us", 9)].into_iter().collect();
    store.put_cursor("g", "orders", 2, &cursor).unwrap();
    store
        .put_cursor("g", "orders", 0, &Cursor::default())
        .unwrap();
    store.put_cursor("g2", "orders", 1, &cursor).unwrap();
    store.put_cursor("g", "orders-x", 1, &cursor).unwrap();
    let one = |p: u32, bytes: &[u8]| vec![(p, bytes.to_vec())];
    store
        .put_pop_states("g", "orders", &one(3, b"three"))
        .unwrap();
    store
        .put_pop_states("g", "orders", &one(3, b"three again"))
        .unwrap();
    store
        .put_pop_states("g", "orders-x", &one(1, b"other topic"))
        .unwrap();
    store
        .put_pop_states("g2", "orders", &one(0, b"other group"))
        .unwrap();
    assert_eq!(
        store.pop_states("g", "orders").unwrap(),
        vec![(3, b"three again".to_vec())]
    );
    assert_eq!(
        store.cursors("g", "orders").unwrap(),
        vec![(0, Cursor::default()), (2, cursor.clone())]
    );
    let names: Vec<_> = store
        .topics()
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["audit", "orders"]);
    let checkpoint = TaskCheckpoint {
        task: "dr".into(),
        topic: "orders".into(),
        partition: 1,
        origin: "eu".into(),
        offset: 7,
        incarnation: 3,
        target_incarnation: 4,
    };
    store.put_checkpoint(&checkpoint).unwrap();
    store
        .put_checkpoint(&TaskCheckpoint {
            offset: 9,
            ..checkpoint.clone()
        })
        .unwrap();
    store
        .put_checkpoint(&TaskCheckpoint {
            task: "dr2".into(),
            ..checkpoint.clone()
        })
        .unwrap();
    assert_eq!(
        store.checkpoints("dr").unwrap(),
        vec![TaskCheckpoint {
            offset: 9,
            ..checkpoint.clone()
        }]
    );
    assert_eq!(
        store.checkpoint("dr", "orders", 1, "eu").unwrap(),
        Some(TaskCheckpoint {
            offset: 9,
            ..checkpoint.clone()
        })
    );
    for (task, topic, partition, origin) in [
        ("dr", "orders", 1, "us"),
        ("dr", "orders", 0, "eu"),
        ("dr", "order", 1, "eu"),
        ("d", "orders", 1, "eu"),
    ] {
        assert_eq!(
            store.checkpoint(task, topic, partition, origin).unwrap(),
            None,
            "{task} {topic} {partition} {origin}"
        );
    }
    assert_eq!(store.task_started("dr", 5).unwrap(), 5);
    assert_eq!(store.task_started("dr", 9).unwrap(), 5);
    store.delete_topic("orders").unwrap();
    assert!(store.cursors("g", "orders").unwrap().is_empty());
    assert_eq!(store.cursors("g", "orders-x").unwrap().len(), 1);
    assert!(store.pop_states("g", "orders").unwrap().is_empty());
    assert_eq!(store.pop_states("g", "orders-x").unwrap().len(), 1);
    store.flush().unwrap();

    // Timers come back in key order (due time, then sequence); one call may add some and
    // remove others.
    let timer = |due: u64, seq: u64| {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&due.to_be_bytes());
        key[8..].copy_from_slice(&seq.to_be_bytes());
        key
    };
    store
        .write_timers(&[
            (timer(20, 1), Some(b"b".to_vec())),
            (timer(10, 2), Some(b"a".to_vec())),
            (timer(30, 0), Some(b"c".to_vec())),
        ])
        .unwrap();
    store
        .write_timers(&[(timer(30, 0), None), (timer(25, 0), Some(b"d".to_vec()))])
        .unwrap();
    assert_eq!(
        store.timers_from([0; 16], 10).unwrap(),
        vec![
            (timer(10, 2), b"a".to_vec()),
            (timer(20, 1), b"b".to_vec()),
            (timer(25, 0), b"d".to_vec()),
        ]
    );
    assert_eq!(
        store.timers_from(timer(15, 0), 1).unwrap(),
        vec![(timer(20, 1), b"b".to_vec())]
    );
    assert_eq!(store.timer(timer(30, 0)).unwrap(), None);
    assert_eq!(store.timer(timer(25, 0)).unwrap(), Some(b"d".to_vec()));
    // Names hold '.' and '%' (dead-letter topics): they stay apart and come back whole.
    store.put_cursor("g.1", "%DLQ%g.1", 4, &cursor).unwrap();
    assert!(store.all_cursors().unwrap().contains(&(
        "g.1".to_string(),
        "%DLQ%g.1".to_string(),
        4,
        cursor.clone()
    )));
    assert!(store.cursors("g", "%DLQ%g.1").unwrap().is_empty());
    store.flush().unwrap();
}
