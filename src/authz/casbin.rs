//! `casbin_authz`: a Casbin model and policy decide, with docker_auth's request shape. Every
//! requested action of a scope is enforced on its own as
//! `(account, type, name, service, ip, action, labels)`, where `ip` is the client address
//! (`""` when unknown) and `labels` the user's labels as JSON (`{"team":["dev"]}`); the scope is
//! granted the actions that are allowed. Like docker_auth, Casbin always decides (it never
//! answers "no match"), so it belongs last in `authz_order`; unlike docker_auth it may be the
//! only authorizer (no `acl` needed).
//!
//! Functions for matchers, besides Casbin's own (`keyMatch`, `regexMatch`, `g`, …):
//!
//! * `labelMatch(r.labels, p.labels)`: true when every value of every label in the policy's
//!   JSON is among the user's values of that label (the policy's labels are a subset of the
//!   user's; `""` or `{}` in the policy requires nothing). A policy value that is not such JSON
//!   never matches (docker_auth treated it as "no requirement").
//! * `ipMatch(r.ip, p.ip)`: the client address equals the policy's address or lies in its CIDR
//!   network. An unknown client address or a malformed policy value is false (Casbin's own
//!   version panics on them).
//!
//! The model and policy are read when the configuration is loaded; both files are watched, so
//! editing them reloads the configuration. A model that cannot be evaluated (wrong number of
//! request fields, a bad expression) is refused then, not at the first request.
//!
//! # Cost
//!
//! One enforcement evaluates the matcher against every policy line, so the work an
//! unauthenticated request can cause is bounded three ways:
//!
//! * actions the model and policy can never allow ([`casbin_actions`](super::casbin_actions),
//!   worked out at load) are denied without running the model;
//! * the server refuses (400) a request asking for more than [`MAX_ACTIONS_PER_SCOPE`] distinct
//!   actions in one scope or [`MAX_ACTIONS_PER_REQUEST`] in all ([`check_limits`]);
//!   [`CasbinAuthz::authorize`] itself never enforces more than [`MAX_ACTIONS_PER_SCOPE`];
//! * enforcements run on blocking threads, at most the CPU count − 1 (at least 1) at once,
//!   never on the async workers.
//!
//! [`enforcements`] counts the enforcements run (`registry_auth_casbin_enforcements_total`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use casbin::function_map::{OperatorFunction, dynamic_to_str};
use casbin::rhai::Dynamic;
use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter, MgmtApi};
use ipnet::IpNet;
use tokio::sync::Semaphore;

use super::AuthzRequest;
use super::acl_sql::AuthzBackendError;

const NAME: &str = "casbin_authz";

/// Most distinct actions one scope may ask `casbin_authz` for (docker asks for at most
/// `pull,push`, or `*`).
pub const MAX_ACTIONS_PER_SCOPE: usize = 16;

/// Most actions, summed over the scopes, one token request may ask `casbin_authz` for.
pub const MAX_ACTIONS_PER_REQUEST: usize = 64;

/// Enforcements run by every `casbin_authz` of the process.
static ENFORCEMENTS: AtomicU64 = AtomicU64::new(0);

/// How many Casbin enforcements this process has run (for metrics and tests).
pub fn enforcements() -> u64 {
    ENFORCEMENTS.load(Ordering::Relaxed)
}

/// A token request's scopes (each given by its distinct actions) within the limits of
/// `casbin_authz`; the error, for a 400, names the limit.
pub fn check_limits<'a>(scopes: impl IntoIterator<Item = &'a [String]>) -> Result<(), String> {
    let mut total = 0usize;
    for actions in scopes {
        if actions.len() > MAX_ACTIONS_PER_SCOPE {
            return Err(format!(
                "too many actions: a scope may ask for at most {MAX_ACTIONS_PER_SCOPE} distinct \
                 actions here (casbin_authz decides each one on its own)"
            ));
        }
        total += actions.len();
        if total > MAX_ACTIONS_PER_REQUEST {
            return Err(format!(
                "too many actions: a token request may ask for at most \
                 {MAX_ACTIONS_PER_REQUEST} actions over all its scopes here (casbin_authz \
                 decides each one on its own)"
            ));
        }
    }
    Ok(())
}

/// The `casbin_authz` authorizer.
#[derive(Clone)]
pub struct CasbinAuthz {
    enforcer: Arc<Enforcer>,
    /// The only actions the model can allow, when that is certain.
    grantable: Option<Arc<BTreeSet<String>>>,
    /// Enforcements running at once.
    pool: Arc<Semaphore>,
    model: PathBuf,
    policy: PathBuf,
}

impl fmt::Debug for CasbinAuthz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CasbinAuthz")
            .field("model_path", &self.model)
            .field("policy_path", &self.policy)
            .finish_non_exhaustive()
    }
}

impl CasbinAuthz {
    /// Reads the model and the policy (CSV) and checks that the model can be evaluated with the
    /// seven request fields. The error names the file at fault.
    pub fn load(model_path: &Path, policy_path: &Path) -> Result<Self, (&'static str, String)> {
        let model_text = crate::config::sources::read_to_string(model_path).map_err(|e| {
            (
                "model_path",
                format!("cannot read {}: {e}", model_path.display()),
            )
        })?;
        let policy_text = crate::config::sources::read_to_string(policy_path).map_err(|e| {
            (
                "policy_path",
                format!("cannot read {}: {e}", policy_path.display()),
            )
        })?;
        // Casbin's constructors are async (they need no I/O here, the texts are in memory);
        // run them on a thread of their own so this works inside a runtime too.
        let built = std::thread::scope(|s| {
            s.spawn(|| build(&model_text, policy_text))
                .join()
                .unwrap_or_else(|_| Err(("model_path", "Casbin panicked".to_owned())))
        })?;
        let grantable = grantable_actions(&built).map(Arc::new);
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get().saturating_sub(1))
            .max(1);
        let authz = Self {
            enforcer: Arc::new(built),
            grantable,
            pool: Arc::new(Semaphore::new(workers)),
            model: model_path.to_path_buf(),
            policy: policy_path.to_path_buf(),
        };
        // A trial request: a model whose request has another arity, or whose matcher cannot be
        // evaluated, fails here instead of at the first request.
        let labels = crate::authn::Labels::default();
        let probe = AuthzRequest {
            account: "registry-auth-probe",
            source: "users",
            unqualified: true,
            kind: "repository",
            name: "probe",
            service: "probe",
            ip: Some(IpAddr::from([192, 0, 2, 1])),
            labels: &labels,
            actions: &[],
        };
        let args = request_args(&probe).map_err(|e| ("model_path", e.message))?;
        enforce(&authz.enforcer, args, "pull").map_err(|e| {
            (
                "model_path",
                format!(
                    "{}: the model cannot evaluate docker_auth's request `r = account, type, \
                     name, service, ip, action, labels`: {}",
                    model_path.display(),
                    e.message
                ),
            )
        })?;
        Ok(authz)
    }

    /// The model file.
    pub fn model_path(&self) -> &Path {
        &self.model
    }

    /// The policy file.
    pub fn policy_path(&self) -> &Path {
        &self.policy
    }

    /// The roles of the policy: the targets of its `g` lines (`g, bob, devs` → `devs`).
    pub fn role_names(&self) -> BTreeSet<String> {
        let model = self.enforcer.get_model().get_model();
        model
            .get("g")
            .and_then(|g| g.get("g"))
            .map(|g| g.policy.iter().filter_map(|l| l.get(1).cloned()).collect())
            .unwrap_or_default()
    }

    /// The actions the model can allow, when that is certain (`None`: any action may be).
    pub fn grantable(&self) -> Option<&BTreeSet<String>> {
        self.grantable.as_deref()
    }

    /// The allowed subset of the requested actions (sorted; empty = denied). Actions the model
    /// can never allow are denied without running it; of the others, at most
    /// [`MAX_ACTIONS_PER_SCOPE`] are enforced (the rest are denied), on a blocking thread of
    /// the bounded pool.
    pub async fn authorize(
        &self,
        req: &AuthzRequest<'_>,
    ) -> Result<Vec<String>, AuthzBackendError> {
        let mut todo: Vec<String> = req
            .actions
            .iter()
            .filter(|a| self.grantable.as_ref().is_none_or(|g| g.contains(*a)))
            .cloned()
            .collect();
        todo.sort();
        todo.dedup();
        todo.truncate(MAX_ACTIONS_PER_SCOPE);
        if todo.is_empty() {
            return Ok(Vec::new());
        }
        let args = request_args(req)?;
        let pool_error = |what: &str| AuthzBackendError {
            backend: NAME,
            message: format!("the enforcement pool {what}"),
        };
        // The permit moves into the blocking task: a cancelled request still holds its slot
        // until its enforcements end, so the pool bounds the threads actually working.
        let permit = Arc::clone(&self.pool)
            .acquire_owned()
            .await
            .map_err(|_| pool_error("is closed"))?;
        let enforcer = Arc::clone(&self.enforcer);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut granted = Vec::new();
            for action in todo {
                ENFORCEMENTS.fetch_add(1, Ordering::Relaxed);
                if enforce(&enforcer, args.clone(), &action)? {
                    granted.push(action);
                }
            }
            Ok(granted)
        })
        .await
        .map_err(|_| pool_error("lost a task"))?
    }
}

/// Docker_auth's request fields, with the action (index 5) left empty.
fn request_args(req: &AuthzRequest<'_>) -> Result<Vec<String>, AuthzBackendError> {
    let labels = serde_json::to_string(req.labels).map_err(|e| AuthzBackendError {
        backend: NAME,
        message: format!("cannot encode the labels: {e}"),
    })?;
    // The subject: a qualified principal is `source:account`, never a bare name a policy line
    // wrote for a password-source user.
    Ok(vec![
        req.subject().into_owned(),
        req.kind.to_owned(),
        req.name.to_owned(),
        req.service.to_owned(),
        req.ip.map(|i| i.to_string()).unwrap_or_default(),
        String::new(),
        labels,
    ])
}

fn enforce(
    enforcer: &Enforcer,
    mut args: Vec<String>,
    action: &str,
) -> Result<bool, AuthzBackendError> {
    if let Some(slot) = args.get_mut(5) {
        action.clone_into(slot);
    }
    // Casbin's built-in functions panic on some inputs: a panic is a failed request, not
    // a dead worker.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| enforcer.enforce(args)));
    match result {
        Ok(Ok(allowed)) => Ok(allowed),
        Ok(Err(e)) => Err(AuthzBackendError {
            backend: NAME,
            message: format!("the model failed: {e}"),
        }),
        Err(_) => Err(AuthzBackendError {
            backend: NAME,
            message: "the model panicked (a function got an argument it cannot handle)".to_owned(),
        }),
    }
}

/// The actions the enforcer's model and policy can allow (see [`super::casbin_actions`]).
fn grantable_actions(enforcer: &Enforcer) -> Option<BTreeSet<String>> {
    let model = enforcer.get_model().get_model();
    let one = |sec: &str| model.get(sec).and_then(|m| m.get(sec));
    let (r, p, e, m) = (one("r")?, one("p")?, one("e")?, one("m")?);
    super::casbin_actions::grantable(&e.value, &m.value, r.tokens.get(5)?, &p.tokens, &p.policy)
}

fn build(model_text: &str, policy_text: String) -> Result<Enforcer, (&'static str, String)> {
    let lines = parse_policy(&policy_text).map_err(|e| ("policy_path", e))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| ("model_path", format!("cannot start a runtime: {e}")))?;
    runtime.block_on(async {
        let model = DefaultModel::from_str(model_text)
            .await
            .map_err(|e| ("model_path", format!("not a usable Casbin model: {e}")))?;
        let mut enforcer = Enforcer::new(model, MemoryAdapter::default())
            .await
            .map_err(|e| ("model_path", format!("not a usable Casbin model: {e}")))?;
        enforcer.add_function("labelMatch", OperatorFunction::Arg2(label_match_fn));
        enforcer.add_function("ipMatch", OperatorFunction::Arg2(ip_match_fn));
        for (line, fields) in lines {
            let Some((ptype, rule)) = fields.split_first() else {
                continue;
            };
            let sec = if ptype.starts_with('p') {
                "p"
            } else if ptype.starts_with('g') {
                "g"
            } else {
                return Err((
                    "policy_path",
                    format!("line {line}: `{ptype}` is neither a policy (p…) nor a role (g…) line"),
                ));
            };
            let want = enforcer
                .get_model()
                .get_model()
                .get(sec)
                .and_then(|m| m.get(ptype))
                .map(|a| a.tokens.len());
            match want {
                None => {
                    return Err((
                        "policy_path",
                        format!("line {line}: the model defines no `{ptype}`"),
                    ));
                }
                Some(n) if sec == "p" && n != rule.len() => {
                    return Err((
                        "policy_path",
                        format!(
                            "line {line}: `{ptype}` has {} fields but the model's `{ptype}` has \
                             {n} (a field holding commas or quotes must be quoted, with quotes \
                             doubled: \"{{\"\"team\"\":[\"\"dev\"\"]}}\")",
                            rule.len()
                        ),
                    ));
                }
                Some(_) => {}
            }
            let added = if sec == "p" {
                enforcer.add_named_policy(ptype, rule.to_vec()).await
            } else {
                enforcer
                    .add_named_grouping_policy(ptype, rule.to_vec())
                    .await
            };
            added.map_err(|e| ("policy_path", format!("line {line}: {e}")))?;
        }
        Ok(enforcer)
    })
}

/// Splits a Casbin policy file into `(line number, fields)`: CSV as Go's `encoding/csv` reads
/// it (which is what docker_auth's Casbin used): `,`-separated, leading spaces trimmed, `"…"`
/// quoting with `""` for a quote, blank lines and `#` comments skipped. Casbin-rs' own reader
/// has no `""` escape, so JSON labels could not be written in a policy.
pub fn parse_policy(text: &str) -> Result<Vec<(usize, Vec<String>)>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = Vec::new();
        let mut chars = line.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
                chars.next();
            }
            let mut field = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(c) => field.push(c),
                        None => return Err(format!("line {}: unterminated quote", i + 1)),
                    }
                }
                while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
                    chars.next();
                }
                match chars.next() {
                    None => {
                        fields.push(field);
                        break;
                    }
                    Some(',') => fields.push(field),
                    Some(c) => {
                        return Err(format!(
                            "line {}: `{c}` after a quoted field (write a quote inside a field \
                             as `\"\"`)",
                            i + 1
                        ));
                    }
                }
            } else {
                let mut ended = true;
                for c in chars.by_ref() {
                    if c == ',' {
                        ended = false;
                        break;
                    }
                    field.push(c);
                }
                fields.push(field.trim_end().to_owned());
                if ended {
                    break;
                }
            }
        }
        out.push((i + 1, fields));
    }
    Ok(out)
}

fn label_match_fn(user: Dynamic, policy: Dynamic) -> Dynamic {
    label_match(&dynamic_to_str(&user), &dynamic_to_str(&policy)).into()
}

fn ip_match_fn(client: Dynamic, rule: Dynamic) -> Dynamic {
    ip_match(&dynamic_to_str(&client), &dynamic_to_str(&rule)).into()
}

type LabelMap = BTreeMap<String, Vec<String>>;

/// Every value of every label in `policy` (JSON) is among the user's values of that label.
pub fn label_match(user: &str, policy: &str) -> bool {
    let policy = policy.trim();
    if policy.is_empty() {
        return true;
    }
    let Ok(policy) = serde_json::from_str::<LabelMap>(policy) else {
        return false;
    };
    let user: LabelMap = serde_json::from_str(user).unwrap_or_default();
    policy.iter().all(|(key, wanted)| {
        let have = user.get(key).map(Vec::as_slice).unwrap_or_default();
        wanted.iter().all(|w| have.contains(w))
    })
}

/// `client` equals `rule` (an address) or lies in it (a CIDR network); false for anything
/// malformed. IPv4-mapped IPv6 addresses count as IPv4.
pub fn ip_match(client: &str, rule: &str) -> bool {
    let Ok(client) = client.trim().parse::<IpAddr>() else {
        return false;
    };
    let client = client.to_canonical();
    let rule = rule.trim();
    if let Ok(addr) = rule.parse::<IpAddr>() {
        return addr.to_canonical() == client;
    }
    match rule.parse::<IpNet>() {
        Ok(IpNet::V4(net)) => match client {
            IpAddr::V4(c) => net.contains(&c),
            IpAddr::V6(_) => false,
        },
        Ok(net) => net.contains(&client),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::Labels;

    const MODEL: &str = r#"
[request_definition]
r = account, type, name, service, ip, action, labels

[policy_definition]
p = account, type, name, service, ip, action, labels

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = r.account == "root" || (g(r.account, p.account) && r.type == p.type && keyMatch(r.name, p.name) && r.service == p.service && ipMatch(r.ip, p.ip) && r.action == p.action && labelMatch(r.labels, p.labels))
"#;

    const POLICY: &str = r#"p, alice, repository, alice/*, registry, 0.0.0.0/0, pull, "{}"
p, alice, repository, alice/*, registry, 0.0.0.0/0, push, "{}"
p, devs, repository, team/*, registry, 10.0.0.0/8, pull, "{""team"":[""dev""]}"
p, devs, repository, team/*, registry, 10.1.2.3, push, "{""team"":[""dev"",""ops""]}"
p, eve, repository, eve/*, registry, not-an-ip, pull, "{}"
p, mallory, repository, m/*, registry, 0.0.0.0/0, pull, "not json"

g, bob, devs
"#;

    fn files(model: &str, policy: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("model.conf");
        let p = dir.path().join("policy.csv");
        std::fs::write(&m, model).unwrap();
        std::fs::write(&p, policy).unwrap();
        (dir, m, p)
    }

    fn ask(
        c: &CasbinAuthz,
        account: &str,
        name: &str,
        ip: Option<&str>,
        labels: &Labels,
        actions: &[&str],
    ) -> Vec<String> {
        let actions: Vec<String> = actions.iter().map(|a| (*a).to_owned()).collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime
            .block_on(c.authorize(&AuthzRequest {
                account,
                source: "users",
                unqualified: true,
                kind: "repository",
                name,
                service: "registry",
                ip: ip.map(|i| i.parse().unwrap()),
                labels,
                actions: &actions,
            }))
            .unwrap()
    }

    #[test]
    fn grants_the_allowed_subset_per_action() {
        let (_d, m, p) = files(MODEL, POLICY);
        let c = CasbinAuthz::load(&m, &p).unwrap();
        let none = Labels::default();
        let dev = Labels::from_iter([("team", vec!["dev"])]);
        let devops = Labels::from_iter([("team", vec!["dev", "ops"])]);
        let ip = Some("10.1.2.3");
        assert_eq!(
            ask(
                &c,
                "alice",
                "alice/app",
                ip,
                &none,
                &["pull", "push", "delete"]
            ),
            ["pull", "push"]
        );
        assert!(ask(&c, "alice", "bob/app", ip, &none, &["pull"]).is_empty());
        // Roles (g), IP networks, label subsets.
        assert_eq!(
            ask(&c, "bob", "team/x", ip, &dev, &["pull", "push"]),
            ["pull"]
        );
        assert_eq!(
            ask(&c, "bob", "team/x", ip, &devops, &["pull", "push"]),
            ["pull", "push"]
        );
        assert!(ask(&c, "bob", "team/x", Some("192.0.2.1"), &dev, &["pull"]).is_empty());
        assert!(ask(&c, "bob", "team/x", None, &dev, &["pull"]).is_empty());
        assert!(ask(&c, "carol", "team/x", ip, &dev, &["pull"]).is_empty());
        assert_eq!(ask(&c, "root", "any", None, &none, &["*"]), ["*"]);
        // Malformed policy values never match, and never panic.
        assert!(ask(&c, "eve", "eve/x", ip, &none, &["pull"]).is_empty());
        assert!(ask(&c, "mallory", "m/x", ip, &none, &["pull"]).is_empty());
    }

    #[test]
    fn only_actions_the_policy_names_are_enforced_when_that_is_certain() {
        // `r.account == "root" || …`: root may get any action, so nothing is filtered.
        let (_d, m, p) = files(MODEL, POLICY);
        let c = CasbinAuthz::load(&m, &p).unwrap();
        assert_eq!(c.grantable(), None);
        assert_eq!(
            ask(&c, "root", "x", None, &Labels::default(), &["zap"]),
            ["zap"]
        );
        assert_eq!(c.role_names(), BTreeSet::from(["devs".to_owned()]));
        // Without the root branch every allowing path compares the action with the policy's.
        let bounded = MODEL.replace("r.account == \"root\" || ", "");
        let (_d, m, p) = files(&bounded, POLICY);
        let c = CasbinAuthz::load(&m, &p).unwrap();
        assert_eq!(
            c.grantable().map(|g| g.iter().cloned().collect::<Vec<_>>()),
            Some(vec!["pull".to_owned(), "push".to_owned()])
        );
        let ip = Some("10.1.2.3");
        let none = Labels::default();
        assert_eq!(
            ask(
                &c,
                "alice",
                "alice/app",
                ip,
                &none,
                &["zap", "pull", "push"]
            ),
            ["pull", "push"]
        );
    }

    #[test]
    fn limits_per_scope_and_per_request() {
        let actions = |n: usize| -> Vec<String> { (0..n).map(|i| format!("a{i}")).collect() };
        let one = actions(MAX_ACTIONS_PER_SCOPE);
        assert!(check_limits([one.as_slice()]).is_ok());
        let over = actions(MAX_ACTIONS_PER_SCOPE + 1);
        let err = check_limits([over.as_slice()]).unwrap_err();
        assert!(err.contains(&MAX_ACTIONS_PER_SCOPE.to_string()), "{err}");
        let pull = vec!["pull".to_owned()];
        assert!(check_limits(vec![pull.as_slice(); MAX_ACTIONS_PER_REQUEST]).is_ok());
        let err = check_limits(vec![pull.as_slice(); MAX_ACTIONS_PER_REQUEST + 1]).unwrap_err();
        assert!(err.contains(&MAX_ACTIONS_PER_REQUEST.to_string()), "{err}");
    }

    #[test]
    fn load_errors_name_the_file() {
        let (_d, m, p) = files(MODEL, POLICY);
        let missing = m.with_file_name("nope.conf");
        assert_eq!(CasbinAuthz::load(&missing, &p).unwrap_err().0, "model_path");
        assert_eq!(
            CasbinAuthz::load(&m, &m.with_file_name("nope.csv"))
                .unwrap_err()
                .0,
            "policy_path"
        );
        // Three request fields where docker_auth sends seven.
        let (_d2, m2, p2) = files(
            "[request_definition]\nr = sub, obj, act\n[policy_definition]\np = sub, obj, act\n\
             [policy_effect]\ne = some(where (p.eft == allow))\n[matchers]\nm = r.sub == p.sub\n",
            "p, a, b, c\n",
        );
        let (key, message) = CasbinAuthz::load(&m2, &p2).unwrap_err();
        assert_eq!(key, "model_path");
        assert!(message.contains("account, type, name"), "{message}");
    }

    #[test]
    fn policy_files_are_csv_with_doubled_quotes() {
        let lines = parse_policy(
            "# comment\n\np, a, \"{\"\"t\"\":[\"\"x\"\",\"\"y\"\"]}\" , b\ng,bob ,devs\n",
        )
        .unwrap();
        assert_eq!(
            lines,
            [
                (
                    3,
                    vec![
                        "p".into(),
                        "a".into(),
                        r#"{"t":["x","y"]}"#.into(),
                        "b".into()
                    ]
                ),
                (4, vec!["g".into(), "bob".into(), "devs".into()]),
            ]
        );
        assert!(parse_policy("p, \"open").unwrap_err().contains("line 1"));
        assert!(
            parse_policy("p, \"a\"b")
                .unwrap_err()
                .contains("after a quoted field")
        );
        let (_d, m, p) = files(MODEL, "p, alice, repository, x, registry, 1.2.3.4, pull\n");
        let (key, message) = CasbinAuthz::load(&m, &p).unwrap_err();
        assert_eq!(key, "policy_path");
        assert!(
            message.contains("line 1") && message.contains("6 fields"),
            "{message}"
        );
    }

    #[test]
    fn label_and_ip_functions() {
        assert!(label_match(r#"{"a":["b","c"]}"#, r#"{"a":["b"]}"#));
        assert!(label_match(r#"{"a":["b"]}"#, "{}"));
        assert!(label_match(r#"{"a":["b"]}"#, ""));
        assert!(!label_match(r#"{"a":["b"]}"#, r#"{"a":["b","c"]}"#));
        assert!(!label_match("{}", r#"{"a":["b"]}"#));
        assert!(!label_match(r#"{"a":["b"]}"#, "garbage"));
        assert!(ip_match("10.1.2.3", "10.0.0.0/8"));
        assert!(ip_match("10.1.2.3", "10.1.2.3"));
        assert!(ip_match("::ffff:10.1.2.3", "10.0.0.0/8"));
        assert!(ip_match("2001:db8::1", "2001:db8::/32"));
        assert!(!ip_match("10.1.2.3", "192.168.0.0/16"));
        assert!(!ip_match("", "0.0.0.0/0"));
        assert!(!ip_match("10.1.2.3", "10.0.0.0/99"));
        assert!(!ip_match("10.1.2.3", "bogus"));
    }
}
