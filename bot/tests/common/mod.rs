#![allow(dead_code)]

use std::path::{Path, PathBuf};

use offboard_m365::simulated::Simulated;
use offboard_m365::{Credential, TenantConfig};
use offboard_m365_sim::Urls;

/// An `offboard.toml` for the simulated tenant, with `extra` appended.
pub fn write_config(dir: &Path, sim: &Simulated, database_url: &str, extra: &str) -> PathBuf {
    let (tenant, _) = &sim.secrets[0];
    write_config_for(dir, sim.sim.urls(), sim.m365.tenants().get(tenant).unwrap(), database_url, extra)
}

/// An `offboard.toml` for one tenant of a simulator, known by its primary domain only.
pub fn write_config_for(dir: &Path, u: &Urls, t: &TenantConfig, database_url: &str, extra: &str) -> PathBuf {
    let Credential::Secret(secret) = &t.credential else { panic!("simulated tenants sign in with a secret") };
    let path = dir.join("offboard.toml");
    std::fs::write(
        &path,
        format!(
            r#"
database_url = "{db}"
listen = "127.0.0.1:0"
reports_dir = "{reports}"
signing_key = "{key}"

[microsoft]
login = "{login}"
graph = "{graph}"
exchange = "{exchange}"

[[tenants]]
key = "{tenant}"
directory_id = "{dir_id}"
client_id = "{client}"
client_secret = "{secret}"
domains = ["{tenant}"]
policy = {{ admins = "allow" }}

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
            tenant = t.key,
            dir_id = t.directory_id,
            client = t.client_id,
            secret = secret.expose(),
        ),
    )
    .unwrap();
    path
}
