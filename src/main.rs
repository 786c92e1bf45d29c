//! `ferry`: the AMQP 1.0 broker daemon.
//!
//! The broker itself is built on top of `ferry-codec` in the next milestone; until then this
//! binary only reports what it is, so that the workspace and its CI are in place.

fn main() {
    println!(
        "ferry {}: AMQP 1.0 broker (codec ready; the broker core is not built yet)",
        env!("CARGO_PKG_VERSION")
    );
}
