use anchorwatch_aggregator::{Command, ReportKind};
use clap::Parser;

fn main() -> anyhow::Result<()> {
    let args = anchorwatch_aggregator::Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.command.clone() {
        Some(Command::Report {
            what: ReportKind::Clock(c),
        }) => runtime.block_on(anchorwatch_aggregator::report::run(c)),
        Some(Command::Diagnose(d)) => std::process::exit(anchorwatch_aggregator::diagnose::main(d)),
        None => {
            anchorwatch_aggregator::init_tracing(&args.log_level, args.log_format);
            runtime.block_on(anchorwatch_aggregator::run(args))
        }
    }
}
