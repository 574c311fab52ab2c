//! `scope` parameters: `parse_scopes` over newline-separated parameters, and `Scope`'s
//! `FromStr`/`Display` round trip.
//!
//! Invariants: no panic; at most `MAX_SCOPES` pieces accepted; merged scopes have unique
//! `(type, name)` and sorted, deduplicated actions; every parsed scope prints to text that parses
//! back to the same scope (alone, and all of them in one parameter); a single piece is accepted
//! by `FromStr` exactly when `parse_scopes` accepts it alone; error messages stay short whatever
//! the input (they are sent back in 400 bodies; quoted excerpts are escaped, so the bound is
//! ~2.1 KB, not 100 characters).
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use registry_auth::token::scope::{MAX_SCOPES, Scope, parse_scopes};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let params: Vec<&str> = text.split('\n').collect();
    let pieces = params
        .iter()
        .flat_map(|p| p.split(' '))
        .filter(|p| !p.is_empty())
        .count();
    match parse_scopes(params.iter().copied()) {
        Ok(scopes) => {
            assert!(pieces <= MAX_SCOPES, "{pieces} pieces accepted");
            assert!(scopes.len() <= pieces);
            let mut seen = HashSet::new();
            for s in &scopes {
                assert!(
                    seen.insert((s.kind.as_str(), s.name.as_str())),
                    "not merged: {s}"
                );
                assert!(s.actions.windows(2).all(|w| w[0] < w[1]), "unsorted: {s:?}");
                round_trip(s);
            }
            let joined: Vec<String> = scopes.iter().map(ToString::to_string).collect();
            let joined = joined.join(" ");
            assert_eq!(parse_scopes([joined.as_str()]).as_ref(), Ok(&scopes));
        }
        Err(e) => short(&e.to_string()),
    }
    for piece in params
        .iter()
        .flat_map(|p| p.split(' '))
        .filter(|p| !p.is_empty())
        .take(64)
    {
        match piece.parse::<Scope>() {
            Ok(s) => {
                round_trip(&s);
                assert_eq!(parse_scopes([piece]), Ok(vec![s]));
            }
            Err(e) => {
                short(&e.to_string());
                assert_eq!(parse_scopes([piece]), Err(e));
            }
        }
    }
});

fn round_trip(s: &Scope) {
    let printed = s.to_string();
    let again: Scope = printed
        .parse()
        .unwrap_or_else(|e| panic!("{s:?} prints as {printed:?}, which does not parse: {e}"));
    assert_eq!(&again, s, "printed as {printed:?}");
    assert_eq!(again.to_string(), printed);
}

/// Error texts quote at most 100 characters of the input, at most twice, with Rust escaping
/// (`\u{7f}` is 6 characters for one), so they stay under ~2.1 KB whatever the input size.
fn short(message: &str) {
    assert!(
        message.chars().count() < 2500,
        "error message of {} characters",
        message.chars().count()
    );
}
