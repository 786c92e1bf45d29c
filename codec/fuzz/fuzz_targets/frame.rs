//! A control byte, then a protocol stream: headers and frames fed in chunks.
//! The check itself is `ferry_codec::fuzzing::frame`, shared with `tests/fuzz_corpus.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferry_codec::fuzzing::frame(data));
