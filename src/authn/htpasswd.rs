//! Parser for htpasswd files holding bcrypt entries (`htpasswd -B`): one `name:$2y$…` per line.
//!
//! Only bcrypt is accepted: the other htpasswd formats (MD5 `$apr1$`, SHA-1 `{SHA}`, crypt, plain
//! text) are weak, so a file holding one is a load error that names the line, rather than a user
//! who silently cannot log in.

use super::bcrypt_hash::{BcryptHashError, check_bcrypt_hash};

/// A problem on one line of an htpasswd file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HtpasswdError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Parses htpasswd text into `(user, bcrypt hash)` pairs, in file order. Blank lines and lines
/// starting with `#` are skipped. Every bad line is reported.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, Vec<HtpasswdError>> {
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut errors = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = trimmed.split_once(':') else {
            errors.push(HtpasswdError {
                line,
                message: "expected `name:hash`; create entries with `htpasswd -B -n NAME` or \
                          `registry-auth hash-password`"
                    .to_owned(),
            });
            continue;
        };
        if user.is_empty() {
            errors.push(HtpasswdError {
                line,
                message:
                    "empty user name; anonymous access is configured with `users: {\"\": {}}`, \
                          not in the htpasswd file"
                        .to_owned(),
            });
            continue;
        }
        match check_bcrypt_hash(hash) {
            Ok(()) => {}
            Err(e) => {
                errors.push(HtpasswdError {
                    line,
                    message: format!("user `{user}`: {}", hash_problem(&e)),
                });
                continue;
            }
        }
        if entries.iter().any(|(u, _)| u == user) {
            errors.push(HtpasswdError {
                line,
                message: format!("user `{user}` appears more than once; keep one line per user"),
            });
            continue;
        }
        entries.push((user.to_owned(), hash.to_owned()));
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors)
    }
}

fn hash_problem(e: &BcryptHashError) -> String {
    match e {
        BcryptHashError::NotBcrypt(kind) => format!(
            "{kind} hashes are not accepted, only bcrypt; recreate the entry with `htpasswd -B`"
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$05$4Fo6EfWTzFbe6f5Vn1Ox6OhDd0.xzsOtZ9gIuyDcUGBjZ2IyfqHwW";

    #[test]
    fn parses_bcrypt_lines_and_skips_comments() {
        let text = format!("# team\nalice:{HASH}\n\n  bob:{HASH}  \n");
        let entries = parse(&text).unwrap();
        assert_eq!(
            entries,
            vec![
                ("alice".to_owned(), HASH.to_owned()),
                ("bob".to_owned(), HASH.to_owned())
            ]
        );
    }

    #[test]
    fn reports_every_bad_line_with_its_number() {
        let text = format!(
            "alice:{HASH}\nbob:$apr1$abc$def\ncarol:{{SHA}}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\nnocolon\n:{HASH}\nalice:{HASH}\ndave:plain\n"
        );
        let errors = parse(&text).unwrap_err();
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6, 7]);
        assert!(errors[0].message.contains("MD5"), "{}", errors[0].message);
        assert!(errors[0].message.contains("htpasswd -B"));
        assert!(errors[1].message.contains("SHA-1"), "{}", errors[1].message);
        assert!(errors[2].message.contains("name:hash"));
        assert!(errors[3].message.contains("empty user name"));
        assert!(errors[4].message.contains("more than once"));
        assert!(errors[5].message.contains("user `dave`"));
    }
}
