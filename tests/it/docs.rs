//! The documentation book (`docs/`, mdBook):
//! * the generated reference pages (`docs/src/reference/{config,cli,metrics}.md`) are what the
//!   code produces (src/docs.rs); `UPDATE_DOCS=1 cargo test --test it docs::` rewrites them;
//! * `mdbook build docs` (the pinned mdBook of scripts/tools/install-mdbook.sh) builds without a
//!   warning, and headless chromium renders two pages of the result into screenshots that are
//!   neither empty nor one background colour (a blank or unstyled page fails; an unstyled
//!   control page checks that the check can fail);
//! * every relative link and `#anchor` in docs/, README.md and the chart's README resolves, with
//!   GitHub's heading slugs (a small checker: no network, nothing outside the repository); a page
//!   made of `{{#include FILE}}` has the included file's headings.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{stack, tools};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn generated_reference_pages_are_up_to_date() {
    let update = std::env::var_os("UPDATE_DOCS").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (name, generate) in registry_auth::docs::PAGES {
        let path = root().join("docs/src/reference").join(name);
        let mut expected = generate();
        expected.push('\n');
        let committed = fs::read_to_string(&path).unwrap_or_default();
        if committed == expected {
            continue;
        }
        if update {
            fs::write(&path, &expected).expect("write the reference page");
            eprintln!("updated {}", path.display());
        } else {
            stale.push(format!("docs/src/reference/{name}"));
        }
    }
    assert!(
        stale.is_empty(),
        "{stale:?} differ from what the code produces (src/docs.rs: config types, clap, metrics \
         registry). Regenerate with\n\n    UPDATE_DOCS=1 cargo test --test it docs::generated\n"
    );
}

#[test]
fn every_metric_label_is_described() {
    let missing = registry_auth::docs::undocumented_metric_labels();
    assert!(
        missing.is_empty(),
        "metric labels {missing:?} have no entry in LABEL_DOCS (src/server/metrics.rs)"
    );
}

/// Every key of the config reference has a type, and the keys a reload does not apply are
/// exactly those under `server` (what `AppState::reload` compares).
#[test]
fn config_reference_covers_every_schema_key() {
    let page = registry_auth::docs::config_reference();
    for key in [
        "`server.addr`",
        "`token.refresh`",
        "`credential_cache.ttl`",
        "`acl[].match.account`",
        "`users.<name>.password`",
        "`ldap_auth.labels.<name>.attribute`",
    ] {
        assert!(page.contains(&format!("## {key}\n")), "{key} missing");
    }
    // One block per key: from its heading to the next heading.
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in page.lines() {
        if let Some(name) = line
            .strip_prefix("## `")
            .or_else(|| line.strip_prefix("### `"))
        {
            blocks.push((name.trim_end_matches('`').to_owned(), String::new()));
        } else if let Some(b) = blocks.last_mut() {
            b.1.push_str(line);
            b.1.push('\n');
        }
    }
    assert!(blocks.len() > 100, "only {} keys", blocks.len());
    let mut restart = 0;
    for (name, body) in &blocks {
        assert!(body.contains("- Type: "), "{name} has no type");
        let is_server = name == "server" || name.starts_with("server.");
        if registry_auth::docs::RELOADED_SERVER_KEYS.contains(&name.as_str()) {
            // The listener's certificate and key: read again on reload.
            assert!(
                body.contains("- Reload applies it: yes, the files are read again"),
                "{name} is read again on reload but not marked so"
            );
        } else if body.contains("- Reload applies it: no") {
            restart += 1;
            assert!(is_server, "{name} marked restart-only");
        } else {
            assert!(!is_server, "{name} is under server but marked reloadable");
        }
    }
    assert!(restart > 5, "only {restart} restart-only keys");
}

/// The hand-written table of main keys (reference/configuration-file.md) names only keys the
/// generated reference has: `a.b`, `.c` (a sibling of the previous key) and `a.*` (a section).
#[test]
fn config_key_table_names_only_real_keys() {
    let reference = registry_auth::docs::config_reference();
    let has = |key: &str| {
        reference.contains(&format!("## `{key}`\n"))
            || reference.contains(&format!("## `{key}."))
            || reference.contains(&format!("### `{key}`\n"))
    };
    let page = fs::read_to_string(root().join("docs/src/reference/configuration-file.md"))
        .expect("configuration-file.md");
    let mut checked = 0;
    for row in page.lines().filter(|l| l.starts_with("| `")) {
        let first = row.split('|').nth(1).unwrap_or_default();
        let mut previous = String::new();
        for cell in first.split(", ") {
            let name = cell.trim().trim_matches('`');
            let key = match name.strip_prefix('.') {
                Some(rest) => match previous.rsplit_once('.') {
                    Some((parent, _)) => format!("{parent}.{rest}"),
                    None => rest.to_owned(),
                },
                None => name.trim_end_matches(".*").to_owned(),
            };
            assert!(
                has(&key),
                "configuration-file.md names `{name}`, which is not a config key"
            );
            previous = key;
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} keys in the table");
}

/// Builds the book into a temp folder; fails on any warning or error mdBook prints.
fn build_book(dest: &Path) {
    let mdbook = tools::bin("mdbook", "install-mdbook.sh");
    let out = Command::new(&mdbook)
        .arg("build")
        .arg(root().join("docs"))
        .arg("--dest-dir")
        .arg(dest)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run mdbook");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "mdbook build docs failed:\n{stderr}");
    let noisy: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("warning"))
        .collect();
    assert!(noisy.is_empty(), "mdbook build docs warned:\n{stderr}");
}

#[test]
fn book_builds_without_warnings_and_renders() {
    let tmp = stack::tempdir("ra-it-book");
    let site = tmp.path().join("site");
    build_book(&site);
    for page in [
        "index.html",
        "getting-started.html",
        "registry/versions.html",
        "users/ldap.html",
        "access/acl.html",
        "operating/deployment.html",
        "operating/troubleshooting.html",
        "security/identity.html",
        "project/readme-sections.html",
        "reference/config.html",
        "reference/metrics.html",
    ] {
        assert!(site.join(page).is_file(), "{page} not built");
    }
    let config = fs::read_to_string(site.join("reference/config.html")).expect("config page");
    assert!(
        config.contains("credential_cache.ttl"),
        "config page lacks its keys"
    );
    // The deployment guide (the longest page, with the shipped files verbatim) is rendered.
    let deployment =
        fs::read_to_string(site.join("operating/deployment.html")).expect("deployment page");
    assert!(
        deployment.contains("Several replicas") && !deployment.contains("{{#include"),
        "operating/deployment.html does not hold the deployment guide"
    );

    // A control: an unstyled page with one line of text (what a broken theme looks like) must
    // fail the same check the book's pages pass.
    let plain = tmp.path().join("plain.html");
    fs::write(
        &plain,
        "<html><body><p>plain unstyled text</p></body></html>",
    )
    .unwrap();
    let (colours, dominant) = screenshot(tmp.path(), &plain, "plain");
    assert!(
        !looks_rendered(colours, dominant),
        "the screenshot check passes an unstyled page ({colours} colours, {dominant:.2} one colour)"
    );
    for (i, page) in ["index.html", "reference/config.html"].iter().enumerate() {
        let (colours, dominant) = screenshot(tmp.path(), &site.join(page), &format!("page{i}"));
        assert!(
            looks_rendered(colours, dominant),
            "{page} rendered with {colours} colours, {dominant:.2} of the pixels one colour: a \
             blank page or a broken theme (target/test-artifacts/book-{i}.png)"
        );
        // Kept for a look: target/test-artifacts/book-<n>.png.
        let artifacts = root().join("target/test-artifacts");
        let _ = fs::create_dir_all(&artifacts);
        let _ = fs::copy(
            tmp.path().join(format!("page{i}.png")),
            artifacts.join(format!("book-{i}.png")),
        );
    }
}

/// A themed page: text in several colours with anti-aliasing, and no colour covering nearly the
/// whole window (the book's sidebar, header and content differ; a blank or unstyled page is one
/// background with a little text).
fn looks_rendered(colours: usize, dominant: f64) -> bool {
    colours > 50 && dominant < 0.9
}

/// Screenshots `file` with headless chromium into `<dir>/<name>.png`; returns its number of
/// distinct colours and the share of pixels of the most common one.
fn screenshot(dir: &Path, file: &Path, name: &str) -> (usize, f64) {
    let png = dir.join(format!("{name}.png"));
    let profile = dir.join(format!("profile-{name}"));
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1200,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", file.display()))
        .output()
        .expect("run chromium (scripts/install-test-deps.sh installs it)");
    assert!(
        out.status.success() && png.is_file(),
        "chromium could not screenshot {}:\n{}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = colour_stats(&png);
    eprintln!(
        "{name}: {} colours, {:.2} of the pixels one colour",
        stats.0, stats.1
    );
    stats
}

/// The number of distinct RGB colours in a PNG (8-bit RGB or RGBA) and the share of pixels of
/// the most common one.
fn colour_stats(path: &Path) -> (usize, f64) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        fs::File::open(path).expect("open the screenshot"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("decode the PNG");
    assert!(info.width >= 1000 && info.height >= 800, "{info:?}");
    let step = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    let mut counts: std::collections::HashMap<(u8, u8, u8), usize> = Default::default();
    let mut total = 0;
    for px in buf[..info.buffer_size()].chunks_exact(step) {
        *counts.entry((px[0], px[1], px[2])).or_default() += 1;
        total += 1;
    }
    let max = counts.values().copied().max().unwrap_or(0);
    (counts.len(), max as f64 / total.max(1) as f64)
}

// ------------------------------------------------------------------------------------------
// Link checker

/// The Markdown files whose links are checked.
fn checked_files() -> Vec<PathBuf> {
    let mut files = vec![
        root().join("README.md"),
        root().join("charts/registry-auth/README.md"),
    ];
    let mut stack = vec![root().join("docs")];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read docs/").flatten() {
            let p = entry.path();
            if p.is_dir() && p.file_name().is_some_and(|n| n != "book") {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "md") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// Markdown text without fenced code blocks and inline code (links there are not links).
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fence: Option<&str> = None;
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(f) = fence {
            if t.starts_with(f) {
                fence = None;
            }
            out.push('\n');
            continue;
        }
        if t.starts_with("```") || t.starts_with("~~~") {
            fence = Some(&t[..3]);
            out.push('\n');
            continue;
        }
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
            } else if !in_code {
                out.push(c);
            }
        }
        out.push('\n');
    }
    out
}

/// The targets of inline links `[text](target)` and `![alt](target)`.
fn links(text: &str) -> Vec<String> {
    let re = regex::Regex::new(r"\]\(([^)\s]+)(?:\s+\x22[^\x22]*\x22)?\)").expect("regex");
    re.captures_iter(&prose(text))
        .map(|c| c[1].to_owned())
        .collect()
}

/// GitHub's anchor of a heading: lower case, punctuation other than `-` and `_` dropped, spaces
/// to `-`; a repeated slug gets `-1`, `-2`, ….
fn anchors(text: &str) -> BTreeSet<String> {
    let explicit = regex::Regex::new(r#"<a (?:id|name)="([^"]+)""#).expect("regex");
    let link_text = regex::Regex::new(r"\[([^\]]*)\]\([^)]*\)").expect("regex");
    let mut seen = BTreeSet::new();
    let mut fence = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            fence = !fence;
            continue;
        }
        if fence {
            continue;
        }
        // Explicit anchors: <a id="x"></a> / <a name="x">.
        for cap in explicit.captures_iter(line) {
            seen.insert(cap[1].to_owned());
        }
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let heading = heading.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        // Link text stays, the URL goes: [text](url) -> text.
        let heading = link_text.replace_all(heading.trim(), "$1");
        let base: String = heading
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut slug = base.clone();
        let mut n = 0;
        while seen.contains(&slug) {
            n += 1;
            slug = format!("{base}-{n}");
        }
        seen.insert(slug);
    }
    seen
}

/// A Markdown file's text with mdBook's `{{#include FILE}}` lines replaced by that file, so that
/// links into an including page find the included headings.
fn with_includes(file: &Path) -> String {
    let text = fs::read_to_string(file).unwrap_or_default();
    let mut out = String::new();
    for line in text.lines() {
        let included = line
            .trim()
            .strip_prefix("{{#include ")
            .and_then(|rest| rest.strip_suffix("}}"))
            .map(|rel| file.parent().expect("a folder").join(rel.trim()));
        match included {
            Some(path) => out.push_str(&fs::read_to_string(&path).unwrap_or_default()),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The broken links of one Markdown file, as `file: target (why)`.
fn broken_links(file: &Path) -> Vec<String> {
    let text = fs::read_to_string(file).expect("read a Markdown file");
    let rel = file
        .strip_prefix(root())
        .unwrap_or(file)
        .display()
        .to_string();
    let mut broken = Vec::new();
    for target in links(&text) {
        if target.contains("://") || target.starts_with("mailto:") || target.contains("{{") {
            continue;
        }
        let (path, anchor) = match target.split_once('#') {
            Some((p, a)) => (p, Some(a)),
            None => (target.as_str(), None),
        };
        let dest = if path.is_empty() {
            file.to_path_buf()
        } else {
            file.parent().expect("a folder").join(path)
        };
        let Ok(dest) = dest.canonicalize() else {
            broken.push(format!("{rel}: {target} (no such file)"));
            continue;
        };
        if !dest.starts_with(root()) {
            broken.push(format!("{rel}: {target} (outside the repository)"));
            continue;
        }
        let Some(anchor) = anchor else { continue };
        if dest.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let dest_text = with_includes(&dest);
        if !anchors(&dest_text).contains(anchor) {
            broken.push(format!("{rel}: {target} (no heading with that anchor)"));
        }
    }
    broken
}

/// Pages that show a shipped file show it as it is (the file is what a test runs).
#[test]
fn pages_show_the_shipped_examples_verbatim() {
    for (page, file) in [
        ("docs/src/access/acl.md", "examples/acl-tests/worked.yml"),
        (
            "docs/src/access/acl.md",
            "examples/acl-tests/worked.tests.yaml",
        ),
    ] {
        let text = fs::read_to_string(root().join(page)).expect("read the page");
        let shown = fs::read_to_string(root().join(file)).expect("read the example");
        assert!(
            text.contains(&format!("```yaml\n{shown}```")),
            "{page} must show {file} verbatim in a ```yaml block (copy it again)"
        );
    }
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let files = checked_files();
    assert!(files.len() >= 5, "{files:?}");
    let broken: Vec<String> = files.iter().flat_map(|f| broken_links(f)).collect();
    assert!(
        broken.is_empty(),
        "broken links (relative path or #anchor, GitHub heading slugs):\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_link_checker_finds_broken_links() {
    let text = "# Getting started\n## A `code` heading (v2.8)!\n## Dup\n## Dup\n\
                [ok](#getting-started) [ok](#a-code-heading-v28) [ok](#dup-1) [bad](#nope)\n\
                ```\n[not a link](#ignored)\n```\n";
    let a = anchors(text);
    for ok in ["getting-started", "a-code-heading-v28", "dup", "dup-1"] {
        assert!(a.contains(ok), "{ok} in {a:?}");
    }
    assert!(!a.contains("nope"));
    let l = links(text);
    assert_eq!(
        l,
        ["#getting-started", "#a-code-heading-v28", "#dup-1", "#nope"]
    );
    let tmp = stack::tempdir("ra-it-links");
    let file = root().join("target").join(format!(
        "links-selftest-{}.md",
        tmp.path().file_name().unwrap().to_string_lossy()
    ));
    fs::write(
        &file,
        format!("{text}\n[gone](no-such-file.md) [ok](../README.md#registry-auth)\n"),
    )
    .unwrap();
    let broken = broken_links(&file);
    let _ = fs::remove_file(&file);
    assert_eq!(broken.len(), 2, "{broken:?}");
    assert!(broken[0].contains("#nope") && broken[1].contains("no-such-file.md"));

    // A page that includes another (mdBook's `{{#include}}`, as the book's deployment and
    // troubleshooting pages do) has the included headings, and only those.
    let dir = root().join("target").join(format!(
        "links-selftest-inc-{}",
        tmp.path().file_name().unwrap().to_string_lossy()
    ));
    fs::create_dir_all(dir.join("src")).unwrap();
    fs::write(dir.join("guide.md"), "# Guide\n## Several replicas\n").unwrap();
    fs::write(
        dir.join("src/page.md"),
        "# Page\n{{#include ../guide.md}}\n",
    )
    .unwrap();
    let a = anchors(&with_includes(&dir.join("src/page.md")));
    assert!(
        a.contains("several-replicas") && a.contains("page"),
        "{a:?}"
    );
    assert!(!a.contains("nope"));
    let linking = dir.join("src/links.md");
    fs::write(
        &linking,
        "[ok](page.md#several-replicas) [bad](page.md#single-replica)\n",
    )
    .unwrap();
    let broken = broken_links(&linking);
    let _ = fs::remove_dir_all(&dir);
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert!(broken[0].contains("#single-replica"), "{broken:?}");
}
