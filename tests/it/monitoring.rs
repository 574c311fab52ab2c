//! Monitoring: the Prometheus alert rules (deploy/prometheus/alerts.yml) and the Grafana
//! dashboard (deploy/grafana/registry-auth-dashboard.json), with Debian's `prometheus` package:
//!
//! * `promtool check rules` and `promtool test rules` (deploy/prometheus/alerts_test.yml: unit
//!   tests over series; every alert has a case where it fires);
//! * the chart ships the same rules (its PrometheusRule, checked by promtool too) and the same
//!   dashboard (its sidecar ConfigMap);
//! * every dashboard query is valid PromQL (promtool checks them as recording rules);
//! * end to end: a real Prometheus (loopback, temp dir, 1 s scrape and evaluation) scrapes
//!   `serve` with an LDAP backend (a real slapd); `registry_auth_backend_up{backend="ldap_auth"}`
//!   is 1 and the "backend down" alert stays quiet while the directory answers, the gauge goes
//!   to 0 and the alert fires once slapd is stopped; and every metric the rules and the
//!   dashboard use is exported by the running server.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

use crate::common::http::{self, fetch_token, get};
use crate::common::image;
use crate::common::keys::{KeyFiles, KeySetup, bcrypt_hash, yaml_str};
use crate::common::proc::{self, ChildGuard, StopMode, free_port, require_tool, tail};
use crate::common::server::AuthServer;
use crate::common::stack::{self, ISSUER, SERVICE};
use crate::helm;
use crate::ldap::{Slapd, ldap_yaml, person, seed};

const ALERTS: &str = "deploy/prometheus/alerts.yml";
const ALERTS_TEST: &str = "deploy/prometheus/alerts_test.yml";
const DASHBOARD: &str = "deploy/grafana/registry-auth-dashboard.json";
const CHART_ALERTS: &str = "charts/registry-auth/files/prometheus-alerts.yml";
const CHART_DASHBOARD: &str = "charts/registry-auth/files/grafana-dashboard.json";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn promtool(args: &[&str], dir: &Path) -> proc::CmdOutput {
    let mut cmd = Command::new(require_tool("promtool"));
    cmd.args(args).current_dir(dir);
    proc::run(&mut cmd, None, Duration::from_secs(120))
}

/// The alert names of a rules file.
fn alert_names(rules: &Yaml) -> Vec<String> {
    rules["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").iter())
        .filter_map(|r| r["alert"].as_str().map(str::to_owned))
        .collect()
}

/// The PromQL of every dashboard panel, with Grafana's variables replaced by what they stand
/// for in a query.
fn dashboard_queries(dashboard: &Json) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            out.push((
                panel["title"].as_str().unwrap_or_default().to_owned(),
                expr.replace("$__rate_interval", "5m")
                    .replace("\"$job\"", "\".+\""),
            ));
        }
    }
    out
}

/// `registry_auth_…` names in PromQL.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in expr.match_indices("registry_auth_") {
        let name: String = expr[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        names.insert(name);
    }
    names
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let dir = root().join("deploy/prometheus");
    let check = promtool(&["check", "rules", "alerts.yml"], &dir);
    assert!(
        check.success() && check.combined().contains("SUCCESS"),
        "promtool check rules {ALERTS}:\n{}",
        check.describe()
    );
    let test = promtool(&["test", "rules", "alerts_test.yml"], &dir);
    assert!(
        test.success() && test.combined().contains("SUCCESS"),
        "promtool test rules {ALERTS_TEST}:\n{}",
        test.describe()
    );
    // Every alert has a unit test in which it fires.
    let rules: Yaml = serde_yaml_ng::from_str(&read(ALERTS)).expect("alerts.yml");
    let tests: Yaml = serde_yaml_ng::from_str(&read(ALERTS_TEST)).expect("alerts_test.yml");
    let firing: BTreeSet<&str> = tests["tests"]
        .as_sequence()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_sequence().into_iter().flatten())
        .filter(|c| c["exp_alerts"].as_sequence().is_some_and(|a| !a.is_empty()))
        .filter_map(|c| c["alertname"].as_str())
        .collect();
    let names = alert_names(&rules);
    assert!(names.len() >= 6, "{names:?}");
    for name in &names {
        assert!(
            firing.contains(name.as_str()),
            "{ALERTS_TEST} has no case where {name} fires"
        );
    }
}

/// The chart renders the same rules and dashboard as the plain files.
#[test]
fn chart_ships_the_same_rules_and_dashboard() {
    assert_eq!(
        read(CHART_ALERTS),
        read(ALERTS),
        "{CHART_ALERTS} must be a copy of {ALERTS}: cp {ALERTS} {CHART_ALERTS}"
    );
    assert_eq!(
        read(CHART_DASHBOARD),
        read(DASHBOARD),
        "{CHART_DASHBOARD} must be a copy of {DASHBOARD}: cp {DASHBOARD} {CHART_DASHBOARD}"
    );
    let docs = helm::documents(&helm::render(
        &root().join("charts/registry-auth/ci/test-values.yaml"),
    ));
    let rule = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("PrometheusRule"))
        .expect("ci/test-values.yaml renders a PrometheusRule");
    let plain: Yaml = serde_yaml_ng::from_str(&read(ALERTS)).expect("alerts.yml");
    assert_eq!(
        rule["spec"], plain,
        "the chart's PrometheusRule spec differs from {ALERTS}"
    );
    // The rendered rules as Prometheus reads them.
    let tmp = stack::tempdir("ra-it-rules");
    fs::write(
        tmp.path().join("rendered.yml"),
        serde_yaml_ng::to_string(&rule["spec"]).expect("YAML"),
    )
    .expect("write");
    let check = promtool(&["check", "rules", "rendered.yml"], tmp.path());
    assert!(
        check.success(),
        "promtool check rules of the chart's PrometheusRule:\n{}",
        check.describe()
    );
    let dashboard = docs
        .iter()
        .find(|d| d["metadata"]["labels"]["grafana_dashboard"].as_str() == Some("1"))
        .expect(
            "ci/test-values.yaml renders the dashboard ConfigMap with grafana_dashboard: \"1\"",
        );
    assert_eq!(dashboard["kind"].as_str(), Some("ConfigMap"));
    let json: Json = serde_json::from_str(
        dashboard["data"]["registry-auth.json"]
            .as_str()
            .expect("data.registry-auth.json"),
    )
    .expect("the ConfigMap holds JSON");
    let plain: Json = serde_json::from_str(&read(DASHBOARD)).expect("dashboard JSON");
    assert_eq!(
        json, plain,
        "the chart's dashboard differs from {DASHBOARD}"
    );
}

/// Every dashboard query parses as PromQL (promtool checks them as recording rules).
#[test]
fn dashboard_queries_are_valid_promql() {
    let dashboard: Json = serde_json::from_str(&read(DASHBOARD)).expect("dashboard JSON");
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 10, "{queries:?}");
    let rules: Vec<Yaml> = queries
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| {
            let mut m = serde_yaml_ng::Mapping::new();
            m.insert("record".into(), format!("dashboard:query_{i}").into());
            m.insert("expr".into(), expr.clone().into());
            Yaml::Mapping(m)
        })
        .collect();
    let mut group = serde_yaml_ng::Mapping::new();
    group.insert("name".into(), "dashboard".into());
    group.insert("rules".into(), Yaml::Sequence(rules));
    let mut file = serde_yaml_ng::Mapping::new();
    file.insert("groups".into(), Yaml::Sequence(vec![Yaml::Mapping(group)]));
    let tmp = stack::tempdir("ra-it-dashboard");
    fs::write(
        tmp.path().join("dashboard.yml"),
        serde_yaml_ng::to_string(&file).expect("YAML"),
    )
    .expect("write");
    let check = promtool(&["check", "rules", "dashboard.yml"], tmp.path());
    assert!(
        check.success(),
        "a dashboard query is not valid PromQL:\n{}\nqueries: {queries:#?}",
        check.describe()
    );
    for panel in dashboard["panels"].as_array().expect("panels") {
        if panel["type"] != "row" {
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "panel {} does not use the dashboard's data source variable",
                panel["title"]
            );
        }
    }
}

/// A Prometheus server of one test.
struct Prometheus {
    url: String,
    log: PathBuf,
    _guard: ChildGuard,
}

impl Prometheus {
    /// Starts Debian's prometheus on a free loopback port, scraping `target` every second and
    /// evaluating `rules` every second; waits until it is ready.
    fn start(dir: &Path, target: &str, rules: &Path) -> Self {
        let bin = require_tool("prometheus");
        fs::create_dir_all(dir).expect("mkdir prometheus");
        let config = dir.join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\nscrape_configs:\n  - job_name: registry-auth\n    \
                 static_configs:\n      - targets: [{}]\n",
                yaml_str(&rules.to_string_lossy()),
                yaml_str(target)
            ),
        )
        .expect("write prometheus.yml");
        let port = free_port();
        let log = dir.join("prometheus.log");
        let out = fs::File::create(&log).expect("create log");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("start prometheus");
        let mut guard = ChildGuard::new(
            "prometheus",
            child,
            StopMode::TermThenKill(Duration::from_secs(5)),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if http::try_request("GET", &format!("{url}/-/ready"), &[])
                .is_ok_and(|r| r.status == 200)
            {
                break;
            }
            if let Some(status) = guard.try_wait() {
                panic!("prometheus exited with {status}:\n{}", tail(&log, 30));
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within 30 s:\n{}",
                tail(&log, 30)
            );
            thread::sleep(Duration::from_millis(100));
        }
        Self {
            url,
            log,
            _guard: guard,
        }
    }

    fn api(&self, path: &str) -> Json {
        let r = get(&format!("{}/api/v1/{path}", self.url), &[]);
        assert_eq!(r.status, 200, "GET /api/v1/{path}: {}", r.text());
        r.json()["data"].clone()
    }

    /// The scrape target's health (`up`, `down`, `unknown`).
    fn target_health(&self) -> String {
        self.api("targets")["activeTargets"]
            .as_array()
            .and_then(|t| t.first())
            .and_then(|t| t["health"].as_str())
            .unwrap_or("none")
            .to_owned()
    }

    /// Alerts as (name, backend label, state).
    fn alerts(&self) -> Vec<(String, String, String)> {
        self.api("alerts")["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .map(|a| {
                let s = |v: &Json| v.as_str().unwrap_or_default().to_owned();
                (
                    s(&a["labels"]["alertname"]),
                    s(&a["labels"]["backend"]),
                    s(&a["state"]),
                )
            })
            .collect()
    }
}

/// Sample names of an OpenMetrics text.
fn exported_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next().map(str::to_owned))
        .collect()
}

#[test]
fn prometheus_fires_backend_down_when_slapd_stops() {
    let tmp = stack::tempdir("ra-it-prometheus");
    let dir = tmp.path();
    let svc_pw = format!("svc-{}", image::random_hex(12));
    let alice_pw = format!("alice-{}", image::random_hex(8));
    let carol_pw = format!("carol-{}", image::random_hex(8));
    let mut slapd = Slapd::start(
        &dir.join("slapd"),
        None,
        &seed(&svc_pw, &person("alice", "staff", &alice_pw)),
        "",
    );
    let svc_file = dir.join("svc.pw");
    fs::write(&svc_file, format!("{svc_pw}\n")).expect("write svc.pw");
    let keys = KeyFiles::write(KeySetup::EcKid, &dir.join("keys"));
    let config = format!(
        "server:\n  addr: \"127.0.0.1:0\"\ntoken:\n  issuer: {}\n  expiration: 900\n{}\
         users:\n  \"\": {{}}\n  carol:\n    password: {}\ncredential_cache:\n  ttl: 0s\n\
         lockout:\n  max_failures: 2\n  window: 1m\n  cooldown: 1m\n{}\
         acl:\n  - match: {{account: \"/.*/\"}}\n    actions: [pull]\n",
        yaml_str(ISSUER),
        keys.token_yaml(),
        yaml_str(&bcrypt_hash(&carol_pw)),
        ldap_yaml(&slapd.addr(), "", &svc_file),
    );
    let config_file = dir.join("registry-auth.yml");
    fs::write(&config_file, &config).expect("write config");
    let server = AuthServer::start(&config_file, &dir.join("registry-auth.log"));

    // The shipped rules, with `for:` shortened so that the test takes seconds, not minutes
    // (the expressions are the shipped ones).
    let rules = read(ALERTS);
    let fast = rules.replace("for: 1m", "for: 2s");
    assert_ne!(
        fast, rules,
        "{ALERTS} has no `for: 1m` any more: update the test"
    );
    let rules_file = dir.join("alerts.yml");
    fs::write(&rules_file, fast).expect("write rules");
    let prometheus = Prometheus::start(&dir.join("prometheus"), &server.addr, &rules_file);
    let ctx = |what: &str| {
        format!(
            "{what}\n--- prometheus log ---\n{}--- registry-auth log ---\n{}",
            tail(&prometheus.log, 20),
            server.log_tail(20)
        )
    };
    let login = |user: &str, pw: &str| {
        fetch_token(
            &server.realm(),
            Some(SERVICE),
            &["repository:app:pull"],
            Some((user, pw)),
            &[],
        )
        .response
        .status
    };

    // While slapd answers: LDAP logins work, Prometheus scrapes, and no backend alert.
    assert_eq!(login("alice", &alice_pw), 200, "{}", ctx("alice via LDAP"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while prometheus.target_health() != "up" {
        assert!(Instant::now() < deadline, "{}", ctx("target never up"));
        thread::sleep(Duration::from_millis(200));
    }
    // Traffic that makes every exported family appear: an anonymous pull, wrong passwords up
    // to the lockout, a configuration reload.
    let anonymous = fetch_token(
        &server.realm(),
        Some(SERVICE),
        &["repository:app:pull"],
        None,
        &[],
    );
    assert_eq!(anonymous.response.status, 200, "{}", ctx("anonymous"));
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(login("carol", "wrong"));
    }
    assert_eq!(statuses, [401, 401, 429], "{}", ctx("lockout"));
    fs::write(&config_file, format!("{config}# touched by the test\n")).expect("touch config");
    for _ in 0..5 {
        assert_eq!(login("alice", &alice_pw), 200, "{}", ctx("alice via LDAP"));
        thread::sleep(Duration::from_secs(1));
        assert!(
            !prometheus
                .alerts()
                .iter()
                .any(|(name, _, _)| name == "RegistryAuthBackendDown"),
            "{}",
            ctx(&format!(
                "backend alert while slapd answers: {:?}",
                prometheus.alerts()
            ))
        );
    }

    let up = |want: u8| {
        let text = get(&format!("http://{}/metrics", server.addr), &[]).text();
        let line = format!("registry_auth_backend_up{{backend=\"ldap_auth\"}} {want}\n");
        assert!(
            text.contains(&line),
            "{}",
            ctx(&format!("want {line}in\n{text}"))
        );
    };
    up(1);

    // slapd stops: LDAP logins fail (503), the gauge goes to 0, the alert goes pending, then
    // firing for backend ldap_auth.
    slapd.stop();
    let started = Instant::now();
    let mut seen = Vec::new();
    let fired = loop {
        let status = login("alice", &alice_pw);
        assert_eq!(status, 503, "{}", ctx("alice with slapd stopped"));
        let alerts = prometheus.alerts();
        if alerts
            .iter()
            .any(|(n, b, s)| n == "RegistryAuthBackendDown" && b == "ldap_auth" && s == "firing")
        {
            break true;
        }
        seen.extend(alerts);
        if started.elapsed() > Duration::from_secs(60) {
            break false;
        }
        thread::sleep(Duration::from_millis(300));
    };
    assert!(
        fired,
        "{}",
        ctx(&format!(
            "RegistryAuthBackendDown{{backend=\"ldap_auth\"}} did not fire within 60 s of slapd \
             stopping; alerts seen: {seen:?}"
        ))
    );
    up(0);
    eprintln!(
        "RegistryAuthBackendDown fired {:.1?} after slapd stopped",
        started.elapsed()
    );
    assert!(
        seen.iter()
            .any(|(n, _, s)| n == "RegistryAuthBackendDown" && s == "pending"),
        "the alert never showed pending (its `for:`) before firing: {seen:?}"
    );

    // Every metric the rules and the dashboard use is exported by the running server (the
    // reload above may take a few seconds to count).
    let dashboard: Json = serde_json::from_str(&read(DASHBOARD)).expect("dashboard JSON");
    let mut used = metric_names(&rules);
    for (_, q) in dashboard_queries(&dashboard) {
        used.extend(metric_names(&q));
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = get(&format!("http://{}/metrics", server.addr), &[]).text();
        let exported = exported_names(&text);
        let missing: Vec<&String> = used.iter().filter(|n| !exported.contains(*n)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            ctx(&format!(
                "the rules or the dashboard use metrics the server does not export: \
                 {missing:?}\nexported: {exported:?}"
            ))
        );
        thread::sleep(Duration::from_millis(500));
    }
    assert!(used.len() >= 8, "{used:?}");
}
