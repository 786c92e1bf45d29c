//! `ferry wal check`: reads the log under the data directory and says whether the broker
//! could start on it, naming the file and offset of any damage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::process::Command;

use ferry::store::log::Log;
use ferry::store::record::Kind;

fn check(data_dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["wal", "check", "--data-dir"])
        .arg(data_dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_healthy_log_passes_and_a_damaged_one_is_named() {
    let data = std::env::temp_dir().join(format!("ferry-walcheck-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let wal = data.join("wal");
    let (mut log, _) = Log::open(&wal, 4096).unwrap();
    for i in 0..100u8 {
        log.append(Kind::Enqueue, &[i; 50]).unwrap();
        log.commit().unwrap();
    }
    drop(log);

    let (ok, out) = check(&data);
    assert!(ok, "{out}");
    assert!(out.contains("00000001.wal") && out.contains("ok"), "{out}");

    let first = wal.join("00000001.wal");
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[300] ^= 1;
    std::fs::write(&first, &bytes).unwrap();
    let (ok, out) = check(&data);
    assert!(!ok, "{out}");
    assert!(out.contains("corrupt at") && out.contains("FATAL"), "{out}");
    std::fs::remove_dir_all(&data).unwrap();
}
