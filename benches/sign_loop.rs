//! The signature alone, in a loop: `SigningKey::sign` (SHA-256/384/512 of the message and the
//! ECDSA or RSA signature, through aws-lc-rs, exactly what `TokenIssuer::issue` calls) over a
//! message the size of a real token's `header.claims`.
//!
//! `scripts/bench --callgrind` runs it under `valgrind --tool=callgrind` twice, with N1 and N2
//! signatures and the server's own key, and takes (I(N2) − I(N1)) / (N2 − N1) as the instructions
//! of one signature; that is subtracted from the server's instructions per request.
//!
//! ```text
//! sign_loop --cert CERT.pem --key KEY.pem --count N   # sign N times, print nothing but a summary
//! cargo bench --bench sign_loop                       # quick timing with a fresh ES256 key
//! ```
//!
//! Reports only; nothing here asserts a time.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::hint::black_box;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use registry_auth::token::{
    Grant, HeaderMode, KeyKind, SigningKey, TokenIssuer, generate_self_signed,
};

const USAGE: &str = "usage: sign_loop [--cert CERT.pem --key KEY.pem] [--count N]";

fn main() -> ExitCode {
    let mut cert = None;
    let mut key = None;
    let mut count: Option<u64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--cert" => cert = args.next(),
            "--key" => key = args.next(),
            "--count" => count = args.next().and_then(|n| n.parse().ok()),
            // Passed by `cargo bench` / `cargo test --benches`.
            "--bench" | "--test" => {}
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ if arg.starts_with('-') => {
                eprintln!("sign_loop: unknown option {arg}\n{USAGE}");
                return ExitCode::FAILURE;
            }
            // A benchmark name filter from `cargo bench FILTER`: nothing to filter.
            _ => {}
        }
    }
    let signing_key = match (cert, key) {
        (Some(cert), Some(key)) => match SigningKey::load(cert.as_ref(), key.as_ref()) {
            Ok(k) => k,
            Err(e) => {
                eprintln!("sign_loop: {e}");
                return ExitCode::FAILURE;
            }
        },
        (None, None) => {
            let generated =
                generate_self_signed(KeyKind::EcP256, "sign_loop", 30).expect("key generation");
            SigningKey::from_pem(generated.cert_pem.as_bytes(), generated.key_pem.as_bytes())
                .expect("generated key loads")
        }
        _ => {
            eprintln!("sign_loop: give both --cert and --key, or neither\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let algorithm = signing_key.algorithm().as_str();
    let (key, message) = token_signing_input(signing_key);

    let n = count.unwrap_or(2000);
    let start = Instant::now();
    let mut bytes = 0usize;
    for _ in 0..n {
        let signature = key.sign(black_box(message.as_bytes())).expect("signing");
        bytes += black_box(signature).len();
    }
    let elapsed = start.elapsed();
    let per = elapsed.as_secs_f64() * 1e6 / n.max(1) as f64;
    println!(
        "sign_loop: {n} {algorithm} signatures of a {}-byte message in {:.3} s: {per:.1} µs each \
         ({:.0}/s on one core), {bytes} signature bytes",
        message.len(),
        elapsed.as_secs_f64(),
        1e6 / per.max(f64::MIN_POSITIVE),
    );
    ExitCode::SUCCESS
}

/// The real `header.claims` of a token for one pulled repository (the input the server signs),
/// and the key again.
fn token_signing_input(key: SigningKey) -> (Arc<SigningKey>, String) {
    let key = Arc::new(key);
    let issuer = TokenIssuer::new(
        "bench".to_owned(),
        Duration::from_secs(900),
        Arc::clone(&key),
        HeaderMode::KidLibtrust,
    );
    let access = [Grant {
        kind: "repository".to_owned(),
        name: "x/y".to_owned(),
        actions: vec!["pull".to_owned()],
    }];
    let token = issuer
        .issue("", "bench", &access, SystemTime::now())
        .expect("token issued")
        .token;
    let signing_input = token
        .rsplit_once('.')
        .map(|(input, _signature)| input.to_owned())
        .expect("a JWS has three segments");
    (key, signing_input)
}
