//! Reusable contract checks of the session API (conformance layer): each `check_*` is one
//! clause of SPEC §4, written once and run against every implementation.

mod bus;
mod content;
mod events;
mod filesystem;
mod harness;
mod insight;
mod knowledge;
mod review;
mod secrets;
mod sessions;
mod sources;

pub use harness::{Harness, Report, run_all};

pub use bus::*;
pub use content::*;
pub use events::*;
pub use filesystem::*;
pub use insight::*;
pub use knowledge::*;
pub use review::*;
pub use secrets::*;
pub use sessions::*;
pub use sources::*;
