//! Packaging: the container image (Dockerfile, .dockerignore, deploy/config.yaml), the Helm chart
//! (charts/registry-auth), the GitHub workflows and the deployment docs, checked without a
//! container engine (helm renders the chart in tests/it/helm.rs):
//!
//! * the Dockerfile is parsed, and what the image would run is run with the real binary: its
//!   CMD (`serve --config …`) with a copy of the image's config whose /data is a temp dir, then
//!   its HEALTHCHECK command against that server;
//! * the chart's `values.schema.json` is regenerated from the config types
//!   (`UPDATE_SCHEMA=1` rewrites it), `values.yaml` is validated against it (python3-jsonschema,
//!   draft-07 as Helm does), templates only read values that exist, and yamllint passes on every
//!   plain YAML file (the chart rendered by the real helm: tests/it/helm.rs);
//! * the docs' mirror scenario grants what the docs say (`acl explain`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use serde_yaml_ng::Value as Yaml;

use crate::common::proc::{self, ChildGuard, StopMode, require_tool, strip_ansi, tail};
use crate::common::registry::RegistryKind;
use crate::common::server::{binary, run_cli};
use crate::common::stack;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

fn yaml(rel: &str) -> Yaml {
    serde_yaml_ng::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"))
}

/// `value` at a path of mapping keys.
fn get<'a>(value: &'a Yaml, path: &[&str]) -> Option<&'a Yaml> {
    path.iter().try_fold(value, |v, k| v.get(*k))
}

fn get_str<'a>(value: &'a Yaml, path: &[&str]) -> &'a str {
    get(value, path)
        .and_then(Yaml::as_str)
        .unwrap_or_else(|| panic!("no string at {}", path.join(".")))
}

// ------------------------------------------------------------------------------------------
// The Dockerfile

#[derive(Debug)]
struct Instruction {
    /// Upper-case keyword (`RUN`, `COPY`, …).
    cmd: String,
    /// The rest of the instruction, continuation lines joined.
    args: String,
}

#[derive(Debug)]
struct Stage {
    /// The image, with `ARG`s from before the first `FROM` substituted.
    from: String,
    name: Option<String>,
    instructions: Vec<Instruction>,
}

impl Stage {
    fn all(&self, cmd: &str) -> Vec<&str> {
        self.instructions
            .iter()
            .filter(|i| i.cmd == cmd)
            .map(|i| i.args.as_str())
            .collect()
    }

    /// The last instruction `cmd` (the one that counts for USER, CMD, ENTRYPOINT, …).
    fn last(&self, cmd: &str) -> &str {
        self.all(cmd)
            .last()
            .copied()
            .unwrap_or_else(|| panic!("the stage FROM {} has no {cmd}", self.from))
    }
}

#[derive(Debug)]
struct Dockerfile {
    /// `ARG name=default` before the first `FROM`.
    args: BTreeMap<String, String>,
    stages: Vec<Stage>,
}

impl Dockerfile {
    fn parse(text: &str) -> Self {
        // Logical lines: comments and blank lines dropped (also inside a continuation, as
        // BuildKit does), `\` continuations joined.
        let mut logical: Vec<String> = Vec::new();
        let mut pending: Option<String> = None;
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with('#') || trimmed.is_empty() {
                continue;
            }
            let (content, continues) = match trimmed.strip_suffix('\\') {
                Some(c) => (c.trim_end(), true),
                None => (trimmed, false),
            };
            let joined = match pending.take() {
                Some(mut p) => {
                    p.push(' ');
                    p.push_str(content);
                    p
                }
                None => content.to_owned(),
            };
            if continues {
                pending = Some(joined);
            } else {
                logical.push(joined);
            }
        }
        assert!(
            pending.is_none(),
            "the Dockerfile ends inside a continuation"
        );
        let mut args: BTreeMap<String, String> = BTreeMap::new();
        let mut stages: Vec<Stage> = Vec::new();
        for line in logical {
            let (cmd, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
            let cmd = cmd.to_ascii_uppercase();
            let rest = rest.trim().to_owned();
            if cmd == "FROM" {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let image = words
                    .iter()
                    .find(|w| !w.starts_with("--"))
                    .copied()
                    .unwrap_or_default();
                let mut from = image.to_owned();
                for (k, v) in &args {
                    from = from.replace(&format!("${{{k}}}"), v);
                }
                let name = words
                    .iter()
                    .position(|w| w.eq_ignore_ascii_case("AS"))
                    .and_then(|i| words.get(i + 1))
                    .map(|s| (*s).to_owned());
                stages.push(Stage {
                    from,
                    name,
                    instructions: Vec::new(),
                });
            } else if let Some(stage) = stages.last_mut() {
                stage.instructions.push(Instruction { cmd, args: rest });
            } else if cmd == "ARG" {
                let (k, v) = rest.split_once('=').unwrap_or((&rest, ""));
                args.insert(k.to_owned(), v.trim_matches('"').to_owned());
            } else {
                panic!("the Dockerfile has {cmd} before its first FROM");
            }
        }
        assert!(!stages.is_empty(), "the Dockerfile has no FROM");
        Self { args, stages }
    }

    fn load() -> Self {
        Self::parse(&read("Dockerfile"))
    }

    fn runtime(&self) -> &Stage {
        self.stages.last().expect("a stage")
    }

    fn build(&self) -> &Stage {
        self.stages
            .iter()
            .find(|s| s.all("RUN").iter().any(|r| r.contains("cargo build")))
            .expect("a stage that runs `cargo build`")
    }
}

/// An exec-form (JSON array) argument list; the shell form would need a shell, which the
/// runtime image does not have.
fn exec_form(what: &str, args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| {
        panic!("{what} must be in exec form (a JSON array; the image has no shell): {args:?}: {e}")
    })
}

/// `COPY [--flags] SRC… DEST`: (flags, sources, destination).
fn copy_parts(args: &str) -> (Vec<&str>, Vec<&str>, &str) {
    let words: Vec<&str> = args.split_whitespace().collect();
    let (flags, paths): (Vec<&str>, Vec<&str>) = words.iter().partition(|w| w.starts_with("--"));
    let (dest, sources) = paths
        .split_last()
        .expect("COPY needs a source and a destination");
    (flags, sources.to_vec(), dest)
}

fn flag<'a>(flags: &[&'a str], name: &str) -> Option<&'a str> {
    flags
        .iter()
        .find_map(|f| f.strip_prefix(&format!("--{name}=")))
}

/// The user of the runtime stage as a numeric uid (names cannot be checked by Kubernetes'
/// `runAsNonRoot`).
fn runtime_uid(df: &Dockerfile) -> u32 {
    let user = df.runtime().last("USER");
    let uid = user.split(':').next().unwrap_or_default();
    uid.parse().unwrap_or_else(|_| {
        panic!(
            "USER {user}: use a numeric uid, so Kubernetes' runAsNonRoot can verify it \
             without a passwd lookup"
        )
    })
}

/// The image's `deploy/config.yaml`, as (port of server.addr, config).
fn image_config() -> (u16, Yaml) {
    let config = yaml("deploy/config.yaml");
    let addr = get_str(&config, &["server", "addr"]);
    let port = addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("deploy/config.yaml: server.addr {addr:?} has no port"));
    (port, config)
}

#[test]
fn dockerfile_builds_locked_in_a_rust_stage_and_runs_as_non_root() {
    let df = Dockerfile::load();
    assert!(
        df.stages.len() >= 2,
        "the Dockerfile must be multi-stage (build, then a small runtime image)"
    );
    let build = df.build();
    assert!(
        build.from.starts_with("rust:") && build.from.ends_with("-bookworm"),
        "the build stage must use the official rust image on Debian bookworm (the runtime's \
         glibc), not {}",
        build.from
    );
    assert!(
        build
            .all("RUN")
            .iter()
            .any(|r| r.contains("cargo build --release --locked")),
        "the build stage must run `cargo build --release --locked`"
    );
    // The toolchain is at least the crate's rust-version.
    let manifest: toml_lite::Manifest = toml_lite::parse(&read("Cargo.toml"));
    let rust_version = df
        .args
        .get("RUST_VERSION")
        .expect("ARG RUST_VERSION=… before the first FROM");
    assert!(
        version_at_least(rust_version, &manifest.rust_version),
        "ARG RUST_VERSION={rust_version} is older than Cargo.toml's rust-version {}",
        manifest.rust_version
    );

    let runtime = df.runtime();
    assert!(
        runtime.from == "gcr.io/distroless/cc-debian12:nonroot"
            || runtime.from == "debian:bookworm-slim",
        "runtime image {}: expected distroless cc-debian12:nonroot or debian:bookworm-slim",
        runtime.from
    );
    let uid = runtime_uid(&df);
    assert_ne!(uid, 0, "the runtime stage must not run as root");
    assert!(
        runtime.all("RUN").is_empty() || runtime.from.starts_with("debian:"),
        "distroless has no shell: the runtime stage cannot RUN anything"
    );
    // The binary comes from the build stage (by default: through the `binary` alias stage, which
    // `--build-arg BINARY_STAGE=prebuilt` points elsewhere; tests/it/image.rs), onto PATH.
    let build_name = build
        .name
        .as_deref()
        .expect("the build stage is named (AS …)");
    let resolves_to_build = |from: &str| {
        from == build_name
            || df.stages.iter().any(|s| {
                s.name.as_deref() == Some(from) && s.instructions.is_empty() && s.from == build_name
            })
    };
    assert!(
        runtime.all("COPY").iter().any(|c| {
            let (flags, sources, dest) = copy_parts(c);
            flag(&flags, "from").is_some_and(resolves_to_build)
                && sources.iter().any(|s| s.ends_with("/registry-auth"))
                && dest == "/usr/local/bin/registry-auth"
        }),
        "the runtime stage must COPY --from={build_name} (by default) the binary to \
         /usr/local/bin/registry-auth"
    );
}

#[test]
fn dockerfile_paths_ports_and_config_are_consistent() {
    let df = Dockerfile::load();
    let runtime = df.runtime();
    let uid = runtime_uid(&df);

    // CMD reads /config/config.yaml, which is deploy/config.yaml.
    let cmd = exec_form("CMD", runtime.last("CMD"));
    let config_path = cmd
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| cmd.get(i + 1))
        .expect("CMD passes --config");
    assert_eq!(config_path, "/config/config.yaml");
    assert!(
        runtime.all("COPY").iter().any(|c| {
            let (flags, sources, dest) = copy_parts(c);
            flag(&flags, "from").is_none()
                && sources == ["deploy/config.yaml"]
                && dest == config_path
        }),
        "the runtime stage must COPY deploy/config.yaml to {config_path}"
    );

    // /data is a volume owned by the user, and the config keeps its generated key there.
    let volumes = runtime.all("VOLUME").join(" ");
    assert!(volumes.contains("\"/data\""), "VOLUME [\"/data\"] missing");
    assert!(
        runtime.all("COPY").iter().any(|c| {
            let (flags, _, dest) = copy_parts(c);
            dest.trim_end_matches('/') == "/data"
                && flag(&flags, "chown")
                    .and_then(|o| o.split(':').next())
                    .and_then(|u| u.parse::<u32>().ok())
                    == Some(uid)
        }),
        "/data must be created owned by uid {uid} (COPY --chown={uid}:… … /data), or the \
         server cannot write its key into a new volume"
    );
    let (port, config) = image_config();
    assert_eq!(
        get(&config, &["token", "generate"]).and_then(Yaml::as_bool),
        Some(true),
        "deploy/config.yaml: token.generate must be true (the image has no key of its own)"
    );
    for key in ["certificate", "key"] {
        let p = get_str(&config, &["token", key]);
        assert!(
            p.starts_with("/data/"),
            "deploy/config.yaml: token.{key} = {p}: must be in the /data volume"
        );
    }
    let addr = get_str(&config, &["server", "addr"]);
    assert!(
        addr.starts_with("0.0.0.0:") || addr.starts_with(':'),
        "deploy/config.yaml: server.addr {addr} must listen on every interface of the container"
    );
    // One port everywhere: EXPOSE, server.addr, the healthcheck's default URL.
    assert_eq!(
        runtime.last("EXPOSE").split('/').next(),
        Some(port.to_string().as_str()),
        "EXPOSE differs from deploy/config.yaml's server.addr"
    );
    assert_eq!(
        port, 5001,
        "the healthcheck's default URL is http://127.0.0.1:5001/healthz"
    );
    let hc = runtime.last("HEALTHCHECK");
    let hc_cmd = hc
        .split_once("CMD ")
        .map(|(_, c)| exec_form("HEALTHCHECK CMD", c))
        .expect("HEALTHCHECK … CMD [...]");
    assert_eq!(
        hc_cmd,
        ["registry-auth", "healthcheck"],
        "the HEALTHCHECK must run `registry-auth healthcheck` (default URL: port 5001)"
    );
    assert_eq!(
        exec_form("ENTRYPOINT", runtime.last("ENTRYPOINT")),
        ["registry-auth"]
    );
}

#[test]
fn dockerignore_lets_in_exactly_what_the_dockerfile_copies() {
    let df = Dockerfile::load();
    let lines: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        lines.first().map(String::as_str),
        Some("*"),
        ".dockerignore must start with `*` (an allow-list: no target/, data/ or .git/ in the \
         build context)"
    );
    let allowed: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix('!'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    let mut copied = BTreeSet::new();
    for stage in &df.stages {
        for c in stage.all("COPY").into_iter().chain(stage.all("ADD")) {
            let (flags, sources, _) = copy_parts(c);
            if flag(&flags, "from").is_none() {
                copied.extend(
                    sources
                        .into_iter()
                        .map(|s| s.trim_end_matches('/').to_owned()),
                );
            }
        }
    }
    for source in &copied {
        assert!(
            allowed
                .iter()
                .any(|a| source == a || source.starts_with(&format!("{a}/"))),
            "the Dockerfile copies {source}, which .dockerignore keeps out (add `!{source}`)"
        );
        assert!(
            root().join(source).exists(),
            "the Dockerfile copies {source}, which does not exist"
        );
    }
    for a in &allowed {
        assert!(
            copied
                .iter()
                .any(|c| c == a || c.starts_with(&format!("{a}/"))),
            ".dockerignore lets in {a}, which the Dockerfile never copies"
        );
    }
    // Files the sources embed must be in the context too.
    for dir in ["src", "benches"] {
        for file in rust_files(&root().join(dir)) {
            let text = fs::read_to_string(&file).expect("read");
            for mac in ["include_str!(", "include_bytes!("] {
                for (i, _) in text.match_indices(mac) {
                    let arg = text[i + mac.len()..].split(')').next().unwrap_or_default();
                    let Some(rel) = arg
                        .trim()
                        .strip_prefix('"')
                        .and_then(|a| a.strip_suffix('"'))
                    else {
                        continue; // concat!(env!(…)) and the like: not checked
                    };
                    let target = file.parent().expect("dir").join(rel);
                    let target = target.canonicalize().unwrap_or(target);
                    let inside = copied.iter().any(|c| {
                        root()
                            .join(c)
                            .canonicalize()
                            .is_ok_and(|c| target.starts_with(c))
                    });
                    assert!(
                        inside,
                        "{} embeds {rel}, which is not in the Docker build context",
                        file.display()
                    );
                }
            }
        }
    }
    // Everything `cargo build --locked` reads is in the context: the manifest's targets and the
    // lock file, checked by cargo itself on a copy of exactly those files.
    let ctx = stack::tempdir("ra-it-docker-ctx");
    for source in &copied {
        if source.starts_with("deploy/") {
            continue;
        }
        copy_tree(&root().join(source), &ctx.path().join(source));
    }
    let out = proc::run(
        Command::new(env!("CARGO"))
            .args([
                "metadata",
                "--locked",
                "--offline",
                "--no-deps",
                "--format-version",
                "1",
            ])
            .current_dir(ctx.path()),
        None,
        Duration::from_secs(120),
    );
    assert!(
        out.success(),
        "cargo cannot read the crate from the Docker build context (the files the Dockerfile \
         copies):\n{}",
        out.describe()
    );
    let meta: Json = serde_json::from_str(&out.stdout).expect("cargo metadata JSON");
    let targets = meta["packages"][0]["targets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        targets.iter().any(|t| t["name"] == "registry-auth"
            && t["kind"]
                .as_array()
                .is_some_and(|k| k.contains(&json!("bin")))),
        "no registry-auth binary target in the build context: {targets:?}"
    );
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    out
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        fs::create_dir_all(to).expect("mkdir");
        for entry in fs::read_dir(from).expect("read_dir") {
            let entry = entry.expect("entry");
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

/// What the image runs, run here: `registry-auth <CMD>` on a copy of deploy/config.yaml whose
/// /data is a temp dir (plus `--listen 127.0.0.1:0`), then the HEALTHCHECK's command against it.
#[test]
fn image_command_and_healthcheck_work_with_the_real_binary() {
    let df = Dockerfile::load();
    let runtime = df.runtime();
    let cmd = exec_form("CMD", runtime.last("CMD"));
    assert_eq!(
        cmd.first().map(String::as_str),
        Some("serve"),
        "CMD runs `serve`"
    );

    // Every flag the CMD passes is one `serve` has.
    let help = run_cli(&["serve", "--help"]);
    assert!(help.success(), "{}", help.describe());
    for f in cmd.iter().filter(|a| a.starts_with("--")) {
        assert!(
            help.stdout.contains(f.as_str()),
            "CMD passes {f}, which `registry-auth serve --help` does not list\n{}",
            help.describe()
        );
    }

    // The image's config, with /data moved to a temp dir (no key yet, as in a new volume).
    let tmp = stack::tempdir("ra-it-image");
    let data = tmp.path().join("data");
    fs::create_dir_all(&data).expect("mkdir data");
    let config = tmp.path().join("config.yaml");
    fs::write(
        &config,
        read("deploy/config.yaml").replace("/data/", &format!("{}/", data.display())),
    )
    .expect("write config");
    let check = run_cli(&["check-config", &config.to_string_lossy()]);
    assert!(
        check.success(),
        "deploy/config.yaml (with /data → {}) fails check-config:\n{}",
        data.display(),
        check.describe()
    );

    // `serve` exactly as the CMD says, on an ephemeral loopback port.
    let args: Vec<String> = cmd
        .iter()
        .map(|a| {
            if a == "/config/config.yaml" {
                config.to_string_lossy().into_owned()
            } else {
                a.clone()
            }
        })
        .collect();
    let log = tmp.path().join("serve.log");
    let (addr, _guard) = spawn_server(&args, &log);
    for f in ["token.key", "token.crt"] {
        assert!(
            data.join(f).is_file(),
            "serve did not generate {f} in the data dir; log:\n{}",
            tail(&log, 20)
        );
    }

    // The HEALTHCHECK's command, with the URL of this server (the image's is the default one).
    let hc = runtime.last("HEALTHCHECK");
    let hc_cmd = hc
        .split_once("CMD ")
        .map(|(_, c)| exec_form("HEALTHCHECK CMD", c))
        .expect("HEALTHCHECK CMD");
    let sub = &hc_cmd[1..];
    let mut help_args: Vec<&str> = sub.iter().map(String::as_str).collect();
    help_args.push("--help");
    let sub_help = run_cli(&help_args);
    assert!(
        sub_help.success(),
        "the HEALTHCHECK runs `registry-auth {}`, which this binary does not have:\n{}",
        sub.join(" "),
        sub_help.describe()
    );
    assert!(
        sub_help.stdout.contains("http://127.0.0.1:5001/healthz"),
        "`registry-auth {} --help` must give the default URL http://127.0.0.1:5001/healthz \
         (the port the image EXPOSEs):\n{}",
        sub.join(" "),
        sub_help.describe()
    );
    let mut hc_args: Vec<String> = sub.to_vec();
    hc_args.push(format!("http://{addr}/healthz"));
    let hc_args: Vec<&str> = hc_args.iter().map(String::as_str).collect();
    let healthy = run_cli(&hc_args);
    assert!(
        healthy.success(),
        "the HEALTHCHECK command fails against a running server:\n{}\nserver log:\n{}",
        healthy.describe(),
        tail(&log, 20)
    );
    // … and fails when nothing answers.
    let port = proc::free_port();
    let mut down: Vec<String> = sub.to_vec();
    down.push(format!("http://127.0.0.1:{port}/healthz"));
    let down: Vec<&str> = down.iter().map(String::as_str).collect();
    let unhealthy = run_cli(&down);
    assert!(
        !unhealthy.success() && !unhealthy.timed_out,
        "the HEALTHCHECK command must fail (quickly) when nothing listens:\n{}",
        unhealthy.describe()
    );
}

/// Starts `registry-auth ARGS --listen 127.0.0.1:0`, output to `log`; waits for its address.
fn spawn_server(args: &[String], log: &Path) -> (String, ChildGuard) {
    let logf = File::create(log).expect("create log");
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(logf.try_clone().expect("dup"))
        .stderr(logf);
    let line = proc::cmdline(&cmd);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{line}`: {e}"));
    let mut guard = ChildGuard::new("registry-auth", child, StopMode::Kill);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = strip_ansi(&fs::read_to_string(log).unwrap_or_default());
        if let Some(addr) = text
            .lines()
            .filter(|l| l.contains("listening"))
            .find_map(loopback_addr)
        {
            return (addr, guard);
        }
        if let Some(status) = guard.try_wait() {
            panic!("`{line}` exited with {status}; log:\n{}", tail(log, 30));
        }
        assert!(
            Instant::now() < deadline,
            "`{line}` did not log its address within 20 s; log:\n{}",
            tail(log, 30)
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The first `127.0.0.1:PORT` (PORT ≠ 0) in a log line.
fn loopback_addr(line: &str) -> Option<String> {
    line.match_indices("127.0.0.1:").find_map(|(i, m)| {
        let digits: String = line[i + m.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .map(|p| format!("127.0.0.1:{p}"))
    })
}

/// The runtime image (distroless cc) has glibc and libgcc, nothing else: the binary must not
/// need more.
#[test]
fn binary_needs_only_what_distroless_cc_has() {
    let ldd = require_tool("ldd");
    let out = proc::run(
        Command::new(ldd).arg(binary()),
        None,
        Duration::from_secs(30),
    );
    assert!(out.success(), "{}", out.describe());
    let provided = [
        "linux-vdso.so",
        "linux-gate.so",
        "libc.so",
        "libm.so",
        "libgcc_s.so",
        "libpthread.so",
        "libdl.so",
        "librt.so",
        "ld-linux",
    ];
    for line in out.stdout.lines() {
        let lib = line.split_whitespace().next().unwrap_or_default();
        let name = lib.rsplit('/').next().unwrap_or_default();
        assert!(
            provided.iter().any(|p| name.starts_with(p)),
            "the binary links {name}, which gcr.io/distroless/cc-debian12 does not have:\n{}",
            out.stdout
        );
    }
}

// ------------------------------------------------------------------------------------------
// The Helm chart

const CHART: &str = "charts/registry-auth";

fn chart_file(rel: &str) -> PathBuf {
    root().join(CHART).join(rel)
}

/// The chart's values.schema.json as it should be: the committed file with `properties.config`
/// replaced by the schema generated from the config types.
fn expected_values_schema(committed: &Json) -> Json {
    let mut config = registry_auth::config::json_schema();
    if let Some(obj) = config.as_object_mut() {
        // A subschema does not declare the dialect (the chart's schema does).
        obj.remove("$schema");
        obj.insert(
            "description".to_owned(),
            json!(
                "The registry-auth configuration file (rendered into a ConfigMap). Generated \
                 from registry-auth's config types: regenerate with `UPDATE_SCHEMA=1 cargo test \
                 --test it packaging`."
            ),
        );
    }
    let mut expected = committed.clone();
    expected["properties"]["config"] = config;
    expected
}

#[test]
fn chart_values_schema_is_generated_from_the_config_types() {
    let path = chart_file("values.schema.json");
    let text = fs::read_to_string(&path).expect("read values.schema.json");
    let committed: Json = serde_json::from_str(&text).expect("values.schema.json is JSON");
    let expected = expected_values_schema(&committed);
    if committed == expected {
        return;
    }
    if std::env::var_os("UPDATE_SCHEMA").is_some_and(|v| v == "1") {
        let mut pretty = serde_json::to_string_pretty(&expected).expect("JSON");
        pretty.push('\n');
        fs::write(&path, pretty).expect("write values.schema.json");
        eprintln!("updated {}", path.display());
        return;
    }
    panic!(
        "{CHART}/values.schema.json is out of date: its `properties.config` must be the schema \
         generated from the config types (src/config/file.rs, src/config/schema.rs). Update it \
         with\n\n    UPDATE_SCHEMA=1 cargo test --test it packaging::chart_values_schema\n\n\
         (the rest of the file is the chart's own values, edited by hand)."
    );
}

/// Validates YAML documents against a JSON Schema (draft-07, as Helm) with python3-jsonschema;
/// returns each file's error messages.
fn schema_errors(schema: &Json, files: &[PathBuf]) -> BTreeMap<String, Vec<String>> {
    // Debian's interpreter, which python3-jsonschema installs into (a pyenv `python3` earlier on
    // PATH would not have it on a fresh machine).
    require_tool("/usr/bin/python3");
    let tmp = stack::tempdir("ra-it-schema");
    let schema_path = tmp.path().join("schema.json");
    fs::write(&schema_path, schema.to_string()).expect("write schema");
    let script = r#"
import json, sys, yaml
try:
    import jsonschema
except ImportError:
    sys.exit("python3-jsonschema is not installed; run scripts/install-test-deps.sh")
schema = json.load(open(sys.argv[1]))
jsonschema.Draft7Validator.check_schema(schema)
validator = jsonschema.Draft7Validator(schema)
out = {}
for f in sys.argv[2:]:
    doc = yaml.safe_load(open(f))
    out[f] = ["/".join(str(p) for p in e.absolute_path) + ": " + e.message
              for e in validator.iter_errors(doc)]
print(json.dumps(out))
"#;
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg("-c").arg(script).arg(&schema_path).args(files);
    let out = proc::run(&mut cmd, None, Duration::from_secs(60));
    assert!(
        out.success(),
        "schema validation did not run:\n{}",
        out.describe()
    );
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.describe()))
}

#[test]
fn chart_values_validate_against_the_schema_and_typos_do_not() {
    let schema: Json =
        serde_json::from_str(&fs::read_to_string(chart_file("values.schema.json")).expect("read"))
            .expect("JSON");
    let schema = expected_values_schema(&schema);
    let tmp = stack::tempdir("ra-it-values");
    let values = read(&format!("{CHART}/values.yaml"));
    // Each bad variant must be refused, as `helm install` would.
    let bad = [
        (
            "top-level typo",
            values.replacen("replicaCount:", "replicacount:", 1),
        ),
        (
            "config typo (docker_auth issue #326)",
            values.replacen(
                "- match: {account: \"\", name: \"public/*\"}",
                "- match: {acount: \"\", name: \"public/*\"}",
                1,
            ),
        ),
        (
            "bad signing_header",
            values.replacen("signing_header: x5c", "signing_header: x509", 1),
        ),
        (
            "config without acl",
            values.replacen("  acl:\n", "  acls:\n", 1),
        ),
    ];
    // chart-testing's values (ci/*.yaml), merged over the defaults as Helm does.
    let mut ci_files = Vec::new();
    for entry in fs::read_dir(chart_file("ci")).expect("ci/") {
        let p = entry.expect("entry").path();
        let mut merged: Yaml = serde_yaml_ng::from_str(&values).expect("values.yaml");
        let overlay: Yaml =
            serde_yaml_ng::from_str(&fs::read_to_string(&p).expect("read")).expect("YAML");
        merge(&mut merged, overlay);
        let out = tmp.path().join(p.file_name().expect("name"));
        fs::write(&out, serde_yaml_ng::to_string(&merged).expect("YAML")).expect("write");
        ci_files.push(out);
    }
    assert!(!ci_files.is_empty());
    let mut files = vec![chart_file("values.yaml")];
    for (i, (what, text)) in bad.iter().enumerate() {
        assert_ne!(
            text, &values,
            "variant {what:?} changed nothing: update the test"
        );
        let p = tmp.path().join(format!("bad-{i}.yaml"));
        fs::write(&p, text).expect("write");
        files.push(p);
    }
    files.extend(ci_files.iter().cloned());
    let errors = schema_errors(&schema, &files);
    for f in &ci_files {
        let e = &errors[&f.to_string_lossy().into_owned()];
        assert!(
            e.is_empty(),
            "{} (merged over values.yaml): {}",
            f.display(),
            e.join("\n")
        );
    }
    let good = &errors[&files[0].to_string_lossy().into_owned()];
    assert!(
        good.is_empty(),
        "{CHART}/values.yaml does not validate against values.schema.json:\n{}",
        good.join("\n")
    );
    for (i, (what, _)) in bad.iter().enumerate() {
        let e = &errors[&files[i + 1].to_string_lossy().into_owned()];
        assert!(
            !e.is_empty(),
            "values.schema.json accepts values with a {what}"
        );
    }
}

/// Helm's merge of user values over the defaults: maps key by key, everything else replaced,
/// `null` deletes.
fn merge(base: &mut Yaml, overlay: Yaml) {
    match (base, overlay) {
        (Yaml::Mapping(b), Yaml::Mapping(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    b.remove(&k);
                } else if let Some(existing) = b.get_mut(&k) {
                    merge(existing, v);
                } else {
                    b.insert(k, v);
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// The generated schema never refuses a config the loader accepts: every shipped config passes.
#[test]
fn every_shipped_config_validates_against_the_config_schema() {
    let mut files = vec![
        root().join("config.example.yaml"),
        root().join("deploy/config.yaml"),
        root().join("examples/acl-tests/worked.yml"),
    ];
    // The migration corpus' refused files (a repeated key, unsupported backends) are left out.
    let refused = ["ldap_auth_repeated_key.yml", "unsupported.yml"];
    for dir in ["examples", "tests/fixtures", "tests/fixtures/migration"] {
        for entry in fs::read_dir(root().join(dir)).expect("read_dir") {
            let p = entry.expect("entry").path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if !name.starts_with("bad-")
                && !refused.contains(&name)
                && (name.ends_with(".yml") || name.ends_with(".yaml"))
            {
                files.push(p);
            }
        }
    }
    let errors = schema_errors(&registry_auth::config::json_schema(), &files);
    let failing: Vec<String> = errors
        .iter()
        .filter(|(_, e)| !e.is_empty())
        .map(|(f, e)| format!("{f}:\n  {}", e.join("\n  ")))
        .collect();
    assert!(
        failing.is_empty(),
        "the generated config schema refuses shipped configs that load (fix src/config/schema.rs):\n{}",
        failing.join("\n")
    );
    assert!(files.len() >= 5, "{files:?}");
}

/// Every `.Values.a.b` a template reads exists in values.yaml, except under `config` (read with
/// `dig`, any key may be absent) and `global`: helm renders a misspelt value as nothing, even
/// with `helm lint --strict`, so this is the one template check helm does not do (rendering,
/// validation and the rendered config are tested with the real helm in tests/it/helm.rs).
#[test]
fn chart_templates_read_only_values_that_exist() {
    let values = yaml(&format!("{CHART}/values.yaml"));
    let dir = chart_file("templates");
    let mut checked = 0;
    for entry in fs::read_dir(&dir).expect("templates") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let text = fs::read_to_string(&path).expect("read template");
        for (i, _) in text.match_indices(".Values.") {
            let rest = &text[i + ".Values.".len()..];
            let reference: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '_')
                .collect();
            let keys: Vec<&str> = reference.trim_end_matches('.').split('.').collect();
            if matches!(keys.first(), Some(&"config" | &"global")) {
                continue;
            }
            assert!(
                get(&values, &keys).is_some(),
                "{name} reads .Values.{reference}, which values.yaml does not define"
            );
            checked += 1;
        }
    }
    assert!(checked > 30, "only {checked} .Values references found");
}

/// yamllint (with the repository's .yamllint) on the chart's plain YAML files, the deploy
/// examples, the workflows and the mirror example.
#[test]
fn yamllint_passes() {
    let yamllint = require_tool("yamllint");
    let targets = [
        CHART,
        "deploy",
        ".github/workflows",
        "examples/mirror.yml",
        ".yamllint",
    ];
    let mut cmd = Command::new(yamllint);
    cmd.args(["--strict", "--format", "parsable", "-c", ".yamllint"])
        .args(targets)
        .current_dir(root());
    let out = proc::run(&mut cmd, None, Duration::from_secs(60));
    assert!(
        out.success(),
        "yamllint found problems:\n{}",
        out.describe()
    );
}

// ------------------------------------------------------------------------------------------
// Workflows, compose and docs

#[test]
fn workflows_run_the_ci_entry_point_and_release_multi_arch_images() {
    let ci = read(".github/workflows/ci.yml");
    assert!(
        ci.contains(".ci/run"),
        "ci.yml must run .ci/run (the project's CI entry point, which runs scripts/test.sh)"
    );
    let ci_yaml: Yaml = serde_yaml_ng::from_str(&ci).expect("ci.yml");
    assert!(
        get(&ci_yaml, &["on", "push"]).is_some()
            && get(&ci_yaml, &["on", "pull_request"]).is_some()
    );

    let release = read(".github/workflows/release.yml");
    let release_yaml: Yaml = serde_yaml_ng::from_str(&release).expect("release.yml");
    let tags = get(&release_yaml, &["on", "push", "tags"]).expect("release.yml runs on tags");
    assert!(tags.as_sequence().is_some_and(|t| !t.is_empty()));
    for needle in [
        "linux/amd64,linux/arm64",
        "ghcr.io",
        "docker/setup-qemu-action",
        "docker/setup-buildx-action",
        "docker/build-push-action",
        "packages: write",
    ] {
        assert!(release.contains(needle), "release.yml: no {needle}");
    }
    // Every action is pinned to a full commit SHA, with its version in a comment.
    for (file, text) in [("ci.yml", &ci), ("release.yml", &release)] {
        for line in text.lines().filter(|l| {
            l.trim_start().starts_with("- uses:") || l.trim_start().starts_with("uses:")
        }) {
            let spec = line.split("uses:").nth(1).unwrap_or_default().trim();
            if spec.starts_with("./") {
                continue; // a workflow of this repository
            }
            let (action, rest) = spec.split_once('@').unwrap_or((spec, ""));
            let sha: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
            assert!(
                sha.len() == 40 && rest.contains("# v"),
                "{file}: `{action}` is not pinned to a full commit SHA with a `# vX` comment: {line}"
            );
        }
    }
}

#[test]
fn compose_example_matches_the_image_and_its_config() {
    let compose = yaml("deploy/compose.yaml");
    let (_, config) = image_config();
    let services = get(&compose, &["services"]).expect("services");
    let auth = get(services, &["registry-auth"]).expect("services.registry-auth");
    let registry = get(services, &["registry"]).expect("services.registry");
    let env = |name: &str| -> String {
        get(registry, &["environment", name])
            .and_then(Yaml::as_str)
            .unwrap_or_else(|| panic!("registry environment {name}"))
            .to_owned()
    };
    assert_eq!(
        env("REGISTRY_AUTH_TOKEN_ISSUER"),
        get_str(&config, &["token", "issuer"]),
        "the registry's issuer must equal token.issuer"
    );
    // The registry reads the certificate registry-auth generates, from the shared volume.
    let cert = get_str(&config, &["token", "certificate"]);
    let bundle = env("REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE");
    let mounts = |svc: &Yaml| -> Vec<(String, String)> {
        get(svc, &["volumes"])
            .and_then(Yaml::as_sequence)
            .map(|v| {
                v.iter()
                    .filter_map(Yaml::as_str)
                    .filter_map(|m| {
                        let mut parts = m.split(':');
                        Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let auth_data = mounts(auth)
        .into_iter()
        .find(|(_, target)| target == "/data")
        .expect("registry-auth mounts a volume at /data");
    let (_, registry_target) = mounts(registry)
        .into_iter()
        .find(|(source, _)| *source == auth_data.0)
        .expect("the registry mounts registry-auth's data volume");
    assert_eq!(
        cert.replacen("/data", &registry_target, 1),
        bundle,
        "the registry's rootcertbundle must be registry-auth's token.certificate on the shared volume"
    );
    assert!(
        get(registry, &["depends_on", "registry-auth", "condition"]).and_then(Yaml::as_str)
            == Some("service_healthy"),
        "the registry must wait for registry-auth to be healthy (its certificate exists then)"
    );
    // The realm's port is the one published for registry-auth.
    let realm = env("REGISTRY_AUTH_TOKEN_REALM");
    let ports: Vec<String> = get(auth, &["ports"])
        .and_then(Yaml::as_sequence)
        .map(|p| {
            p.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        ports.iter().any(|p| {
            let host_port = p.rsplit(':').nth(1).unwrap_or_default();
            realm.contains(&format!(":{host_port}/"))
        }),
        "realm {realm} does not use a port published for registry-auth ({ports:?})"
    );
}

#[test]
fn docs_show_the_shipped_files_and_are_linked() {
    let deployment = read("docs/src/operating/deployment.md");
    let mirror = read("examples/mirror.yml");
    assert!(
        deployment.contains(&mirror),
        "docs/src/operating/deployment.md must include examples/mirror.yml verbatim (copy it again)"
    );
    for file in [
        "deploy/compose.yaml",
        "deploy/registry-mirror.yml",
        "deploy/registry-team.yml",
    ] {
        assert!(
            deployment.contains(&read(file)),
            "docs/src/operating/deployment.md must include {file} verbatim (copy it again)"
        );
    }
    // The front door and the book's Deploying page both point at the image, the guides and the
    // chart.
    for (page, needles) in [
        (
            "README.md",
            [
                "docker build -t registry-auth .",
                "docs/src/operating/deployment.md",
                "docs/src/operating/troubleshooting.md",
                "charts/registry-auth",
            ],
        ),
        (
            "docs/src/operating/deploying.md",
            [
                "docker build -t registry-auth .",
                "deployment.md",
                "troubleshooting.md",
                "charts/registry-auth",
            ],
        ),
    ] {
        let text = read(page);
        for needle in needles {
            assert!(text.contains(needle), "{page} does not mention {needle}");
        }
    }
    let troubleshooting = read("docs/src/operating/troubleshooting.md");
    for needle in [
        "insufficient_scope",
        "invalid_token",
        "token signed by untrusted key with ID",
        "token intended for another audience",
        "token from untrusted issuer",
        "token not to be used after",
        "unauthorized: authentication required",
        "requested access to the resource is denied",
        "429",
        "registry:catalog:*",
        "skopeo delete",
    ] {
        assert!(
            troubleshooting.contains(needle),
            "docs/src/operating/troubleshooting.md does not cover {needle:?}"
        );
    }
    // Every relative link in the docs points at a file that exists.
    for (name, text) in [
        ("docs/src/operating/deployment.md", &deployment),
        ("docs/src/operating/troubleshooting.md", &troubleshooting),
    ] {
        for (i, _) in text.match_indices("](") {
            let target: String = text[i + 2..].chars().take_while(|c| *c != ')').collect();
            let file = target.split('#').next().unwrap_or_default();
            if file.is_empty() || file.contains("://") {
                continue;
            }
            assert!(
                root().join("docs/src/operating").join(file).exists(),
                "{name} links to {target}, which does not exist"
            );
        }
    }
}

/// The mirror scenario of docs/src/operating/deployment.md, decided by `acl explain` on examples/mirror.yml.
#[test]
fn mirror_example_grants_what_the_docs_say() {
    let tmp = stack::tempdir("ra-it-mirror");
    let config = tmp.path().join("mirror.yml");
    fs::write(&config, read("examples/mirror.yml")).expect("write");
    let config = config.to_string_lossy().into_owned();
    // (account, labels, service, scope, granted actions)
    let cases: &[(&str, &[&str], &str, &str, &str)] = &[
        ("", &[], "mirror", "repository:library/alpine:pull", "pull"),
        ("", &[], "mirror", "repository:bitnami/redis:pull", ""),
        (
            "",
            &[],
            "mirror",
            "repository:library/alpine:push,pull",
            "pull",
        ),
        ("", &[], "registry", "repository:team-a/app:pull", ""),
        (
            "alice",
            &["team=team-a"],
            "mirror",
            "repository:bitnami/redis:pull",
            "pull",
        ),
        (
            "alice",
            &["team=team-a"],
            "registry",
            "repository:team-a/app:pull,push",
            "pull,push",
        ),
        (
            "alice",
            &["team=team-a"],
            "registry",
            "repository:team-a/sub/app:delete",
            "delete",
        ),
        (
            "alice",
            &["team=team-a"],
            "registry",
            "repository:team-b/app:pull",
            "",
        ),
        (
            "alice",
            &["team=team-a"],
            "registry",
            "registry:catalog:*",
            "",
        ),
        (
            "bob",
            &["team=team-b"],
            "registry",
            "repository:team-b/app:pull,push",
            "pull,push",
        ),
        ("admin", &[], "registry", "registry:catalog:*", "*"),
        (
            "admin",
            &[],
            "mirror",
            "repository:library/alpine:push,pull",
            "pull",
        ),
    ];
    for (account, labels, service, scope, want) in cases {
        let mut args = vec![
            "acl",
            "explain",
            "--config",
            &config,
            "--account",
            account,
            "--service",
            service,
        ];
        for l in *labels {
            args.extend(["--labels", l]);
        }
        args.push(scope);
        let out = run_cli(&args);
        assert!(out.success(), "{}", out.describe());
        let granted = out
            .stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("granted: "))
            .unwrap_or_default();
        let granted = if granted.starts_with("nothing") {
            ""
        } else {
            granted
        };
        assert_eq!(
            granted,
            *want,
            "{account:?} on {service} asking {scope}\n{}",
            out.describe()
        );
    }
}

/// A docker-registry 2.8.2 child process (also the mirror of tests/it/ingress.rs).
pub(crate) struct RunningRegistry {
    pub(crate) addr: String,
    pub(crate) log: PathBuf,
    _guard: ChildGuard,
}

/// Starts docker-registry 2.8.2 with `config`, whose `addr: :5000` becomes a free loopback port,
/// with `env` (REGISTRY_* variables override the file); waits until `/v2/` answers.
pub(crate) fn start_registry(
    dir: &Path,
    name: &str,
    config: &str,
    env: &[(String, String)],
) -> RunningRegistry {
    start_registry_kind(RegistryKind::V2, dir, name, config, env)
}

/// [`start_registry`] with 2.8.2 or v3.1.1.
fn start_registry_kind(
    kind: RegistryKind,
    dir: &Path,
    name: &str,
    config: &str,
    env: &[(String, String)],
) -> RunningRegistry {
    let bin = kind.program();
    assert!(
        config.contains("addr: :5000"),
        "{name}: no `addr: :5000` to replace"
    );
    let log = dir.join(format!("{name}.log"));
    let mut last = String::new();
    for _ in 0..5 {
        let addr = format!("127.0.0.1:{}", proc::free_port());
        let file = dir.join(format!("{name}.yml"));
        fs::write(
            &file,
            config.replace("addr: :5000", &format!("addr: {addr}")),
        )
        .expect("write");
        let logf = File::create(&log).expect("log");
        let mut cmd = Command::new(&bin);
        cmd.arg("serve")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("dup"))
            .stderr(logf);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        // v3 exports traces by OTLP to localhost:4318 unless told not to.
        cmd.env("OTEL_TRACES_EXPORTER", "none")
            .env("OTEL_SDK_DISABLED", "true");
        let mut guard = ChildGuard::new(
            format!("registry {} ({name})", kind.version()),
            cmd.spawn().expect("spawn the registry"),
            StopMode::Kill,
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if crate::common::http::try_request("GET", &format!("http://{addr}/v2/"), &[])
                .is_ok_and(|r| r.status == 200 || r.status == 401)
            {
                return RunningRegistry {
                    addr,
                    log,
                    _guard: guard,
                };
            }
            if let Some(status) = guard.try_wait() {
                last = format!("exited with {status}:\n{}", tail(&log, 30));
                break;
            }
            if Instant::now() > deadline {
                last = format!("no answer on /v2/ within 15 s:\n{}", tail(&log, 30));
                break;
            }
            thread::sleep(Duration::from_millis(25));
        }
        if !last.contains("address already in use") {
            break;
        }
    }
    panic!("registry {name} did not start: {last}");
}

/// The registry's challenge on `/v2/`.
fn challenge(registry: &RunningRegistry) -> String {
    let r = crate::common::http::get(&format!("http://{}/v2/", registry.addr), &[]);
    assert_eq!(r.status, 401, "{r:?}");
    r.header("www-authenticate").unwrap_or_default().to_owned()
}

/// The Compose example's registry settings (environment variables over the registry image's
/// default config) work with the real registry 2.8.2: it starts, trusts a registry-auth
/// certificate and sends clients to the realm.
#[test]
fn compose_registry_environment_is_understood_by_the_registry() {
    let compose = yaml("deploy/compose.yaml");
    let env = get(&compose, &["services", "registry", "environment"])
        .and_then(Yaml::as_mapping)
        .expect("services.registry.environment");
    let tmp = stack::tempdir("ra-it-compose");
    let cert = tmp.path().join("token.crt");
    let out = run_cli(&[
        "gen-keys",
        "--key",
        &tmp.path().join("token.key").to_string_lossy(),
        "--certificate",
        &cert.to_string_lossy(),
    ]);
    assert!(out.success(), "{}", out.describe());
    let mut vars = Vec::new();
    for (k, v) in env {
        let k = k.as_str().expect("variable name").to_owned();
        let mut v = v.as_str().expect("string value (quote it)").to_owned();
        if k == "REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE" {
            v = cert.to_string_lossy().into_owned();
        }
        vars.push((k, v));
    }
    // The registry:2 image's own /etc/docker/registry/config.yml.
    let base = format!(
        "version: 0.1\nlog:\n  fields:\n    service: registry\nstorage:\n  cache:\n    \
         blobdescriptor: inmemory\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: :5000\n  \
         headers:\n    X-Content-Type-Options: [nosniff]\n",
        tmp.path().join("data").display()
    );
    let registry = start_registry(tmp.path(), "compose-registry", &base, &vars);
    let value = |name: &str| -> String {
        vars.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        challenge(&registry),
        format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            value("REGISTRY_AUTH_TOKEN_REALM"),
            value("REGISTRY_AUTH_TOKEN_SERVICE")
        ),
        "log:\n{}",
        tail(&registry.log, 20)
    );
}

/// The scenario of docs/src/operating/deployment.md end to end, with the shipped files: registry-auth on
/// examples/mirror.yml (with known passwords), deploy/registry-mirror.yml as a pull-through
/// cache of a local upstream registry (standing in for Docker Hub), deploy/registry-team.yml as
/// the team registry, and skopeo as the client.
#[test]
fn mirror_scenario_works_end_to_end() {
    mirror_scenario(RegistryKind::V2);
}

/// The same with registry v3.1.1 as the mirror and the team registry (the files say "2.8 or
/// v3"; "Docker Hub" stays a 2.8.2 without auth).
#[test]
fn mirror_scenario_works_end_to_end_registry_v3() {
    mirror_scenario(RegistryKind::V3);
}

fn mirror_scenario(kind: RegistryKind) {
    use crate::common::clients::{Clients, Outcome};
    use crate::common::http;
    use crate::common::image;
    use crate::common::keys::{bcrypt_hash, yaml_str};
    use crate::common::server::AuthServer;

    let tmp = stack::tempdir("ra-it-mirror-e2e");
    let dir = tmp.path();

    // registry-auth, with passwords the test knows.
    let mut config = read("examples/mirror.yml");
    let passwords = [
        ("alice", "alice-pw-1"),
        ("bob", "bob-pw-2"),
        ("admin", "admin-pw-3"),
    ];
    let values = yaml("examples/mirror.yml");
    for (user, pw) in passwords {
        let old = get_str(&values, &["users", user, "password"]);
        config = config.replacen(&format!("\"{old}\""), &yaml_str(&bcrypt_hash(pw)), 1);
    }
    let config_path = dir.join("mirror.yml");
    fs::write(&config_path, config).expect("write");
    let auth = AuthServer::start(&config_path, &dir.join("auth.log"));
    let cert = dir.join("keys/token.crt");
    assert!(
        cert.is_file(),
        "registry-auth did not generate keys/token.crt"
    );

    let adapt = |text: String, name: &str| -> String {
        let out = text
            .replace(
                "/var/lib/registry",
                &dir.join(format!("{name}-data")).to_string_lossy(),
            )
            .replace("https://auth.example.com/auth", &auth.realm())
            .replace("/certs/token.crt", &cert.to_string_lossy());
        assert_ne!(out, text);
        out
    };

    // "Docker Hub": a registry without auth, holding library/alpine.
    let upstream = start_registry(
        dir,
        "upstream",
        &format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: :5000\n",
            dir.join("upstream-data").display()
        ),
        &[],
    );
    let img = image::build(&dir.join("image"), "v1");
    let hub = Clients::new(&dir.join("c-hub"), &upstream.addr, img.clone());
    let pushed = hub.skopeo_push(None, "library/alpine", "1", None);
    assert_eq!(pushed.outcome, Outcome::Ok, "{}", pushed.log);

    // The mirror: deploy/registry-mirror.yml with the upstream as remoteurl.
    let mirror_config = adapt(read("deploy/registry-mirror.yml"), "mirror").replace(
        "https://registry-1.docker.io",
        &format!("http://{}", upstream.addr),
    );
    let mirror = start_registry_kind(kind, dir, "mirror", &mirror_config, &[]);
    assert!(challenge(&mirror).contains("service=\"mirror\""));
    let m = Clients::new(&dir.join("c-mirror"), &mirror.addr, img.clone());
    // The team registry: deploy/registry-team.yml.
    let team = start_registry_kind(
        kind,
        dir,
        "team",
        &adapt(read("deploy/registry-team.yml"), "team"),
        &[],
    );
    assert!(challenge(&team).contains("service=\"registry\""));
    let t = Clients::new(&dir.join("c-team"), &team.addr, img);

    let alice = Some(("alice", "alice-pw-1"));
    let bob = Some(("bob", "bob-pw-2"));
    let steps = [
        (
            "anonymous pulls library/alpine through the mirror",
            m.skopeo_pull(None, "library/alpine", "1"),
            Outcome::Ok,
        ),
        (
            "anonymous cannot pull another namespace from the mirror",
            m.skopeo_pull(None, "other/app", "1"),
            Outcome::Denied,
        ),
        (
            "alice cannot push to the mirror",
            m.skopeo_push(alice, "team-a/app", "1", None),
            Outcome::Denied,
        ),
        (
            "alice pushes to her team's namespace",
            t.skopeo_push(alice, "team-a/app", "1", None),
            Outcome::Ok,
        ),
        (
            "alice pulls it back",
            t.skopeo_pull(alice, "team-a/app", "1"),
            Outcome::Ok,
        ),
        (
            "bob (team-b) cannot pull team-a's image",
            t.skopeo_pull(bob, "team-a/app", "1"),
            Outcome::Denied,
        ),
        (
            "bob cannot push to team-a",
            t.skopeo_push(bob, "team-a/other", "1", None),
            Outcome::Denied,
        ),
        (
            "bob pushes to team-b",
            t.skopeo_push(bob, "team-b/app", "1", None),
            Outcome::Ok,
        ),
        (
            "anonymous gets nothing from the team registry",
            t.skopeo_pull(None, "team-a/app", "1"),
            Outcome::Denied,
        ),
        (
            "a wrong password is refused",
            t.skopeo_pull(Some(("alice", "wrong")), "team-a/app", "1"),
            Outcome::Unauthorized,
        ),
    ];
    let mut failures = Vec::new();
    for (what, attempt, want) in &steps {
        if attempt.outcome != *want {
            failures.push(format!(
                "{what}: got {}, want {want}\n{}",
                attempt.outcome, attempt.log
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\nregistry-auth log:\n{}\nmirror log:\n{}\nteam log:\n{}",
        failures.join("\n"),
        auth.log_tail(20),
        tail(&mirror.log, 10),
        tail(&team.log, 10)
    );

    // A token for the mirror is refused by the team registry (its `aud` is "mirror").
    let token = http::get(
        &format!(
            "{}?service=mirror&scope=repository:team-a/app:pull",
            auth.realm()
        ),
        &[("Authorization", http::basic("alice", "alice-pw-1"))],
    );
    assert_eq!(token.status, 200, "{token:?}");
    let token = token.json()["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let refused = http::get(
        &format!("http://{}/v2/team-a/app/manifests/1", team.addr),
        &[("Authorization", format!("Bearer {token}"))],
    );
    assert_eq!(refused.status, 401, "{refused:?}");
    assert!(
        refused
            .header("www-authenticate")
            .is_some_and(|h| h.contains("error=\"invalid_token\"")),
        "{refused:?}"
    );
    let team_log = fs::read_to_string(&team.log).unwrap_or_default();
    assert!(
        team_log.contains("token intended for another audience"),
        "the team registry's log does not give the reason docs/src/operating/troubleshooting.md quotes:\n{}",
        tail(&team.log, 10)
    );
}

// ------------------------------------------------------------------------------------------

/// `a.b[.c]` ≥ `x.y[.z]`.
fn version_at_least(have: &str, need: &str) -> bool {
    let parse = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(have) >= parse(need)
}

/// Just enough of Cargo.toml.
mod toml_lite {
    pub struct Manifest {
        pub rust_version: String,
    }

    pub fn parse(text: &str) -> Manifest {
        let rust_version = text
            .lines()
            .find_map(|l| l.strip_prefix("rust-version"))
            .and_then(|l| l.split('"').nth(1))
            .expect("rust-version in Cargo.toml")
            .to_owned();
        Manifest { rust_version }
    }
}
