//! A registry-auth server configured with web logins (and optionally a registry and clients),
//! plus the browser-less login walk.

use std::fs;
use std::path::PathBuf;

use super::clients::Clients;
use super::http;
use super::idp::{Answer, Browserless, element_text};
use super::image;
use super::keys::{KeyFiles, KeySetup, yaml_str};
use super::proc::free_port;
use super::registry::{Registry, RegistryKind, RegistrySpec};
use super::server::AuthServer;
use super::stack::{ISSUER, SERVICE, tempdir};

/// The OAuth client of the tests.
pub const CLIENT_ID: &str = "registry-auth-it";
pub const CLIENT_SECRET: &str = "it-client-secret-0123456789";

#[derive(Debug)]
pub struct WebStack {
    pub server: AuthServer,
    pub registry: Option<Registry>,
    pub clients: Option<Clients>,
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

/// Writes the client secret file and returns its path (for `client_secret_file`).
pub fn secret_file(dir: &std::path::Path) -> PathBuf {
    let p = dir.join("client.secret");
    fs::write(&p, format!("{CLIENT_SECRET}\n")).expect("write client secret");
    p
}

impl WebStack {
    /// `sections(dir, registry_addr)` returns the YAML of the web-login sections (and anything
    /// else beyond `token`, `acl`); `acl` is the ACL body. With `registry`, a registry 2.8.2
    /// and skopeo are set up too.
    pub fn start(
        sections: impl FnOnce(&std::path::Path, &str) -> String,
        acl: &str,
        registry: bool,
    ) -> Self {
        // The registry needs the realm (our address) first: pick our port now.
        Self::start_on_port(free_port(), sections, acl, registry)
    }

    /// [`WebStack::start`] on a port chosen by the caller (providers need the callback URL
    /// before the server exists).
    pub fn start_on_port(
        port: u16,
        sections: impl FnOnce(&std::path::Path, &str) -> String,
        acl: &str,
        registry: bool,
    ) -> Self {
        Self::start_full(port, "", sections, acl, registry)
    }

    /// With extra `server:` keys (indented lines).
    pub fn start_full(
        port: u16,
        server_extra: &str,
        sections: impl FnOnce(&std::path::Path, &str) -> String,
        acl: &str,
        registry: bool,
    ) -> Self {
        let kind = registry.then_some(RegistryKind::V2);
        Self::start_with_registry(port, server_extra, sections, acl, kind)
    }

    /// [`WebStack::start_full`] with the registry of `kind` (none for `None`): 2.8.2 with
    /// `kid-libtrust`, v3 with `x5c` and the CA in its `rootcertbundle`.
    pub fn start_with_registry(
        port: u16,
        server_extra: &str,
        sections: impl FnOnce(&std::path::Path, &str) -> String,
        acl: &str,
        kind: Option<RegistryKind>,
    ) -> Self {
        let tmp = tempdir("ra-web");
        let dir = tmp.path().to_path_buf();
        let setup = match kind {
            Some(RegistryKind::V3) => KeySetup::EcLeafX5c,
            _ => KeySetup::EcKid,
        };
        let keys = KeyFiles::write(setup, &dir.join("keys"));
        let addr = format!("127.0.0.1:{port}");
        let registry = kind.map(|kind| {
            Registry::start_kind(
                kind,
                &dir.join("registry"),
                &RegistrySpec {
                    realm: format!("http://{addr}/auth"),
                    service: SERVICE.to_owned(),
                    issuer: ISSUER.to_owned(),
                    rootcertbundle: keys.bundle.clone(),
                },
            )
        });
        let registry_addr = registry
            .as_ref()
            .map_or("registry.example", |r| r.addr.as_str());
        let config = dir.join("registry-auth.yml");
        let yaml = format!(
            "server:\n  addr: \"127.0.0.1:0\"\n{server_extra}token:\n  issuer: {}\n  expiration: 900\n{}{}\nacl:\n{}",
            yaml_str(ISSUER),
            keys.token_yaml(),
            sections(&dir, registry_addr),
            acl
        );
        fs::write(&config, yaml).expect("write config");
        let server = AuthServer::start_on(&config, &dir.join("registry-auth.log"), &addr);
        let clients = registry.as_ref().map(|r| {
            let img = image::build(&dir.join("image"), "latest");
            Clients::new(&dir.join("clients"), &r.addr, img)
        });
        Self {
            server,
            registry,
            clients,
            dir,
            _tmp: tmp,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    pub fn clients(&self) -> &Clients {
        self.clients.as_ref().expect("this stack has no registry")
    }

    /// `GET /auth` with Basic credentials for `scope`.
    pub fn token(&self, user: &str, password: &str, scope: &str) -> http::Response {
        http::get(
            &format!(
                "{}/auth?{}",
                self.base(),
                http::query(&[("service", SERVICE), ("scope", scope)])
            ),
            &[("Authorization", http::basic(user, password))],
        )
    }

    pub fn diagnostics(&self) -> String {
        format!("--- registry-auth log ---\n{}", self.server.log_tail(40))
    }
}

/// A login that went through: the result page and what it shows.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    pub user: String,
    pub password: String,
    pub page: String,
}

/// Starts the login at `base/route`, approves it at the fake provider as `login`, and returns
/// the callback URL the provider sent the browser to (not fetched yet).
pub fn approve_at_fake(b: &mut Browserless, base: &str, route: &str, login: &str) -> String {
    let start = b.get(&format!("{base}/{route}"));
    assert_eq!(start.status, 303, "start of the login: {}", start.body);
    let authorize = start.location.expect("Location of the provider");
    let back = b.approve(&authorize, Some(login));
    assert!(
        matches!(back.status, 302 | 303),
        "the provider did not send the browser back: {} {}",
        back.status,
        back.body
    );
    back.location.expect("callback Location")
}

/// The result page's user and password; panics with the page when it is not a success.
pub fn logged_in(page: &Answer) -> LoggedIn {
    assert_eq!(
        page.status, 200,
        "the login did not succeed:\n{}",
        page.body
    );
    LoggedIn {
        user: element_text(&page.body, "username").expect("user name on the result page"),
        password: element_text(&page.body, "password").expect("password on the result page"),
        page: page.body.clone(),
    }
}

/// A whole login at a fake provider, whatever its outcome: the result page.
pub fn login_page(base: &str, route: &str, login: &str) -> Answer {
    let mut b = Browserless::default();
    let callback = approve_at_fake(&mut b, base, route, login);
    b.get(&callback)
}

/// A whole login at a fake provider that must succeed.
pub fn login_at_fake(base: &str, route: &str, login: &str) -> LoggedIn {
    logged_in(&login_page(base, route, login))
}

/// `POST base/sign_out` for `password` (the result page's button): the page.
pub fn sign_out(base: &str, password: &str) -> Answer {
    Browserless::default().post_form(
        &format!("{base}/sign_out"),
        &[("password".to_owned(), password.to_owned())],
    )
}

/// A whole login at oidc-provider (its interactions are automatic).
pub fn login_at_oidc(base: &str, route: &str) -> Answer {
    let mut b = Browserless::default();
    let start = b.get(&format!("{base}/{route}"));
    assert_eq!(start.status, 303, "start of the login: {}", start.body);
    let callback = b.follow_until(
        &start.location.expect("Location of the provider"),
        &format!("{base}/{route}"),
    );
    b.get(&callback)
}
