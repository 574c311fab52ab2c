//! `acl test`: a YAML file of cases (an identity and the scopes it asks for, with the actions
//! expected), evaluated against a configuration with [`Offline`].
//!
//! ```yaml
//! defaults: {service: registry.example.com}   # optional: service and ip of every case
//! cases:
//!   - name: alice pushes her own namespace    # optional
//!     account: alice           # "" is anonymous; robot$NAME a robot
//!     source: users            # optional: anonymous, users or robots from the account; a
//!                              # source the configuration does not have is an error
//!     labels: {team: [dev]}    # optional: a static user's labels come from the config
//!     ip: 10.1.2.3             # optional
//!     service: registry        # optional
//!     expect:
//!       "repository:alice/app:pull,push": pull,push   # or [pull, push]
//!       "repository:bob/app:push": denied             # or []
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Deserialize;

use super::{Offline, Principal, Verdict, external_reason, source_name};
use crate::authn::{Labels, ROBOT_PREFIX};
use crate::token::Scope;

/// A test file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// Values for every case that does not set its own.
    #[serde(default)]
    pub defaults: Defaults,
    /// The cases, in order.
    pub cases: Vec<Case>,
}

/// `defaults:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// The `service` of the request.
    pub service: Option<String>,
    /// The client address.
    pub ip: Option<IpAddr>,
}

/// One case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// A name for the report.
    pub name: Option<String>,
    /// The canonical account (`""`: anonymous).
    #[serde(default)]
    pub account: String,
    /// The source; by default `anonymous`, `robots` or `users` from the account.
    pub source: Option<String>,
    /// The labels the login attaches; for a static user, by default those of the config.
    pub labels: Option<BTreeMap<String, OneOrMany>>,
    /// The client address.
    pub ip: Option<IpAddr>,
    /// The `service`.
    pub service: Option<String>,
    /// Scope (`type:name:actions`) → the actions expected (`denied`, `pull,push`, a list).
    pub expect: serde_yaml_ng::Mapping,
}

/// A label value or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One value.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// Parses a test file; the error names the place (`cases[2].expect`).
pub fn parse(text: &str) -> Result<TestFile, String> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }
    })
}

/// A failing scope of a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The scope as written.
    pub scope: String,
    /// The actions expected (empty: denied).
    pub expected: Vec<String>,
    /// The actions granted (empty: denied).
    pub granted: Vec<String>,
    /// The entry that decided, as `acl explain` names it.
    pub decided_by: String,
}

/// What became of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every scope got what was expected.
    Passed,
    /// At least one scope did not.
    Failed(Vec<Mismatch>),
    /// The case is wrong (bad scope, unknown source, …).
    Invalid(String),
    /// A scope's decision falls to an external authorizer: not evaluated.
    NotEvaluable {
        /// The scope.
        scope: String,
        /// Why.
        reason: String,
    },
}

/// One case's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// The case's name (or `cases[N]`, with the account).
    pub name: String,
    /// The outcome.
    pub outcome: Outcome,
}

impl Case {
    fn display_name(&self, index: usize) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!("cases[{index}] (account {:?})", self.account),
        }
    }

    /// The principal this case's login produces under `offline`'s configuration.
    fn principal(&self, offline: &Offline) -> Result<Principal, String> {
        let source = match &self.source {
            Some(s) => source_name(s).ok_or_else(|| {
                format!(
                    "source {s:?} is not a source; one of {}",
                    crate::authn::principal::SOURCES.join(", ")
                )
            })?,
            None if self.account.is_empty() => "anonymous",
            None if self.account.starts_with(ROBOT_PREFIX) => "robots",
            None => "users",
        };
        let labels = match &self.labels {
            Some(map) => map
                .iter()
                .map(|(k, v)| {
                    let values = match v {
                        OneOrMany::One(s) => vec![s.clone()],
                        OneOrMany::Many(list) => list.clone(),
                    };
                    (k.clone(), values)
                })
                .collect(),
            None => default_labels(offline, source, &self.account),
        };
        Ok(Principal {
            source,
            account: self.account.clone(),
            labels,
        })
    }
}

/// The labels a login of `account` gets from the configuration itself: a static user's, the
/// anonymous user's; none for other sources (their labels come from the backend: give them in
/// the case).
fn default_labels(offline: &Offline, source: &str, account: &str) -> Labels {
    let users = offline.config().authn.users();
    match source {
        "users" => users.lookup(account).map(|i| i.labels).unwrap_or_default(),
        "anonymous" => match users.authenticate(&crate::authn::Credentials::anonymous()) {
            Ok(crate::authn::AuthnOutcome::Authenticated(i)) => i.labels,
            _ => Labels::default(),
        },
        _ => Labels::default(),
    }
}

/// The expected actions of one `expect` value.
fn expected_actions(value: &serde_yaml_ng::Value) -> Result<Vec<String>, String> {
    let mut list: Vec<String> = match value {
        serde_yaml_ng::Value::String(s) if s == "denied" => Vec::new(),
        serde_yaml_ng::Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect(),
        serde_yaml_ng::Value::Sequence(seq) => seq
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| "expected actions are strings".to_owned())
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err("an expectation is `denied`, `pull,push` or a list of actions".to_owned());
        }
    };
    list.sort_unstable();
    list.dedup();
    Ok(list)
}

/// The cases whose `source` this configuration does not have (`configured`, e.g.
/// `Namespaces::configured`): one message per case, naming it, the configured sources and the
/// closest one. Such a case would be evaluated for principals no login here produces, so its
/// verdict would say nothing about the configuration: `acl test` refuses the file instead.
pub fn unconfigured_sources(file: &TestFile, configured: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for (index, case) in file.cases.iter().enumerate() {
        let Some(source) = case.source.as_deref() else {
            continue;
        };
        if configured.contains(&source) {
            continue;
        }
        let what = if source_name(source).is_some() {
            "is not configured here"
        } else {
            "is not a source"
        };
        let hint = configured
            .iter()
            .map(|c| (strsim::damerau_levenshtein(source, c), *c))
            .filter(|(d, c)| *d <= 2.max(c.len() / 3))
            .min_by_key(|(d, _)| *d)
            .map(|(_, c)| format!(" (did you mean `{c}`?)"))
            .unwrap_or_default();
        let name = match &case.name {
            Some(n) => format!("cases[{index}] ({n:?})"),
            None => format!("cases[{index}] (account {:?})", case.account),
        };
        out.push(format!(
            "{name}: source `{source}` {what}{hint}; the configured sources are {}",
            configured.join(", ")
        ));
    }
    out
}

/// Evaluates every case.
pub async fn run(offline: &Offline, file: &TestFile) -> Vec<CaseResult> {
    let mut results = Vec::with_capacity(file.cases.len());
    for (index, case) in file.cases.iter().enumerate() {
        let outcome = match run_case(offline, &file.defaults, case).await {
            Ok(o) => o,
            Err(message) => Outcome::Invalid(message),
        };
        results.push(CaseResult {
            name: case.display_name(index),
            outcome,
        });
    }
    results
}

async fn run_case(offline: &Offline, defaults: &Defaults, case: &Case) -> Result<Outcome, String> {
    let who = case.principal(offline)?;
    let service = case
        .service
        .as_deref()
        .or(defaults.service.as_deref())
        .unwrap_or("");
    let ip = case.ip.or(defaults.ip);
    if case.expect.is_empty() {
        return Err("`expect` is empty: list at least one scope".to_owned());
    }
    let mut mismatches = Vec::new();
    for (key, value) in &case.expect {
        let text = key
            .as_str()
            .ok_or_else(|| "every key of `expect` is a scope string".to_owned())?;
        let scope = Scope::from_str(text).map_err(|e| e.to_string())?;
        let expected = expected_actions(value).map_err(|e| format!("{text}: {e}"))?;
        if let Some(a) = expected.iter().find(|a| !scope.actions.contains(a)) {
            return Err(format!(
                "{text}: expects `{a}`, which the scope does not request (a token only ever \
                 carries requested actions)"
            ));
        }
        let verdict = offline
            .decide(&who, service, ip, &scope)
            .await
            .map_err(|e| e.to_string())?;
        match verdict {
            Verdict::External(backend) => {
                return Ok(Outcome::NotEvaluable {
                    scope: text.to_owned(),
                    reason: external_reason(backend),
                });
            }
            Verdict::Decided { granted, by } => {
                if granted != expected {
                    mismatches.push(Mismatch {
                        scope: text.to_owned(),
                        expected,
                        granted,
                        decided_by: offline.describe(&by),
                    });
                }
            }
        }
    }
    Ok(if mismatches.is_empty() {
        Outcome::Passed
    } else {
        Outcome::Failed(mismatches)
    })
}

fn actions(list: &[String]) -> String {
    if list.is_empty() {
        "denied".to_owned()
    } else {
        list.join(",")
    }
}

/// Counts: (passed, failed, invalid, not evaluable).
pub fn counts(results: &[CaseResult]) -> (usize, usize, usize, usize) {
    let mut c = (0, 0, 0, 0);
    for r in results {
        match r.outcome {
            Outcome::Passed => c.0 += 1,
            Outcome::Failed(_) => c.1 += 1,
            Outcome::Invalid(_) => c.2 += 1,
            Outcome::NotEvaluable { .. } => c.3 += 1,
        }
    }
    c
}

/// The text report: one line per failing scope, per invalid case and per case that cannot be
/// evaluated, then a summary.
pub fn report_text(results: &[CaseResult]) -> String {
    let mut out = String::new();
    for r in results {
        match &r.outcome {
            Outcome::Passed => {}
            Outcome::Failed(ms) => {
                for m in ms {
                    let _ = writeln!(
                        out,
                        "FAIL {}: {}: expected {}, granted {} (decided by {})",
                        r.name,
                        m.scope,
                        actions(&m.expected),
                        actions(&m.granted),
                        m.decided_by
                    );
                }
            }
            Outcome::Invalid(why) => {
                let _ = writeln!(out, "ERROR {}: {why}", r.name);
            }
            Outcome::NotEvaluable { scope, reason } => {
                let _ = writeln!(out, "NOT EVALUATED {}: {scope}: {reason}", r.name);
            }
        }
    }
    let (passed, failed, invalid, skipped) = counts(results);
    let _ = writeln!(
        out,
        "{} case{}: {passed} passed, {failed} failed, {invalid} invalid, {skipped} not evaluable \
         offline",
        results.len(),
        if results.len() == 1 { "" } else { "s" }
    );
    out
}

fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "&#x{:X};", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// The JUnit XML report (one `testcase` per case; `failure`, `error` or `skipped`).
pub fn report_junit(suite: &str, results: &[CaseResult]) -> String {
    let (_, failed, invalid, skipped) = counts(results);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites><testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\" \
         errors=\"{invalid}\" skipped=\"{skipped}\">",
        xml(suite),
        results.len()
    );
    for r in results {
        let _ = write!(
            out,
            "  <testcase classname=\"{}\" name=\"{}\"",
            xml(suite),
            xml(&r.name)
        );
        match &r.outcome {
            Outcome::Passed => out.push_str("/>\n"),
            Outcome::Failed(ms) => {
                let text: Vec<String> = ms
                    .iter()
                    .map(|m| {
                        format!(
                            "{}: expected {}, granted {} (decided by {})",
                            m.scope,
                            actions(&m.expected),
                            actions(&m.granted),
                            m.decided_by
                        )
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    "><failure message=\"{}\">{}</failure></testcase>",
                    xml(&text[0]),
                    xml(&text.join("\n"))
                );
            }
            Outcome::Invalid(why) => {
                let _ = writeln!(out, "><error message=\"{}\"/></testcase>", xml(why));
            }
            Outcome::NotEvaluable { scope, reason } => {
                let _ = writeln!(
                    out,
                    "><skipped message=\"{}\"/></testcase>",
                    xml(&format!("{scope}: {reason}"))
                );
            }
        }
    }
    out.push_str("</testsuite></testsuites>\n");
    out
}
