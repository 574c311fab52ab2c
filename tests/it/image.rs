//! The container image, built from the Dockerfile with podman and run the way the Helm chart
//! runs it; a real registry 2.8.2 trusts the key the container generated, and skopeo pushes and
//! pulls through it.
//!
//! What stands in for what cannot be pulled here (no image registry is reachable):
//! * the base images: local equivalents made by `scripts/tools/install-base-images.sh`
//!   (a debootstrapped bookworm for `BUILDER_IMAGE`, a distroless-cc-nonroot equivalent for
//!   `RUNTIME_IMAGE`), loaded into podman's storage from the tool cache when missing;
//! * the Rust builder stage (`rust:…-bookworm`, `cargo build --release`): the Dockerfile's
//!   `prebuilt` stage (`--build-arg BINARY_STAGE=prebuilt`) with the binary this test command
//!   built (debug symbols stripped; built on Debian bookworm, the glibc of the runtime base).
//!
//! Rootful podman as root (the test command runs as root). Host quirks, not the image's: the
//! machine's hard limits are lower than podman's default container ulimits and cannot be
//! raised (no CAP_SYS_RESOURCE), so the containers get modest explicit ones; crun refuses the
//! host's hybrid cgroups, so runc runs them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::clients::{Clients, Outcome};
use crate::common::keys::{bcrypt_hash, yaml_str};
use crate::common::proc::{self, CmdOutput, free_port, require_tool};
use crate::common::registry::{Registry, RegistrySpec};
use crate::common::stack::tempdir;
use crate::common::{http, image, server, tools};

const BASE_SCRIPT: &str = "scripts/tools/install-base-images.sh";
/// The user of distroless `nonroot` and of the chart's `podSecurityContext`.
const NONROOT: &str = "65532:65532";

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn podman(args: &[&str], timeout: Duration) -> CmdOutput {
    let mut cmd = Command::new(require_tool("podman"));
    cmd.args(args)
        .env_remove("CONTAINERS_CONF")
        .env_remove("CONTAINERS_REGISTRIES_CONF")
        .env_remove("CONTAINER_HOST");
    proc::run(&mut cmd, None, timeout)
}

fn podman_ok(args: &[&str], timeout: Duration) -> CmdOutput {
    let out = podman(args, timeout);
    assert!(out.success(), "podman failed:\n{}", out.describe());
    out
}

/// The local base images (builder, runtime) as the install script names them: keyed by the
/// start of the script's sha256, like its cache folder.
struct Bases {
    builder: String,
    runtime: String,
    cache: PathBuf,
}

fn bases() -> Bases {
    let script = fs::read(repo_root().join(BASE_SCRIPT)).expect("read the base-image script");
    let key = &image::sha256_hex(&script)[..12];
    Bases {
        builder: format!("localhost/registry-auth-base/bookworm:12-{key}"),
        runtime: format!("localhost/registry-auth-base/cc-nonroot:12-{key}"),
        cache: tools::dir().join("base-images").join(key),
    }
}

/// The base images in podman's storage, loaded from the tool cache when missing (podman's
/// storage may not survive between runs; the cache does).
fn ensure_base_images() -> Bases {
    let b = bases();
    for (image, archive) in [
        (&b.builder, "bookworm.oci.tar"),
        (&b.runtime, "cc-nonroot.oci.tar"),
    ] {
        if podman(&["image", "exists", image], Duration::from_secs(60)).success() {
            continue;
        }
        let path = b.cache.join(archive);
        assert!(
            path.is_file(),
            "{} is missing: run scripts/tools/install-base-images.sh (scripts/test.sh runs it \
             first)",
            path.display()
        );
        podman_ok(
            &["load", "-q", "-i", &path.to_string_lossy()],
            Duration::from_secs(300),
        );
    }
    b
}

/// Removes what the test made in podman's storage, whatever happens.
#[derive(Default)]
struct PodmanCleanup {
    containers: Vec<String>,
    volumes: Vec<String>,
    images: Vec<String>,
}

impl Drop for PodmanCleanup {
    fn drop(&mut self) {
        let t = Duration::from_secs(60);
        for c in &self.containers {
            let _ = podman(&["rm", "-f", "-t", "2", c], t);
        }
        for v in &self.volumes {
            let _ = podman(&["volume", "rm", "-f", v], t);
        }
        for i in &self.images {
            let _ = podman(&["rmi", "-f", i], t);
        }
    }
}

/// Builds the Dockerfile with the local bases and the test command's binary; returns the tag.
fn build_image(dir: &Path, bases: &Bases, tag: &str) -> CmdOutput {
    let ctx = dir.join("prebuilt-binary");
    fs::create_dir_all(ctx.join("data")).expect("mkdir prebuilt data");
    let strip = proc::run(
        Command::new(require_tool("strip"))
            .arg("--strip-debug")
            .arg("-o")
            .arg(ctx.join("registry-auth"))
            .arg(server::binary()),
        None,
        Duration::from_secs(120),
    );
    assert!(strip.success(), "strip failed:\n{}", strip.describe());
    let root = repo_root().to_string_lossy().into_owned();
    let dockerfile = repo_root().join("Dockerfile");
    let context = format!("prebuilt-binary={}", ctx.display());
    podman(
        &[
            "build",
            // Docker's image format: OCI images have no HEALTHCHECK.
            "--format",
            "docker",
            "--pull=never",
            "-f",
            &dockerfile.to_string_lossy(),
            "--build-arg",
            &format!("BUILDER_IMAGE={}", bases.builder),
            "--build-arg",
            &format!("RUNTIME_IMAGE={}", bases.runtime),
            "--build-arg",
            "BINARY_STAGE=prebuilt",
            "--build-context",
            &context,
            "-t",
            tag,
            &root,
        ],
        Duration::from_secs(600),
    )
}

/// `podman run` with this host's `--runtime` and `--ulimit`s (see the module doc).
fn podman_run(args: &[&str], timeout: Duration) -> CmdOutput {
    let mut all = vec![
        "--runtime",
        "runc",
        "run",
        "--ulimit",
        "nofile=4096:4096",
        "--ulimit",
        "nproc=4096:4096",
    ];
    all.extend_from_slice(args);
    podman(&all, timeout)
}

fn image_config(tag: &str) -> serde_json::Value {
    let out = podman_ok(&["image", "inspect", tag], Duration::from_secs(60));
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("inspect json");
    v[0]["Config"].clone()
}

fn proc_status_field(pid: &str, field: &str) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn image_builds_and_serves_a_registry_as_the_chart_runs_it() {
    require_tool("skopeo");
    let bases = ensure_base_images();
    let tmp = tempdir("ra-img");
    let dir = tmp.path();
    let nonce = image::random_hex(6);
    let tag = format!("localhost/registry-auth-it:{nonce}");
    let mut cleanup = PodmanCleanup::default();
    cleanup.images.push(tag.clone());

    // 1. Build.
    let t0 = Instant::now();
    let built = build_image(dir, &bases, &tag);
    // The stages' images (`--> ID` lines; the last one is the tagged image) go at the end too.
    // (`--layers=false` would not keep them, but podman 4.3 then fails on the alias stage.)
    cleanup.images.extend(
        built
            .stdout
            .lines()
            .filter_map(|l| l.strip_prefix("--> "))
            .map(|id| id.trim().to_owned()),
    );
    assert!(
        built.success(),
        "podman build failed:\n{}",
        built.describe()
    );
    eprintln!("image: podman build took {:.1?}", t0.elapsed());

    // 2. What the image declares (what Kubernetes and docker read).
    let config = image_config(&tag);
    assert_eq!(config["User"], NONROOT, "image config: {config}");
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["registry-auth"]),
        "{config}"
    );
    assert_eq!(
        config["Cmd"],
        serde_json::json!(["serve", "--config", "/config/config.yaml"]),
        "{config}"
    );
    assert!(
        config["Volumes"].get("/data").is_some(),
        "VOLUME /data: {config}"
    );
    // podman shows the Docker-format HEALTHCHECK next to the config, not in it.
    let healthcheck = podman_ok(
        &[
            "image",
            "inspect",
            "--format",
            "{{json .HealthCheck}}",
            &tag,
        ],
        Duration::from_secs(60),
    );
    let healthcheck: serde_json::Value =
        serde_json::from_str(&healthcheck.stdout).expect("healthcheck json");
    assert_eq!(
        healthcheck["Test"],
        serde_json::json!(["CMD", "registry-auth", "healthcheck"]),
        "HEALTHCHECK: {healthcheck}"
    );
    // No shell, as on distroless: an exec of /bin/sh cannot start.
    let sh = podman_run(
        &["--rm", "--entrypoint", "/bin/sh", &tag, "-c", "true"],
        Duration::from_secs(60),
    );
    assert!(
        !sh.success() && sh.combined().contains("no such file"),
        "the image must have no shell:\n{}",
        sh.describe()
    );
    // The image's own config passes check-config inside the image.
    let check = podman_run(
        &["--rm", &tag, "check-config", "/config/config.yaml"],
        Duration::from_secs(60),
    );
    assert!(
        check.success(),
        "check-config of the image's config:\n{}",
        check.describe()
    );

    // 3. Run it as the chart does: uid/gid 65532, read-only root filesystem, no capabilities, no
    // privilege escalation, /config/config.yaml mounted read-only, /data a (new, named) volume.
    let password = image::random_hex(8);
    let cfg = dir.join("config.yaml");
    fs::write(
        &cfg,
        format!(
            "server:\n  addr: \"0.0.0.0:5001\"\ntoken:\n  issuer: registry-auth-image-it\n  \
             expiration: 300\n  generate: true\n  certificate: /data/token.crt\n  key: \
             /data/token.key\n  signing_header: x5c\nusers:\n  \"\": {{}}\n  alice:\n    \
             password: {hash}\nacl:\n  - match: {{account: alice, name: \"alice/*\"}}\n    \
             actions: [pull, push]\n  - match: {{account: \"\", name: \"public/*\"}}\n    \
             actions: [pull]\n",
            hash = yaml_str(&bcrypt_hash(&password)),
        ),
    )
    .expect("write config");
    let volume = format!("registry-auth-it-data-{nonce}");
    let name = format!("registry-auth-it-{nonce}");
    cleanup.volumes.push(volume.clone());
    cleanup.containers.push(name.clone());
    let mount_cfg = format!("{}:/config/config.yaml:ro", cfg.display());
    let mount_data = format!("{volume}:/data");
    // The published port is free when picked; another test may take it before podman binds it.
    let mut attempts = 0;
    let port = loop {
        let port = free_port();
        let publish = format!("127.0.0.1:{port}:5001");
        let started = podman_run(
            &[
                "-d",
                "--name",
                &name,
                "--user",
                NONROOT,
                "--read-only",
                // As in Kubernetes: no tmpfs on /tmp, /run, … either.
                "--read-only-tmpfs=false",
                "--cap-drop",
                "ALL",
                "--security-opt",
                "no-new-privileges",
                "-v",
                &mount_cfg,
                "-v",
                &mount_data,
                "-p",
                &publish,
                &tag,
            ],
            Duration::from_secs(120),
        );
        if started.success() {
            break port;
        }
        attempts += 1;
        assert!(
            attempts < 3 && started.combined().contains("address already in use"),
            "podman run:\n{}",
            started.describe()
        );
        let _ = podman(&["rm", "-f", &name], Duration::from_secs(60));
    };
    let realm = format!("http://127.0.0.1:{port}/auth");
    let logs = || {
        podman(&["logs", &name], Duration::from_secs(30))
            .combined()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http::try_request("GET", &format!("http://127.0.0.1:{port}/healthz"), &[])
            && r.status == 200
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the container did not answer /healthz on 127.0.0.1:{port} within 60 s; logs:\n{}",
            logs()
        );
        thread::sleep(Duration::from_millis(100));
    }

    // The process runs as 65532 with no capabilities, on a read-only root.
    let pid = podman_ok(
        &["inspect", "--format", "{{.State.Pid}}", &name],
        Duration::from_secs(30),
    )
    .stdout
    .trim()
    .to_owned();
    assert_eq!(
        proc_status_field(&pid, "Uid"),
        "65532 65532 65532 65532",
        "uid of the server process"
    );
    assert_eq!(
        proc_status_field(&pid, "Gid"),
        "65532 65532 65532 65532",
        "gid of the server process"
    );
    assert_eq!(
        proc_status_field(&pid, "CapEff"),
        "0000000000000000",
        "effective capabilities"
    );
    assert_eq!(proc_status_field(&pid, "NoNewPrivs"), "1");
    // A seccomp filter (the chart's `seccompProfile: RuntimeDefault`; podman's default profile).
    assert_eq!(proc_status_field(&pid, "Seccomp"), "2", "seccomp mode");
    let mountinfo = fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    let mount_opts = |target: &str| -> Option<String> {
        mountinfo.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(4) == Some(&target)).then(|| f.get(5).copied().unwrap_or_default().to_owned())
        })
    };
    let root_opts = mount_opts("/").expect("the root mount");
    assert!(
        root_opts.split(',').any(|o| o == "ro"),
        "root filesystem mount options {root_opts}: not read-only"
    );
    let data_opts = mount_opts("/data").expect("the /data mount");
    assert!(
        data_opts.split(',').any(|o| o == "rw"),
        "/data mount options {data_opts}: not writable"
    );
    let tmp_mounted = mount_opts("/tmp");
    assert!(
        tmp_mounted.is_none(),
        "/tmp is a mount ({tmp_mounted:?}), the chart has none"
    );

    // Its HEALTHCHECK passes (the image's own command, run by podman in the container).
    let hc = podman(&["healthcheck", "run", &name], Duration::from_secs(60));
    assert!(
        hc.success(),
        "podman healthcheck run:\n{}\nlogs:\n{}",
        hc.describe(),
        logs()
    );
    let health = podman_ok(
        &["inspect", "--format", "{{.State.Health.Status}}", &name],
        Duration::from_secs(30),
    );
    assert_eq!(health.stdout.trim(), "healthy", "{}", health.describe());

    // The key and certificate it generated are in the volume, owned by 65532.
    let crt = dir.join("token.crt");
    podman_ok(
        &[
            "cp",
            &format!("{name}:/data/token.crt"),
            &crt.to_string_lossy(),
        ],
        Duration::from_secs(60),
    );
    let mp = podman_ok(
        &["volume", "inspect", "--format", "{{.Mountpoint}}", &volume],
        Duration::from_secs(30),
    );
    let key_meta = fs::metadata(PathBuf::from(mp.stdout.trim()).join("token.key"))
        .expect("token.key in the volume");
    {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            (key_meta.uid(), key_meta.gid()),
            (65532, 65532),
            "owner of /data/token.key"
        );
        assert_eq!(
            key_meta.mode() & 0o077,
            0,
            "token.key is readable by others"
        );
    }

    // 4. A registry on the host trusts that certificate; skopeo pushes and pulls through it.
    let registry = Registry::start(
        &dir.join("registry"),
        &RegistrySpec {
            realm,
            service: "registry".to_owned(),
            issuer: "registry-auth-image-it".to_owned(),
            rootcertbundle: crt,
        },
    );
    let img = image::build(&dir.join("oci"), "v1");
    let clients = Clients::new(&dir.join("clients"), &registry.addr, img);
    let diag = |what: &str, log: &str| {
        format!(
            "{what}\n{log}\nregistry-auth (container) logs:\n{}\nregistry:\n{}",
            logs(),
            registry.log_tail(20)
        )
    };
    let alice = Some(("alice", password.as_str()));
    let push = clients.skopeo_push(alice, "alice/app", "v1", None);
    assert_eq!(push.outcome, Outcome::Ok, "{}", diag("push", &push.log));
    let pull = clients.skopeo_pull(alice, "alice/app", "v1");
    assert_eq!(pull.outcome, Outcome::Ok, "{}", diag("pull", &pull.log));
    let anon = clients.skopeo_pull(None, "alice/app", "v1");
    assert_eq!(
        anon.outcome,
        Outcome::Denied,
        "{}",
        diag("anonymous pull", &anon.log)
    );
    let wrong = clients.skopeo_pull(Some(("alice", "not-the-password")), "alice/app", "v1");
    assert_eq!(
        wrong.outcome,
        Outcome::Unauthorized,
        "{}",
        diag("wrong password", &wrong.log)
    );
}
