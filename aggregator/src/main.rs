use clap::Parser;

fn main() -> anyhow::Result<()> {
    let args = anchorwatch_aggregator::Args::parse();
    anchorwatch_aggregator::init_tracing(&args.log_level, args.log_format);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(anchorwatch_aggregator::run(args))
}
