//! The audit line of a token decision: its fields (a stable format, version [`AUDIT_VERSION`])
//! and the reader `acl replay` uses, for the text and JSON log formats.
//!
//! Every issued token writes one line, target `audit`, message `token issued`, with these
//! fields (docs/src/reference/audit-log.md):
//!
//! | field | value |
//! | --- | --- |
//! | `audit_version` | `1` |
//! | `account` | the principal's subject: its account, or `source:account` when qualified |
//! | `source` | the source that vouched for it (`users`, `ldap_auth`, `github_auth`, …) |
//! | `labels` | its labels, [`encode_labels`]: `key=v1,v2;key2=v3` (`%XX` escapes) |
//! | `client_ip` | the client address, or `unix` |
//! | `service` | the requested service |
//! | `client_id`, `grant`, `refresh_token_id` | as before version 1 |
//! | `scopes` | per requested scope, `type:name:requested→granted [decider]`, joined by `; ` (`-` when nothing was granted); last on the line |
//!
//! No field holds a secret: labels are authorization data (groups, teams, CI claims the ACL
//! matches on), never credentials.
//!
//! The reader is hand-written: a line is a `tracing_subscriber` text line (`key=value`, string
//! values `Debug`-quoted) or a JSON object; neither has a parser for one line's fields, and the
//! replay's speed depends on not building a general tree for every line.

use std::borrow::Cow;
use std::fmt::Write;
use std::net::IpAddr;

use serde::Deserialize;

use super::{Decider, Principal, source_name};
use crate::authn::Labels;
use crate::token::Scope;

/// The version of the audit line's fields.
pub const AUDIT_VERSION: u32 = 1;

/// Bytes of a label key or value written as `%XX`.
fn escaped(c: char) -> bool {
    matches!(c, '%' | ';' | '=' | ',' | '"' | '\\') || c.is_control()
}

/// `key=v1,v2;key2=v3`; a key without values is `key`; `%`, `;`, `=`, `,`, `"`, `\` and control
/// characters are `%XX` (UTF-8 bytes).
pub fn encode_labels(labels: &Labels) -> String {
    let mut out = String::new();
    let push = |out: &mut String, s: &str| {
        for c in s.chars() {
            if escaped(c) {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "%{b:02X}");
                }
            } else {
                out.push(c);
            }
        }
    };
    for (i, (key, values)) in labels.0.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        push(&mut out, key);
        for (j, v) in values.iter().enumerate() {
            out.push(if j == 0 { '=' } else { ',' });
            push(&mut out, v);
        }
    }
    out
}

/// The inverse of [`encode_labels`].
pub fn decode_labels(s: &str) -> Result<Labels, String> {
    let mut labels = Labels::default();
    if s.is_empty() {
        return Ok(labels);
    }
    for item in s.split(';') {
        let (key, values) = match item.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (item, None),
        };
        let list = labels.0.entry(unescape(key)?).or_default();
        if let Some(values) = values {
            for v in values.split(',') {
                list.push(unescape(v)?);
            }
        }
    }
    Ok(labels)
}

fn unescape(s: &str) -> Result<String, String> {
    if !s.contains('%') {
        return Ok(s.to_owned());
    }
    let mut bytes = Vec::with_capacity(s.len());
    let mut it = s.bytes();
    while let Some(b) = it.next() {
        if b == b'%' {
            let hex = [it.next().unwrap_or(0), it.next().unwrap_or(0)];
            let hex = std::str::from_utf8(&hex).map_err(|_| format!("bad escape in {s:?}"))?;
            bytes.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad escape in {s:?}"))?);
        } else {
            bytes.push(b);
        }
    }
    String::from_utf8(bytes).map_err(|_| format!("escape is not UTF-8 in {s:?}"))
}

/// One recorded scope decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedScope {
    /// The scope as requested.
    pub scope: Scope,
    /// What was granted (sorted; empty = denied).
    pub granted: Vec<String>,
    /// Who decided.
    pub by: Decider,
}

/// One `token issued` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// `audit_version` (0 for lines written before it existed: no labels recorded).
    pub version: u32,
    /// The principal (account recovered from the subject).
    pub principal: Principal,
    /// The subject as logged.
    pub subject: String,
    /// The client address (`None` for `unix`).
    pub ip: Option<IpAddr>,
    /// The service.
    pub service: String,
    /// Per-scope decisions, in request order.
    pub scopes: Vec<RecordedScope>,
}

/// Formats the `scopes` field: `type:name:requested→granted [decider]; …`.
pub fn encode_scopes<'a>(
    items: impl Iterator<Item = (&'a Scope, &'a [String], Decider)>,
) -> String {
    let mut out = String::new();
    let _ = write_scopes(&mut out, items);
    out
}

/// Writes the `scopes` field ([`encode_scopes`]'s text) into `out`: the token endpoint writes it
/// straight into the log line this way, without a `String` of its own (issue #17).
pub fn write_scopes<'a>(
    out: &mut impl Write,
    items: impl Iterator<Item = (&'a Scope, &'a [String], Decider)>,
) -> std::fmt::Result {
    for (i, (scope, granted, by)) in items.enumerate() {
        if i > 0 {
            out.write_str("; ")?;
        }
        write!(out, "{scope}→")?;
        if granted.is_empty() {
            out.write_char('-')?;
        } else {
            for (j, action) in granted.iter().enumerate() {
                if j > 0 {
                    out.write_char(',')?;
                }
                out.write_str(action)?;
            }
        }
        write!(out, " [{by}]")?;
    }
    Ok(())
}

/// Parses the `scopes` field.
pub fn decode_scopes(s: &str) -> Result<Vec<RecordedScope>, String> {
    let mut out = Vec::new();
    if s.is_empty() {
        return Ok(out);
    }
    for item in s.split("; ") {
        let bad =
            || format!("scope decision {item:?} is not `type:name:actions→granted [decider]`");
        let (decision, tag) = item.split_once(" [").ok_or_else(bad)?;
        let tag = tag.strip_suffix(']').ok_or_else(bad)?;
        let (requested, granted) = decision.rsplit_once('→').ok_or_else(bad)?;
        let kind_end = requested.find(':').ok_or_else(bad)?;
        let actions_start = requested.rfind(':').ok_or_else(bad)?;
        if actions_start <= kind_end {
            return Err(bad());
        }
        let actions = &requested[actions_start + 1..];
        let scope = Scope::new(
            &requested[..kind_end],
            &requested[kind_end + 1..actions_start],
            actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect(),
        );
        let granted = if granted == "-" {
            Vec::new()
        } else {
            let mut g: Vec<String> = granted.split(',').map(str::to_owned).collect();
            g.sort_unstable();
            g
        };
        let by = Decider::parse(tag).ok_or_else(bad)?;
        out.push(RecordedScope { scope, granted, by });
    }
    Ok(out)
}

/// The raw fields of one line, borrowed where no unescaping was needed.
#[derive(Debug, Default, Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    target: Option<Cow<'a, str>>,
    #[serde(default)]
    audit_version: Option<u32>,
    #[serde(borrow, default)]
    account: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    source: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    labels: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    client_ip: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    service: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    scopes: Option<Cow<'a, str>>,
}

const TEXT_MARK: &str = " audit: token issued ";
const JSON_MARK: &str = "\"token issued\"";

/// Reads one log line: `Ok(None)` when it is not a `token issued` audit line (other log lines,
/// refusals), else the record or why it cannot be read.
pub fn parse_line(line: &str) -> Result<Option<AuditRecord>, String> {
    let line = line.trim_end_matches(['\n', '\r']);
    let stripped;
    let fields = if line.starts_with('{') {
        if !line.contains(JSON_MARK) {
            return Ok(None);
        }
        let f: Fields<'_> = serde_json::from_str(line).map_err(|e| format!("bad JSON: {e}"))?;
        if f.target.as_deref() != Some("audit") || f.message.as_deref() != Some("token issued") {
            return Ok(None);
        }
        f
    } else {
        let Some(at) = line.find(TEXT_MARK) else {
            return Ok(None);
        };
        let rest = if line.contains('\x1b') {
            stripped = strip_ansi(&line[at + TEXT_MARK.len()..]);
            stripped.as_str()
        } else {
            &line[at + TEXT_MARK.len()..]
        };
        text_fields(rest)?
    };
    record(fields).map(Some)
}

fn record(f: Fields<'_>) -> Result<AuditRecord, String> {
    let missing = |name: &str| format!("the line has no `{name}` field");
    let subject = f.account.ok_or_else(|| missing("account"))?.into_owned();
    let source_text = f.source.ok_or_else(|| missing("source"))?;
    let source = source_name(&source_text)
        .ok_or_else(|| format!("unknown source {:?}", source_text.as_ref()))?;
    let version = f.audit_version.unwrap_or(0);
    let labels = match &f.labels {
        Some(l) => decode_labels(l)?,
        None if version == 0 => Labels::default(),
        None => return Err(missing("labels")),
    };
    let ip = match f.client_ip.as_deref() {
        None | Some("unix") => None,
        Some(s) => Some(
            s.parse::<IpAddr>()
                .map_err(|_| format!("client_ip {s:?} is not an address"))?,
        ),
    };
    let account = match crate::authn::principal::parse_subject(&subject) {
        (Some(s), name) if s == source => name.to_owned(),
        _ => subject.clone(),
    };
    Ok(AuditRecord {
        version,
        principal: Principal {
            source,
            account,
            labels,
        },
        subject,
        ip,
        service: f.service.map(Cow::into_owned).unwrap_or_default(),
        scopes: decode_scopes(f.scopes.as_deref().unwrap_or(""))?,
    })
}

/// The fields of a text line after the message: `key=value` pairs separated by one space,
/// string values quoted with Rust's `Debug` escapes, others bare; `scopes` (bare, with spaces)
/// runs to the end of the line.
fn text_fields(mut rest: &str) -> Result<Fields<'_>, String> {
    let mut f = Fields {
        message: Some(Cow::Borrowed("token issued")),
        target: Some(Cow::Borrowed("audit")),
        ..Fields::default()
    };
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .ok_or_else(|| format!("expected key=value at {:?}", excerpt(rest)))?;
        let (value, next) = if key == "scopes" {
            (Cow::Borrowed(after), "")
        } else if let Some(quoted) = after.strip_prefix('"') {
            unquote(quoted)?
        } else {
            match after.split_once(' ') {
                Some((v, n)) => (Cow::Borrowed(v), n),
                None => (Cow::Borrowed(after), ""),
            }
        };
        match key {
            "audit_version" => {
                f.audit_version = Some(
                    value
                        .parse()
                        .map_err(|_| format!("audit_version {value:?} is not a number"))?,
                );
            }
            "account" => f.account = Some(value),
            "source" => f.source = Some(value),
            "labels" => f.labels = Some(value),
            "client_ip" => f.client_ip = Some(value),
            "service" => f.service = Some(value),
            "scopes" => f.scopes = Some(value),
            _ => {}
        }
        rest = next.strip_prefix(' ').unwrap_or(next);
    }
    Ok(f)
}

/// A `Debug`-quoted string after its opening quote: the value and what follows the closing
/// quote.
fn unquote(s: &str) -> Result<(Cow<'_, str>, &str), String> {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut out: Option<String> = None;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let value = match out {
                    Some(o) => Cow::Owned(o),
                    None => Cow::Borrowed(&s[..i]),
                };
                let rest = s[i + 1..].strip_prefix(' ').unwrap_or(&s[i + 1..]);
                return Ok((value, rest));
            }
            b'\\' => {
                let o = out.get_or_insert_with(|| s[..i].to_owned());
                let (c, len) = match bytes.get(i + 1) {
                    Some(b'n') => ('\n', 2),
                    Some(b'r') => ('\r', 2),
                    Some(b't') => ('\t', 2),
                    Some(b'0') => ('\0', 2),
                    Some(b'\\') => ('\\', 2),
                    Some(b'"') => ('"', 2),
                    Some(b'\'') => ('\'', 2),
                    Some(b'u') => {
                        let end = s[i..]
                            .find('}')
                            .ok_or_else(|| "unterminated \\u{…} escape".to_owned())?;
                        let hex = s.get(i + 3..i + end).unwrap_or("");
                        let c = u32::from_str_radix(hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or_else(|| format!("bad escape \\u{{{hex}}}"))?;
                        (c, end + 1)
                    }
                    _ => return Err("bad escape in a quoted value".to_owned()),
                };
                o.push(c);
                i += len;
            }
            _ => {
                let ch_len = s[i..].chars().next().map_or(1, char::len_utf8);
                if let Some(o) = out.as_mut() {
                    o.push_str(&s[i..i + ch_len]);
                }
                i += ch_len;
            }
        }
    }
    Err("unterminated quoted value".to_owned())
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ … final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn excerpt(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(items: &[(&str, &[&str])]) -> Labels {
        items.iter().map(|(k, v)| (*k, v.to_vec())).collect()
    }

    #[test]
    fn labels_round_trip_with_every_separator_escaped() {
        for l in [
            labels(&[]),
            labels(&[("team", &["dev", "ops"]), ("env", &["prod"])]),
            labels(&[("k;=,%", &["a,b", "c=d;e", "%41", "", "ü \"q\" \\"])]),
            labels(&[("empty", &[]), ("x", &["\n\t"])]),
        ] {
            let enc = encode_labels(&l);
            assert!(!enc.contains('"') && !enc.contains('\n'), "{enc}");
            assert_eq!(decode_labels(&enc).unwrap(), l, "{enc}");
        }
        assert_eq!(
            encode_labels(&labels(&[("team", &["dev", "ops"]), ("env", &["prod"])])),
            "env=prod;team=dev,ops"
        );
        assert!(decode_labels("a=%ZZ").is_err());
    }

    #[test]
    fn scopes_round_trip() {
        let a = Scope::new(
            "repository",
            "localhost:5000/a/b",
            vec!["pull".into(), "push".into()],
        );
        let b = Scope::new("registry", "catalog", vec!["*".into()]);
        let granted_a = vec!["pull".to_owned()];
        let enc = encode_scopes(
            [
                (&a, granted_a.as_slice(), Decider::Acl(2)),
                (&b, &[][..], Decider::NoMatch),
            ]
            .into_iter(),
        );
        assert_eq!(
            enc,
            "repository:localhost:5000/a/b:pull,push→pull [acl 2]; registry:catalog:*→- [no match]"
        );
        let dec = decode_scopes(&enc).unwrap();
        assert_eq!(dec[0].scope, a);
        assert_eq!(dec[0].granted, granted_a);
        assert_eq!(dec[0].by, Decider::Acl(2));
        assert_eq!(dec[1].by, Decider::NoMatch);
        assert!(dec[1].granted.is_empty());
        assert!(decode_scopes("repository:a:pull→pull").is_err());
    }

    const TEXT: &str = "2026-12-07T20:59:01.123456Z  INFO request{method=GET path=/auth id=\"3\"}: \
        audit: token issued audit_version=1 account=\"github_auth:alice\" source=\"github_auth\" \
        labels=\"team=dev,ops\" client_ip=10.1.2.3 service=\"reg \\\"x\\\"\" client_id=\"\" \
        grant=\"password\" refresh_token_id=\"\" \
        scopes=repository:alice/app:pull,push→pull [acl 1]; registry:catalog:*→- [no match]";

    #[test]
    fn text_line() {
        let r = parse_line(TEXT).unwrap().unwrap();
        assert_eq!(r.version, 1);
        assert_eq!(r.subject, "github_auth:alice");
        assert_eq!(r.principal.source, "github_auth");
        assert_eq!(r.principal.account, "alice");
        assert_eq!(r.principal.labels, labels(&[("team", &["dev", "ops"])]));
        assert_eq!(r.ip, Some("10.1.2.3".parse().unwrap()));
        assert_eq!(r.service, "reg \"x\"");
        assert_eq!(r.scopes.len(), 2);
        assert_eq!(r.scopes[0].granted, vec!["pull".to_owned()]);
        // With colours (a terminal) the same.
        let coloured = TEXT.replace("account=", "\x1b[3maccount\x1b[0m\x1b[2m=\x1b[0m");
        assert_eq!(parse_line(&coloured).unwrap().unwrap(), r);
    }

    #[test]
    fn json_line() {
        let line = r#"{"timestamp":"2026-12-07T20:59:01Z","level":"INFO","message":"token issued","audit_version":1,"account":"bob","source":"users","labels":"","client_ip":"unix","service":"registry","client_id":"","grant":"password","scopes":"repository:bob/x:push→push [acl 0]","refresh_token_id":"","target":"audit","span":{"id":"1","name":"request"}}"#;
        let r = parse_line(line).unwrap().unwrap();
        assert_eq!(r.principal.account, "bob");
        assert_eq!(r.principal.source, "users");
        assert_eq!(r.ip, None);
        assert_eq!(r.scopes[0].by, Decider::Acl(0));
    }

    #[test]
    fn other_lines_and_old_lines() {
        assert_eq!(parse_line("2026 INFO listening addr=1").unwrap(), None);
        assert_eq!(
            parse_line(r#"{"message":"token refused","target":"audit"}"#).unwrap(),
            None
        );
        // Before audit_version: no labels, read as none.
        let old = "x INFO audit: token issued account=\"alice\" source=\"users\" client_ip=::1 \
                   service=\"s\" scopes=repository:a:pull→- [no match]";
        let r = parse_line(old).unwrap().unwrap();
        assert_eq!(r.version, 0);
        assert!(r.principal.labels.is_empty());
        assert!(parse_line("x INFO audit: token issued account=\"a\" source=\"nope\"").is_err());
    }
}
