use clap::Parser;

/// A simulated Microsoft 365 tenant (Entra login, Graph v1.0, Exchange Online) on loopback.
#[derive(Parser)]
#[command(name = "m365-sim", version)]
struct Cli {
    #[command(flatten)]
    sim: offboard_m365_sim::cli::SimArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _sim = offboard_m365_sim::cli::start(&cli.sim, &mut std::io::stdout()).await?;
    tokio::signal::ctrl_c().await?;
    Ok(())
}
