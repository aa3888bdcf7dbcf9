use clap::Parser;

fn main() -> anyhow::Result<()> {
    let args = anchorwatch_agent::Args::parse();
    anchorwatch_agent::init_tracing(&args.log_level, args.log_format);
    // Two workers: probes are IO-bound, and the agent must stay small on every node.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(anchorwatch_agent::run(args))
}
