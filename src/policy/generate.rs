//! A synthetic audit log for the replay benchmark (`acl generate-log`, `scripts/bench-replay`):
//! text lines shaped exactly like the server's (`tracing_subscriber`'s text format, the
//! request span, the fields of [`super::audit`]), with decisions made by the configuration
//! given, so that replaying the log under that same configuration changes nothing.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use super::audit::{AUDIT_VERSION, encode_labels, encode_scopes};
use super::{Decider, Offline, Principal, Verdict};
use crate::authn::Labels;
use crate::token::Scope;

const TEAMS: [&str; 6] = ["dev", "ops", "qa", "data", "web", "infra"];
const ACTIONS: [&[&str]; 4] = [&["pull"], &["pull", "push"], &["pull"], &["push"]];

/// Writes `requests` `token issued` lines (and, as a real log has, one other line every ten)
/// to `out`; returns the bytes written. Deterministic for a seed.
pub fn write_log(
    offline: &Offline,
    requests: u64,
    seed: u64,
    out: &mut impl Write,
) -> io::Result<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut written = 0u64;
    let mut line = String::with_capacity(512);
    for i in 0..requests {
        line.clear();
        let user = rng.random_range(0..2000u32);
        let anonymous = user % 50 == 0;
        let account = if anonymous {
            String::new()
        } else {
            format!("user{user}")
        };
        let mut labels = Labels::default();
        if !anonymous {
            labels.0.insert(
                "team".to_owned(),
                vec![TEAMS[user as usize % TEAMS.len()].to_owned()],
            );
        }
        let who = Principal {
            source: if anonymous { "anonymous" } else { "users" },
            account,
            labels,
        };
        let ip = IpAddr::V4(Ipv4Addr::new(10, (user / 250) as u8, (user % 250) as u8, 7));
        let n_scopes = if rng.random_bool(0.2) { 2 } else { 1 };
        let mut decided = Vec::with_capacity(n_scopes);
        for _ in 0..n_scopes {
            let repo = match rng.random_range(0..4u32) {
                0 => format!("public/app{}", rng.random_range(0..200u32)),
                1 => format!(
                    "{}/svc{}",
                    TEAMS[rng.random_range(0..TEAMS.len())],
                    rng.random_range(0..300u32)
                ),
                2 => format!(
                    "user{}/img{}",
                    rng.random_range(0..2000u32),
                    rng.random_range(0..5u32)
                ),
                _ => format!("{}/tool{}", who.account, rng.random_range(0..20u32)),
            };
            let actions = ACTIONS[rng.random_range(0..ACTIONS.len())]
                .iter()
                .map(|a| (*a).to_owned())
                .collect();
            let scope = Scope::new("repository", repo, actions);
            let (granted, by) = match offline.decide_sync(&who, "registry", Some(ip), &scope) {
                Some(Verdict::Decided { granted, by }) => (granted, by),
                _ => (Vec::new(), Decider::NoMatch),
            };
            decided.push((scope, granted, by));
        }
        let scopes = encode_scopes(decided.iter().map(|(s, g, b)| (s, g.as_slice(), b.clone())));
        let secs = i / 1000;
        let _ = std::fmt::Write::write_fmt(
            &mut line,
            format_args!(
                "2026-12-01T{:02}:{:02}:{:02}.{:06}Z  INFO request{{method=GET path=/auth \
                 id=\"{i}\"}}: audit: token issued audit_version={AUDIT_VERSION} account={:?} \
                 source={:?} labels={:?} client_ip={ip} service=\"registry\" client_id=\"\" \
                 grant=\"password\" refresh_token_id=\"\" scopes={scopes}\n",
                (secs / 3600) % 24,
                (secs / 60) % 60,
                secs % 60,
                (i % 1000) * 1000,
                who.account,
                who.source,
                encode_labels(&who.labels),
            ),
        );
        if i % 10 == 0 {
            line.push_str(
                "2026-12-01T00:00:00.000000Z DEBUG request{method=GET path=/v2/ id=\"0\"}: \
                 tower_http::trace::on_response: finished processing request latency=1 ms \
                 status=200\n",
            );
        }
        out.write_all(line.as_bytes())?;
        written += line.len() as u64;
    }
    Ok(written)
}
