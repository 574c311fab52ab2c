//! A deliberately small HTTP/1.1 client over `TcpStream` (loopback only, plain HTTP), and the
//! Docker token flow on top of it: request, 401 Bearer challenge, `GET realm?service=&scope=`
//! with Basic auth, retry with the Bearer token.

use std::fmt;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

#[derive(Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): status {} body {:?}",
                self.status,
                self.text()
            )
        })
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut body = self.text();
        if body.len() > 600 {
            body.truncate(600);
            body.push('…');
        }
        write!(f, "HTTP {}", self.status)?;
        for (k, v) in &self.headers {
            if k.eq_ignore_ascii_case("www-authenticate") || k.eq_ignore_ascii_case("content-type")
            {
                write!(f, "\n      {k}: {v}")?;
            }
        }
        write!(f, "\n      body: {body}")
    }
}

/// Percent-encodes a query component (RFC 3986 unreserved characters pass through).
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn query(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// Splits `http://host:port/path?q` into (`host:port`, `/path?q`).
fn split_url(url: &str) -> (String, String) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("only http:// URLs are supported here, got {url}"));
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    assert!(
        hostport.starts_with("127.0.0.1:") || hostport.starts_with("localhost:"),
        "tests only talk to loopback, got {url}"
    );
    (hostport.to_owned(), path.to_owned())
}

pub fn request(method: &str, url: &str, headers: &[(&str, String)]) -> Response {
    try_request(method, url, headers).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

pub fn get(url: &str, headers: &[(&str, String)]) -> Response {
    request("GET", url, headers)
}

/// `POST url` with an `application/x-www-form-urlencoded` body from `form`, plus `headers`.
pub fn post_form(url: &str, form: &[(&str, &str)], headers: &[(&str, String)]) -> Response {
    let mut h = headers.to_vec();
    h.push((
        "Content-Type",
        "application/x-www-form-urlencoded".to_owned(),
    ));
    try_request_with_body("POST", url, &h, query(form).as_bytes())
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

pub fn try_request(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
) -> std::io::Result<Response> {
    try_request_with_body(method, url, headers, b"")
}

/// A request with `body` (its `Content-Length` is added for any method but GET and HEAD).
pub fn try_request_with_body(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<Response> {
    let (hostport, path) = split_url(url);
    let mut stream = TcpStream::connect(&hostport)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\nUser-Agent: registry-auth-it\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method != "GET" && method != "HEAD" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut req = req.into_bytes();
    req.extend_from_slice(body);
    stream.write_all(&req)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw, method == "HEAD")
}

/// `POST url` with a raw form body (`application/x-www-form-urlencoded`), sent as given.
pub fn post_raw_form(url: &str, body: &str) -> Response {
    let (hostport, path) = split_url(url);
    let mut stream = TcpStream::connect(&hostport).unwrap_or_else(|e| panic!("POST {url}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(req.as_bytes())
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    parse_response(&raw, false).unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

fn invalid(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

fn parse_response(raw: &[u8], head: bool) -> std::io::Result<Response> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid(format!("no header terminator in {} bytes", raw.len())))?;
    let head_text = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head_text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    if head {
        body.clear();
    } else if chunked {
        body = dechunk(&body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| invalid("truncated chunk size"))?;
        let size_text = String::from_utf8_lossy(&data[..nl]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| invalid(format!("bad chunk size {size_text:?}")))?;
        data = &data[nl + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            return Err(invalid("truncated chunk"));
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

/// `Bearer realm="x",service="y",scope="a b",error="e"` → ("bearer", params).
pub fn parse_www_authenticate(value: &str) -> (String, Vec<(String, String)>) {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() || chars.next().is_none() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            val.push(n);
                        }
                    }
                    '"' => break,
                    _ => val.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                val.push(c);
                chars.next();
            }
        }
        params.push((key.trim().to_ascii_lowercase(), val));
    }
    (scheme.to_ascii_lowercase(), params)
}

pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The answer of the token endpoint.
#[derive(Debug, Clone)]
pub struct TokenResponse {
    pub url: String,
    pub response: Response,
    /// `token` (or `access_token`) of a 200 answer.
    pub token: Option<String>,
}

/// `GET realm?service=…&scope=…` (one `scope` per entry) with optional Basic credentials.
pub fn fetch_token(
    realm: &str,
    service: Option<&str>,
    scopes: &[&str],
    creds: Option<(&str, &str)>,
    extra: &[(&str, &str)],
) -> TokenResponse {
    let mut params: Vec<(&str, &str)> = Vec::new();
    if let Some((user, _)) = creds {
        params.push(("account", user));
    }
    if let Some(s) = service {
        params.push(("service", s));
    }
    for s in scopes {
        params.push(("scope", s));
    }
    params.extend_from_slice(extra);
    let q = query(&params);
    let url = if q.is_empty() {
        realm.to_owned()
    } else if realm.contains('?') {
        format!("{realm}&{q}")
    } else {
        format!("{realm}?{q}")
    };
    let mut headers = Vec::new();
    if let Some((u, p)) = creds {
        headers.push(("Authorization", basic(u, p)));
    }
    let response = get(&url, &headers);
    let token = (response.status == 200)
        .then(|| {
            let j = response.json();
            j.get("token")
                .or_else(|| j.get("access_token"))
                .and_then(|t| t.as_str())
                .map(str::to_owned)
        })
        .flatten();
    TokenResponse {
        url,
        response,
        token,
    }
}

/// What happened along the token flow of [`authed_request`].
#[derive(Debug, Clone, Default)]
pub struct FlowInfo {
    pub challenge: Option<String>,
    pub token: Option<TokenResponse>,
    pub challenge2: Option<String>,
}

/// Does what a client does: try; on a 401 Bearer challenge fetch a token for the challenged
/// scope from the realm; retry once with it.
pub fn authed_request(
    method: &str,
    url: &str,
    creds: Option<(&str, &str)>,
) -> (Response, FlowInfo) {
    let mut info = FlowInfo::default();
    let r = request(method, url, &[]);
    if r.status != 401 {
        return (r, info);
    }
    let chal = r.header("WWW-Authenticate").unwrap_or_default().to_owned();
    info.challenge = Some(chal.clone());
    let (scheme, params) = parse_www_authenticate(&chal);
    if scheme != "bearer" {
        return (r, info);
    }
    let realm = param(&params, "realm").expect("challenge without realm");
    let scopes: Vec<&str> = param(&params, "scope")
        .map(|s| s.split(' ').filter(|x| !x.is_empty()).collect())
        .unwrap_or_default();
    let tr = fetch_token(realm, param(&params, "service"), &scopes, creds, &[]);
    let Some(tok) = tr.token.clone() else {
        let resp = tr.response.clone();
        info.token = Some(tr);
        return (resp, info);
    };
    info.token = Some(tr);
    let r2 = request(method, url, &[("Authorization", format!("Bearer {tok}"))]);
    if r2.status == 401 {
        info.challenge2 = r2.header("WWW-Authenticate").map(str::to_owned);
    }
    (r2, info)
}
