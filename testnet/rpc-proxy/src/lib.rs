//! A JSON-RPC proxy that sits in front of a node's provider (anvil in tests and the testnet) and
//! can be told to misbehave: go down, answer slowly, answer with errors, hide logs, or add a
//! forged log to `eth_getLogs` answers.
//!
//! Each proxy listens on its own port and forwards everything to one upstream. Its fault is set
//! in-process with [`ProxyHandle::set_fault`] or over HTTP: `POST /_fault` with a [`Fault`] as
//! JSON (`GET /_fault` returns the current one). `GET /_held` lists the raw transactions held
//! back under [`Fault::HoldSends`].

mod fault;
mod server;

pub use fault::Fault;
pub use server::{ProxyError, ProxyHandle, spawn};
