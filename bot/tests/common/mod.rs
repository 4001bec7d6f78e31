#![allow(dead_code)]

use std::path::{Path, PathBuf};

use offboard_m365::simulated::Simulated;
use offboard_m365::{Credential, TenantConfig};
use offboard_m365_sim::Urls;

/// An `offboard.toml` for the simulated tenant, with `extra` appended.
pub fn write_config(dir: &Path, sim: &Simulated, database_url: &str, extra: &str) -> PathBuf {
    let (tenant, _) = &sim.secrets[0];
    write_config_for(dir, sim.sim.urls(), &[sim.m365.tenants().get(tenant).unwrap()], database_url, extra)
}

/// An `offboard.toml` for tenants of a simulator, each known by its primary domain only.
pub fn write_config_for(dir: &Path, u: &Urls, tenants: &[&TenantConfig], database_url: &str, extra: &str) -> PathBuf {
    let tenants: String = tenants
        .iter()
        .map(|t| {
            let Credential::Secret(secret) = &t.credential else { panic!("simulated tenants sign in with a secret") };
            format!(
                "\n[[tenants]]\nkey = \"{key}\"\ndirectory_id = \"{dir_id}\"\nclient_id = \"{client}\"\nclient_secret = \"{secret}\"\ndomains = [\"{key}\"]\npolicy = {{ admins = \"allow\" }}\n",
                key = t.key,
                dir_id = t.directory_id,
                client = t.client_id,
                secret = secret.expose(),
            )
        })
        .collect();
    let path = dir.join("offboard.toml");
    std::fs::write(
        &path,
        format!(
            r#"
database_url = "{db}"
listen = "127.0.0.1:0"
reports_dir = "{reports}"
signing_key = "{key}"

[http]
ops_listen = "127.0.0.1:0"

[microsoft]
login = "{login}"
graph = "{graph}"
exchange = "{exchange}"
{tenants}
[[roles]]
platform = "slack"
user = "UADM1"
role = "admin"
{extra}
"#,
            db = database_url,
            reports = dir.join("reports").display(),
            key = dir.join("signing.key").display(),
            login = u.login,
            graph = u.graph,
            exchange = u.exchange,
        ),
    )
    .unwrap();
    path
}

/// The public and the operators' base URLs from `offboard serve`'s first line.
pub fn serving(line: &str) -> (String, String) {
    let rest = line.trim().strip_prefix("offboard: serving on ").unwrap_or_else(|| panic!("unexpected first line: {line}"));
    let (public, ops) = rest.split_once(" (operators: ").unwrap_or_else(|| panic!("no operators' address: {line}"));
    (public.to_string(), ops.trim_end_matches(')').to_string())
}
