//! One encoded value, decoded as a `Value` and as each typed composite.
//! The check itself is `ferry_codec::fuzzing::value`, shared with `tests/fuzz_corpus.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferry_codec::fuzzing::value(data));
