//! Replays the committed corpus of the `engine_pair` fuzz target (`fuzz/corpus/engine_pair/`,
//! plus any local `fuzz/artifacts/engine_pair/`) through the same check the target runs,
//! `ferry::proto::fuzzing::engine_pair`, and runs it on a fixed set of pseudo-random scripts,
//! so its invariants are exercised by every `cargo test` without a fuzzer.
//!
//! `FERRY_WRITE_SEEDS=1 cargo test --test engine_fuzz_corpus seeds` (re)writes the hand-made
//! `seed-*` files: short scripts that open links both ways and move messages, the starting
//! points a fuzzer needs to get past the handshake.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};

use ferry::proto::fuzzing::{Op, engine_pair};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files directly inside `dir`, sorted; none if it does not exist.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

/// Runs every input, returning the failures (name and panic message).
fn replay<'a>(inputs: impl IntoIterator<Item = (String, &'a [u8])>) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, data) in inputs {
        if let Err(panic) = std::panic::catch_unwind(|| engine_pair(data)) {
            failures.push(format!("{name}: {}", panic_message(&*panic)));
        }
    }
    failures
}

#[test]
fn corpus_replays_without_failures() {
    let corpus = files_in(&fuzz_dir().join("corpus").join("engine_pair"));
    assert!(
        !corpus.is_empty(),
        "no corpus files for fuzz target engine_pair: the replay would prove nothing"
    );
    let artifacts = files_in(&fuzz_dir().join("artifacts").join("engine_pair"));
    let files: Vec<(String, Vec<u8>)> = corpus
        .iter()
        .chain(&artifacts)
        .map(|f| (f.display().to_string(), std::fs::read(f).unwrap()))
        .collect();
    let failures = replay(files.iter().map(|(n, d)| (n.clone(), d.as_slice())));
    eprintln!(
        "engine_pair: replayed {} corpus and {} artifact files",
        corpus.len(),
        artifacts.len()
    );
    assert!(
        failures.is_empty(),
        "fuzz inputs failing:\n{}",
        failures.join("\n")
    );
}

/// A fixed-seed xorshift generator: the same 300 scripts on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

fn random_scripts() -> Vec<(String, Vec<u8>)> {
    let mut rng = XorShift(0x5eed_f0e7_2026_0001);
    (0..300)
        .map(|i| {
            let len = (rng.next() % 700) as usize;
            let mut data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Half the scripts get a head start: a session and a link each way, accepted and
            // granted credit, so that random operations find something to work on.
            if i % 2 == 0 {
                let mut head = seed_two_links();
                head.truncate(head.len().min(60));
                data.splice(0..data.len().min(3), head);
            }
            (format!("random script {i}"), data)
        })
        .collect()
}

#[test]
fn pseudo_random_scripts_hold_the_invariants() {
    let scripts = random_scripts();
    let failures = replay(scripts.iter().map(|(n, d)| (n.clone(), d.as_slice())));
    assert!(
        failures.is_empty(),
        "pseudo-random scripts failing:\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Seeds (written only with FERRY_WRITE_SEEDS=1).

/// Builds a script: configuration bytes, then operations with their argument bytes.
struct Script(Vec<u8>);

impl Script {
    fn new(config: [u8; 3]) -> Self {
        Script(config.to_vec())
    }

    fn op(mut self, op: Op, args: &[u8]) -> Self {
        assert_eq!(Op::from_byte(op as u8), op);
        self.0.push(op as u8);
        self.0.extend_from_slice(args);
        self
    }

    fn pump(self) -> Self {
        self.op(Op::Pump, &[3])
    }
}

// Argument bytes, as `ferry::proto::fuzzing::Op` documents them.
const SENDER: u8 = 0x40 | 0x04; // mixed snd-settle-mode, no max-message-size
const RECEIVER: u8 = 0x40 | 0x04 | 0x01;
const RECEIVER_SECOND: u8 = RECEIVER | 0x08;

/// Config: 1 KiB / 2 KiB frames, windows 4 and 3, handle-max 3, channel-max 3 both ways.
const CONFIG: [u8; 3] = [0x01 | (0x03 << 3), 0x03 | (0x02 << 3), 0xff];

/// A session with a client sender "a" and a client receiver "b", both accepted, with credit.
fn seed_two_links() -> Vec<u8> {
    two_links(CONFIG).0
}

fn two_links(config: [u8; 3]) -> Script {
    Script::new(config)
        .pump()
        .op(Op::Begin, &[])
        .pump()
        .op(Op::Attach, &[0, 0, SENDER])
        .op(Op::Attach, &[0, 1, RECEIVER])
        .pump()
        .op(Op::ServerAccept, &[0, 7])
        .op(Op::ServerAccept, &[0, 7])
        .op(Op::ServerGrant, &[0, 10, 0])
        .pump()
        .op(Op::ClientGrant, &[0, 10, 0])
        .pump()
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let both_ways = two_links(CONFIG)
        .op(Op::ClientSend, &[0, 0x45, 0])
        .op(Op::ClientSend, &[0, 0x10, 1])
        .op(Op::ClientSend, &[0, 0xc8, 2])
        .op(Op::ServerSend, &[0, 0x85, 0])
        .op(Op::ServerSend, &[0, 0x03, 3])
        .pump()
        .op(Op::ServerSettle, &[0, 0])
        .op(Op::ClientSettle, &[0, 3])
        .op(Op::ClientSettle, &[1, 2])
        .pump()
        .op(Op::ClientDetach, &[0, 1])
        .op(Op::ClientEnd, &[0, 0])
        .pump();
    let chunked = two_links(CONFIG)
        .op(Op::ClientSend, &[0, 0xff, 0])
        .op(Op::DeliverToServer, &[70])
        .op(Op::DeliverToServer, &[130])
        .op(Op::ServerSend, &[0, 0xf0, 0])
        .op(Op::DeliverToClient, &[200])
        .op(Op::DeliverToClient, &[66])
        .op(Op::DeliverToServer, &[0])
        .op(Op::DeliverToClient, &[0])
        .pump();
    let drain = two_links(CONFIG)
        .op(Op::ClientGrant, &[0, 5, 1])
        .pump()
        .op(Op::ServerSend, &[0, 0x02, 1])
        .op(Op::ServerDrained, &[0])
        .op(Op::ServerGrant, &[0, 3, 1])
        .pump()
        .op(Op::ClientDrained, &[0])
        .op(Op::ClientSend, &[0, 0x02, 0])
        .pump();
    let second = Script::new(CONFIG)
        .pump()
        .op(Op::Begin, &[])
        .pump()
        .op(Op::Attach, &[0, 2, RECEIVER_SECOND])
        .pump()
        .op(Op::ServerAccept, &[0, 7])
        .pump()
        .op(Op::ClientGrant, &[0, 4, 0])
        .pump()
        .op(Op::ServerSend, &[0, 0x05, 0])
        .op(Op::ServerSend, &[0, 0x06, 0])
        .pump()
        .op(Op::ClientUpdate, &[0, 0])
        .op(Op::ClientSettle, &[1, 2])
        .pump()
        .op(Op::ClientUpdate, &[0, 4])
        .pump();
    // SASL ANONYMOUS, 512-byte frames, windows of 1, everything refused or cut short.
    let tight = Script::new([0x40, 0x00, 0x00])
        .pump()
        .op(Op::Begin, &[])
        .op(Op::Begin, &[])
        .op(Op::Attach, &[0, 3, SENDER])
        .op(Op::DeliverToServer, &[100])
        .op(Op::Pump, &[0])
        .op(Op::ServerRefuse, &[0])
        .op(Op::Attach, &[0, 3, 0x11])
        .op(Op::ClientDetach, &[0, 3])
        .pump()
        .op(Op::ServerAccept, &[0, 1])
        .pump()
        .op(Op::ClientGrant, &[0, 255, 0])
        .pump()
        .op(Op::ServerSend, &[0, 0x7f, 0])
        .op(Op::ServerSend, &[0, 0xbf, 0])
        .pump()
        .op(Op::Time, &[0x45, 0])
        .op(Op::ServerEnd, &[0, 1])
        .pump();
    let idle = two_links(CONFIG)
        .op(Op::Time, &[0x8f, 0])
        .pump()
        .op(Op::Time, &[0x8f, 0])
        .pump()
        .op(Op::Time, &[0xff, 1])
        .op(Op::Time, &[0xff, 0])
        .pump();
    let closing = two_links(CONFIG)
        .op(Op::ClientSend, &[0, 0x20, 0])
        .op(Op::ServerDetach, &[0, 3])
        .op(Op::ClientClose, &[0, 1])
        .op(Op::ClientGrant, &[0, 2, 0])
        .pump();
    let garbage = two_links(CONFIG)
        .op(Op::ClientSend, &[0, 0x20, 0])
        .op(Op::Garbage, &[0xa5, 0, 4, 0, 0, 0, 0x30, 0x02])
        .pump();
    vec![
        ("both-ways", both_ways.0),
        ("chunked", chunked.0),
        ("drain", drain.0),
        ("rcv-settle-second", second.0),
        ("tight-limits-sasl", tight.0),
        ("idle-timeouts", idle.0),
        ("closing", closing.0),
        ("garbage", garbage.0),
    ]
}

/// Writes the seeds when asked to; otherwise only checks that they run clean.
#[test]
fn seeds_run_clean() {
    let write = std::env::var("FERRY_WRITE_SEEDS").is_ok_and(|v| v == "1");
    let seeds = seeds();
    let failures = replay(seeds.iter().map(|(n, d)| ((*n).to_owned(), d.as_slice())));
    assert!(
        failures.is_empty(),
        "seeds failing:\n{}",
        failures.join("\n")
    );
    if write {
        let dir = fuzz_dir().join("corpus").join("engine_pair");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
        }
    }
}

/// `FERRY_TRACE_INPUT=path cargo test --test engine_fuzz_corpus trace -- --nocapture` prints
/// the run of one input; `FERRY_TRACE_RANDOM=i` the i-th pseudo-random script (and with
/// `FERRY_TRACE_SAVE=path`, saves it).
#[test]
fn trace() {
    if let Ok(path) = std::env::var("FERRY_TRACE_INPUT") {
        ferry::proto::fuzzing::engine_pair_traced(&std::fs::read(path).unwrap());
    }
    if let Ok(i) = std::env::var("FERRY_TRACE_RANDOM") {
        let script = random_scripts().swap_remove(i.parse().unwrap()).1;
        if let Ok(out) = std::env::var("FERRY_TRACE_SAVE") {
            std::fs::write(out, &script).unwrap();
        }
        ferry::proto::fuzzing::engine_pair_traced(&script);
    }
}
