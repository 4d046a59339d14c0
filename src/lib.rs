//! Native binding for libnftables: library loading, one context per instance on its own thread,
//! network namespaces, and structured errors. Firewall policy lives in the TypeScript layer.
#![deny(clippy::all)]

mod batch;
mod context;
pub mod error;
mod fdtable;
mod generation;
mod library;
mod listener;
mod monitor;
mod netlink;
mod netns;
mod nflog;
pub mod nft;
mod worker;
