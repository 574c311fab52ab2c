//! Problems that do not stop the server but weaken it, reported by `check-config` and logged at
//! start-up and on reload: local users hashed with different bcrypt costs.

use std::collections::BTreeMap;

use crate::config::ConfigIssue;

/// A warning when the local accounts (`users`, `users_file`, robots as `robot$NAME`) do not all
/// use one bcrypt cost. An unknown user is checked against a dummy hash at the highest cost, so
/// with mixed costs a wrong password for a cheap user answers faster than an unknown name, and
/// timing tells which names exist.
pub(super) fn mixed_bcrypt_costs<'a>(
    accounts: impl IntoIterator<Item = (&'a str, u32)>,
) -> Option<ConfigIssue> {
    let mut by_cost: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    for (name, cost) in accounts {
        by_cost.entry(cost).or_default().push(name);
    }
    if by_cost.len() < 2 {
        return None;
    }
    let highest = *by_cost.keys().next_back()?;
    let groups: Vec<String> = by_cost
        .iter_mut()
        .map(|(cost, names)| {
            names.sort_unstable();
            const SHOWN: usize = 10;
            let more = names.len().saturating_sub(SHOWN);
            let mut list = names
                .iter()
                .take(SHOWN)
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ");
            if more > 0 {
                list.push_str(&format!(" and {more} more"));
            }
            format!("cost {cost}: {list}")
        })
        .collect();
    Some(ConfigIssue::new(
        "users",
        format!(
            "the local users' bcrypt hashes use different costs ({}); an unknown user is checked \
             against a hash at the highest cost ({highest}), so a wrong password for a cheaper \
             user answers faster and timing tells which user names exist; rehash every password \
             with one cost (`registry-auth hash-password --cost {highest}` or `htpasswd -B -C \
             {highest}`)",
            groups.join("; ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cost_is_fine_and_mixed_costs_name_each_cost_and_user() {
        assert!(mixed_bcrypt_costs([]).is_none());
        assert!(mixed_bcrypt_costs([("alice", 10), ("bob", 10), ("robot$ci", 10)]).is_none());
        let w = mixed_bcrypt_costs([("carol", 12), ("alice", 5), ("robot$ci", 5)]).unwrap();
        assert_eq!(w.path, "users");
        assert!(
            w.message
                .contains("cost 5: `alice`, `robot$ci`; cost 12: `carol`"),
            "{}",
            w.message
        );
        assert!(w.message.contains("--cost 12"), "{}", w.message);
        let many: Vec<(String, u32)> = (0..25).map(|i| (format!("u{i:02}"), 4)).collect();
        let w = mixed_bcrypt_costs(many.iter().map(|(n, c)| (n.as_str(), *c)).chain([("z", 6)]))
            .unwrap();
        assert!(w.message.contains("and 15 more"), "{}", w.message);
    }
}
