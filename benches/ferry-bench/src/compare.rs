//! The peer matrix (written next).

use clap::Args;

/// Options of `ferry-bench compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {}

/// Runs the matrix; returns the exit code.
pub fn main(_args: CompareArgs) -> i32 {
    eprintln!("compare: not built yet");
    2
}
