//! The `GET /auth` query string (`server::extract::token_query`).
//!
//! Invariants: no panic; refusals are 400s (never 5xx) with a short message; an accepted query
//! has exactly the scopes `parse_scopes` makes of its decoded `scope` parameters (nothing
//! dropped or invented) and no more than `MAX_SCOPES` of them.
#![no_main]

use axum::response::IntoResponse;
use libfuzzer_sys::fuzz_target;
use registry_auth::server::error::ApiError;
use registry_auth::server::extract::token_query;
use registry_auth::token::scope::{MAX_SCOPES, parse_scopes};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    match token_query(Some(raw)) {
        Ok(q) => {
            assert!(q.scopes.len() <= MAX_SCOPES);
            let params: Vec<String> = form_urlencoded::parse(raw.as_bytes())
                .filter(|(k, _)| k == "scope")
                .map(|(_, v)| v.into_owned())
                .collect();
            assert_eq!(
                parse_scopes(params.iter().map(String::as_str)).as_ref(),
                Ok(&q.scopes)
            );
            let service = form_urlencoded::parse(raw.as_bytes())
                .find(|(k, _)| k == "service")
                .map(|(_, v)| v.into_owned());
            assert_eq!(q.service, service);
        }
        Err(e) => {
            let ApiError::BadRequest(m) = &e else {
                panic!("not a 400: {e:?}");
            };
            assert!(m.chars().count() < 2500, "message of {} chars", m.len());
            assert_eq!(e.into_response().status().as_u16(), 400);
        }
    }
});
