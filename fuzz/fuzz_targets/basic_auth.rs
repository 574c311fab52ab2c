//! `Authorization` header parsing (`server::extract::basic_credentials`).
//!
//! Inputs are raw header values or `<scheme><sep><base64 of arbitrary bytes>`, one or more.
//! Invariants: no panic; no header is anonymous; several headers are refused; every refusal is a
//! 400 (never a 5xx); accepted credentials have a user without `:` and survive re-encoding.
#![no_main]

use arbitrary::Arbitrary;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use libfuzzer_sys::fuzz_target;
use registry_auth::server::error::ApiError;
use registry_auth::server::extract::basic_credentials;

#[derive(Debug, Arbitrary)]
enum Value {
    Raw(Vec<u8>),
    Encoded {
        scheme: Scheme,
        spaces: u8,
        payload: Vec<u8>,
        pad: bool,
        trailing: bool,
    },
}

#[derive(Debug, Arbitrary)]
enum Scheme {
    Basic,
    Lower,
    Bearer,
    Other(String),
}

fuzz_target!(|values: Vec<Value>| {
    let mut headers = HeaderMap::new();
    for v in values.iter().take(4) {
        let bytes = match v {
            Value::Raw(b) => b.clone(),
            Value::Encoded {
                scheme,
                spaces,
                payload,
                pad,
                trailing,
            } => {
                let mut s = match scheme {
                    Scheme::Basic => "Basic".to_owned(),
                    Scheme::Lower => "basic".to_owned(),
                    Scheme::Bearer => "Bearer".to_owned(),
                    Scheme::Other(o) => o.clone(),
                };
                s.push_str(&" ".repeat(usize::from(spaces % 4)));
                if *pad {
                    s.push_str(&STANDARD.encode(payload));
                } else {
                    s.push_str(&STANDARD_NO_PAD.encode(payload));
                }
                if *trailing {
                    s.push(' ');
                }
                s.into_bytes()
            }
        };
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            headers.append(header::AUTHORIZATION, value);
        }
    }
    let count = headers.get_all(header::AUTHORIZATION).iter().count();
    match basic_credentials(&headers) {
        Ok(c) => {
            assert!(count <= 1, "{count} Authorization headers accepted");
            if count == 0 {
                assert!(c.is_anonymous());
            }
            assert!(
                !c.account.contains(':'),
                "user with a colon: {:?}",
                c.account
            );
            let again = format!(
                "Basic {}",
                STANDARD.encode(format!("{}:{}", c.account, c.password.expose()))
            );
            let mut h = HeaderMap::new();
            h.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&again).expect("base64 is a valid header value"),
            );
            let c2 = basic_credentials(&h).expect("re-encoded credentials parse");
            assert_eq!(c2.account, c.account);
            assert_eq!(c2.password.expose(), c.password.expose());
        }
        Err(e) => {
            assert!(count >= 1, "no header refused: {e:?}");
            assert!(matches!(e, ApiError::BadRequest(_)), "{e:?}");
            assert_eq!(e.into_response().status().as_u16(), 400);
        }
    }
});
