//! afs-server integration tests: the conformance suite against the embedded service directly,
//! over HTTP on loopback, and against `AETHER_TEST_ENDPOINT`; the bad-input table; the model
//! property test; configuration layering.

mod bad_input;
mod concurrency;
mod config;
mod conformance;
mod gc;
mod knowledge;
mod metrics;
mod model;
mod patches;
mod scenario;
mod secrets;
mod signals;
mod support;
mod uploads;
