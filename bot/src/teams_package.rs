//! `offboard teams package`: the app package an admin uploads to Teams, made from the
//! manifest and icons in `manifests/teams` with this installation's bot id and host filled
//! in. The manifest's commands are the ones the bot understands (a test holds them to
//! core's command parser).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{Value, json};

pub const MANIFEST: &str = include_str!("../../manifests/teams/manifest.json");
const COLOR: &[u8] = include_bytes!("../../manifests/teams/color.png");
const OUTLINE: &[u8] = include_bytes!("../../manifests/teams/outline.png");

#[derive(clap::Args)]
pub struct PackageArgs {
    /// The bot's Microsoft App ID (a GUID), as in `[teams] app_id`.
    #[arg(long)]
    app_id: String,
    /// The host name the service is reached at (offboard.example.com), as in `public_url`.
    #[arg(long)]
    host: String,
    /// Where to write the package.
    #[arg(long, default_value = "offboard-teams.zip")]
    out: PathBuf,
}

/// The manifest for this bot and host.
pub fn manifest(app_id: &str, host: &str) -> Result<Value, String> {
    if offboard_core::domain::ObjectId::parse(app_id).is_err() {
        return Err(format!("--app-id: `{app_id}` is not a GUID (the bot's Microsoft App ID)"));
    }
    let host = host.trim().trim_end_matches('/');
    if host.is_empty() || host.contains("://") || host.contains('/') || host.contains(char::is_whitespace) {
        return Err(format!("--host: `{host}` is not a host name (offboard.example.com, without https://)"));
    }
    let mut m: Value = serde_json::from_str(MANIFEST).expect("the shipped manifest is JSON");
    m["id"] = json!(app_id);
    m["bots"][0]["botId"] = json!(app_id);
    m["composeExtensions"][0]["botId"] = json!(app_id);
    m["validDomains"] = json!([host]);
    for (key, path) in [("websiteUrl", ""), ("privacyUrl", "/privacy"), ("termsOfUseUrl", "/terms")] {
        m["developer"][key] = json!(format!("https://{host}{path}"));
    }
    Ok(m)
}

pub fn run(args: &PackageArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let m = match manifest(&args.app_id, &args.host) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let file = std::fs::File::create(&args.out).map_err(|e| anyhow::anyhow!("writing {}: {e}", args.out.display()))?;
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in [("manifest.json", serde_json::to_vec_pretty(&m)?), ("color.png", COLOR.to_vec()), ("outline.png", OUTLINE.to_vec())] {
        zip.start_file(name, options)?;
        zip.write_all(&bytes)?;
    }
    zip.finish()?;
    writeln!(out, "{}: upload it in Teams (Apps → Manage your apps → Upload an app)", args.out.display())?;
    Ok(ExitCode::SUCCESS)
}
