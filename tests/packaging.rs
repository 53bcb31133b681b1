//! The packages as an administrator installs them: `packaging/deb-rpm/build.sh` builds the
//! .deb and the relocatable .rpm from the binary the suite built; their metadata, file
//! lists and scripts are read back; the .deb is unpacked into a scratch root and the .rpm
//! installed with `rpm --prefix` into a scratch prefix and database; the installed binary
//! answers `--version` and configures an agent there; the units pass `systemd-analyze
//! verify`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::daemons::{AGENT_PASSWORD, stderr, stdout};
use crate::common::*;

fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}; `bash appliance/setup.sh` installs it"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    out
}

fn packages() -> (PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .args([
            "packaging/deb-rpm/build.sh",
            "--profile",
            "dev",
            "--no-build",
        ])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "build.sh: {}{}",
        stdout(&out),
        stderr(&out)
    );
    eprintln!("packages (bytes, file):\n{}", stdout(&out));
    let version = env!("CARGO_PKG_VERSION");
    let dir = root.join("target/packages");
    (
        dir.join(format!("dbhaul_{version}_amd64.deb")),
        dir.join(format!("dbhaul-{version}-1.x86_64.rpm")),
    )
}

/// The installed binary configures an agent in the installed state folder.
fn configure_agent(prefix: &Path) {
    let binary = prefix.join("bin/dbhaul");
    let version = run(binary.to_str().unwrap(), &["--version"]);
    assert_eq!(
        stdout(&version).trim(),
        format!("dbhaul {}", env!("CARGO_PKG_VERSION"))
    );
    let dir = prefix.join("var/agent");
    let port = crate::common::s3::free_port().to_string();
    let command_args = [
        "agent",
        "configure",
        "--dir",
        dir.to_str().unwrap(),
        "--port",
        &port,
        "--password-stdin",
        "--json",
    ];
    let out = Command::new(&binary)
        .args(command_args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(format!("{AGENT_PASSWORD}\n").as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "agent configure: {}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["port"].as_u64().unwrap().to_string(),
        port,
        "{report}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("agent.toml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// `systemd-analyze verify` of a unit as installed under `root`: checked in a copy whose
/// paths point into `root` (the host has no /opt/dbhaul), against the host's systemd.
fn verify_unit(root: &Path, unit: &Path, sandbox: &Sandbox) {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("no systemd-analyze here: units not verified");
        return;
    }
    let prefix = root.join("opt/dbhaul");
    for dir in ["var/agent", "var/controller", "log"] {
        std::fs::create_dir_all(prefix.join(dir)).unwrap();
    }
    let text = std::fs::read_to_string(unit)
        .unwrap()
        .replace("/opt/dbhaul", prefix.to_str().unwrap());
    let copy = sandbox.path(unit.file_name().unwrap().to_str().unwrap());
    std::fs::write(&copy, text).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let said = format!("{}{}", stdout(&out), stderr(&out));
    // Only what concerns our unit (an unknown key, a missing binary): systemd may also
    // report on units of the host it reads.
    let ours: Vec<&str> = said.lines().filter(|l| l.contains("dbhaul")).collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "{}: {said}",
        unit.display()
    );
}

#[test]
fn the_deb_and_the_relocatable_rpm_install_configure_and_carry_their_units() {
    let sandbox = Sandbox::new();
    let (deb, rpm) = packages();

    // The .deb: what it is, what it holds, what its scripts do.
    let fields = stdout(&run(
        "dpkg-deb",
        &[
            "-f",
            deb.to_str().unwrap(),
            "Package",
            "Version",
            "Depends",
            "Recommends",
        ],
    ));
    assert!(fields.contains("Package: dbhaul"), "{fields}");
    let depends = fields
        .lines()
        .find(|l| l.starts_with("Depends:"))
        .unwrap_or("");
    assert!(depends.contains("unixodbc"), "{fields}");
    for driver in ["odbc-postgresql", "odbc-mariadb", "libsqliteodbc"] {
        assert!(fields.contains(driver), "{fields}");
    }
    let listing = stdout(&run("dpkg-deb", &["-c", deb.to_str().unwrap()]));
    eprintln!(".deb files:\n{listing}");
    for file in [
        "./opt/dbhaul/bin/dbhaul",
        "./opt/dbhaul/bin/dbhaul-configure",
        "./opt/dbhaul/bin/dbhaul-agent-start",
        "./opt/dbhaul/bin/dbhaul-agent-stop",
        "./opt/dbhaul/bin/dbhaul-agent-status",
        "./opt/dbhaul/etc/odbcinst.ini.example",
        "./opt/dbhaul/etc/examples/job.toml",
        "./usr/lib/systemd/system/dbhaul-agent.service",
        "./usr/lib/systemd/system/dbhaul-controller.service",
    ] {
        assert!(listing.contains(file), "{file} missing:\n{listing}");
    }
    let control = sandbox.path("deb-control");
    run(
        "dpkg-deb",
        &["-e", deb.to_str().unwrap(), control.to_str().unwrap()],
    );
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(postinst.contains("adduser --system"), "{postinst}");
    assert!(postinst.contains("chmod 0700"), "{postinst}");
    // Installed, not enabled and not started until configured (an upgrade keeps an
    // enabled unit enabled).
    assert!(!postinst.contains("deb-systemd-invoke start"), "{postinst}");
    for enable in postinst
        .lines()
        .filter(|l| l.contains("deb-systemd-helper enable"))
    {
        let before = &postinst[..postinst.find(enable).unwrap()];
        assert!(
            before
                .trim_end()
                .lines()
                .rev()
                .take(3)
                .any(|l| l.contains("was-enabled")),
            "{postinst}"
        );
    }

    // Unpacked into a scratch root: the binary runs and configures an agent there.
    let root = sandbox.path("deb-root");
    run(
        "dpkg-deb",
        &["-x", deb.to_str().unwrap(), root.to_str().unwrap()],
    );
    configure_agent(&root.join("opt/dbhaul"));
    // The commands next to the binary: status tells what `agent status` tells.
    let bin = root.join("opt/dbhaul/bin");
    for script in [
        "dbhaul-configure",
        "dbhaul-agent-start",
        "dbhaul-agent-status",
    ] {
        run("bash", &["-n", bin.join(script).to_str().unwrap()]);
    }
    let status = Command::new(bin.join("dbhaul-agent-status"))
        .output()
        .unwrap();
    let said = format!("{}{}", stdout(&status), stderr(&status));
    assert!(said.contains("not running"), "{said}");
    assert!(said.contains("fingerprint"), "{said}");
    let unit = root.join("usr/lib/systemd/system/dbhaul-agent.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    for line in [
        "ExecStart=/opt/dbhaul/bin/dbhaul agent serve --dir /opt/dbhaul/var/agent",
        "User=dbhaul",
        "Environment=LANG=C.UTF-8",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/opt/dbhaul/var/agent /opt/dbhaul/log",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    verify_unit(&root, &unit, &sandbox);
    verify_unit(
        &root,
        &root.join("usr/lib/systemd/system/dbhaul-controller.service"),
        &sandbox,
    );

    // The .rpm: relocatable, its requirements and scripts.
    let rpm_path = rpm.to_str().unwrap();
    let prefixes = stdout(&run(
        "rpm",
        &["-qp", "--queryformat", "%{PREFIXES}", rpm_path],
    ));
    assert_eq!(prefixes, "/opt/dbhaul");
    let requires = stdout(&run("rpm", &["-qp", "--requires", rpm_path]));
    assert!(requires.contains("unixODBC"), "{requires}");
    let scripts = stdout(&run("rpm", &["-qp", "--scripts", rpm_path]));
    assert!(scripts.contains("useradd -r -g dbhaul"), "{scripts}");
    assert!(
        scripts.contains("lib/dbhaul/relocate.sh\" \"$RPM_INSTALL_PREFIX\""),
        "{scripts}"
    );
    let files = stdout(&run("rpm", &["-qlp", rpm_path]));
    eprintln!(".rpm files:\n{files}");
    assert!(files.contains("/opt/dbhaul/lib/systemd/system/dbhaul-agent.service"));

    // Installed under another prefix, in a database of its own: everything follows.
    let prefix = sandbox.path("elsewhere/dbhaul");
    let db = sandbox.path("rpmdb");
    std::fs::create_dir_all(&db).unwrap();
    run(
        "rpm",
        &[
            "-i",
            "--nodeps",
            // The scripts would create a system user on this machine: they are read above,
            // and the relocation they do is run below.
            "--noscripts",
            "--dbpath",
            db.to_str().unwrap(),
            "--prefix",
            prefix.to_str().unwrap(),
            rpm_path,
        ],
    );
    run(
        prefix.join("lib/dbhaul/relocate.sh").to_str().unwrap(),
        &[prefix.to_str().unwrap()],
    );
    let unit = prefix.join("lib/systemd/system/dbhaul-agent.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    let p = prefix.display();
    assert!(
        text.contains(&format!(
            "ExecStart={p}/bin/dbhaul agent serve --dir {p}/var/agent"
        )),
        "{text}"
    );
    assert!(!text.contains("/opt/dbhaul"), "{text}");
    configure_agent(&prefix);
    let installed = stdout(&run(
        "rpm",
        &["-q", "--dbpath", db.to_str().unwrap(), "dbhaul"],
    ));
    assert!(installed.starts_with("dbhaul-"), "{installed}");
    run(
        "rpm",
        &[
            "-e",
            "--noscripts",
            "--dbpath",
            db.to_str().unwrap(),
            "dbhaul",
        ],
    );
    assert!(!prefix.join("bin/dbhaul").exists());
}
