//! Message bytes, indexed whole and in segments, every section decoded.
//! The check itself is `ferry_codec::fuzzing::message`, shared with `tests/fuzz_corpus.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferry_codec::fuzzing::message(data));
