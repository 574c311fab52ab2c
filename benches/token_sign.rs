//! Criterion benchmark of token signing: `TokenIssuer::issue` with an ES256 (P-256) and an RS256
//! (RSA 2048) key from `generate_self_signed`, `kid-libtrust` header, one granted scope (what
//! `docker pull` asks for).
//!
//! `cargo bench --bench token_sign`. Reports only; nothing here asserts a time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use registry_auth::token::{
    Grant, HeaderMode, KeyKind, SigningKey, TokenIssuer, generate_self_signed,
};

fn issuer(kind: KeyKind) -> TokenIssuer {
    let generated = generate_self_signed(kind, "registry-auth bench", 30).expect("key generation");
    let key = SigningKey::from_pem(generated.cert_pem.as_bytes(), generated.key_pem.as_bytes())
        .expect("generated key loads");
    TokenIssuer::new(
        "registry-auth".to_owned(),
        Duration::from_secs(900),
        Arc::new(key),
        HeaderMode::KidLibtrust,
    )
}

fn bench_issue(c: &mut Criterion) {
    let access = [Grant {
        kind: "repository".to_owned(),
        name: "library/debian".to_owned(),
        actions: vec!["pull".to_owned()],
    }];
    let mut group = c.benchmark_group("token_issue");
    for (label, kind) in [("ES256", KeyKind::EcP256), ("RS256", KeyKind::Rsa2048)] {
        let issuer = issuer(kind);
        group.bench_function(label, |b| {
            b.iter(|| {
                issuer
                    .issue(
                        black_box("alice"),
                        black_box("registry.example.com"),
                        black_box(&access),
                        SystemTime::now(),
                    )
                    .expect("token issued")
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_issue
}
criterion_main!(benches);
