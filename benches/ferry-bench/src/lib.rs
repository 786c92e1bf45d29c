//! `ferry-bench`: a load generator for any AMQP 1.0 broker, and `ferry-bench compare`, which
//! runs a scenario matrix against Ferry and its peers in one invocation.
//!
//! # Layout
//! - `wire`: the stamped benchmark message and one client connection (Ferry's engine, client
//!   role, over TCP).
//! - `scenario`: producers, consumers and what is measured.
//! - `procstat`: a broker's CPU and memory from `/proc`.
//! - `idle`: the memory cost of idle connections.
//! - `null`: the null acceptor, which bounds what this tool itself can measure.
//! - `compare`: the peer matrix, its Markdown table and SVG chart.
//! - `durable`: durable messaging (synced write-ahead log) against Ferry and RabbitMQ.
//! - `routing`: fan-out, topic bindings and selectors against Ferry's own 1→1 rate.

pub mod compare;
pub mod durable;
pub mod idle;
pub mod null;
pub mod procstat;
pub mod routing;
pub mod scenario;
pub mod storebench;
pub mod wire;
