//! A script of operations driving a client-role and a server-role engine joined by two pipes,
//! with random chunking, time and (rarely) garbage, checked frame by frame.
//! The check itself is `ferry::proto::fuzzing::engine_pair`, shared with
//! `tests/engine_fuzz_corpus.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferry::proto::fuzzing::engine_pair(data));
