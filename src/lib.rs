//! registry-auth: a token-authentication server for container registries.
//!
//! A stock registry (CNCF distribution 2.x/3.x, zot) answers unauthenticated clients with a
//! `WWW-Authenticate: Bearer realm=…` challenge. The client asks this server for a token; we
//! authenticate it, evaluate the ACL for every requested scope and sign a JWT carrying the granted
//! actions, which the registry verifies against its `rootcertbundle`.
//!
//! # Layering
//!
//! ```text
//! main.rs / cli.rs        ──▶ config, server, token (key generation), authz (explain), policy,
//!                             doctor, grant + authn (the doctor's probe token)
//! docs (generated pages)  ──▶ config (schema), cli (clap), server::metrics (registry)
//! server/  (HTTP only)    ──▶ authn, authz, token, config, policy::audit (the audit line)
//! policy/  (acl test, replay, diff) ──▶ authz, config, grant; pure, unit-tested
//! authn, authz, token     ──▶ config::file types only; pure, no HTTP, unit-tested
//! doctor/ (diagnosis)     ──▶ token (header modes); pure: findings from observations
//! ```
//!
//! `registry-auth doctor` probes a registry over HTTP from the binary's `commands::doctor`
//! (a client, like `healthcheck`); what it saw is judged by the pure functions of [`doctor`].
//!
//! Identity: every decision is about one principal, a source and its canonical account there
//! (`authn::Identity`, `authn::principal`); client values are data, never patterns.
//!
//! Only `server/` knows HTTP. Deny decisions are outcomes (`AuthnOutcome`, `AclDecision`), never
//! errors; errors mean "could not service the request" and map to HTTP in exactly one place
//! (`server::error`).

pub mod authn;
pub mod authz;
pub mod breaker;
pub mod cli;
pub mod client_tls;
pub mod config;
pub mod docs;
pub mod doctor;
pub mod ext;
pub mod files;
pub mod grant;
pub mod health;
pub mod oidc;
pub mod policy;
pub mod server;
pub mod sql;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod token;
pub mod webhook;
pub mod weblogin;
