//! `dbhaul agent configure`: make or change an agent's folder. The first run writes the
//! settings, the password hash, and a TLS key with a self-signed certificate; later runs
//! change what they are given (password, port, ...) and keep everything else — the
//! certificate the controller pinned, the store with the agent's subtasks.

use std::path::PathBuf;

use super::config::{AgentConfig, AgentPaths, DEFAULT_PORT, check_password, hash_password};
use crate::config::files;
use crate::config::hostname;

/// What the user asked for; `None` keeps the current value (or takes the default).
#[derive(Debug, Default)]
pub struct ConfigureRequest {
    pub dir: PathBuf,
    pub password: Option<String>,
    pub port: Option<u16>,
    pub host: Option<String>,
    pub listen: Option<String>,
    pub parallel: Option<u32>,
    pub name: Option<String>,
    pub new_certificate: bool,
    /// Let tasks name a driver library by its path (see `source::drivers`).
    pub allow_driver_paths: Option<bool>,
    /// Driver libraries to allow by path, added to those allowed already.
    pub allow_drivers: Vec<PathBuf>,
}

#[derive(Debug)]
pub struct Configured {
    pub config: AgentConfig,
    pub paths: AgentPaths,
    pub fingerprint: String,
    pub created: bool,
    pub new_certificate: bool,
}

/// The agent's current settings, if its folder is configured.
pub fn current(dir: &std::path::Path) -> Option<AgentConfig> {
    AgentConfig::load(&AgentPaths::new(dir.to_path_buf())).ok()
}

pub fn configure(request: ConfigureRequest) -> Result<Configured, String> {
    let paths = AgentPaths::new(request.dir.clone());
    let existing = if paths.config().exists() {
        Some(AgentConfig::load(&paths)?)
    } else {
        None
    };
    let password_hash = match (&request.password, &existing) {
        (Some(password), _) => {
            check_password(password)?;
            hash_password(password)?
        }
        (None, Some(existing)) => existing.password_hash.clone(),
        (None, None) => {
            return Err(
                "a new agent needs a password (8 to 20 letters and digits, at least one \
                        digit and one upper-case letter)"
                    .into(),
            );
        }
    };
    let port = request
        .port
        .or(existing.as_ref().map(|e| e.port))
        .unwrap_or(DEFAULT_PORT);
    if port == 0 {
        return Err("port 0 is not a port an agent can be registered on; choose 1 to 65535".into());
    }
    let listen = request
        .listen
        .clone()
        .or(existing.as_ref().map(|e| e.listen.clone()))
        .unwrap_or_else(|| "0.0.0.0".into());
    if listen.parse::<std::net::IpAddr>().is_err() {
        return Err(format!(
            "--listen {listen} is not an IP address; give one such as 0.0.0.0 (every interface) \
             or 10.0.0.5"
        ));
    }
    // The running agent holds its own port: only a new port must be free.
    if existing
        .as_ref()
        .is_none_or(|e| e.port != port || e.listen != listen)
        && let Err(e) = std::net::TcpListener::bind((listen.as_str(), port))
    {
        return Err(if e.kind() == std::io::ErrorKind::AddrInUse {
            format!(
                "port {port} is taken on {listen} by another program; choose another with --port"
            )
        } else {
            format!("cannot listen on {listen}:{port}: {e}; choose another --port or --listen")
        });
    }
    let parallel = request
        .parallel
        .or(existing.as_ref().map(|e| e.parallel))
        .unwrap_or_else(default_parallel);
    if !(1..=256).contains(&parallel) {
        return Err(format!(
            "--parallel {parallel}: must be 1 to 256 subtasks at once"
        ));
    }
    let host = request
        .host
        .clone()
        .or(existing.as_ref().map(|e| e.host.clone()))
        .unwrap_or_else(hostname);
    let name = request
        .name
        .clone()
        .or(existing.as_ref().map(|e| e.name.clone()))
        .unwrap_or_else(hostname);
    crate::model::TaskName::parse(&name)
        .map_err(|m| format!("agent name: {}", m.replace("task name", "name")))?;
    let config = AgentConfig {
        name,
        host: host.clone(),
        listen,
        port,
        parallel,
        password_hash,
        join_secret_hash: existing.as_ref().and_then(|e| e.join_secret_hash.clone()),
        controller_id: existing.as_ref().and_then(|e| e.controller_id.clone()),
        allow_driver_paths: request
            .allow_driver_paths
            .or(existing.as_ref().map(|e| e.allow_driver_paths))
            .unwrap_or(false),
        allowed_drivers: allowed_drivers(existing.as_ref(), &request.allow_drivers)?,
    };

    let io = |what: &str, e: std::io::Error| format!("cannot write {what}: {e}");
    files::private_dir(&paths.root).map_err(|e| io(&paths.root.display().to_string(), e))?;
    let tls_dir = paths.root.join("tls");
    files::private_dir(&tls_dir).map_err(|e| io(&tls_dir.display().to_string(), e))?;
    let new_certificate =
        request.new_certificate || !paths.cert().exists() || !paths.key().exists();
    if new_certificate {
        let (cert, key) = crate::net::tls::self_signed(&[host])?;
        files::write_private(&paths.key(), key.as_bytes())
            .map_err(|e| io(&paths.key().display().to_string(), e))?;
        files::write_private(&paths.cert(), cert.as_bytes())
            .map_err(|e| io(&paths.cert().display().to_string(), e))?;
    }
    config.save(&paths)?;
    for folder in [paths.work(), paths.logs()] {
        files::private_dir(&folder).map_err(|e| io(&folder.display().to_string(), e))?;
    }
    let fingerprint = crate::net::tls::fingerprint_of_pem(&paths.cert())?;
    Ok(Configured {
        config,
        paths,
        fingerprint,
        created: existing.is_none(),
        new_certificate,
    })
}

/// The driver libraries allowed by path: those allowed before and the new ones, each an
/// absolute path to a file that exists (a relative one would be looked up by the loader).
fn allowed_drivers(
    existing: Option<&AgentConfig>,
    new: &[PathBuf],
) -> Result<Vec<PathBuf>, String> {
    let mut allowed = existing
        .map(|e| e.allowed_drivers.clone())
        .unwrap_or_default();
    for file in new {
        if !file.is_absolute() || !file.is_file() {
            return Err(format!(
                "--allow-driver {}: give the absolute path of the driver library, a file that \
                 exists",
                file.display()
            ));
        }
        if !allowed.contains(file) {
            allowed.push(file.clone());
        }
    }
    Ok(allowed)
}

pub fn default_parallel() -> u32 {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get() as u32)
        .clamp(2, 8)
}
