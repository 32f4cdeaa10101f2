//! The measurements behind docs/benchmarks.md, each against the limit the chain imposes or the
//! naive design, run by the `bench` binary (`tests/bench.sh`). Benchmarks, not tests: nothing
//! here asserts a time.

pub mod abuse;
pub mod api;
pub mod footprint;
pub mod gas;
pub mod latency;
pub mod load;
pub mod proc;
pub mod setup;
pub mod stats;
pub mod throughput;
