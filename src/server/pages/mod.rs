//! The server-rendered pages of the web logins: the index (which logins exist), the result (the
//! minted password and the login commands), sign-out and error pages.
//!
//! Small, readable and accessible: semantic HTML (`lang`, one `h1`, landmarks, labelled
//! controls), good contrast, no JavaScript and no external resource. The only style sheet is
//! inline and allowed by its hash in the Content-Security-Policy.

use std::fmt::Write as _;
use std::sync::LazyLock;

use aws_lc_rs::digest;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::authn::Labels;

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:46rem;\
margin:2rem auto;padding:0 1rem;line-height:1.5;color:#1a1a1a;background:#fff}\
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem}\
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}\
pre{background:#f3f3f3;border:1px solid #c8c8c8;padding:.75rem;overflow-x:auto;\
white-space:pre-wrap;overflow-wrap:anywhere}\
.secret{font-size:1.1rem;background:#fff8d6;border-color:#8a6d00}\
a{color:#0b57d0}a:focus,button:focus{outline:3px solid #0b57d0;outline-offset:2px}\
ul.logins{list-style:none;padding:0}ul.logins li{margin:.5rem 0}\
ul.logins a{display:inline-block;padding:.6rem 1rem;border:2px solid #0b57d0;\
border-radius:.4rem;text-decoration:none;font-weight:600}\
button{font:inherit;padding:.5rem 1rem;border:2px solid #a50e0e;color:#a50e0e;\
background:#fff;border-radius:.4rem;cursor:pointer}\
.note{color:#444}.error{border-left:4px solid #a50e0e;padding-left:1rem}";

static STYLE_HASH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "'sha256-{}'",
        STANDARD.encode(digest::digest(&digest::SHA256, STYLE.as_bytes()).as_ref())
    )
});

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Quotes a value for a POSIX shell (single quotes).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A whole page with the security headers every page gets.
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n<title>{} · registry-auth</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}</main>\n</body>\n</html>\n",
        escape(title)
    );
    let mut response = (status, html).into_response();
    security_headers(response.headers_mut());
    response
}

/// `Content-Type`, no caching (pages may hold a password), and a strict CSP.
fn security_headers(h: &mut HeaderMap) {
    let csp = format!(
        "default-src 'none'; style-src {}; form-action 'self'; frame-ancestors 'none'; \
         base-uri 'none'",
        *STYLE_HASH
    );
    let set = |h: &mut HeaderMap, name, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    set(h, header::CONTENT_TYPE, "text/html; charset=utf-8");
    set(h, header::CACHE_CONTROL, "no-store");
    set(h, header::PRAGMA, "no-cache");
    set(h, header::CONTENT_SECURITY_POLICY, &csp);
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
}

/// One login on the index page.
#[derive(Debug)]
pub struct LoginLink<'a> {
    /// The route (absolute path).
    pub href: String,
    /// "GitHub", "Google", …
    pub title: &'a str,
}

/// The index: the configured logins.
pub fn index(issuer: &str, links: &[LoginLink<'_>]) -> Response {
    let mut body = format!(
        "<h1>Registry sign-in</h1>\n<p>Sign in to get a password for <code>docker login</code> \
         (issued by {}).</p>\n",
        escape(issuer)
    );
    if links.is_empty() {
        body.push_str("<p>No web sign-in is configured on this server.</p>\n");
    } else {
        body.push_str("<nav aria-label=\"Sign-in options\">\n<ul class=\"logins\">\n");
        for l in links {
            let _ = writeln!(
                body,
                "<li><a href=\"{}\">Sign in with {}</a></li>",
                escape(&l.href),
                escape(l.title)
            );
        }
        body.push_str("</ul>\n</nav>\n");
    }
    page(StatusCode::OK, "Sign in", &body)
}

/// The index of a server without web logins (docker_auth answers `/` with its name too).
pub fn server_index(issuer: &str, token_path: &str) -> Response {
    let body = format!(
        "<h1>{}</h1>\n<p>A token server for a container registry. Registry clients get their \
         tokens from <code>{}</code>; there is nothing to sign in to here.</p>\n",
        escape(issuer),
        escape(token_path)
    );
    page(StatusCode::OK, "Registry token server", &body)
}

/// What the result page shows.
#[derive(Debug)]
pub struct ResultPage<'a> {
    /// The provider's name.
    pub provider: &'a str,
    /// The account name.
    pub user: &'a str,
    /// The minted password.
    pub password: &'a str,
    /// Expiry, RFC 3339.
    pub expires: &'a str,
    /// Validity in words ("30 days").
    pub valid_for: &'a str,
    /// The registry's address, when configured.
    pub registry: Option<&'a str>,
    /// The labels.
    pub labels: &'a Labels,
    /// The sign-out form's action.
    pub sign_out: &'a str,
}

/// The result page: the password and the commands.
pub fn result(r: &ResultPage<'_>) -> Response {
    let registry = r.registry.unwrap_or("REGISTRY");
    let mut body = format!(
        "<h1>Signed in as {user}</h1>\n<p>Signed in with {provider}. Your registry password \
         (shown once; it is valid until {expires}, {valid}):</p>\n\
         <pre class=\"secret\" aria-label=\"Registry password\"><code id=\"password\">{pw}</code></pre>\n\
         <p>User name: <code id=\"username\">{user}</code></p>\n",
        user = escape(r.user),
        provider = escape(r.provider),
        expires = escape(r.expires),
        valid = escape(r.valid_for),
        pw = escape(r.password),
    );
    if !r.labels.is_empty() {
        body.push_str("<p>Your access is based on:</p>\n<ul>\n");
        for (k, values) in &r.labels.0 {
            let _ = writeln!(
                body,
                "<li>{}: {}</li>",
                escape(k),
                escape(&values.join(", "))
            );
        }
        body.push_str("</ul>\n");
    }
    body.push_str("<h2>Log in</h2>\n");
    if r.registry.is_none() {
        body.push_str(
            "<p class=\"note\">Replace <code>REGISTRY</code> with your registry's address.</p>\n",
        );
    }
    for tool in ["docker", "podman", "nerdctl"] {
        let _ = writeln!(
            body,
            "<p>With {tool}:</p>\n<pre><code>printf '%s\\n' {pw} | {tool} login --username {user} --password-stdin {reg}</code></pre>",
            pw = escape(&shell_quote(r.password)),
            user = escape(&shell_quote(r.user)),
            reg = escape(&shell_quote(registry)),
        );
    }
    let _ = write!(
        body,
        "<h2>Sign out</h2>\n<p>Signing out revokes this password at once.</p>\n\
         <form method=\"post\" action=\"{action}\">\n\
         <input type=\"hidden\" name=\"password\" value=\"{pw}\">\n\
         <button type=\"submit\">Sign out and revoke this password</button>\n</form>\n",
        action = escape(r.sign_out),
        pw = escape(r.password),
    );
    page(StatusCode::OK, "Signed in", &body)
}

/// After signing out.
pub fn signed_out(revoked: bool, index: &str) -> Response {
    let body = format!(
        "<h1>Signed out</h1>\n<p>{}</p>\n<p><a href=\"{}\">Sign in again</a></p>\n",
        if revoked {
            "The password has been revoked: it no longer works."
        } else {
            "That password was not valid any more (already revoked or expired)."
        },
        escape(index)
    );
    page(StatusCode::OK, "Signed out", &body)
}

/// An error page.
pub fn error(status: StatusCode, heading: &str, message: &str, index: &str) -> Response {
    let body = format!(
        "<h1>{}</h1>\n<p class=\"error\" role=\"alert\">{}</p>\n<p><a href=\"{}\">Back to sign-in</a></p>\n",
        escape(heading),
        escape(message),
        escape(index)
    );
    page(status, heading, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_quoting() {
        assert_eq!(
            escape("<a href=\"x\">'&"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
        assert_eq!(shell_quote("alice"), "alice");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn pages_carry_the_security_headers_and_the_style_hash() {
        let r = index("issuer", &[]);
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("default-src 'none'"));
        assert!(csp.contains("'sha256-"));
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    }
}
