//! End-to-end tests: a real CNCF distribution registry 2.8.2 (`docker-registry`) or v3.1.1
//! (`registry-v3`, built by `scripts/tools/install-registry-v3.sh`) with `auth.token` pointed
//! at a `registry-auth serve` child process, driven by real clients
//! (skopeo, podman, the docker CLI and a private dockerd) plus a raw HTTP client.
//!
//! Everything listens on 127.0.0.1 only. Each test owns its temp directory, ports and
//! child processes; every child is killed and reaped when its guard drops. The external tools
//! are installed by `scripts/install-test-deps.sh`; a missing tool fails the test with a message
//! that says so (never a silent skip).
//!
//! Environment:
//! * `REGISTRY_AUTH_IT_BIN=/path/to/binary` runs the suite against another build of the server
//!   (for example a release binary); by default the binary cargo built for this package.
//! * `REGISTRY_AUTH_IT_KEEP=1` keeps each test's temp dir (configs, keys, the server's and the
//!   registry's logs) under /tmp instead of removing it.
//! * `cargo test --test it -- --nocapture` shows every step's outcome table.

// Long `json!` step tables.
#![recursion_limit = "512"]
// Test code: assertions are panics, and unwrap/expect with context is the clearest way to fail.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::print_stdout
)]

mod common;

mod acl_as_code;
mod acl_matrix;
mod bad_input;
mod casbin;
mod client_addr;
mod config_errors;
mod docs;
mod doctor;
mod faults;
mod full_disk;
mod helm;
mod identity_tokens;
mod image;
mod ingress;
mod key_modes;
mod ldap;
mod ldap_identity;
mod lints;
mod log_sink;
mod migration;
mod monitoring;
mod ops;
mod packaging;
mod principals;
mod props;
mod redis_ha;
mod redis_tls;
mod reference_fixture;
mod registry_v3;
mod reload;
mod replicas;
mod robots;
mod rotation;
mod soak;
mod sql;
mod token_endpoint;
mod webhooks;
mod weblogin;
mod weblogin_browser;
mod weblogin_oidc;
mod weblogin_state;
mod weblogin_stores;
