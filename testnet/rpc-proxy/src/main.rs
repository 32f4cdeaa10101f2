//! `settleproof-rpc-proxy --upstream URL --listen 127.0.0.1:18600 [--count N]`: starts N proxies
//! on consecutive ports, each independently controllable with `POST /_fault`.

use clap::Parser;
use eyre::Result;
use std::net::SocketAddr;

/// Fault-injecting JSON-RPC proxies in front of one upstream.
#[derive(Debug, Parser)]
struct Args {
    /// Upstream JSON-RPC URL.
    #[arg(long)]
    upstream: String,
    /// Address of the first proxy; proxy i listens on port + i.
    #[arg(long)]
    listen: SocketAddr,
    /// Number of proxies.
    #[arg(long, default_value_t = 1)]
    count: u16,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut urls = Vec::new();
    for i in 0..args.count {
        let mut addr = args.listen;
        addr.set_port(args.listen.port().saturating_add(i));
        urls.push(settleproof_rpc_proxy::spawn(addr, &args.upstream).await?.url());
    }
    println!("{}", urls.join(" "));
    tokio::signal::ctrl_c().await?;
    Ok(())
}
