//! The seeds' topology end to end: a real nginx ends TLS (a test CA) on one host and routes
//! `/registry-auth/` to registry-auth (`server.path_prefix`) and `/v2/` to a registry 2.8.2 that
//! is a pull-through mirror (`proxy.remoteurl`) of a second local registry standing in for
//! Docker Hub, with Redis as the mirror's blob-descriptor cache. The nginx config and the
//! mirror's config are the shipped files (deploy/nginx/), with only names, addresses and paths
//! replaced; docs/deployment.md shows them verbatim (checked here too).
//!
//! Client addresses: every client connects to nginx on 127.0.0.1, from 127.0.0.1 (docker,
//! skopeo) or 127.0.0.2 (curl `--interface`), and nginx connects to the upstreams from
//! 127.0.0.3 (`proxy_bind`, in the test's own `http {}` wrapper), the only address in
//! registry-auth's `server.trusted_proxies`. So registry-auth sees each client's own address
//! from nginx's `X-Forwarded-For`, and the ACL `ip` rule and the lockout are decided on it.
//!
//! The CA: curl and skopeo verify nginx's certificate with the test CA (`--cacert`,
//! `--src-cert-dir` holding `ca.crt`, the `certs.d` layout) and refuse it without. dockerd
//! cannot be shown to do so here: it always treats 127.0.0.0/8 as an insecure registry (HTTPS
//! without verification, never reading `certs.d`), and `/etc/docker/certs.d` cannot be moved
//! for a private daemon; so the docker steps prove the routing, the token flow and the ACL
//! through nginx, and the CA trust is proven by the two verifying clients.
//!
//! Pushes: the pull-through cache refuses them whatever the token grants (registry 2.8 answers
//! `UNSUPPORTED`); skopeo shows that in one attempt, where `docker push` would retry the refused
//! upload for ~50 s.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::clients::{Clients, Outcome};
use crate::common::image::{self, OciImage};
use crate::common::jwt;
use crate::common::keys::{KeyFiles, KeySetup};
use crate::common::proc::{self, ChildGuard, CmdOutput, StopMode, free_port, require_tool, tail};
use crate::common::redis::{Persistence, REDIS_PASSWORD, Redis};
use crate::common::server::AuthServer;
use crate::common::stack::{ISSUER, User, config_yaml, tempdir};
use crate::packaging::start_registry;

const PREFIX: &str = "/registry-auth";
/// nginx's address towards the upstreams (`proxy_bind`), registry-auth's trusted proxy.
const NGINX_UPSTREAM_ADDR: &str = "127.0.0.3";
/// The second client address (curl `--interface`).
const OTHER_CLIENT: &str = "127.0.0.2";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn shipped(rel: &str) -> String {
    fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// `text` with `from` replaced by `to`; fails when the shipped file no longer has `from`.
fn subst(text: &str, file: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "{file} no longer contains {from:?}: update tests/it/ingress.rs and docs/deployment.md"
    );
    text.replace(from, to)
}

struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// A test CA and nginx's certificate for 127.0.0.1 signed by it.
fn write_pki(dir: &Path) -> Pki {
    fs::create_dir_all(dir).expect("mkdir pki");
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "registry-auth ingress test CA");
    let ca = ca_params.self_signed(&ca_key).expect("self-sign CA");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let mut leaf_params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("leaf params");
    leaf_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "127.0.0.1");
    let leaf = leaf_params
        .signed_by(&leaf_key, &issuer)
        .expect("sign leaf");
    let pki = Pki {
        ca: dir.join("ca.crt"),
        cert: dir.join("nginx.crt"),
        key: dir.join("nginx.key"),
    };
    fs::write(&pki.ca, ca.pem()).expect("write CA");
    fs::write(&pki.cert, leaf.pem()).expect("write leaf");
    fs::write(&pki.key, leaf_key.serialize_pem()).expect("write key");
    pki
}

/// nginx (Debian's) with the shipped deploy/nginx/registry.conf, one process in the foreground.
struct Nginx {
    dir: PathBuf,
    _guard: ChildGuard,
}

impl Nginx {
    fn start(dir: &Path, port: u16, pki: &Pki, auth: &str, registry: &str) -> Self {
        let bin = require_tool("nginx");
        fs::create_dir_all(dir.join("tmp")).expect("mkdir nginx");
        let file = "deploy/nginx/registry.conf";
        let mut conf = shipped(file);
        for (from, to) in [
            ("server registry-auth:5001;", format!("server {auth};")),
            ("server registry:5000;", format!("server {registry};")),
            ("listen 443 ssl;", format!("listen 127.0.0.1:{port} ssl;")),
            (
                "/etc/nginx/tls/registry.example.com.crt",
                pki.cert.display().to_string(),
            ),
            (
                "/etc/nginx/tls/registry.example.com.key",
                pki.key.display().to_string(),
            ),
        ] {
            conf = subst(&conf, file, from, &to);
        }
        fs::write(dir.join("registry.conf"), conf).expect("write registry.conf");
        let d = dir.display();
        // The test's main file: what /etc/nginx/nginx.conf is on a server, in the temp dir.
        let main = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 256; }}\nhttp {{\n  \
             log_format fwd '$remote_addr \"$request\" $status xff=\"$http_x_forwarded_for\"';\n  \
             access_log {d}/access.log fwd;\n  \
             client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n  \
             fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  \
             scgi_temp_path {d}/tmp/scgi;\n  proxy_bind {NGINX_UPSTREAM_ADDR};\n  \
             include {d}/registry.conf;\n}}\n"
        );
        let main_file = dir.join("nginx.conf");
        fs::write(&main_file, main).expect("write nginx.conf");
        let test = proc::run(
            Command::new(&bin)
                .arg("-t")
                .arg("-c")
                .arg(&main_file)
                .arg("-p")
                .arg(dir),
            None,
            Duration::from_secs(30),
        );
        assert!(test.success(), "nginx -t:\n{}", test.describe());
        let log = fs::File::create(dir.join("stderr.log")).expect("nginx stderr");
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&main_file)
            .arg("-p")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn nginx");
        let mut guard = ChildGuard::new("nginx", child, StopMode::Kill);
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = guard.try_wait() {
                panic!(
                    "nginx exited with {status}:\n{}",
                    tail(&dir.join("error.log"), 20)
                );
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {port} within 15 s:\n{}",
                tail(&dir.join("error.log"), 20)
            );
            thread::sleep(Duration::from_millis(25));
        }
        Self {
            dir: dir.to_owned(),
            _guard: guard,
        }
    }

    fn logs(&self) -> String {
        format!(
            "nginx access log:\n{}\nnginx error log:\n{}",
            tail(&self.dir.join("access.log"), 20),
            tail(&self.dir.join("error.log"), 10)
        )
    }
}

fn curl(args: &[&str]) -> CmdOutput {
    let mut cmd = Command::new(require_tool("curl"));
    cmd.args(["-sS", "--max-time", "30"])
        .args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("CURL_CA_BUNDLE");
    proc::run(&mut cmd, None, Duration::from_secs(60))
}

/// A token from registry-auth through nginx: (HTTP status, granted actions on `repo`).
fn token_via_nginx(
    public: &str,
    ca: &Path,
    from: &str,
    cred: Option<(&str, &str)>,
    extra_header: Option<&str>,
    repo: &str,
) -> (u16, Vec<String>, String) {
    let url = format!(
        "https://{public}{PREFIX}/auth?service=registry.example.com&scope=repository:{repo}:pull"
    );
    let ca = ca.display().to_string();
    let mut args = vec!["--cacert", &ca, "--interface", from, "-w", "\n%{http_code}"];
    let userpass;
    if let Some((u, p)) = cred {
        userpass = format!("{u}:{p}");
        args.extend(["-u", &userpass]);
    }
    if let Some(h) = extra_header {
        args.extend(["-H", h]);
    }
    args.push(&url);
    let out = curl(&args);
    assert!(out.success(), "curl:\n{}", out.describe());
    let (body, code) = out.stdout.rsplit_once('\n').expect("status line");
    let status: u16 = code.trim().parse().expect("status");
    let mut actions = Vec::new();
    if status == 200 {
        let v: serde_json::Value = serde_json::from_str(body).expect("token json");
        let t = v["token"].as_str().expect("token");
        let claims = jwt::decode(t).expect("jwt").claims;
        for ((_, name), acts) in jwt::granted(&claims) {
            if name == repo {
                actions.extend(acts);
            }
        }
    }
    (status, actions, out.describe())
}

fn skopeo(args: &[&str]) -> CmdOutput {
    let mut cmd = Command::new(require_tool("skopeo"));
    cmd.args(args)
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("CONTAINERS_REGISTRIES_CONF");
    proc::run(&mut cmd, None, Duration::from_secs(120))
}

fn push_to_hub(hub: &str, img: &OciImage, repo: &str) {
    let out = skopeo(&[
        "copy",
        "--retry-times",
        "0",
        "--dest-tls-verify=false",
        "--dest-no-creds",
        &img.oci_ref(),
        &format!("docker://{hub}/{repo}"),
    ]);
    assert!(out.success(), "push to the hub:\n{}", out.describe());
}

const ACL: &str = r#"  - match: {account: "", name: "library/*"}
    actions: [pull]
    comment: anonymous pulls of Docker Hub's official images only
  - match: {ip: 127.0.0.2/32, name: "internal/*"}
    actions: [pull]
    comment: internal/* from one client address (as registry-auth sees it through nginx)
  - match: {account: alice, name: "alice/*"}
    actions: [pull, push]
  - match: {account: "/.+/"}
    actions: [pull]
    comment: logged-in users pull anything through the mirror
"#;

#[test]
fn nginx_tls_mirror_redis_and_docker_through_the_shipped_configs() {
    for tool in [
        "nginx",
        "docker-registry",
        "skopeo",
        "curl",
        "docker",
        "dockerd",
    ] {
        require_tool(tool);
    }
    let tmp = tempdir("ra-ing");
    let dir = tmp.path();
    let pki = write_pki(&dir.join("pki"));
    let redis = Redis::start(Persistence::None);

    // Docker Hub's stand-in: an open registry with the images pushed first.
    let hub_dir = dir.join("hub");
    fs::create_dir_all(&hub_dir).expect("mkdir hub");
    let hub_cfg = format!(
        "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
         http:\n  addr: :5000\n",
        hub_dir.join("data").display()
    );
    let hub = start_registry(&hub_dir, "hub", &hub_cfg, &[]);
    let img = image::build(&dir.join("oci"), "v1");
    for repo in ["library/hello:v1", "other/app:v1", "internal/tool:v1"] {
        push_to_hub(&hub.addr, &img, repo);
    }

    // registry-auth under the path prefix, trusting only nginx's upstream address.
    let keys = KeyFiles::write(KeySetup::EcKid, &dir.join("keys"));
    let alice = User::new("alice");
    let config = config_yaml(&keys, std::slice::from_ref(&alice), true, ACL).replacen(
        "server:\n",
        &format!(
            "server:\n  path_prefix: {PREFIX}\n  trusted_proxies: [{NGINX_UPSTREAM_ADDR}/32]\n"
        ),
        1,
    ) + "lockout:\n  max_failures: 3\n  window: 5m\n  cooldown: 5m\n";
    let cfg = dir.join("registry-auth.yaml");
    fs::write(&cfg, config).expect("write config");
    let auth = AuthServer::start(&cfg, &dir.join("registry-auth.log"));

    // The mirror, from the shipped config.
    let nginx_port = free_port();
    let public = format!("127.0.0.1:{nginx_port}");
    let file = "deploy/nginx/registry-mirror.yml";
    let mut mirror_cfg = shipped(file);
    for (from, to) in [
        (
            "rootdirectory: /var/lib/registry",
            format!("rootdirectory: {}", dir.join("mirror-data").display()),
        ),
        (
            "  addr: redis:6379\n",
            format!(
                "  addr: 127.0.0.1:{}\n  password: {REDIS_PASSWORD}\n",
                redis.port
            ),
        ),
        // The database `Redis::cli` reads.
        ("  db: 0\n", "  db: 3\n".to_owned()),
        (
            "realm: https://registry.example.com/registry-auth/auth",
            format!("realm: https://{public}{PREFIX}/auth"),
        ),
        ("issuer: registry-auth", format!("issuer: {ISSUER:?}")),
        (
            "rootcertbundle: /certs/token.crt",
            format!("rootcertbundle: {}", keys.bundle.display()),
        ),
        (
            "remoteurl: https://registry-1.docker.io",
            format!("remoteurl: http://{}", hub.addr),
        ),
    ] {
        mirror_cfg = subst(&mirror_cfg, file, from, &to);
    }
    let mirror = start_registry(dir, "mirror", &mirror_cfg, &[]);

    let nginx = Nginx::start(
        &dir.join("nginx"),
        nginx_port,
        &pki,
        &auth.addr,
        &mirror.addr,
    );
    let diag = || {
        format!(
            "{}\nregistry-auth log:\n{}\nmirror log:\n{}",
            nginx.logs(),
            auth.log_tail(15),
            tail(&mirror.log, 15)
        )
    };
    let ca = pki.ca.display().to_string();

    // TLS with the test CA: verified with it, refused without it.
    let v2 = curl(&[
        "--cacert",
        &ca,
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("https://{public}/v2/"),
    ]);
    assert!(v2.success(), "{}\n{}", v2.describe(), diag());
    let realm = format!("realm=\"https://{public}{PREFIX}/auth\"");
    assert!(
        v2.stdout.starts_with("HTTP/1.1 401") && v2.stdout.contains(&realm),
        "/v2/ through nginx: want 401 with {realm}:\n{}",
        v2.describe()
    );
    let untrusted = curl(&["-o", "/dev/null", &format!("https://{public}/v2/")]);
    assert_eq!(
        untrusted.code,
        Some(60),
        "curl without the test CA must refuse nginx's certificate:\n{}",
        untrusted.describe()
    );
    // registry-auth's internal endpoints are not routed; its pages are, under the prefix.
    for (path, want) in [
        ("/healthz", "404"),
        ("/metrics", "404"),
        (
            &*format!("{PREFIX}/auth?service=registry.example.com"),
            "200",
        ),
        (&*format!("{PREFIX}/.well-known/jwks.json"), "200"),
    ] {
        let out = curl(&[
            "--cacert",
            &ca,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("https://{public}{path}"),
        ]);
        assert_eq!(out.stdout, want, "{path}:\n{}\n{}", out.describe(), diag());
    }

    // The login pages under the prefix (none configured: the index names the token endpoint).
    let index = curl(&["--cacert", &ca, &format!("https://{public}{PREFIX}/")]);
    assert!(
        index.success() && index.stdout.contains(&format!("{PREFIX}/auth")),
        "the index page under {PREFIX}/ through nginx:\n{}",
        index.describe()
    );

    // The client's address through nginx: the `ip` rule grants internal/* to 127.0.0.2 only,
    // and a forged X-Forwarded-For from 127.0.0.1 does not pass for it.
    let (s, acts, log) =
        token_via_nginx(&public, &pki.ca, OTHER_CLIENT, None, None, "internal/tool");
    assert_eq!(
        (s, acts),
        (200, vec!["pull".to_owned()]),
        "{log}\n{}",
        diag()
    );
    let (s, acts, log) =
        token_via_nginx(&public, &pki.ca, "127.0.0.1", None, None, "internal/tool");
    assert_eq!((s, acts), (200, Vec::<String>::new()), "{log}\n{}", diag());
    let (s, acts, log) = token_via_nginx(
        &public,
        &pki.ca,
        "127.0.0.1",
        None,
        Some("X-Forwarded-For: 127.0.0.2"),
        "internal/tool",
    );
    assert_eq!(
        (s, acts),
        (200, Vec::<String>::new()),
        "a forged X-Forwarded-For was believed:\n{log}\n{}",
        diag()
    );
    // The lockout counts per client address: three wrong passwords from 127.0.0.2 lock alice
    // there (429 even with the right one), not at 127.0.0.1.
    for _ in 0..3 {
        let (s, _, log) = token_via_nginx(
            &public,
            &pki.ca,
            OTHER_CLIENT,
            Some(("alice", "wrong-password")),
            None,
            "alice/app",
        );
        assert_eq!(s, 401, "{log}");
    }
    let right = Some(("alice", alice.password.as_str()));
    let (s, _, log) = token_via_nginx(&public, &pki.ca, OTHER_CLIENT, right, None, "alice/app");
    assert_eq!(
        s,
        429,
        "alice at 127.0.0.2 after 3 failures:\n{log}\n{}",
        diag()
    );
    let (s, acts, log) = token_via_nginx(&public, &pki.ca, "127.0.0.1", right, None, "alice/app");
    assert_eq!(
        (s, acts),
        (200, vec!["pull".to_owned()]),
        "alice at 127.0.0.1 is not locked:\n{log}\n{}",
        diag()
    );

    // skopeo verifies nginx with the CA in a certs.d-style folder, pulls anonymously what the
    // mirror fetches from the hub, and refuses nginx without the CA.
    let certs = dir.join("certs.d").join(&public);
    fs::create_dir_all(&certs).expect("mkdir certs.d");
    fs::copy(&pki.ca, certs.join("ca.crt")).expect("copy ca.crt");
    let pulled = dir.join("pulled");
    let out = skopeo(&[
        "copy",
        "--retry-times",
        "0",
        "--src-cert-dir",
        &certs.to_string_lossy(),
        "--src-no-creds",
        &format!("docker://{public}/library/hello:v1"),
        &format!("oci:{}:x", pulled.display()),
    ]);
    assert!(
        out.success(),
        "skopeo pull through nginx:\n{}\n{}",
        out.describe(),
        diag()
    );
    image::pulled_layout_matches(&pulled, &img).unwrap_or_else(|e| panic!("{e}"));
    let out = skopeo(&[
        "inspect",
        "--retry-times",
        "0",
        "--no-creds",
        &format!("docker://{public}/library/hello:v1"),
    ]);
    assert!(
        !out.success()
            && out
                .combined()
                .contains("certificate signed by unknown authority"),
        "skopeo without the CA must refuse nginx:\n{}",
        out.describe()
    );

    // docker CLI + dockerd through nginx: anonymous pulls only in library/, login, pulls of
    // anything for alice.
    let mut clients = Clients::new(&dir.join("clients"), &public, img);
    clients.use_dockerd();
    let dd = |what: &str, log: &str| {
        format!(
            "{what}:\n{log}\n{}\ndockerd:\n{}",
            diag(),
            clients.dockerd_log_tail(20).unwrap_or_default()
        )
    };
    let a = clients.docker_pull(None, "library/hello", "v1");
    assert_eq!(a.outcome, Outcome::Ok, "{}", dd("anonymous pull", &a.log));
    let a = clients.docker_pull(None, "other/app", "v1");
    assert_eq!(
        a.outcome,
        Outcome::Denied,
        "{}",
        dd("anonymous pull", &a.log)
    );
    let a = clients.docker_login(right);
    assert_eq!(a.outcome, Outcome::Ok, "{}", dd("docker login", &a.log));
    let a = clients.docker_pull(right, "other/app", "v1");
    assert_eq!(a.outcome, Outcome::Ok, "{}", dd("alice's pull", &a.log));
    // A push: registry-auth grants alice push on alice/*, the pull-through cache refuses it
    // anyway. (skopeo, not `docker push`: dockerd retries the refused upload for ~50 s.)
    let userpass = format!("alice:{}", alice.password);
    let out = skopeo(&[
        "copy",
        "--retry-times",
        "0",
        "--dest-cert-dir",
        &certs.to_string_lossy(),
        "--dest-creds",
        &userpass,
        &format!("oci:{}:x", pulled.display()),
        &format!("docker://{public}/alice/app:v1"),
    ]);
    assert!(
        !out.success() && out.combined().to_lowercase().contains("unsupported"),
        "a push to the pull-through mirror:\n{}\n{}",
        out.describe(),
        diag()
    );

    // The mirror fetched from the hub and keeps its blob descriptors in Redis.
    let hub_log = fs::read_to_string(&hub.log).unwrap_or_default();
    assert!(
        hub_log.contains("/v2/other/app/manifests/v1"),
        "the hub never served other/app:\n{}",
        tail(&hub.log, 20)
    );
    let keys_in_redis = redis.cli(&["--scan", "--pattern", "blobs::*"]);
    assert!(
        keys_in_redis.contains("blobs::sha256:"),
        "no blob descriptor in Redis: {keys_in_redis:?}\n{}",
        diag()
    );
}

/// docs/deployment.md shows the files this test runs, verbatim.
#[test]
fn deployment_guide_shows_the_ingress_files() {
    let guide = shipped("docs/deployment.md");
    for file in [
        "deploy/nginx/registry.conf",
        "deploy/nginx/registry-mirror.yml",
    ] {
        let text = shipped(file);
        assert!(
            guide.contains(&format!("<!-- {file} -->\n```")) && guide.contains(&text),
            "docs/deployment.md must show {file} verbatim in a fenced block after \
             `<!-- {file} -->` (copy it again)"
        );
    }
}

/// The chart's ingress-nginx annotations (`ingress.nginx.enabled`) are the settings of
/// deploy/nginx/registry.conf, which the end-to-end test runs.
#[test]
fn chart_ingress_nginx_annotations_match_the_nginx_config() {
    let conf = shipped("deploy/nginx/registry.conf");
    let template = shipped("charts/registry-auth/templates/ingress.yaml");
    for (directive, annotation) in [
        (
            "client_max_body_size 0;",
            r#""nginx.ingress.kubernetes.io/proxy-body-size" "0""#,
        ),
        (
            "proxy_request_buffering off;",
            r#""nginx.ingress.kubernetes.io/proxy-request-buffering" "off""#,
        ),
        (
            "proxy_buffering off;",
            r#""nginx.ingress.kubernetes.io/proxy-buffering" "off""#,
        ),
        (
            "proxy_read_timeout 900s;",
            r#""nginx.ingress.kubernetes.io/proxy-read-timeout" "900""#,
        ),
        (
            "proxy_http_version 1.1;",
            r#""nginx.ingress.kubernetes.io/proxy-http-version" "1.1""#,
        ),
    ] {
        assert!(
            conf.contains(directive),
            "deploy/nginx/registry.conf lost `{directive}`"
        );
        assert!(
            template.contains(annotation),
            "the chart's Ingress must set {annotation} (deploy/nginx/registry.conf: {directive})"
        );
    }
}
