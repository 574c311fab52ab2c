//! The Helm chart (charts/registry-auth) rendered by the real helm (v4, from
//! `scripts/tools/install-helm.sh`) with every values file in `charts/registry-auth/ci/`:
//!
//! * `helm lint --strict` passes, and the chart's own checks refuse what they should;
//! * every rendered manifest validates strictly (unknown fields are errors) against the
//!   Kubernetes 1.31 and 1.34 API schemas with `kubernetes-validate` (PyPI, from
//!   `scripts/tools/install-py-tools.sh`; it ships the schemas, so it runs offline). Custom
//!   resources (ServiceMonitor, PrometheusRule) have no schema there: their rules are checked by
//!   promtool in tests/it/monitoring.rs;
//! * each rendered `config.yaml` passes `registry-auth check-config` with the pod's files in
//!   place: the ConfigMap and the rendered Secrets written at the Deployment's mount paths under a
//!   temp dir, test files for the Secrets the chart only references (`existingSecret`), the
//!   config's paths moved under that dir;
//! * what the pod spec promises whatever the values (probes at the root, hardening) holds in the
//!   rendered Deployments.
//!
//! The values files together turn on every backend and feature the chart documents; a test
//! checks that they still do, so a new ci file can add but not silently drop coverage.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize as _;
use serde_yaml_ng::Value as Yaml;

use crate::common::proc::{self, CmdOutput};
use crate::common::server::run_cli;
use crate::common::{stack, tools};

const CHART: &str = "charts/registry-auth";
/// The Kubernetes versions the rendered manifests must be valid for (the oldest and the newest
/// we promise; kubernetes-validate ships both schemas).
const KUBERNETES: [&str; 2] = ["1.31.0", "1.34.0"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn helm() -> PathBuf {
    tools::bin("helm", "install-helm.sh")
}

/// Every values file in the chart's ci/ folder (chart-testing's convention), sorted.
pub fn ci_values() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(root().join(CHART).join("ci"))
        .expect("read the chart's ci/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "too few values files in ci/: {files:?}");
    files
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned()
}

fn run_helm(args: &[&str]) -> CmdOutput {
    let mut cmd = Command::new(helm());
    // No user config or cache: the same render on every machine.
    let home = std::env::temp_dir().join("registry-auth-it-helm-home");
    cmd.args(args)
        .current_dir(root())
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"));
    proc::run(&mut cmd, None, Duration::from_secs(60))
}

/// `helm template` of the chart with one values file: the manifests' text.
pub fn render(values: &Path) -> String {
    let out = run_helm(&[
        "template",
        "ra",
        CHART,
        "--namespace",
        "registry",
        "-f",
        &values.to_string_lossy(),
    ]);
    assert!(
        out.success(),
        "helm template with {} failed:\n{}",
        values.display(),
        out.describe()
    );
    out.stdout
}

/// The YAML documents of a multi-document text (empty ones dropped).
pub fn documents(text: &str) -> Vec<Yaml> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| Yaml::deserialize(d).expect("rendered YAML parses"))
        .filter(|d| !d.is_null())
        .collect()
}

fn str_at<'a>(v: &'a Yaml, path: &[&str]) -> &'a str {
    at(v, path).and_then(Yaml::as_str).unwrap_or_default()
}

fn at<'a>(v: &'a Yaml, path: &[&str]) -> Option<&'a Yaml> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn kind(doc: &Yaml) -> &str {
    str_at(doc, &["kind"])
}

fn find<'a>(docs: &'a [Yaml], k: &str, name: &str) -> Option<&'a Yaml> {
    docs.iter()
        .find(|d| kind(d) == k && str_at(d, &["metadata", "name"]) == name)
}

#[test]
fn helm_lint_passes_with_every_ci_values_file_and_the_chart_refuses_bad_values() {
    for values in ci_values() {
        let out = run_helm(&["lint", "--strict", CHART, "-f", &values.to_string_lossy()]);
        assert!(
            out.success() && out.stdout.contains("0 chart(s) failed"),
            "helm lint --strict with {}:\n{}",
            values.display(),
            out.describe()
        );
    }
    // The chart's own checks (templates/_helpers.tpl, registry-auth.validate) stop an install
    // that would give crashing or disagreeing pods, with the fix in the message.
    let tmp = stack::tempdir("ra-it-helm-bad");
    let cases: [(&str, &str, &str); 4] = [
        ("no values", "{}", "the token signing key is missing"),
        (
            "a generated key with two replicas",
            "replicaCount: 2\nconfig: {token: {generate: true}}\n",
            "set replicaCount: 1",
        ),
        (
            "a loopback listener",
            "secrets: {token: {existingSecret: t}}\nconfig: {server: {addr: \"127.0.0.1:5001\"}}\n",
            "a loopback address",
        ),
        (
            "a secrets entry without content",
            "secrets: {token: {existingSecret: t}, ldap: {existingSecret: \"\"}}\n",
            "secrets.ldap: set existingSecret or data",
        ),
    ];
    for (i, (what, values, message)) in cases.iter().enumerate() {
        let file = tmp.path().join(format!("bad-{i}.yaml"));
        fs::write(&file, values).expect("write");
        let out = run_helm(&["template", "ra", CHART, "-f", &file.to_string_lossy()]);
        assert!(
            !out.success() && out.combined().contains(message),
            "helm template with {what} must fail saying {message:?}:\n{}",
            out.describe()
        );
    }
    // A misspelt value is refused by values.schema.json.
    let file = tmp.path().join("typo.yaml");
    fs::write(
        &file,
        "secrets: {token: {existingSecret: t}}\nreplicacount: 2\n",
    )
    .expect("write");
    let out = run_helm(&["lint", "--strict", CHART, "-f", &file.to_string_lossy()]);
    assert!(
        !out.success() && out.combined().contains("replicacount"),
        "helm lint must refuse an unknown value:\n{}",
        out.describe()
    );
}

/// Strict validation of every rendered manifest against the Kubernetes API schemas.
#[test]
fn rendered_manifests_validate_against_kubernetes_1_31_and_1_34() {
    let validate = tools::bin("kubernetes-validate", "install-py-tools.sh");
    let tmp = stack::tempdir("ra-it-helm-k8s");
    let mut files = Vec::new();
    let mut kinds = BTreeSet::new();
    for values in ci_values() {
        let text = render(&values);
        kinds.extend(documents(&text).iter().map(|d| kind(d).to_owned()));
        let out = tmp.path().join(name_of(&values));
        fs::write(&out, text).expect("write manifests");
        files.push(out);
    }
    // The values files render every kind the chart can make.
    for k in [
        "ConfigMap",
        "Deployment",
        "Ingress",
        "PersistentVolumeClaim",
        "PodDisruptionBudget",
        "PrometheusRule",
        "Secret",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ] {
        assert!(
            kinds.contains(k),
            "no ci values file renders a {k}: {kinds:?}"
        );
    }
    let crds = ["ServiceMonitor", "PrometheusRule"];
    for version in KUBERNETES {
        let mut cmd = Command::new(&validate);
        cmd.args(["--strict", "--quiet", "-k", version])
            .args(&files);
        let out = proc::run(&mut cmd, None, Duration::from_secs(120));
        assert!(
            out.success(),
            "the rendered manifests are not valid Kubernetes {version} objects:\n{}",
            out.describe()
        );
        // Only the custom resources may lack a schema.
        for line in out.combined().lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                line.contains("Couldn't find schema for kind")
                    && crds.iter().any(|k| line.contains(&format!("kind {k} "))),
                "kubernetes-validate -k {version}: {line}\n{}",
                out.describe()
            );
        }
    }
}

/// A random printable secret (48 bytes of base64).
fn random_secret() -> String {
    let bytes: [u8; 36] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Strings in a YAML tree, with their dotted paths.
fn strings(value: &Yaml, path: &str, out: &mut Vec<(String, String)>) {
    match value {
        Yaml::String(s) => out.push((path.to_owned(), s.clone())),
        Yaml::Sequence(seq) => {
            for (i, v) in seq.iter().enumerate() {
                strings(v, &format!("{path}[{i}]"), out);
            }
        }
        Yaml::Mapping(map) => {
            for (k, v) in map {
                let key = k.as_str().unwrap_or("?");
                let p = if path.is_empty() {
                    key.to_owned()
                } else {
                    format!("{path}.{key}")
                };
                strings(v, &p, out);
            }
        }
        _ => {}
    }
}

/// Moves every string that is a path under one of `mounts` below `under`.
fn rewrite_paths(value: &mut Yaml, mounts: &[String], under: &Path) {
    match value {
        Yaml::String(s)
            if mounts
                .iter()
                .any(|m| s.as_str() == m.as_str() || s.starts_with(&format!("{m}/"))) =>
        {
            *s = format!("{}{s}", under.display());
        }
        Yaml::Sequence(seq) => seq.iter_mut().for_each(|v| rewrite_paths(v, mounts, under)),
        Yaml::Mapping(map) => map
            .iter_mut()
            .for_each(|(_, v)| rewrite_paths(v, mounts, under)),
        _ => {}
    }
}

/// The file systems of the rendered pod under `dir`: every volume mount of the Deployment's
/// container with its content (ConfigMap keys, rendered Secret keys, an empty folder for
/// emptyDir and PersistentVolumeClaim volumes). Returns (the mount paths, the
/// container's `--config` path, the Secret mounts whose Secret is not rendered).
fn materialize(docs: &[Yaml], dir: &Path) -> (Vec<String>, String, Vec<String>) {
    let deployment = docs
        .iter()
        .find(|d| kind(d) == "Deployment")
        .expect("a Deployment");
    let pod = at(deployment, &["spec", "template", "spec"]).expect("pod spec");
    let container = &at(pod, &["containers"]).expect("containers")[0];
    let args: Vec<&str> = at(container, &["args"])
        .and_then(Yaml::as_sequence)
        .expect("args")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    let config = args
        .iter()
        .position(|a| *a == "--config")
        .map(|i| args[i + 1].to_owned())
        .expect("serve --config PATH");
    let volumes: BTreeMap<&str, &Yaml> = at(pod, &["volumes"])
        .and_then(Yaml::as_sequence)
        .expect("volumes")
        .iter()
        .map(|v| (str_at(v, &["name"]), v))
        .collect();
    let mut mounts = Vec::new();
    let mut external = Vec::new();
    for m in at(container, &["volumeMounts"])
        .and_then(Yaml::as_sequence)
        .expect("volumeMounts")
    {
        let path = str_at(m, &["mountPath"]).to_owned();
        let volume = volumes[str_at(m, &["name"])];
        let target = dir.join(path.trim_start_matches('/'));
        fs::create_dir_all(&target).expect("mount dir");
        let write = |file: &str, content: &[u8]| {
            fs::write(target.join(file), content).expect("write a mounted file");
        };
        if let Some(name) = at(volume, &["configMap", "name"]).and_then(Yaml::as_str) {
            let cm = find(docs, "ConfigMap", name)
                .unwrap_or_else(|| panic!("the Deployment mounts ConfigMap {name}, not rendered"));
            for (k, v) in at(cm, &["data"]).and_then(Yaml::as_mapping).expect("data") {
                write(
                    k.as_str().expect("key"),
                    v.as_str().expect("text").as_bytes(),
                );
            }
        } else if let Some(name) = at(volume, &["secret", "secretName"]).and_then(Yaml::as_str) {
            match find(docs, "Secret", name) {
                Some(secret) => {
                    for (k, v) in at(secret, &["stringData"])
                        .and_then(Yaml::as_mapping)
                        .into_iter()
                        .flatten()
                    {
                        write(
                            k.as_str().expect("key"),
                            v.as_str().expect("text").as_bytes(),
                        );
                    }
                    for (k, v) in at(secret, &["data"])
                        .and_then(Yaml::as_mapping)
                        .into_iter()
                        .flatten()
                    {
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(v.as_str().expect("base64"))
                            .expect("Secret data is base64");
                        write(k.as_str().expect("key"), &bytes);
                    }
                }
                None => external.push(path.clone()),
            }
        } else {
            assert!(
                at(volume, &["emptyDir"]).is_some()
                    || at(volume, &["persistentVolumeClaim"]).is_some(),
                "unexpected volume {volume:?}"
            );
        }
        mounts.push(path);
    }
    (mounts, config, external)
}

/// Test files for what the config reads from Secrets the chart does not render (they exist in
/// the cluster): key pairs made by `gen-keys`, certificates (a CA bundle) made the same way,
/// `url_file`s a loopback database URL, other files (passwords, HMAC secrets) random text.
fn fill_external_secrets(config: &Yaml, external: &[String], dir: &Path) {
    let mut paths = Vec::new();
    strings(config, "", &mut paths);
    let under = |p: &str| external.iter().any(|m| p.starts_with(&format!("{m}/")));
    let local = |p: &str| dir.join(p.trim_start_matches('/'));
    let by_key: BTreeMap<&str, &str> = paths
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut done = BTreeSet::new();
    // Key pairs: `X.key` with `X.certificate`.
    for (k, v) in &paths {
        let Some(parent) = k.strip_suffix(".key") else {
            continue;
        };
        let Some(cert) = by_key.get(format!("{parent}.certificate").as_str()) else {
            continue;
        };
        if !under(v) {
            continue;
        }
        assert!(
            under(cert),
            "{k} and {parent}.certificate are in different Secrets"
        );
        let out = run_cli(&[
            "gen-keys",
            "--key",
            &local(v).to_string_lossy(),
            "--certificate",
            &local(cert).to_string_lossy(),
        ]);
        assert!(out.success(), "{}", out.describe());
        done.insert(v.clone());
        done.insert((*cert).to_owned());
    }
    let spare = dir.join("spare");
    fs::create_dir_all(&spare).expect("mkdir");
    for (k, v) in &paths {
        if !under(v) || done.contains(v) {
            continue;
        }
        let file = local(v);
        if k.ends_with("certificate") || k.contains("certificates") || v.ends_with(".crt") {
            let out = run_cli(&[
                "gen-keys",
                "--key",
                &spare.join(format!("{}.key", done.len())).to_string_lossy(),
                "--certificate",
                &file.to_string_lossy(),
            ]);
            assert!(out.success(), "{}", out.describe());
        } else if k.ends_with("url_file") {
            // A database URL (with its password) kept in a Secret: a local one of the kind
            // the section names (check-config does not connect).
            let section = k.rsplit_once('.').map_or("", |(s, _)| s);
            let redis = by_key.get(format!("{section}.type").as_str()) == Some(&"redis");
            let url = if redis {
                "redis://:password@127.0.0.1:6379/0".to_owned()
            } else {
                format!(
                    "postgres://registry_auth:{}@127.0.0.1:5432/registry",
                    crate::common::image::random_hex(16)
                )
            };
            fs::write(&file, url).expect("write a URL file");
        } else {
            fs::write(&file, random_secret()).expect("write a secret file");
        }
        done.insert(v.clone());
    }
}

/// Each rendered `config.yaml` passes `check-config` with the pod's files in place.
#[test]
fn rendered_configs_pass_check_config_with_the_pods_files() {
    for values in ci_values() {
        let name = name_of(&values);
        let docs = documents(&render(&values));
        let tmp = stack::tempdir("ra-it-helm-pod");
        let (mounts, config_path, external) = materialize(&docs, tmp.path());
        let file = tmp.path().join(config_path.trim_start_matches('/'));
        let mut config: Yaml =
            serde_yaml_ng::from_str(&fs::read_to_string(&file).expect("the mounted config"))
                .expect("config.yaml is YAML");
        fill_external_secrets(&config, &external, tmp.path());
        // Every file the config names is on a volume of the pod: a path outside the mounts
        // (e.g. /secrets/x/… without a `secrets.x`) stays as it is and check-config fails on it.
        rewrite_paths(&mut config, &mounts, tmp.path());
        fs::write(&file, serde_yaml_ng::to_string(&config).expect("YAML")).expect("write");
        let check = run_cli(&["check-config", &file.to_string_lossy()]);
        assert!(
            check.success(),
            "{name}: the rendered config.yaml (files in place under {}) fails check-config:\n{}\n\
             config:\n{}",
            tmp.path().display(),
            check.describe(),
            fs::read_to_string(&file).unwrap_or_default()
        );
        if name == "test-values.yaml" {
            // The chart's defaults (with a token Secret) need no caveat.
            assert!(
                !check.combined().to_lowercase().contains("warning"),
                "check-config warns about the chart's default config:\n{}",
                check.describe()
            );
            // The shipped ACL test cases for the chart's default config pass.
            let cases = "examples/acl-tests/chart-default.tests.yaml";
            let test = run_cli(&["acl", "test", "--config", &file.to_string_lossy(), cases]);
            assert!(
                test.success() && test.stdout.contains("0 failed, 0 invalid, 0 not evaluable"),
                "`acl test` of {cases} against the chart's default config:\n{}",
                test.describe()
            );
        }
    }
}

/// What the pod promises whatever the values: probes at the root (even under a path prefix and
/// on a TLS listener), the hardening, the checksum that rolls pods on a config change.
#[test]
fn rendered_deployments_keep_probes_at_the_root_and_the_hardening() {
    for values in ci_values() {
        let name = name_of(&values);
        let docs = documents(&render(&values));
        let deployment = docs
            .iter()
            .find(|d| kind(d) == "Deployment")
            .expect("a Deployment");
        let config: Yaml = serde_yaml_ng::from_str(str_at(
            docs.iter()
                .find(|d| kind(d) == "ConfigMap" && at(d, &["data", "config.yaml"]).is_some())
                .expect("the config ConfigMap"),
            &["data", "config.yaml"],
        ))
        .expect("config.yaml");
        let tls = at(&config, &["server", "certificate"]).is_some();
        let pod = at(deployment, &["spec", "template"]).expect("template");
        let c = &at(pod, &["spec", "containers"]).expect("containers")[0];
        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            assert_eq!(
                str_at(c, &[probe, "httpGet", "path"]),
                path,
                "{name}: {probe}"
            );
            assert_eq!(
                str_at(c, &[probe, "httpGet", "scheme"]),
                if tls { "HTTPS" } else { "HTTP" },
                "{name}: {probe} scheme"
            );
        }
        assert_eq!(
            at(c, &["securityContext", "readOnlyRootFilesystem"]).and_then(Yaml::as_bool),
            Some(true),
            "{name}"
        );
        assert_eq!(
            at(pod, &["spec", "securityContext", "runAsNonRoot"]).and_then(Yaml::as_bool),
            Some(true),
            "{name}"
        );
        assert!(
            str_at(pod, &["metadata", "annotations", "checksum/config"]).len() == 64,
            "{name}: no checksum/config annotation"
        );
        let port = str_at(&config, &["server", "addr"])
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u64>().ok())
            .expect("server.addr has a port");
        assert_eq!(
            at(c, &["ports"])
                .and_then(|p| p[0].get("containerPort"))
                .and_then(Yaml::as_u64),
            Some(port),
            "{name}: the container port is server.addr's"
        );
    }
}

/// The ci values files together turn on every backend and feature the chart documents.
#[test]
fn ci_values_cover_every_backend_and_feature() {
    let mut on = BTreeSet::new();
    for values in ci_values() {
        let docs = documents(&render(&values));
        let text: Yaml =
            serde_yaml_ng::from_str(&fs::read_to_string(&values).expect("read")).expect("YAML");
        let config: Yaml = serde_yaml_ng::from_str(str_at(
            docs.iter()
                .find(|d| kind(d) == "ConfigMap" && at(d, &["data", "config.yaml"]).is_some())
                .expect("the config ConfigMap"),
            &["data", "config.yaml"],
        ))
        .expect("config.yaml");
        for key in [
            "ldap_auth",
            "github_auth",
            "google_auth",
            "oidc_auth",
            "gitlab_auth",
            "oidc_tokens",
        ] {
            if at(&config, &[key]).is_some() {
                on.insert(key.to_owned());
            }
        }
        for (what, path) in [
            ("refresh tokens", &["token", "refresh", "enabled"][..]),
            ("path prefix", &["server", "path_prefix"]),
            ("TLS on the pod", &["server", "certificate"]),
            ("metrics listener", &["server", "metrics_addr"]),
            ("generated key", &["token", "generate"]),
        ] {
            if at(&config, path).is_some_and(|v| v.as_bool() != Some(false)) {
                on.insert(what.to_owned());
            }
        }
        if let Some(secrets) = at(&text, &["secrets"]).and_then(Yaml::as_mapping) {
            for spec in secrets.values() {
                if at(spec, &["existingSecret"]).is_some_and(|v| v.as_str() != Some("")) {
                    on.insert("existing Secret".to_owned());
                }
                if at(spec, &["data"])
                    .is_some_and(|v| v.as_mapping().is_some_and(|m| !m.is_empty()))
                {
                    on.insert("chart-made Secret".to_owned());
                }
            }
        }
        for k in [
            "ServiceMonitor",
            "PodDisruptionBudget",
            "Ingress",
            "PrometheusRule",
        ] {
            if docs.iter().any(|d| kind(d) == k) {
                on.insert(k.to_owned());
            }
        }
        if docs.iter().any(|d| {
            at(d, &["metadata", "labels", "grafana_dashboard"]).and_then(Yaml::as_str) == Some("1")
        }) {
            on.insert("Grafana dashboard".to_owned());
        }
    }
    let want = [
        "ldap_auth",
        "github_auth",
        "google_auth",
        "oidc_auth",
        "gitlab_auth",
        "oidc_tokens",
        "refresh tokens",
        "path prefix",
        "TLS on the pod",
        "metrics listener",
        "generated key",
        "existing Secret",
        "chart-made Secret",
        "ServiceMonitor",
        "PodDisruptionBudget",
        "Ingress",
        "PrometheusRule",
        "Grafana dashboard",
    ];
    let missing: Vec<&str> = want.iter().copied().filter(|w| !on.contains(*w)).collect();
    assert!(
        missing.is_empty(),
        "no values file in {CHART}/ci/ turns on: {missing:?}"
    );
}
