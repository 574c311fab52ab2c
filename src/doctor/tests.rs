use super::{Entry, Finding, Report, Status, short};

/// Every entry a finding can link to is an anchor of the troubleshooting guide, and the guide
/// starts with the doctor.
#[test]
fn every_entry_links_to_an_anchor_of_the_guide() {
    assert_eq!(super::GUIDE, "docs/src/operating/troubleshooting.md");
    // Read at run time (not `include_str!`): the Docker build context has no docs/.
    let readme = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/src/operating/troubleshooting.md"
    ))
    .expect("read docs/src/operating/troubleshooting.md");
    for entry in Entry::ALL {
        let anchor = format!("<a id=\"{}\"></a>", entry.anchor());
        assert!(
            readme.contains(&anchor),
            "docs/src/operating/troubleshooting.md has no {anchor} for {entry:?} (the doctor links to {})",
            entry.link()
        );
    }
    // The guide starts with the doctor: its first section is about it.
    let first = readme.find("\n## ").expect("the guide has sections");
    assert!(
        readme[first..].starts_with("\n## Start here: `registry-auth doctor`"),
        "the troubleshooting guide starts with the doctor"
    );
    // The README's pointer to the guide says so (the front door keeps it).
    let main = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    assert!(
        main.contains(
            "[Troubleshooting guide](docs/src/operating/troubleshooting.md): start with `registry-auth doctor`"
        ),
        "README.md points at the guide and the doctor"
    );
}

#[test]
fn a_failure_line_says_what_was_seen_what_to_change_and_where_to_read() {
    let f = Finding::fail("trust", "refused", "set x", Entry::UntrustedKey);
    assert_eq!(
        f.line(),
        "FAIL  trust: refused → fix: set x (see docs/src/operating/troubleshooting.md#doctor-untrusted-key)"
    );
    assert_eq!(Finding::ok("clock", "fine").line(), "ok    clock: fine");
}

#[test]
fn the_report_fails_when_one_check_fails_and_says_so_in_json() {
    let mut r = Report::default();
    r.push(Finding::ok("registry", "401"));
    r.push(Finding::warn("clock", "3 s", "ntp", Entry::Clock));
    assert!(!r.failed());
    assert!(r.text().ends_with("all checks passed (1 warning(s))\n"));
    r.push(Finding::fail("service", "other", "add it", Entry::Service));
    assert!(r.failed());
    assert!(r.check_failed("service"));
    assert!(!r.check_failed("clock"));
    let j = r.json();
    assert_eq!(j["ok"], false);
    assert_eq!(j["findings"][2]["status"], "fail");
    assert_eq!(j["findings"][2]["entry"], "service");
    assert_eq!(
        j["findings"][2]["link"],
        "docs/src/operating/troubleshooting.md#doctor-service"
    );
    assert!(j["findings"][0].get("link").is_none());
    assert_eq!(Status::Fail.label(), "FAIL");
}

#[test]
fn identifiers_are_shortened_on_a_character_boundary() {
    assert_eq!(short("PYYO:TEWU:V7JH:26JV"), "PYYO:TEWU:V7…");
    assert_eq!(short("abc"), "abc");
    assert_eq!(short("ééééééééééééé"), "éééééééééééé…");
}
