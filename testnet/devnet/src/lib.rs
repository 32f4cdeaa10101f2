//! The local testnet's parts that production nodes never need: [`devnet`] generates every
//! operator's keys, deploys the contracts and writes one config per node; [`demo_merchant`] is
//! the merchant's webhook receiver of the testnet and the tests.

pub mod demo_merchant;
pub mod devnet;
