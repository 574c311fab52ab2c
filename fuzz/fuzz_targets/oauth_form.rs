//! The OAuth2 `POST /auth` form body (`server::extract::oauth_form`).
//!
//! Invariants: no panic; refusals are OAuth2 errors with a 4xx status (never 5xx) and a short
//! description; accepted scopes are what `parse_scopes` makes of the decoded `scope` fields.
#![no_main]

use axum::response::IntoResponse;
use libfuzzer_sys::fuzz_target;
use registry_auth::server::error::ApiError;
use registry_auth::server::extract::oauth_form;
use registry_auth::token::scope::{MAX_SCOPES, parse_scopes};

fuzz_target!(|body: &[u8]| {
    match oauth_form(body) {
        Ok(f) => {
            assert!(f.scopes.len() <= MAX_SCOPES);
            let params: Vec<String> = form_urlencoded::parse(body)
                .filter(|(k, _)| k == "scope")
                .map(|(_, v)| v.into_owned())
                .collect();
            assert_eq!(
                parse_scopes(params.iter().map(String::as_str)).as_ref(),
                Ok(&f.scopes)
            );
            if let Some(p) = &f.password {
                let decoded = form_urlencoded::parse(body)
                    .find(|(k, _)| k == "password")
                    .map(|(_, v)| v.into_owned());
                assert_eq!(decoded.as_deref(), Some(p.expose()));
            }
        }
        Err(e) => {
            let ApiError::OAuth {
                status,
                description,
                ..
            } = &e
            else {
                panic!("not an OAuth2 error: {e:?}");
            };
            assert!(status.is_client_error(), "{status}");
            assert!(description.chars().count() < 2500);
            assert!(e.into_response().status().is_client_error());
        }
    }
});
