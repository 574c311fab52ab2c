//! The text of LDAP names and filters, pure: `${account}` escaped into a filter (RFC 4515), the
//! account attribute a filter compares, a DN's `cn` (RFC 4514 parsing), the spellings a
//! directory treats as one account, and the refresh-token fingerprint of an entry.

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The attribute `${account}` is compared with in `filter` (the first such assertion), e.g.
/// `uid` in `(&(objectClass=person)(uid=${account}))`; `None` when there is none.
pub fn filter_account_attribute(filter: &str) -> Option<String> {
    let at = filter.find("=${account}")?;
    let before = &filter[..at];
    let start = before.rfind('(').map_or(0, |p| p + 1);
    // `uid:caseExactMatch:` (an extensible match) names the attribute before the first `:`.
    let attr = before[start..].trim().split(':').next()?.trim();
    let attr = attr.trim_end_matches(['~', '<', '>']);
    let valid = !attr.is_empty()
        && attr
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == ';');
    valid.then(|| attr.to_owned())
}

/// Compares account spellings the way directories' usual matching rules for names do
/// (caseIgnoreMatch: case and insignificant spaces are ignored).
pub(super) fn same_account(a: &str, b: &str) -> bool {
    super::super::fold_account(a) == super::super::fold_account(b)
}

/// Escapes a value for an LDAP filter (RFC 4515: `\ * ( )` and NUL, plus the operator
/// characters `! & | = < > ~`, which docker_auth escaped too; harmless inside a value).
pub fn escape_filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' | '*' | '(' | ')' | '\0' | '!' | '&' | '|' | '=' | '<' | '>' | '~' => {
                out.push_str(&format!("\\{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// The value of the first `cn` attribute in a DN (`cn=devs,ou=groups,dc=x` → `devs`), with DN
/// escapes undone; the value itself when it is not a DN with a `cn`.
pub fn cn_of(dn: &str) -> String {
    parse_dn(dn)
        .and_then(|rdns| {
            rdns.into_iter()
                .flatten()
                .find(|(kind, _)| kind.eq_ignore_ascii_case("cn") || kind == "2.5.4.3")
                .map(|(_, value)| value)
        })
        .unwrap_or_else(|| dn.to_owned())
}

/// A DN as RDNs of (type, unescaped value) pairs, or `None` when it is not a DN.
fn parse_dn(dn: &str) -> Option<Vec<Vec<(String, String)>>> {
    let mut rdns = Vec::new();
    let mut rdn = Vec::new();
    let mut kind = String::new();
    let mut value: Vec<u8> = Vec::new();
    let mut in_value = false;
    let bytes = dn.as_bytes();
    let mut i = 0;
    let finish = |kind: &mut String, value: &mut Vec<u8>, rdn: &mut Vec<(String, String)>| {
        let k = kind.trim().to_owned();
        if k.is_empty() {
            return false;
        }
        let v = String::from_utf8_lossy(value).trim().to_owned();
        rdn.push((k, v));
        kind.clear();
        value.clear();
        true
    };
    while i < bytes.len() {
        let b = bytes[i];
        if !in_value {
            match b {
                b'=' => in_value = true,
                b',' | b'+' | b'\\' => return None,
                _ => kind.push(char::from(b)),
            }
            i += 1;
            continue;
        }
        match b {
            b'\\' => {
                let next = *bytes.get(i + 1)?;
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(byte) = hex {
                    value.push(byte);
                    i += 3;
                } else {
                    value.push(next);
                    i += 2;
                }
                continue;
            }
            b',' | b';' | b'+' => {
                if !finish(&mut kind, &mut value, &mut rdn) {
                    return None;
                }
                in_value = false;
                if b != b'+' {
                    rdns.push(std::mem::take(&mut rdn));
                }
            }
            _ => value.push(b),
        }
        i += 1;
    }
    if !in_value || !finish(&mut kind, &mut value, &mut rdn) {
        return None;
    }
    rdns.push(rdn);
    Some(rdns)
}

/// The refresh-token fingerprint of an entry: a hash of its DN and of when its password (or,
/// without `pwdChangedTime`, the entry) last changed, so a token is honoured only for the entry
/// it was issued for, and a password reset ends it.
pub fn entry_fingerprint(dn: &str, changed: Option<&str>) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"registry-auth ldap entry v2\0");
    ctx.update(dn.to_lowercase().as_bytes());
    ctx.update(b"\0");
    ctx.update(changed.unwrap_or_default().as_bytes());
    URL_SAFE_NO_PAD.encode(&ctx.finish().as_ref()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_are_escaped() {
        assert_eq!(escape_filter_value("alice"), "alice");
        assert_eq!(escape_filter_value("*)(uid=*"), "\\2a\\29\\28uid\\3d\\2a");
        assert_eq!(escape_filter_value("a\\b\0c"), "a\\5cb\\00c");
        assert_eq!(
            escape_filter_value("x|y&z!~<>"),
            "x\\7cy\\26z\\21\\7e\\3c\\3e"
        );
        assert_eq!(escape_filter_value("jürgen"), "jürgen");
        // The escaped value always parses as one assertion value.
        for nasty in ["*", ")(|(uid=*)", "\\", "a*b*c", "(&)"] {
            let f = format!("(uid={})", escape_filter_value(nasty));
            assert!(ldap3::parse_filter(&f).is_ok(), "{f}");
        }
    }

    #[test]
    fn cn_of_dns() {
        assert_eq!(cn_of("cn=devs,ou=groups,dc=x"), "devs");
        assert_eq!(cn_of("CN=Dev Ops,OU=Groups,DC=example,DC=com"), "Dev Ops");
        assert_eq!(cn_of("ou=x,cn=inner,dc=y"), "inner");
        assert_eq!(cn_of("cn=a\\,b,dc=x"), "a,b");
        assert_eq!(cn_of("cn=caf\\C3\\A9,dc=x"), "café");
        assert_eq!(cn_of("uid=u+cn=multi,dc=x"), "multi");
        assert_eq!(cn_of("plain-group"), "plain-group");
        assert_eq!(cn_of("ou=nocn,dc=x"), "ou=nocn,dc=x");
        assert_eq!(cn_of("cn=,dc=x"), "");
    }

    #[test]
    fn fingerprints_differ_per_entry_and_password_change_and_ignore_case() {
        let t = Some("20261207120000Z");
        let a = entry_fingerprint("uid=alice,ou=people,dc=x", t);
        assert_eq!(a, entry_fingerprint("UID=alice,OU=people,DC=x", t));
        assert_ne!(a, entry_fingerprint("uid=bob,ou=people,dc=x", t));
        assert_ne!(
            a,
            entry_fingerprint("uid=alice,ou=people,dc=x", Some("20261207120001Z"))
        );
        assert_ne!(a, entry_fingerprint("uid=alice,ou=people,dc=x", None));
        assert!(!a.contains("alice"));
    }

    #[test]
    fn the_account_attribute_is_read_from_the_filter() {
        for (filter, want) in [
            ("(uid=${account})", Some("uid")),
            ("(&(objectClass=person)(uid=${account}))", Some("uid")),
            (
                "(&(objectClass=person)( sAMAccountName =${account}))",
                Some("sAMAccountName"),
            ),
            ("(|(mail=${account})(uid=${account}))", Some("mail")),
            ("(uid:caseExactMatch:=${account})", Some("uid")),
            ("(cn=*${account}*)", None),
            ("(description=x${account})", None),
        ] {
            assert_eq!(
                filter_account_attribute(filter).as_deref(),
                want,
                "{filter}"
            );
        }
    }

    #[test]
    fn spellings_a_directory_treats_as_one_are_one_account() {
        assert!(same_account("alice", "ALICE"));
        assert!(same_account("alice", " alice  "));
        assert!(same_account("Alice Smith", "alice   smith"));
        assert!(!same_account("alice", "alic"));
    }
}
