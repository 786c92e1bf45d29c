//! The store end to end on a disk that fails: recovery, power loss under each sync policy,
//! reclaiming space under churn, and damage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::sync::mpsc;

use super::file::FaultStorage;
use super::*;

const SEGMENT: u64 = 64 * 1024;

fn config(sync: SyncPolicy) -> StoreConfig {
    StoreConfig {
        segment_size: SEGMENT,
        sync,
    }
}

fn body(msg: u64, len: usize) -> Bytes {
    let mut v = msg.to_le_bytes().to_vec();
    v.resize(len.max(8), (msg % 251) as u8);
    Bytes::from(v)
}

fn enqueue(queue: u32, msg: u64, len: usize) -> Op {
    Op::Enqueue {
        msg,
        meta: Meta::default(),
        refs: vec![Ref {
            queue,
            ..Default::default()
        }],
        body: body(msg, len),
        cold: false,
    }
}

fn enqueue_cold(queue: u32, msg: u64, len: usize) -> Op {
    match enqueue(queue, msg, len) {
        Op::Enqueue {
            msg,
            meta,
            refs,
            body,
            ..
        } => Op::Enqueue {
            msg,
            meta,
            refs,
            body,
            cold: true,
        },
        other => other,
    }
}

/// Submits `ops` followed by a `Done` and waits for its answer.
fn durable(store: &Store, mut ops: Vec<Op>) -> Result<(), String> {
    let (tx, rx) = mpsc::channel();
    ops.push(Op::Done(Box::new(move |r| {
        let _ = tx.send(r);
    })));
    store.submit(ops);
    rx.recv().unwrap()
}

fn declare(store: &Store, name: &str) -> u32 {
    let queue = store.next_queue_id();
    durable(
        store,
        vec![Op::DeclareQueue {
            queue,
            name: name.into(),
            props: b"props".to_vec(),
        }],
    )
    .unwrap();
    queue
}

fn ids(r: &Recovery, name: &str) -> Vec<u64> {
    r.queues
        .iter()
        .find(|q| q.name == name)
        .map(|q| q.messages.iter().map(|m| m.msg).collect())
        .unwrap_or_default()
}

#[test]
fn queues_and_messages_come_back_in_order_with_their_bodies_and_counts() {
    let storage = FaultStorage::default();
    let (store, r) = Store::open(storage.clone(), config(SyncPolicy::Always)).unwrap();
    assert!(r.queues.is_empty());
    let a = declare(&store, "a");
    let b = declare(&store, "b");
    let mut ops = Vec::new();
    for _ in 0..300 {
        let msg = store.next_message_id();
        ops.push(enqueue(if msg % 3 == 0 { b } else { a }, msg, 700));
    }
    durable(&store, ops).unwrap();
    // Settle every even message of a; one update on a message of b.
    let settle: Vec<Op> = (0..300u64)
        .filter(|m| m % 3 != 0 && m % 2 == 0)
        .map(|msg| Op::Settle { queue: a, msg })
        .collect();
    durable(&store, settle).unwrap();
    durable(
        &store,
        vec![Op::Update {
            queue: b,
            msg: 3,
            delivery_count: 2,
            annotations: b"x".to_vec(),
        }],
    )
    .unwrap();
    assert!(store.stats().segments > 1, "{:?}", store.stats());
    store.close();
    drop(store);

    let (store, r) = Store::open(storage, config(SyncPolicy::Always)).unwrap();
    let want_a: Vec<u64> = (0..300).filter(|m| m % 3 != 0 && m % 2 == 1).collect();
    let want_b: Vec<u64> = (0..300).filter(|m| m % 3 == 0).collect();
    assert_eq!(ids(&r, "a"), want_a);
    assert_eq!(ids(&r, "b"), want_b);
    let qb = r.queues.iter().find(|q| q.name == "b").unwrap();
    assert_eq!(qb.props, b"props");
    let m3 = qb.messages.iter().find(|m| m.msg == 3).unwrap();
    assert_eq!(m3.delivery_count, 2);
    assert_eq!(index::annotation_changes(&m3.annotations), [&b"x"[..]]);
    for &msg in want_a.iter().chain(&want_b) {
        assert_eq!(store.read(msg).unwrap(), body(msg, 700), "message {msg}");
    }
    assert!(matches!(store.read(2), Err(ReadError::Missing(2))));
    // Ids continue above everything the log mentions.
    assert!(store.next_message_id() >= 300);
    assert!(store.next_queue_id() > b);
}

#[test]
fn a_failed_write_is_reported_to_every_waiter_and_refuses_what_follows() {
    let storage = FaultStorage::default();
    let (store, _) = Store::open(storage.clone(), config(SyncPolicy::Always)).unwrap();
    let q = declare(&store, "q");
    durable(&store, vec![enqueue(q, store.next_message_id(), 100)]).unwrap();
    storage.with_file(1, |f| f.fail_syncs = 1).unwrap();
    let msg = store.next_message_id();
    assert!(durable(&store, vec![enqueue(q, msg, 100)]).is_err());
    assert!(store.failure().is_some());
    let later = store.next_message_id();
    assert!(durable(&store, vec![enqueue(q, later, 100)]).is_err());
}

/// Runs producers against a store until the plug is pulled after `cut` acknowledged
/// batches, and returns (acknowledged ids, recovered ids).
fn power_loss_run(policy: SyncPolicy, cut: usize, torn: usize) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let storage = FaultStorage::default();
    let (store, _) = Store::open(storage.clone(), config(policy)).unwrap();
    let q = declare(&store, "q");
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let (cut_tx, cut_rx) = mpsc::channel::<()>();
    let producers: Vec<_> = (0..3)
        .map(|_| {
            let store = Arc::clone(&store);
            let acked = Arc::clone(&acked);
            let cut_tx = cut_tx.clone();
            std::thread::spawn(move || {
                for _ in 0..400 {
                    let msgs: Vec<u64> = (0..4).map(|_| store.next_message_id()).collect();
                    let ops = msgs.iter().map(|&m| enqueue(q, m, 300)).collect();
                    match durable(&store, ops) {
                        Ok(()) => {
                            acked.lock().unwrap().extend(msgs);
                            let _ = cut_tx.send(());
                        }
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    drop(cut_tx);
    for _ in 0..cut {
        if cut_rx.recv().is_err() {
            break;
        }
    }
    storage.pull_plug(torn);
    for p in producers {
        p.join().unwrap();
    }
    store.close();
    drop(store);
    storage.restore();
    let (_, r) = Store::open(storage, config(policy)).unwrap();
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    (acked, ids(&r, "q").into_iter().collect())
}

/// The power goes at a random moment with the last write torn at a random sector: under
/// `always` every acknowledged message is recovered.
#[test]
fn power_loss_under_always_loses_nothing_acknowledged() {
    for seed in 0..24usize {
        let cut = 1 + (seed * 37) % 200;
        let (acked, recovered) = power_loss_run(SyncPolicy::Always, cut, seed % 9);
        let lost: Vec<_> = acked.difference(&recovered).collect();
        assert!(
            lost.is_empty(),
            "seed {seed}: lost {} of {}: {lost:?}",
            lost.len(),
            acked.len()
        );
        assert!(acked.len() >= cut.min(1));
    }
}

/// The same test under `never` must lose acknowledged messages: the test can tell.
#[test]
fn power_loss_under_never_demonstrably_loses_acknowledged_messages() {
    let mut lost_total = 0;
    for seed in 0..6usize {
        let (acked, recovered) = power_loss_run(SyncPolicy::Never, 50 + seed * 20, seed % 9);
        lost_total += acked.difference(&recovered).count();
    }
    assert!(
        lost_total > 0,
        "never-sync lost nothing: the power-loss test cannot tell"
    );
}

/// One message per segment stays unsettled while everything else is settled: compaction
/// keeps the log within 2 × live bytes + 2 segments instead of growing with the traffic.
#[test]
fn churn_with_one_unsettled_message_per_segment_keeps_the_log_bounded() {
    let storage = FaultStorage::default();
    let (store, _) = Store::open(storage.clone(), config(SyncPolicy::Never)).unwrap();
    let q = declare(&store, "q");
    // A binding-like object, and one deleted again: compaction carries the first along.
    let (kept_obj, gone_obj) = (store.next_queue_id(), store.next_queue_id());
    durable(
        &store,
        vec![
            Op::DeclareObject {
                kind: 7,
                id: kept_obj,
                name: "binding".into(),
                props: b"key.#".to_vec(),
            },
            Op::DeclareObject {
                kind: 7,
                id: gone_obj,
                name: "old".into(),
                props: Vec::new(),
            },
            Op::DeleteObject {
                kind: 7,
                id: gone_obj,
            },
        ],
    )
    .unwrap();
    let mut kept = Vec::new();
    let mut max_segments = 0;
    // 40 MiB of traffic through 64 KiB segments: about 640 segments' worth.
    for round in 0..400u64 {
        let msgs: Vec<u64> = (0..100).map(|_| store.next_message_id()).collect();
        durable(&store, msgs.iter().map(|&m| enqueue(q, m, 1000)).collect()).unwrap();
        // Each round is about 1.6 segments: keep its first message, settle the rest.
        let settle = msgs
            .iter()
            .skip(1)
            .map(|&msg| Op::Settle { queue: q, msg })
            .collect();
        kept.push(msgs[0]);
        durable(&store, settle).unwrap();
        let s = store.stats();
        max_segments = max_segments.max(s.segments);
        // The bound reclaim keeps (2 × live + 2 segments), plus what one batch adds before
        // reclaim runs again and the compactions a batch may defer (bounded per batch).
        assert!(
            s.segments * SEGMENT <= 2 * s.live_bytes + 6 * SEGMENT,
            "round {round}: {} segments for {} live bytes",
            s.segments,
            s.live_bytes
        );
    }
    let s = store.stats();
    assert!(s.relocated > 0 && s.retired > 600, "{s:?}");
    store.close();
    drop(store);
    let (_, r) = Store::open(storage, config(SyncPolicy::Never)).unwrap();
    assert_eq!(ids(&r, "q"), kept);
    assert_eq!(
        r.objects,
        [RecoveredObject {
            kind: 7,
            id: kept_obj,
            name: "binding".into(),
            props: b"key.#".to_vec()
        }]
    );
    eprintln!(
        "churn: {} kept messages ({} live bytes), at most {max_segments} segments of {SEGMENT} bytes, {} relocated, {} retired",
        kept.len(),
        s.live_bytes,
        s.relocated,
        s.retired
    );
}

#[test]
fn a_flipped_bit_in_an_older_segment_refuses_the_start_naming_the_place() {
    let storage = FaultStorage::default();
    let (store, _) = Store::open(storage.clone(), config(SyncPolicy::Always)).unwrap();
    let q = declare(&store, "q");
    for _ in 0..30 {
        let ops = (0..10)
            .map(|_| enqueue(q, store.next_message_id(), 900))
            .collect();
        durable(&store, ops).unwrap();
    }
    store.close();
    drop(store);
    storage.with_file(1, |f| f.flip_bit(8 * 5000 + 3)).unwrap();
    let err = Store::open(storage, config(SyncPolicy::Always))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("00000001.wal") && err.contains("offset"),
        "{err}"
    );
}

/// Below the reserve, new messages are refused with [`DISK_FULL`] while settles are still
/// written; once space is back, messages are taken again, without any other write.
#[test]
fn a_full_disk_refuses_new_messages_but_keeps_settling_and_recovers() {
    let storage = FaultStorage::default();
    let (store, _) = Store::open(storage.clone(), config(SyncPolicy::Always)).unwrap();
    let q = declare(&store, "q");
    let first = store.next_message_id();
    durable(&store, vec![enqueue(q, first, 100)]).unwrap();
    storage.set_free_space(Some(SEGMENT));
    let refused = store.next_message_id();
    assert_eq!(
        durable(&store, vec![enqueue(q, refused, 100)]),
        Err(DISK_FULL.to_string())
    );
    assert!(store.disk_full());
    durable(
        &store,
        vec![Op::Settle {
            queue: q,
            msg: first,
        }],
    )
    .unwrap();
    assert_eq!(store.stats().refused_full, 1);
    // Freed from outside: noticed within about a second with nothing else happening.
    storage.set_free_space(Some(100 * SEGMENT));
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.disk_full() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!store.disk_full());
    let later = store.next_message_id();
    durable(&store, vec![enqueue(q, later, 100)]).unwrap();
    store.close();
    drop(store);
    let (_, r) = Store::open(storage, config(SyncPolicy::Always)).unwrap();
    assert_eq!(ids(&r, "q"), [later]);
}

/// A paged-out backlog is held as runs, not per message, and is read back in order, across
/// segments, while another queue's traffic is interleaved with it and compaction moves it;
/// after a restart whatever was not settled is there, in order.
#[test]
fn paged_out_messages_come_back_in_order_through_compaction_and_restart() {
    let storage = FaultStorage::default();
    let (store, _) = Store::open(storage.clone(), config(SyncPolicy::Never)).unwrap();
    let a = declare(&store, "a");
    let b = declare(&store, "b");
    let mut cold = Vec::new();
    for _ in 0..60 {
        let mut ops = Vec::new();
        for _ in 0..50 {
            let m = store.next_message_id();
            cold.push(m);
            ops.push(enqueue_cold(a, m, 600));
            // Queue b's messages come and go between a's, so segments turn sparse.
            let n = store.next_message_id();
            ops.push(enqueue(b, n, 600));
            ops.push(Op::Settle { queue: b, msg: n });
        }
        durable(&store, ops).unwrap();
    }
    let s = store.stats();
    assert!(
        s.live_messages < 10,
        "cold messages are not held one by one: {s:?}"
    );
    // Read half back in chunks, settling as a consumer would.
    let mut got = Vec::new();
    while got.len() < 1500 {
        let paged = store.page_in(a, 100, 16 * 1024).unwrap();
        assert!(!paged.is_empty());
        for p in &paged {
            assert_eq!(p.body, body(p.msg, 600));
        }
        let ids: Vec<u64> = paged.iter().map(|p| p.msg).collect();
        durable(
            &store,
            ids.iter()
                .map(|&msg| Op::Settle { queue: a, msg })
                .collect(),
        )
        .unwrap();
        got.extend(ids);
        // More of b's traffic, so compaction copies a's remaining runs forward.
        let mut ops = Vec::new();
        for _ in 0..100 {
            let n = store.next_message_id();
            ops.push(enqueue(b, n, 900));
            ops.push(Op::Settle { queue: b, msg: n });
        }
        durable(&store, ops).unwrap();
    }
    assert_eq!(got, cold[..got.len()]);
    assert!(store.stats().relocated > 0, "{:?}", store.stats());
    store.close();
    drop(store);
    let (store, r) = Store::open(storage, config(SyncPolicy::Never)).unwrap();
    assert_eq!(ids(&r, "a"), cold[got.len()..]);
    assert!(ids(&r, "b").is_empty());
    // Recovered messages are held one by one; nothing is left in cold runs.
    assert!(store.page_in(a, 10, 1 << 20).unwrap().is_empty());
}
