//! The standalone simulator: `m365-sim --scenario FILE` (and `offboard sim`). It prints its
//! base URLs and tenants, writes a fresh client secret per app to a credentials file when
//! asked (the secret itself is never printed), and serves until interrupted.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::{FaultRates, Latency, Scenario, Sim, SimConfig};

#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Scenario file (JSON); the bundled Contoso company when absent.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Instead of a file, generate TENANTS tenants of USERS users each, e.g. `20x500`.
    #[arg(long, value_name = "TENANTSxUSERS")]
    pub generate: Option<String>,
    /// Simulated seconds per Microsoft second (0.01 = 100× faster windows and latency).
    #[arg(long, default_value_t = 1.0)]
    pub dilation: f64,
    /// Fixed latency per request, in milliseconds before dilation.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    #[arg(long)]
    pub no_throttling: bool,
    /// Seconds Set-Mailbox -Type Shared takes to land.
    #[arg(long, default_value_t = 60)]
    pub conversion_delay: u64,
    /// Write a new client secret for every app to this file (JSON, mode 0600).
    #[arg(long)]
    pub credentials_out: Option<PathBuf>,
}

impl SimArgs {
    pub fn scenario(&self) -> anyhow::Result<Scenario> {
        if let Some(g) = &self.generate {
            let (t, u) = g.split_once('x').ok_or_else(|| anyhow::anyhow!("--generate wants TENANTSxUSERS, e.g. 20x500"))?;
            return Ok(Scenario::generate(t.parse()?, u.parse()?));
        }
        Ok(match &self.scenario {
            Some(p) => Scenario::load(p)?,
            None => Scenario::contoso(),
        })
    }

    pub fn config(&self) -> SimConfig {
        SimConfig {
            dilation: self.dilation,
            throttling: !self.no_throttling,
            latency: if self.latency_ms > 0 { Latency::Fixed { ms: self.latency_ms } } else { Latency::None },
            faults: FaultRates::default(),
            conversion_delay: Duration::from_secs(self.conversion_delay),
            ..SimConfig::default()
        }
    }
}

/// Starts the simulator and writes its description to `out`; the caller keeps it running.
pub async fn start(args: &SimArgs, out: &mut impl Write) -> anyhow::Result<Sim> {
    let scenario = args.scenario()?;
    let sim = Sim::start(&scenario, args.config()).await?;
    let u = sim.urls().clone();
    writeln!(out, "m365-sim: serving {} tenant(s)", scenario.tenants.len())?;
    writeln!(out, "  login     {}  (POST /{{tenant}}/oauth2/v2.0/token)", u.login)?;
    writeln!(out, "  graph     {}/v1.0", u.graph)?;
    writeln!(out, "  exchange  {}/adminapi/beta/{{tenant}}/InvokeCommand", u.exchange)?;
    writeln!(out, "  control   {}  (/ledger, /counters, /stats, /tenants)", u.control)?;
    let mut creds = Vec::new();
    for t in &scenario.tenants {
        let info = sim.tenant(t.domains.first().map(String::as_str).unwrap_or(&t.name), |x| {
            (x.id.clone(), x.users.len(), x.apps.iter().map(|a| a.client_id.clone()).collect::<Vec<_>>())
        });
        let Some((id, users, apps)) = info else { continue };
        writeln!(out, "  tenant    {} {id} ({}; {users} users)", t.name, t.domains.join(", "))?;
        if args.credentials_out.is_some() {
            for app in apps {
                if let Some(secret) = sim.add_secret(&id, &app) {
                    creds.push(json!({"tenant": id, "tenant_name": t.name, "client_id": app, "client_secret": secret}));
                }
            }
        }
    }
    if let Some(path) = &args.credentials_out {
        write_private(path, &serde_json::to_vec_pretty(&json!({"urls": u, "credentials": creds}))?)?;
        writeln!(out, "  credentials for {} app registration(s) written to {}", creds.len(), path.display())?;
    }
    writeln!(out, "ready")?;
    out.flush()?;
    Ok(sim)
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(bytes)
}
