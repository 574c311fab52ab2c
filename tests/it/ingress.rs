//! The seeds' topology end to end: one real nginx ends TLS (a test CA) for two host names.
//! `registry.test` routes `/registry-auth/` to registry-auth (`server.path_prefix`; the realm of
//! both registries) and `/v2/` to an ordinary registry 2.8.2 (push and pull); `mirror.test`
//! routes `/v2/` to a registry 2.8.2 that is a pull-through mirror (`proxy.remoteurl`) of a third
//! local registry standing in for Docker Hub, with Redis as the mirror's blob-descriptor cache.
//! The nginx config and both registries' configs are the shipped files (deploy/nginx/), with
//! only names, addresses and paths replaced (the `service` names stay `registry.example.com` and
//! `mirror.example.com`); docs/src/operating/deployment.md shows them verbatim (checked here too).
//!
//! Client addresses: every client connects to nginx on 127.0.0.1, from 127.0.0.1 (docker,
//! skopeo) or 127.0.0.2 (curl `--interface`), and nginx connects to the upstreams from
//! 127.0.0.3 (`proxy_bind`, in the test's own `http {}` wrapper), the only address in
//! registry-auth's `server.trusted_proxies`. So registry-auth sees each client's own address
//! from nginx's `X-Forwarded-For`, and the ACL `ip` rule and the lockout are decided on it.
//!
//! Names and the CA: the `.test` names (RFC 2606) are in no resolver; curl gets them with
//! `--resolve`, skopeo and dockerd through a CONNECT proxy on 127.0.0.1 that maps only these
//! two names to nginx (`common::connect_proxy`, which says why dockerd needs it: it never
//! verifies a registry on 127.0.0.0/8; its own `/etc/hosts` names `::1` for them). Every client
//! verifies nginx's certificate with the test CA and is shown to refuse it without: curl
//! `--cacert`, skopeo `--*-cert-dir`, and a dockerd of this test's own reading
//! `/etc/docker/certs.d/<name>:<port>/ca.crt` (its `/etc/docker` is a folder of the test, in
//! its own mount namespace): absent, then a wrong CA: `x509: certificate signed by unknown
//! authority` and no request reaches nginx; then the right CA: login, push, pull.
//!
//! Pushes: the pull-through cache refuses them whatever the token grants (registry 2.8 answers
//! `UNSUPPORTED`); skopeo shows that in one attempt, where `docker push` would retry the refused
//! upload for ~50 s. `docker push` goes to `registry.test`.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::common::clients::{Clients, Outcome};
use crate::common::connect_proxy::ConnectProxy;
use crate::common::dockerd;
use crate::common::image::{self, OciImage};
use crate::common::jwt;
use crate::common::keys::{KeyFiles, KeySetup};
use crate::common::proc::{self, CmdOutput, free_port, require_tool, tail};
use crate::common::redis::{Persistence, REDIS_PASSWORD, Redis};
use crate::common::server::AuthServer;
use crate::common::stack::{ISSUER, User, config_yaml, tempdir};
use crate::packaging::start_registry;

mod setup;

use setup::{DockerCertsDir, Nginx, Upstreams, shipped, subst, write_pki};

const PREFIX: &str = "/registry-auth";
/// The host names in the test (`registry.example.com`, `mirror.example.com` in the files).
const REGISTRY_HOST: &str = "registry.test";
const MIRROR_HOST: &str = "mirror.test";
/// The `service` names, as shipped.
const REGISTRY_SERVICE: &str = "registry.example.com";
const MIRROR_SERVICE: &str = "mirror.example.com";
/// nginx's address towards the upstreams (`proxy_bind`), registry-auth's trusted proxy.
const NGINX_UPSTREAM_ADDR: &str = "127.0.0.3";
/// The second client address (curl `--interface`).
const OTHER_CLIENT: &str = "127.0.0.2";

/// curl with both names resolved to nginx on 127.0.0.1:`port`, and no proxy.
fn curl(port: u16, args: &[&str]) -> CmdOutput {
    let mut cmd = Command::new(require_tool("curl"));
    cmd.args(["-sS", "--max-time", "30"]);
    for host in [REGISTRY_HOST, MIRROR_HOST] {
        cmd.arg("--resolve").arg(format!("{host}:{port}:127.0.0.1"));
    }
    cmd.args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("CURL_CA_BUNDLE");
    proc::run(&mut cmd, None, Duration::from_secs(60))
}

/// A token from registry-auth through nginx: (HTTP status, granted actions on `repo`).
fn token_via_nginx(
    port: u16,
    ca: &Path,
    from: &str,
    cred: Option<(&str, &str)>,
    extra_header: Option<&str>,
    repo: &str,
) -> (u16, Vec<String>, String) {
    let url = format!(
        "https://{REGISTRY_HOST}:{port}{PREFIX}/auth?service={REGISTRY_SERVICE}\
         &scope=repository:{repo}:pull"
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
    let out = curl(port, &args);
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

/// skopeo; through `proxy` (the `.test` names) when given.
fn skopeo(proxy: Option<&ConnectProxy>, args: &[&str]) -> CmdOutput {
    let mut cmd = Command::new(require_tool("skopeo"));
    cmd.args(args)
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("CONTAINERS_REGISTRIES_CONF");
    for var in [
        "HTTPS_PROXY",
        "https_proxy",
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(var);
    }
    if let Some(p) = proxy {
        cmd.env("HTTPS_PROXY", p.url());
    }
    proc::run(&mut cmd, None, Duration::from_secs(120))
}

fn push_to_hub(hub: &str, img: &OciImage, repo: &str) {
    let out = skopeo(
        None,
        &[
            "copy",
            "--retry-times",
            "0",
            "--dest-tls-verify=false",
            "--dest-no-creds",
            &img.oci_ref(),
            &format!("docker://{hub}/{repo}"),
        ],
    );
    assert!(out.success(), "push to the hub:\n{}", out.describe());
}

/// `CONNECT target` to the proxy by hand: its status line.
fn connect_status(proxy: &ConnectProxy, target: &str) -> String {
    let mut s = std::net::TcpStream::connect(proxy.addr).expect("connect to the proxy");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(s, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").expect("write");
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).expect("read the proxy's answer");
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

const ACL: &str = r#"  - match: {account: "", service: mirror.example.com, name: "library/*"}
    actions: [pull]
    comment: anonymous pulls of Docker Hub's official images through the mirror only
  - match: {ip: 127.0.0.2/32, name: "internal/*"}
    actions: [pull]
    comment: internal/* from one client address (as registry-auth sees it through nginx)
  - match: {account: alice, name: "alice/*"}
    actions: [pull, push]
    comment: on both registries (the mirror refuses pushes itself)
  - match: {account: "/.+/"}
    actions: [pull]
    comment: logged-in users pull anything
"#;

#[test]
fn nginx_tls_registry_mirror_redis_and_docker_through_the_shipped_configs() {
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

    // registry-auth under the path prefix, trusting only nginx's upstream address, for the two
    // services only.
    let keys = KeyFiles::write(KeySetup::EcKid, &dir.join("keys"));
    let alice = User::new("alice");
    let config = config_yaml(&keys, std::slice::from_ref(&alice), true, ACL)
        .replacen(
            "server:\n",
            &format!(
                "server:\n  path_prefix: {PREFIX}\n  trusted_proxies: [{NGINX_UPSTREAM_ADDR}/32]\n"
            ),
            1,
        )
        .replacen(
            "token:\n",
            &format!("token:\n  allowed_services: [{REGISTRY_SERVICE}, {MIRROR_SERVICE}]\n"),
            1,
        )
        + "lockout:\n  max_failures: 3\n  window: 5m\n  cooldown: 5m\n";
    let cfg = dir.join("registry-auth.yaml");
    fs::write(&cfg, config).expect("write config");
    let auth = AuthServer::start(&cfg, &dir.join("registry-auth.log"));

    let port = free_port();
    let registry_public = format!("{REGISTRY_HOST}:{port}");
    let mirror_public = format!("{MIRROR_HOST}:{port}");
    let realm_url = format!("https://{registry_public}{PREFIX}/auth");
    let token_cfg = |text: String, file: &str| {
        let mut text = text;
        for (from, to) in [
            (
                "realm: https://registry.example.com/registry-auth/auth".to_owned(),
                format!("realm: {realm_url}"),
            ),
            (
                "issuer: registry-auth".to_owned(),
                format!("issuer: {ISSUER:?}"),
            ),
            (
                "rootcertbundle: /certs/token.crt".to_owned(),
                format!("rootcertbundle: {}", keys.bundle.display()),
            ),
        ] {
            text = subst(&text, file, &from, &to);
        }
        text
    };

    // The mirror and the registry, from the shipped configs.
    let file = "deploy/nginx/registry-mirror.yml";
    let mut mirror_cfg = token_cfg(shipped(file), file);
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
            "remoteurl: https://registry-1.docker.io",
            format!("remoteurl: http://{}", hub.addr),
        ),
    ] {
        mirror_cfg = subst(&mirror_cfg, file, from, &to);
    }
    let mirror = start_registry(dir, "mirror", &mirror_cfg, &[]);
    let file = "deploy/nginx/registry.yml";
    let registry_cfg = subst(
        &token_cfg(shipped(file), file),
        file,
        "rootdirectory: /var/lib/registry",
        &format!("rootdirectory: {}", dir.join("registry-data").display()),
    );
    let registry = start_registry(dir, "registry", &registry_cfg, &[]);

    let nginx = Nginx::start(
        &dir.join("nginx"),
        port,
        &pki,
        &Upstreams {
            auth: &auth.addr,
            registry: &registry.addr,
            mirror: &mirror.addr,
        },
    );
    let diag = || {
        format!(
            "{}\nregistry-auth log:\n{}\nregistry log:\n{}\nmirror log:\n{}",
            nginx.logs(),
            auth.log_tail(15),
            tail(&registry.log, 10),
            tail(&mirror.log, 10)
        )
    };
    let ca = pki.ca.display().to_string();

    // TLS with the test CA: verified with it, refused without it. Both hosts challenge with
    // the one realm, each with its own service.
    for (public, service) in [
        (&registry_public, REGISTRY_SERVICE),
        (&mirror_public, MIRROR_SERVICE),
    ] {
        let v2 = curl(
            port,
            &[
                "--cacert",
                &ca,
                "-D",
                "-",
                "-o",
                "/dev/null",
                &format!("https://{public}/v2/"),
            ],
        );
        assert!(v2.success(), "{}\n{}", v2.describe(), diag());
        let challenge = format!("realm=\"{realm_url}\",service=\"{service}\"");
        assert!(
            v2.stdout.starts_with("HTTP/1.1 401") && v2.stdout.contains(&challenge),
            "{public}/v2/ through nginx: want 401 with {challenge}:\n{}",
            v2.describe()
        );
        let untrusted = curl(port, &["-o", "/dev/null", &format!("https://{public}/v2/")]);
        assert_eq!(
            untrusted.code,
            Some(60),
            "curl without the test CA must refuse nginx's certificate:\n{}",
            untrusted.describe()
        );
    }
    // registry-auth's internal endpoints are not routed; its pages are, under the prefix, on
    // registry.test only; services other than the two are refused.
    for (public, path, want) in [
        (&registry_public, "/healthz", "404"),
        (&registry_public, "/metrics", "404"),
        (
            &registry_public,
            &*format!("{PREFIX}/auth?service={REGISTRY_SERVICE}"),
            "200",
        ),
        (
            &registry_public,
            &*format!("{PREFIX}/auth?service={MIRROR_SERVICE}"),
            "200",
        ),
        (
            &registry_public,
            &*format!("{PREFIX}/auth?service=elsewhere.example.com"),
            "400",
        ),
        (
            &registry_public,
            &*format!("{PREFIX}/.well-known/jwks.json"),
            "200",
        ),
        (
            &mirror_public,
            &*format!("{PREFIX}/auth?service={MIRROR_SERVICE}"),
            "404",
        ),
    ] {
        let out = curl(
            port,
            &[
                "--cacert",
                &ca,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("https://{public}{path}"),
            ],
        );
        assert_eq!(
            out.stdout,
            want,
            "{public}{path}:\n{}\n{}",
            out.describe(),
            diag()
        );
    }

    // The login pages under the prefix (none configured: the index names the token endpoint).
    let index = curl(
        port,
        &[
            "--cacert",
            &ca,
            &format!("https://{registry_public}{PREFIX}/"),
        ],
    );
    assert!(
        index.success() && index.stdout.contains(&format!("{PREFIX}/auth")),
        "the index page under {PREFIX}/ through nginx:\n{}",
        index.describe()
    );

    // The client's address through nginx: the `ip` rule grants internal/* to 127.0.0.2 only,
    // and a forged X-Forwarded-For from 127.0.0.1 does not pass for it.
    let (s, acts, log) = token_via_nginx(port, &pki.ca, OTHER_CLIENT, None, None, "internal/tool");
    assert_eq!(
        (s, acts),
        (200, vec!["pull".to_owned()]),
        "{log}\n{}",
        diag()
    );
    let (s, acts, log) = token_via_nginx(port, &pki.ca, "127.0.0.1", None, None, "internal/tool");
    assert_eq!((s, acts), (200, Vec::<String>::new()), "{log}\n{}", diag());
    let (s, acts, log) = token_via_nginx(
        port,
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
            port,
            &pki.ca,
            OTHER_CLIENT,
            Some(("alice", "wrong-password")),
            None,
            "alice/app",
        );
        assert_eq!(s, 401, "{log}");
    }
    let right = Some(("alice", alice.password.as_str()));
    let (s, _, log) = token_via_nginx(port, &pki.ca, OTHER_CLIENT, right, None, "alice/app");
    assert_eq!(
        s,
        429,
        "alice at 127.0.0.2 after 3 failures:\n{log}\n{}",
        diag()
    );
    let (s, acts, log) = token_via_nginx(port, &pki.ca, "127.0.0.1", right, None, "alice/app");
    assert_eq!(
        (s, acts),
        (200, vec!["pull".to_owned()]),
        "alice at 127.0.0.1 is not locked:\n{log}\n{}",
        diag()
    );

    // The two names reach nginx through the CONNECT proxy, nothing else does.
    let nginx_addr = ([127, 0, 0, 1], port).into();
    let proxy = ConnectProxy::start(&[
        (registry_public.as_str(), nginx_addr),
        (mirror_public.as_str(), nginx_addr),
    ]);

    // skopeo verifies nginx with the CA in a certs.d-style folder, pulls anonymously what the
    // mirror fetches from the hub, and refuses nginx without the CA.
    let certs = dir.join("certs.d");
    fs::create_dir_all(&certs).expect("mkdir certs.d");
    fs::copy(&pki.ca, certs.join("ca.crt")).expect("copy ca.crt");
    let certs = certs.to_string_lossy().into_owned();
    let pulled = dir.join("pulled");
    let out = skopeo(
        Some(&proxy),
        &[
            "copy",
            "--retry-times",
            "0",
            "--src-cert-dir",
            &certs,
            "--src-no-creds",
            &format!("docker://{mirror_public}/library/hello:v1"),
            &format!("oci:{}:x", pulled.display()),
        ],
    );
    assert!(
        out.success(),
        "skopeo pull through nginx:\n{}\n{}",
        out.describe(),
        diag()
    );
    image::pulled_layout_matches(&pulled, &img).unwrap_or_else(|e| panic!("{e}"));
    let out = skopeo(
        Some(&proxy),
        &[
            "inspect",
            "--retry-times",
            "0",
            "--no-creds",
            &format!("docker://{mirror_public}/library/hello:v1"),
        ],
    );
    assert!(
        !out.success()
            && out
                .combined()
                .contains("certificate signed by unknown authority"),
        "skopeo without the CA must refuse nginx:\n{}",
        out.describe()
    );
    // Pushes: alice's token grants push on alice/* of the registry (skopeo pushes there), the
    // pull-through cache refuses them anyway (skopeo, not `docker push`: dockerd retries the
    // refused upload for ~50 s), and other/* is not alice's to push.
    let userpass = format!("alice:{}", alice.password);
    let src = format!("oci:{}:x", pulled.display());
    for (to, want) in [
        (format!("{registry_public}/alice/tool:v1"), None),
        (format!("{mirror_public}/alice/app:v1"), Some("unsupported")),
        (
            format!("{registry_public}/other/app:v1"),
            Some("requested access to the resource is denied"),
        ),
    ] {
        let out = skopeo(
            Some(&proxy),
            &[
                "copy",
                "--retry-times",
                "0",
                "--dest-cert-dir",
                &certs,
                "--dest-creds",
                &userpass,
                &src,
                &format!("docker://{to}"),
            ],
        );
        let ok = match want {
            None => out.success(),
            Some(w) => !out.success() && out.combined().to_lowercase().contains(w),
        };
        assert!(
            ok,
            "skopeo push to {to} (want {want:?}):\n{}\n{}",
            out.describe(),
            diag()
        );
    }

    // A dockerd of this test's own, reaching the two names through the proxy, so it treats
    // them as secure registries: it verifies nginx's certificate against certs.d.
    let etc_docker = dir.join("etc-docker");
    let mirror_certs = DockerCertsDir::new(&etc_docker, &mirror_public);
    mirror_certs.trust(&pki.ca);
    let registry_certs = DockerCertsDir::new(&etc_docker, &registry_public);
    let hosts = format!("127.0.0.1 localhost\n::1 {REGISTRY_HOST} {MIRROR_HOST}\n");
    let daemon = dockerd::dedicated(
        &[("HTTPS_PROXY", &proxy.url())],
        Some(dockerd::Private {
            hosts: &hosts,
            etc_docker: &etc_docker,
        }),
    );
    let mut on_mirror = Clients::new(&dir.join("clients-mirror"), &mirror_public, img.clone());
    on_mirror.use_own_dockerd(Arc::clone(&daemon));
    let mut on_registry = Clients::new(&dir.join("clients-registry"), &registry_public, img);
    on_registry.use_own_dockerd(Arc::clone(&daemon));
    let dd = |what: &str, log: &str| {
        format!(
            "{what}:\n{log}\n{}\ndockerd:\n{}\nproxy: {:?}",
            diag(),
            daemon.log_tail(20),
            proxy.requests()
        )
    };

    // The mirror: anonymous pulls only in library/, login, pulls of anything for alice.
    let a = on_mirror.docker_pull(None, "library/hello", "v1");
    assert_eq!(a.outcome, Outcome::Ok, "{}", dd("anonymous pull", &a.log));
    let a = on_mirror.docker_pull(None, "other/app", "v1");
    assert_eq!(
        a.outcome,
        Outcome::Denied,
        "{}",
        dd("anonymous pull", &a.log)
    );
    let a = on_mirror.docker_login(right);
    assert_eq!(a.outcome, Outcome::Ok, "{}", dd("docker login", &a.log));
    let a = on_mirror.docker_pull(right, "other/app", "v1");
    assert_eq!(a.outcome, Outcome::Ok, "{}", dd("alice's pull", &a.log));

    // The registry, first without its CA in certs.d, then with a wrong CA: dockerd refuses
    // nginx's certificate, and no request reaches nginx for that host.
    let registry_requests = || {
        nginx
            .access_log()
            .lines()
            .filter(|l| l.contains(&format!(" {REGISTRY_HOST} \"")) && l.contains("/v2/"))
            .count()
    };
    let before = registry_requests();
    for (case, ca) in [("no CA", None), ("a wrong CA", Some(&pki.wrong_ca))] {
        if let Some(ca) = ca {
            registry_certs.trust(ca);
        }
        let a = on_registry.docker_login(right);
        assert!(
            a.outcome != Outcome::Ok
                && a.log
                    .contains("x509: certificate signed by unknown authority")
                && a.log.contains(&format!("https://{registry_public}/v2/")),
            "{}",
            dd(
                &format!("docker login to {registry_public} with {case}"),
                &a.log
            )
        );
        let out = on_registry.docker(&["pull", &format!("{registry_public}/alice/tool:v1")]);
        assert!(
            !out.success()
                && out
                    .combined()
                    .contains("x509: certificate signed by unknown authority"),
            "{}",
            dd(&format!("docker pull with {case}"), &out.describe())
        );
    }
    assert_eq!(
        registry_requests(),
        before,
        "a request reached nginx although dockerd refused its certificate:\n{}",
        nginx.logs()
    );
    assert!(
        proxy
            .requests()
            .iter()
            .any(|(t, ok)| *ok && t == &format!("CONNECT {registry_public}")),
        "dockerd did not reach {registry_public} through the proxy: {:?}",
        proxy.requests()
    );

    // With the right CA: login, push (the image pulled from the mirror), pull it back, and
    // anonymous pulls refused there.
    registry_certs.trust(&pki.ca);
    let a = on_registry.docker_login(right);
    assert_eq!(a.outcome, Outcome::Ok, "{}", dd("docker login", &a.log));
    let from_mirror = format!("{mirror_public}/other/app:v1");
    let a = on_registry.docker_push_image(right, &from_mirror, "alice/app", "v1");
    assert_eq!(a.outcome, Outcome::Ok, "{}", dd("docker push", &a.log));
    let out = on_registry.docker(&["rmi", &format!("{registry_public}/alice/app:v1")]);
    assert!(out.success(), "{}", out.describe());
    let a = on_registry.docker_pull(right, "alice/app", "v1");
    assert_eq!(a.outcome, Outcome::Ok, "{}", dd("docker pull", &a.log));
    let a = on_registry.docker_pull(right, "alice/tool", "v1");
    assert_eq!(
        a.outcome,
        Outcome::Ok,
        "{}",
        dd("docker pull of skopeo's push", &a.log)
    );
    let a = on_registry.docker_pull(None, "alice/app", "v1");
    assert_eq!(
        a.outcome,
        Outcome::Denied,
        "{}",
        dd("anonymous pull from the registry", &a.log)
    );
    assert!(
        registry_requests() > before,
        "no request reached the registry through nginx"
    );

    // The proxy served only the two names and refuses anything else.
    let asked = proxy.requests();
    assert!(
        asked.iter().all(|(_, ok)| *ok),
        "something asked the proxy for another target: {asked:?}"
    );
    let refused = connect_status(&proxy, "example.org:443");
    assert!(
        refused.starts_with("HTTP/1.1 403"),
        "the proxy must refuse other names: {refused:?}"
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

/// docs/src/operating/deployment.md shows the files this test runs, verbatim.
#[test]
fn deployment_guide_shows_the_ingress_files() {
    let guide = shipped("docs/src/operating/deployment.md");
    for file in [
        "deploy/nginx/registry.conf",
        "deploy/nginx/registry.yml",
        "deploy/nginx/registry-mirror.yml",
    ] {
        let text = shipped(file);
        assert!(
            guide.contains(&format!("<!-- {file} -->\n```")) && guide.contains(&text),
            "docs/src/operating/deployment.md must show {file} verbatim in a fenced block after \
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
