//! Pieces of daemon configs (TOML text) that many tests write the same way; a test
//! puts them into its own config with `format!`.

use c42fwd_emulator::{EmulatorHandle, EmulatorOptions};
use std::path::Path;

/// The top of a config: state in `dir/state`, the given shutdown grace.
pub fn head(dir: &Path, shutdown_grace: &str) -> String {
    format!(
        "state_dir = \"{}\"\nshutdown_grace = \"{shutdown_grace}\"\n",
        dir.join("state").display()
    )
}

/// The metrics endpoint on a port the kernel picks (the daemon logs the address, see
/// `Daemon::metrics_addr`).
pub const METRICS_ON_A_FREE_PORT: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";

/// The tenant `emu`: the emulator, Incydr API, its client secret inline.
pub fn emu_tenant(emu: &EmulatorHandle, opts: &EmulatorOptions) -> String {
    format!(
        "[tenants.emu]\napi = \"incydr\"\nbase_url = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\n",
        emu.base_url(),
        opts.client_id,
        opts.client_secret
    )
}

/// The file sink `out` writing the events to `path` as JSON without a syslog header,
/// and the route from the source `audit` to it.
pub fn file_sink_from_audit(path: &Path) -> String {
    file_sink_from("audit", path)
}

/// The file sink `out` writing the events to `path` as JSON without a syslog header,
/// and the route from the source `source` to it.
pub fn file_sink_from(source: &str, path: &Path) -> String {
    format!(
        r#"[sinks.out]
type = "file"
path = "{}"
format = "json"
syslog = "none"

[[routes]]
sources = ["{source}"]
sinks = ["out"]
"#,
        path.display()
    )
}

/// Which API generation a test tenant speaks, and so how it logs in.
#[derive(Clone, Copy, Debug)]
pub enum Api {
    /// An API client (`client_id` / `client_secret`) on the Incydr gateway.
    Incydr,
    /// A user (`username` / `password`) on a legacy console.
    Legacy,
}

/// The `api` and credential keys of the emulator's tenant for `api`; the secret inline,
/// or, with `secret_file`, read from that file (which the test writes).
pub fn credentials(api: Api, opts: &EmulatorOptions, secret_file: Option<&Path>) -> String {
    let secret = |inline: &str| match secret_file {
        Some(f) => format!("{{ file = \"{}\" }}", f.display()),
        None => format!("\"{inline}\""),
    };
    match api {
        Api::Incydr => format!(
            "api = \"incydr\"\nclient_id = \"{}\"\nclient_secret = {}",
            opts.client_id,
            secret(&opts.client_secret)
        ),
        Api::Legacy => format!(
            "api = \"legacy\"\nusername = \"{}\"\npassword = {}",
            opts.username,
            secret(&opts.password)
        ),
    }
}

/// The tenant `emu` as [`emu_tenant`], its client secret read from `dir/secret`, which
/// this writes.
pub fn emu_tenant_secret_file(dir: &Path, emu: &EmulatorHandle, opts: &EmulatorOptions) -> String {
    let secret = dir.join("secret");
    std::fs::write(&secret, format!("{}\n", opts.client_secret)).expect("write the secret file");
    format!(
        "[tenants.emu]\napi = \"incydr\"\nbase_url = \"{}\"\nclient_id = \"{}\"\nclient_secret = {{ file = \"{}\" }}\n",
        emu.base_url(),
        opts.client_id,
        secret.display()
    )
}
