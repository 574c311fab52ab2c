//! Prometheus metrics, served at `/metrics` (OpenMetrics text). They live as long as the process:
//! a configuration reload keeps counting.

use std::time::{Duration, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::authn::CacheStats;

/// `route`, `status` of an HTTP request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The matched route (`/auth`, …) or `unmatched`.
    pub route: Route,
    /// HTTP status code.
    pub status: u16,
}

/// The `route` label: axum's matched path (an `Arc<str>` inside, so making a label allocates
/// nothing), or `unmatched`.
#[derive(Debug, Clone)]
pub struct Route(pub Option<axum::extract::MatchedPath>);

impl Route {
    fn as_str(&self) -> &str {
        self.0.as_ref().map_or("unmatched", |m| m.as_str())
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Route {}

impl std::hash::Hash for Route {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl prometheus_client::encoding::EncodeLabelValue for Route {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        self.as_str().encode(encoder)
    }
}

/// `outcome` of a token decision.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `granted`, `partially_denied`, `denied`, `bad_credentials`, `locked_out`.
    pub outcome: &'static str,
}

/// `backend` of an authentication.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    /// Config key of the backend (`users`, `robots`, `ext_auth`, `ldap_auth`, `http_auth`,
    /// `ext_authz`, `http_authz`, …).
    pub backend: &'static str,
}

/// `result` of a configuration reload.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `success` or `failure`.
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// Every metric of the server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests by route and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Token decisions by outcome.
    pub token_decisions: Family<OutcomeLabels, Counter>,
    /// Time spent authenticating, by backend (a cache hit is a few microseconds).
    pub backend_duration: Family<BackendLabels, Histogram>,
    /// Backend failures (authentication and authorization), by backend.
    pub backend_errors: Family<BackendLabels, Counter>,
    /// 1/0: the external backends' state as `/readyz` finds it, set at each scrape.
    pub backend_up: Family<BackendLabels, Gauge>,
    /// Configuration reloads by result.
    pub config_reloads: Family<ResultLabels, Counter>,
    /// Seconds until the signing certificate expires (negative once expired).
    pub certificate_expiry: Gauge,
    /// Credential-cache counters, shared with every authenticator built on reload.
    pub cache: CacheStats,
    /// Held while a scrape replaces `backend_up` and encodes.
    scrape: std::sync::Mutex<()>,
}

/// Exports a process-wide counter kept outside the registry (the bcrypt, store and Casbin
/// counters live in their modules, which know nothing of metrics).
#[derive(Debug)]
struct ProcessCounter {
    name: &'static str,
    help: &'static str,
    read: fn() -> u64,
}

impl Collector for ProcessCounter {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let counter = ConstCounter::new((self.read)());
        let metric =
            encoder.encode_descriptor(self.name, self.help, None, counter.metric_type())?;
        counter.encode(metric)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("registry_auth");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            http_requests.clone(),
        );
        let token_decisions = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "token_decisions",
            "Token requests by outcome (granted, partially_denied, denied, bad_credentials, \
             locked_out)",
            token_decisions.clone(),
        );
        let backend_duration = Family::<BackendLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_01, 4.0, 10))
        });
        registry.register(
            "backend_duration_seconds",
            "Time spent authenticating, by backend",
            backend_duration.clone(),
        );
        let backend_errors = Family::<BackendLabels, Counter>::default();
        registry.register(
            "backend_errors",
            "Backend failures (authentication and authorization), by backend",
            backend_errors.clone(),
        );
        let backend_up = Family::<BackendLabels, Gauge>::default();
        registry.register(
            "backend_up",
            "1 when the external backend's last call or probe reached it, 0 when it failed \
             (absent before the first one), as /readyz shows it",
            backend_up.clone(),
        );
        let config_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads by result",
            config_reloads.clone(),
        );
        let certificate_expiry = Gauge::default();
        registry.register(
            "signing_certificate_expiry_seconds",
            "Seconds until the signing certificate expires",
            certificate_expiry.clone(),
        );
        let cache = CacheStats::default();
        registry.register(
            "credential_cache_hits",
            "Token requests whose credentials were found in the cache",
            cache.hits.clone(),
        );
        registry.register(
            "credential_cache_misses",
            "Token requests whose credentials had to be verified",
            cache.misses.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "Build information", build);
        for counter in [
            ProcessCounter {
                name: "bcrypt_verifications",
                help: "bcrypt password verifications run.",
                read: crate::authn::bcrypt_verifications,
            },
            ProcessCounter {
                name: "store_records_rejected",
                help: "Stored web-login records refused because their authentication check \
                       failed (forged, altered, copied to another id, or written before records \
                       were authenticated).",
                read: crate::store::rejected_records,
            },
            ProcessCounter {
                name: "lockout_store_fallbacks",
                help: "Lockout checks and counts that used this replica's in-memory counters \
                       because the shared store failed.",
                read: super::lockout::store_fallbacks,
            },
            ProcessCounter {
                name: "log_lines_dropped",
                help: "Log lines (audit lines included) dropped because stderr did not keep up \
                       (its queue was full) or could not be written.",
                read: crate::telemetry::lines_dropped,
            },
            ProcessCounter {
                name: "casbin_enforcements",
                help: "Casbin enforcements run by casbin_authz (one per requested action it \
                       could allow).",
                read: crate::authz::casbin_enforcements,
            },
        ] {
            registry.register_collector(Box::new(counter));
        }
        Self {
            registry,
            http_requests,
            token_decisions,
            backend_duration,
            backend_errors,
            backend_up,
            config_reloads,
            certificate_expiry,
            cache,
            scrape: std::sync::Mutex::new(()),
        }
    }

    /// Records the signing certificate's expiry.
    pub fn set_certificate_expiry(&self, not_after: SystemTime, now: SystemTime) {
        let secs = match not_after.duration_since(now) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        };
        self.certificate_expiry.set(secs);
    }

    /// Counts one token decision.
    pub fn decision(&self, outcome: &'static str) {
        self.token_decisions
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Counts one failure of a backend.
    pub fn backend_error(&self, backend: &'static str) {
        self.backend_errors
            .get_or_create(&BackendLabels { backend })
            .inc();
    }

    /// Replaces the `backend_up` series: `Some(true)` = up (1), `Some(false)` = down (0),
    /// `None` = not known yet (no series). Backends gone from the configuration disappear.
    /// Use [`Self::encode_with_backends_up`] at a scrape, so that a concurrent scrape never
    /// sees the family between the clear and the new values.
    pub fn set_backends_up(&self, states: &[(&'static str, Option<bool>)]) {
        self.backend_up.clear();
        for (backend, up) in states {
            if let Some(up) = up {
                self.backend_up
                    .get_or_create(&BackendLabels { backend })
                    .set(i64::from(*up));
            }
        }
    }

    /// Records the time one authentication took.
    pub fn authn_time(&self, backend: &'static str, took: Duration) {
        self.backend_duration
            .get_or_create(&BackendLabels { backend })
            .observe(took.as_secs_f64());
    }

    /// [`Self::set_backends_up`], then [`Self::encode`], one scrape at a time.
    pub fn encode_with_backends_up(
        &self,
        states: &[(&'static str, Option<bool>)],
    ) -> Result<String, std::fmt::Error> {
        let _one_scrape = self
            .scrape
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.set_backends_up(states);
        self.encode()
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// What each metric label means (the generated metrics reference lists it; a test checks that
/// every label the registry exports is here).
pub const LABEL_DOCS: &[(&str, &str)] = &[
    (
        "route",
        "the matched route (`/auth`, `/token`, …) or `unmatched`.",
    ),
    ("status", "the HTTP status code of the answer."),
    (
        "outcome",
        "`granted`, `partially_denied`, `denied`, `bad_credentials` or `locked_out`.",
    ),
    (
        "backend",
        "the config key of the backend (`users`, `robots`, `ext_auth`, `ldap_auth`, \
         `http_auth`, `sql_auth`, `ext_authz`, `http_authz`, `acl_sql`, `store`, …).",
    ),
    (
        "result",
        "`success` or `failure` of a configuration reload.",
    ),
    (
        "version",
        "the version of the running binary (`build_info` is always 1).",
    ),
];

/// The OpenMetrics text exposition of a fresh registry with one sample in every labelled
/// family, so each metric shows its labels: what the generated metrics reference
/// (`crate::docs`) is read from.
pub fn sample_exposition() -> String {
    let m = Metrics::new();
    m.http_requests
        .get_or_create(&HttpLabels {
            route: Route(None),
            status: 200,
        })
        .inc();
    m.decision("granted");
    m.backend_error("users");
    m.set_backends_up(&[("ldap_auth", Some(true))]);
    m.authn_time("users", Duration::ZERO);
    m.config_reloads
        .get_or_create(&ResultLabels { result: "success" })
        .inc();
    m.encode().unwrap_or_default()
}
