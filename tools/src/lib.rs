//! sfu-lite's test and load tools, kept out of the server's dependency graph.
//!
//! - [`client`]: the headless participant (webrtc-rs + Socket.IO client) that the media tests
//!   and the load tester drive.
//! - [`netshape`]: capped and lossy links on loopback (tc, nftables) for tests and load runs.
//! - [`load`]: `sfu-lite-load` (also `sfu-lite load`), headless peers against a server, and
//!   its figures.

pub mod client;
pub mod load;
pub mod netshape;

// The server's modules the tools build on, under the names the tools' code uses.
pub(crate) use sfu_lite::{metrics, procstat, sfu, signal, sync};
