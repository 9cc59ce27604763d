//! sfu-lite's test and load tools, kept out of the server's dependency graph.
//!
//! - [`client`]: the headless participant (webrtc-rs + Socket.IO client) that the media tests
//!   and the load tester drive.
//! - [`load`]: `sfu-lite-load` (also `sfu-lite load`), headless peers against a server, and
//!   its figures.

pub mod client;
pub mod load;

// The server's modules the tools build on, under the names the tools' code uses.
pub(crate) use sfu_lite::{metrics, procstat, sfu, signal};
