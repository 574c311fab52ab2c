//! Property tests (proptest) of the security-relevant invariants, through the library's public
//! API (no server, no sockets; a few seconds):
//!
//! * scope text: parse → print → parse is the identity (and printing is stable);
//! * the ACL never grants an action that was not requested, nor one the deciding entry does not
//!   list (random ACLs from a small grammar of realistic patterns, random requests);
//! * a token's `access` claim is exactly the grant it was issued for, and a token issued through
//!   the whole request path (`grant::grant`) never carries more than the request asked for and
//!   the ACL decided;
//! * decisions do not depend on how scopes are ordered, duplicated or split across parameters
//!   (`parse_scopes` merges duplicates): a denied scope stays denied.
//!
//! `PROPTEST_CASES=N` changes the number of cases (default 256 per property).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use registry_auth::authn::{Credentials, Labels, Secret};
use registry_auth::authz::{Acl, AclDecision, AuthzRequest};
use registry_auth::config::file::{AclEntrySpec, MatchSpec};
use registry_auth::config::{self, Config};
use registry_auth::grant::{self, GrantOutcome, TokenRequest};
use registry_auth::token::{
    Grant, HeaderMode, KeyKind, Scope, SigningKey, TokenIssuer, generate_self_signed, parse_scopes,
    write_key_files,
};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Strategies

const ACTIONS: &[&str] = &["pull", "push", "delete", "*"];

/// A resource type, optionally with a (class) that the parser drops.
fn scope_type() -> impl Strategy<Value = (String, String)> {
    (
        prop_oneof![
            Just("repository".to_owned()),
            Just("registry".to_owned()),
            "[a-z0-9]{1,10}"
        ],
        prop::option::of("[a-z0-9]{1,8}"),
    )
        .prop_map(|(kind, class)| {
            let text = match &class {
                Some(c) => format!("{kind}({c})"),
                None => kind.clone(),
            };
            (kind, text)
        })
}

/// Resource names: realistic ones, ones with `host:port/`, and arbitrary printable text
/// without whitespace (colons included).
fn scope_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]{1,8}(/[a-z0-9._-]{1,8}){0,3}",
        "(localhost|registry\\.example\\.com):[0-9]{1,5}/[a-z]{1,6}/[a-z]{1,6}",
        "[^\\s\\p{Cc}]{1,40}",
    ]
}

/// Action lists as clients write them: known actions, other words, empty pieces.
fn scope_actions() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(ACTIONS).prop_map(str::to_owned),
            1 => "[a-z]{1,8}",
            1 => Just(String::new()),
        ],
        0..5,
    )
}

fn scope_text() -> impl Strategy<Value = String> {
    (scope_type(), scope_name(), scope_actions())
        .prop_map(|((_, ty), name, actions)| format!("{ty}:{name}:{}", actions.join(",")))
}

const NAMES: &[&str] = &[
    "alice/app",
    "alice/team/app",
    "alice",
    "bob/app",
    "public/app",
    "public/x/y",
    "catalog",
    "localhost:5000/alice/app",
    "team-a/tool",
    "a*/app",
];
const ACCOUNTS: &[&str] = &["", "alice", "bob", "a*", "alice.x", "robot"];

/// A request's scope text over a small universe, so ACL patterns actually hit.
fn realistic_scope() -> impl Strategy<Value = String> {
    (
        prop::sample::select(&["repository", "registry", "repository(plugin)"][..]),
        prop::sample::select(NAMES),
        prop::collection::vec(prop::sample::select(ACTIONS), 0..4),
    )
        .prop_map(|(ty, name, actions)| format!("{ty}:{name}:{}", actions.join(",")))
}

/// One ACL entry from a grammar of the patterns people write.
fn acl_entry() -> impl Strategy<Value = AclEntrySpec> {
    let account = prop::option::of(prop::sample::select(
        &[
            "",
            "alice",
            "bob",
            "/.+/",
            "/^a.*$/",
            "*",
            "a?ice",
            "${labels:owner}",
        ][..],
    ));
    let kind = prop::option::of(prop::sample::select(
        &["repository", "registry", "*", "/^repo/"][..],
    ));
    let name = prop::option::of(prop::sample::select(
        &[
            "${account}/**",
            "${account}/*",
            "${account}",
            "public/*",
            "public/**",
            "**",
            "*",
            "catalog",
            "/^(.+)\\/app$/",
            "/^alice\\//",
            "${labels:project}/*",
            "team-?/**",
            "[a-c]*/app",
            "localhost:5000/**",
            "\\a*/app",
        ][..],
    ));
    let service = prop::option::of(prop::sample::select(&["registry", "*", "other"][..]));
    let ip = prop::option::of(prop::sample::select(
        &["127.0.0.1", "10.0.0.0/8", "::1", "192.0.2.0/24", "::/0"][..],
    ));
    let labels = prop::collection::btree_map(
        prop::sample::select(&["team", "owner"][..]).prop_map(str::to_owned),
        prop::sample::select(&["dev", "ops", "${account}", "*"][..]).prop_map(str::to_owned),
        0..2,
    );
    let actions = prop_oneof![
        Just(vec!["*".to_owned()]),
        Just(Vec::new()),
        prop::collection::vec(prop::sample::select(ACTIONS).prop_map(str::to_owned), 1..4),
    ];
    (account, kind, name, service, ip, labels, actions).prop_map(
        |(account, kind, name, service, ip, labels, actions)| AclEntrySpec {
            matches: MatchSpec {
                account: account.map(str::to_owned),
                kind: kind.map(str::to_owned),
                name: name.map(str::to_owned),
                service: service.map(str::to_owned),
                ip: ip.map(str::to_owned),
                labels,
                source: None,
            },
            actions,
            comment: None,
        },
    )
}

fn acl_specs() -> impl Strategy<Value = Vec<AclEntrySpec>> {
    prop::collection::vec(acl_entry(), 0..7)
}

/// Who asks, from where, with which labels.
#[derive(Debug, Clone)]
struct Who {
    account: String,
    service: String,
    ip: Option<IpAddr>,
    labels: Labels,
}

fn who() -> impl Strategy<Value = Who> {
    let ip = prop::option::of(
        prop::sample::select(
            &[
                "127.0.0.1",
                "10.1.2.3",
                "::1",
                "192.0.2.9",
                "::ffff:10.0.0.1",
            ][..],
        )
        .prop_map(|s| s.parse::<IpAddr>().expect("literal IP")),
    );
    let labels = prop::collection::btree_map(
        prop::sample::select(&["team", "owner", "project"][..]).prop_map(str::to_owned),
        prop::collection::vec(
            prop::sample::select(&["dev", "ops", "alice", "public", "team-*"][..])
                .prop_map(str::to_owned),
            0..3,
        ),
        0..3,
    );
    (
        prop::sample::select(ACCOUNTS),
        prop::sample::select(&["registry", "other"][..]),
        ip,
        labels,
    )
        .prop_map(|(account, service, ip, labels)| Who {
            account: account.to_owned(),
            service: service.to_owned(),
            ip,
            labels: Labels(labels),
        })
}

fn compile(specs: &[AclEntrySpec]) -> Acl {
    Acl::compile(specs).unwrap_or_else(|e| panic!("the grammar made an invalid ACL: {e:?}"))
}

// ---------------------------------------------------------------------------------------------
// Signing and a base configuration (parsed once; each case swaps in its own ACL)

struct Fixture {
    _dir: tempfile::TempDir,
    config: Config,
    issuer: TokenIssuer,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temp dir");
    let generated = generate_self_signed(KeyKind::EcP256, "props", 30).expect("key");
    let key_path = dir.path().join("token.key");
    let cert_path = dir.path().join("token.crt");
    write_key_files(&generated, &key_path, &cert_path).expect("key files");
    let key = Arc::new(
        SigningKey::from_pem(generated.cert_pem.as_bytes(), generated.key_pem.as_bytes())
            .expect("signing key"),
    );
    // Anonymous, and alice with a cost-4 hash (fast in debug builds).
    let hash = bcrypt::hash("alicepass", 4).expect("bcrypt");
    let yaml = format!(
        "token: {{issuer: props, certificate: token.crt, key: token.key}}\n\
         users:\n  \"\": {{}}\n  alice: {{password: \"{hash}\", labels: {{team: [dev], owner: [alice]}}}}\n\
         acl: []\n"
    );
    let config = config::parse(&yaml, &dir.path().join("config.yml"))
        .unwrap_or_else(|e| panic!("base config: {e}"));
    let issuer = TokenIssuer::new(
        "props".to_owned(),
        Duration::from_secs(300),
        key,
        HeaderMode::KidLibtrust,
    );
    Fixture {
        _dir: dir,
        config,
        issuer,
    }
});

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("three segments");
    let bytes = URL_SAFE_NO_PAD.decode(payload).expect("base64url claims");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// `access` as (type, name) → actions, checking each resource appears once.
fn access_map(claims: &Value) -> BTreeMap<(String, String), Vec<String>> {
    let mut out = BTreeMap::new();
    for item in claims["access"].as_array().expect("access is an array") {
        let key = (
            item["type"].as_str().expect("type").to_owned(),
            item["name"].as_str().expect("name").to_owned(),
        );
        let actions: Vec<String> = item["actions"]
            .as_array()
            .expect("actions is an array")
            .iter()
            .map(|a| a.as_str().expect("action is a string").to_owned())
            .collect();
        assert!(
            out.insert(key.clone(), actions).is_none(),
            "{key:?} twice in access"
        );
    }
    out
}

/// Decisions keyed by resource (order-independent).
fn decisions(
    acl: &Acl,
    who: &Who,
    scopes: &[Scope],
) -> BTreeMap<(String, String), (Vec<String>, Vec<String>)> {
    let identity = registry_auth::authn::Identity {
        account: who.account.clone(),
        labels: who.labels.clone(),
        kind: registry_auth::authn::IdentityKind::User,
        fingerprint: None,
    };
    grant::authorize_scopes(acl, &identity, true, &who.service, who.ip, scopes)
        .into_iter()
        .map(|d| {
            (
                (d.scope.kind.clone(), d.scope.name.clone()),
                (d.scope.actions.clone(), d.granted),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    /// parse → print → parse is the identity, for one scope and for lists.
    #[test]
    fn scope_round_trip(text in scope_text()) {
        let scope: Scope = text.parse().map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        let printed = scope.to_string();
        let again: Scope = printed
            .parse()
            .map_err(|e| TestCaseError::fail(format!("{printed:?} (from {text:?}): {e}")))?;
        prop_assert_eq!(&again, &scope);
        prop_assert_eq!(&again.to_string(), &printed);
        prop_assert_eq!(parse_scopes([text.as_str()]), Ok(vec![scope.clone()]));
        prop_assert_eq!(parse_scopes([printed.as_str()]), Ok(vec![scope]));
    }

    /// Whatever text parses (random printable strings included) round-trips.
    #[test]
    fn any_parsed_scope_round_trips(text in "[ -~]{0,40}|\\PC{0,40}") {
        if let Ok(list) = parse_scopes([text.as_str()]) {
            let printed: Vec<String> = list.iter().map(ToString::to_string).collect();
            let printed = printed.join(" ");
            prop_assert_eq!(parse_scopes([printed.as_str()]), Ok(list));
        }
    }

    /// The ACL never grants an action that was not requested, nor one the deciding entry does
    /// not list (unless it lists `*`), and decides the same way every time.
    #[test]
    fn acl_never_grants_unrequested(
        specs in acl_specs(),
        who in who(),
        scopes in prop::collection::vec(realistic_scope(), 1..6),
    ) {
        let acl = compile(&specs);
        let scopes = parse_scopes(scopes.iter().map(String::as_str)).expect("grammar scopes parse");
        for scope in &scopes {
            let req = AuthzRequest {
                account: &who.account,
                source: "users",
                unqualified: true,
                kind: &scope.kind,
                name: &scope.name,
                service: &who.service,
                ip: who.ip,
                labels: &who.labels,
                actions: &scope.actions,
            };
            let decision = acl.authorize(&req);
            prop_assert_eq!(&decision, &acl.authorize(&req));
            if let AclDecision::Matched { entry, granted } = decision {
                prop_assert!(entry < specs.len());
                for g in &granted {
                    prop_assert!(scope.actions.contains(g), "granted {} not requested in {}", g, scope);
                    let listed = &specs[entry].actions;
                    prop_assert!(
                        listed.contains(g) || listed.iter().any(|a| a == "*"),
                        "granted {} not listed by acl[{}] {:?}", g, entry, listed
                    );
                }
            }
        }
    }

    /// A token carries exactly the grants it was issued for (never more), in order.
    #[test]
    fn token_access_is_the_grant(
        grants in prop::collection::vec(
            (
                prop::sample::select(&["repository", "registry"][..]),
                scope_name(),
                prop::collection::btree_set(prop::sample::select(ACTIONS), 0..4),
            ),
            0..8,
        ),
        subject in prop::sample::select(ACCOUNTS),
    ) {
        let fx = &*FIXTURE;
        let grants: Vec<Grant> = grants
            .into_iter()
            .map(|(kind, name, actions)| Grant {
                kind: kind.to_owned(),
                name,
                actions: actions.into_iter().map(str::to_owned).collect(),
            })
            .collect();
        let token = fx
            .issuer
            .issue(subject, "registry", &grants, SystemTime::now())
            .expect("issue");
        let c = claims(&token.token);
        prop_assert_eq!(c["sub"].as_str(), Some(subject));
        let access = c["access"].as_array().expect("access array");
        prop_assert_eq!(access.len(), grants.len());
        for (item, g) in access.iter().zip(&grants) {
            prop_assert_eq!(item["type"].as_str(), Some(g.kind.as_str()));
            prop_assert_eq!(item["name"].as_str(), Some(g.name.as_str()));
            let actions: Vec<&str> = item["actions"]
                .as_array()
                .expect("actions")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            prop_assert_eq!(actions, g.actions.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }

    /// Through the whole request path (`grant::grant`, anonymous or alice): the token's access
    /// lists every requested resource once, with actions ⊆ requested ∩ the ACL's decision.
    #[test]
    fn issued_token_never_exceeds_request_or_acl(
        specs in acl_specs(),
        scopes in prop::collection::vec(realistic_scope(), 0..6),
        as_alice in any::<bool>(),
        ip in prop::option::of(prop::sample::select(&["127.0.0.1", "10.1.2.3", "::1"][..])),
    ) {
        let fx = &*FIXTURE;
        let mut config = fx.config.clone();
        config.acl = Arc::new(compile(&specs));
        config.acl_entries = specs;
        let scopes = parse_scopes(scopes.iter().map(String::as_str)).expect("grammar scopes parse");
        let credentials = if as_alice {
            Credentials { account: "alice".to_owned(), password: Secret::new("alicepass") }
        } else {
            Credentials::anonymous()
        };
        let ip = ip.map(|s| s.parse::<IpAddr>().expect("literal IP"));
        let request = TokenRequest {
            service: "registry".to_owned(),
            scopes: scopes.clone(),
            credentials: credentials.clone(),
            ip,
            offline: false,
        };
        let outcome = grant::grant(&config, &fx.issuer, &request, SystemTime::now()).expect("grant");
        let GrantOutcome::Issued { token, decisions: ds, .. } = outcome else {
            return Err(TestCaseError::fail("anonymous and alice are both configured"));
        };
        let access = access_map(&claims(&token.token));
        prop_assert_eq!(access.len(), scopes.len());
        let labels = config
            .authn
            .lookup(&credentials.account, SystemTime::now())
            .map(|i| i.labels)
            .unwrap_or_default();
        let who = Who {
            account: credentials.account,
            service: "registry".to_owned(),
            ip,
            labels,
        };
        let expected = decisions(&config.acl, &who, &scopes);
        prop_assert_eq!(ds.len(), scopes.len());
        for scope in &scopes {
            let key = (scope.kind.clone(), scope.name.clone());
            let got = access.get(&key).ok_or_else(|| TestCaseError::fail(format!("{scope} missing from access")))?;
            let (_, acl_granted) = &expected[&key];
            for a in got {
                prop_assert!(scope.actions.contains(a), "{} granted but not requested in {}", a, scope);
                prop_assert!(acl_granted.contains(a), "{} in the token but the ACL decided {:?}", a, acl_granted);
            }
            prop_assert_eq!(got, acl_granted);
        }
    }

    /// Shuffling, duplicating and splitting scope strings (and spreading them over several
    /// parameters) changes neither the merged scopes nor any decision: denied stays denied.
    #[test]
    fn decisions_ignore_order_and_duplicates(
        specs in acl_specs(),
        who in who(),
        scopes in prop::collection::vec(realistic_scope(), 1..6),
        dups in prop::collection::vec(0usize..6, 0..8),
        seed in any::<u64>(),
        split in any::<bool>(),
        one_param in any::<bool>(),
    ) {
        let acl = compile(&specs);
        let base = parse_scopes(scopes.iter().map(String::as_str)).expect("grammar scopes parse");
        let d1 = decisions(&acl, &who, &base);

        // Same requests, reordered, some repeated, some split into one scope per action.
        let mut variant: Vec<String> = scopes.clone();
        for i in dups {
            variant.push(scopes[i % scopes.len()].clone());
        }
        if split {
            variant = variant
                .iter()
                .flat_map(|s| {
                    let (head, actions) = s.rsplit_once(':').expect("scope has a colon");
                    let mut parts: Vec<String> =
                        actions.split(',').map(|a| format!("{head}:{a}")).collect();
                    parts.push(format!("{head}:"));
                    parts
                })
                .collect();
        }
        shuffle(&mut variant, seed);
        let reparsed = if one_param {
            let joined = variant.join(" ");
            parse_scopes([joined.as_str()])
        } else {
            parse_scopes(variant.iter().map(String::as_str))
        };
        let reparsed = reparsed.expect("variant parses");
        let as_set = |v: &[Scope]| v.iter().map(ToString::to_string).collect::<BTreeSet<_>>();
        prop_assert_eq!(as_set(&base), as_set(&reparsed));
        let d2 = decisions(&acl, &who, &reparsed);
        prop_assert_eq!(&d1, &d2);
        for (key, (_, granted)) in &d1 {
            if granted.is_empty() {
                prop_assert!(d2[key].1.is_empty(), "{:?} was denied, now {:?}", key, d2[key].1);
            }
        }
    }
}

/// Deterministic Fisher–Yates (xorshift), so a failing case reproduces from its seed.
fn shuffle<T>(v: &mut [T], mut seed: u64) {
    seed |= 1;
    for i in (1..v.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let j = usize::try_from(seed % (i as u64 + 1)).unwrap_or(0);
        v.swap(i, j);
    }
}

// ---------------------------------------------------------------------------------------------
// Fixed inputs (fuzz regressions and boundary cases)

/// Scope text at the documented limits.
#[test]
fn scope_limits() {
    let name = "a".repeat(registry_auth::token::scope::MAX_NAME_LEN);
    let at_limit = format!("repository:{name}:pull");
    assert!(parse_scopes([at_limit.as_str()]).is_ok());
    let over = format!("repository:{name}a:pull");
    assert!(parse_scopes([over.as_str()]).is_err());
    let many = vec!["repository:a:pull"; registry_auth::token::scope::MAX_SCOPES];
    assert_eq!(parse_scopes(many.iter().copied()).map(|v| v.len()), Ok(1));
    let too_many = vec!["repository:a:pull"; registry_auth::token::scope::MAX_SCOPES + 1];
    assert!(parse_scopes(too_many.iter().copied()).is_err());
}
