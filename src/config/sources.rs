//! What a configuration was read from, byte for byte, for hot reload's change detection.
//!
//! While a configuration loads ([`recording`]), every file it reads through [`read`] is recorded
//! with a SHA-256 digest of exactly the bytes read, and every other file it references (through
//! the loader's path resolution, [`note`]) with a digest taken when its path was resolved, that
//! is before anything read it. The watcher compares those digests with the files on disk, so a
//! file that changes while the loader runs, after it was read, is seen as changed and loaded
//! again, never marked as seen without having been loaded.

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};

use aws_lc_rs::digest;

/// What a load saw of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// The SHA-256 digest of its bytes.
    Bytes(Vec<u8>),
    /// It could not be read (missing, unreadable).
    Absent,
    /// The load read it twice and got different bytes: it is treated as changed until loaded
    /// again.
    Unsettled,
}

impl Seen {
    fn of(bytes: &[u8]) -> Self {
        Self::Bytes(digest::digest(&digest::SHA256, bytes).as_ref().to_vec())
    }

    /// What `path` holds now (symlinks followed, so a Kubernetes ConfigMap swap shows).
    pub fn now(path: &Path) -> Self {
        match std::fs::read(path) {
            Ok(bytes) => Self::of(&bytes),
            Err(_) => Self::Absent,
        }
    }
}

/// One file a configuration was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The path as resolved (relative paths against the config file's folder).
    pub path: PathBuf,
    /// What the load saw of it.
    pub seen: Seen,
    /// Whether `seen` is the bytes a reader got (rather than a digest taken when the path was
    /// resolved).
    read: bool,
}

impl Source {
    /// Whether the file on disk still holds what the load saw.
    pub fn is_current(&self) -> bool {
        self.seen != Seen::Unsettled && Seen::now(&self.path) == self.seen
    }
}

/// Whether any of `sources` changed on disk since it was seen.
pub fn changed(sources: &[Source]) -> bool {
    sources.iter().any(|s| !s.is_current())
}

/// What each of `sources`' files holds now, in the same order.
pub fn now(sources: &[Source]) -> Vec<Seen> {
    sources.iter().map(|s| Seen::now(&s.path)).collect()
}

thread_local! {
    static RECORDING: RefCell<Option<Vec<Source>>> = const { RefCell::new(None) };
}

/// Runs `f`, returning what it read through [`read`] and [`note`] on this thread.
pub fn recording<T>(f: impl FnOnce() -> T) -> (T, Vec<Source>) {
    let outer = RECORDING.with(|r| r.borrow_mut().replace(Vec::new()));
    let value = f();
    let seen = RECORDING.with(|r| std::mem::replace(&mut *r.borrow_mut(), outer));
    (value, seen.unwrap_or_default())
}

fn record(path: &Path, seen: Seen, read: bool) {
    RECORDING.with(|r| {
        let mut r = r.borrow_mut();
        let Some(list) = r.as_mut() else {
            return;
        };
        match list.iter_mut().find(|s| s.path == path) {
            None => list.push(Source {
                path: path.to_path_buf(),
                seen,
                read,
            }),
            // Only a path resolved so far: the bytes read replace the earlier digest.
            Some(s) if read && !s.read => {
                s.seen = seen;
                s.read = true;
            }
            // Read twice with different bytes: not a consistent snapshot.
            Some(s) if read && s.seen != seen => s.seen = Seen::Unsettled,
            Some(_) => {}
        }
    });
}

/// Records `path` (resolved from the configuration) with what it holds now, unless a read of
/// it is already recorded. Called before anything reads the file, so a change after this point
/// shows as a difference.
pub fn note(path: &Path) {
    let recording = RECORDING.with(|r| r.borrow().is_some());
    if recording {
        record(path, Seen::now(path), false);
    }
}

/// `std::fs::read`, recording a digest of exactly the bytes read.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    let result = std::fs::read(path);
    let seen = match &result {
        Ok(bytes) => Seen::of(bytes),
        Err(_) => Seen::Absent,
    };
    record(path, seen, true);
    test_hook::pause_after_read(path);
    result
}

/// `std::fs::read_to_string`, recording a digest of exactly the bytes read.
pub fn read_to_string(path: &Path) -> io::Result<String> {
    String::from_utf8(read(path)?).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}

/// Debug builds only (the test profile; release builds compile it out; not `REGISTRY_AUTH_*`,
/// whose unknown names the binary refuses): when
/// `RA_TEST_PAUSE_DIR` names a folder holding a file `pause` whose content is a file
/// name, the next read of a file of that name removes `pause`, creates `paused` and waits (up
/// to 60 s) until the test creates `resume`. This lets an end-to-end test change a file between
/// the loader's read and the end of the load, deterministically.
#[cfg(debug_assertions)]
mod test_hook {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    pub(super) fn pause_after_read(path: &Path) {
        let Some(dir) = std::env::var_os("RA_TEST_PAUSE_DIR").map(PathBuf::from) else {
            return;
        };
        let pause = dir.join("pause");
        let Ok(name) = std::fs::read_to_string(&pause) else {
            return;
        };
        if path.file_name().and_then(|n| n.to_str()) != Some(name.trim())
            || std::fs::remove_file(&pause).is_err()
        {
            return;
        }
        let _ = std::fs::write(dir.join("paused"), name.trim());
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::fs::remove_file(dir.join("resume")).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[cfg(not(debug_assertions))]
mod test_hook {
    pub(super) fn pause_after_read(_: &std::path::Path) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_exactly_the_bytes_read_not_what_is_there_afterwards() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("users.htpasswd");
        std::fs::write(&f, "first").unwrap();
        let (text, seen) = recording(|| {
            let text = read_to_string(&f).unwrap();
            // The file changes while the load still runs.
            std::fs::write(&f, "second").unwrap();
            text
        });
        assert_eq!(text, "first");
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].seen, Seen::of(b"first"));
        assert!(changed(&seen), "the change after the read must show");
        std::fs::write(&f, "first").unwrap();
        assert!(!changed(&seen));
    }

    #[test]
    fn a_resolved_path_is_fingerprinted_before_it_is_read_and_reads_replace_it() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("key.pem");
        std::fs::write(&f, "v1").unwrap();
        let missing = dir.path().join("missing");
        let ((), seen) = recording(|| {
            note(&f);
            note(&missing);
            std::fs::write(&f, "v2").unwrap();
            // A reader that does not record: the earlier digest (v1) stays, so the change
            // between resolution and the untracked read shows as a change.
        });
        assert_eq!(seen[0].seen, Seen::of(b"v1"));
        assert_eq!(seen[1].seen, Seen::Absent);
        assert!(changed(&seen));
        let ((), seen) = recording(|| {
            note(&f);
            std::fs::write(&f, "v3").unwrap();
            read(&f).unwrap();
            // Noting it again later keeps the bytes read.
            note(&f);
        });
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].seen, Seen::of(b"v3"));
        assert!(!changed(&seen));
    }

    #[test]
    fn two_reads_with_different_bytes_count_as_changed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "a").unwrap();
        let ((), seen) = recording(|| {
            read(&f).unwrap();
            std::fs::write(&f, "b").unwrap();
            read(&f).unwrap();
        });
        assert_eq!(seen[0].seen, Seen::Unsettled);
        assert!(
            changed(&seen),
            "even though the file now equals the last read"
        );
    }

    #[test]
    fn nothing_is_recorded_outside_a_recording_and_missing_files_read_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("nope");
        assert!(read(&f).is_err());
        note(&f);
        let (r, seen) = recording(|| read(&f).is_err());
        assert!(r);
        assert_eq!(seen[0].seen, Seen::Absent);
        assert!(!changed(&seen));
        std::fs::write(&f, "now here").unwrap();
        assert!(changed(&seen));
    }
}
