//! Owner-only files: the SQLite files that hold credentials are created `0600` (with their
//! `-wal`, `-shm` and `-journal` companions), and the secret files the configuration names are
//! checked for group/other read access (a warning, not a refusal: the operator decides).

use std::io;
use std::path::{Path, PathBuf};

/// The files SQLite keeps next to a database (`-wal`, `-shm` in WAL mode, `-journal` otherwise).
const SQLITE_COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// Creates `path` empty with mode `0600` (no error when it exists already).
pub fn create_owner_only(path: &Path) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes `path` (a SQLite database about to be opened) owner-only: creates it empty with mode
/// `0600` when missing (SQLite accepts an empty file as an empty database), and takes group and
/// other access away from it and from existing companions. SQLite creates `-wal`, `-shm` and
/// `-journal` with the database file's mode, so they follow. A file that cannot be changed
/// (owned by someone else) is left as is; only a failure to create is an error.
pub fn private_sqlite_file(path: &Path) -> io::Result<()> {
    create_owner_only(path)?;
    #[cfg(unix)]
    for p in std::iter::once(path.to_path_buf()).chain(companions(path)) {
        restrict(&p);
    }
    Ok(())
}

fn companions(path: &Path) -> impl Iterator<Item = PathBuf> + '_ {
    SQLITE_COMPANIONS.iter().map(move |suffix| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    })
}

/// Takes group and other access away from an existing file.
#[cfg(unix)]
fn restrict(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700));
        }
    }
}

/// When `path` exists and group or others may read it: its permission bits (e.g. `0o644`).
pub fn readable_by_others(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o044 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// The warning for a secret file that group or others may read, or `None`.
pub fn exposure_warning(path: &Path, what: &str) -> Option<String> {
    readable_by_others(path).map(|mode| {
        format!(
            "{} ({what}) is readable by group or others (mode {mode:04o}); make it owner-only: \
             `chmod 600 {}` (in Kubernetes, mount the Secret with `defaultMode: 0400`)",
            path.display(),
            path.display()
        )
    })
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn sqlite_files_are_created_and_kept_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        private_sqlite_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        // Files of an older version, created 0644: restricted at the next start.
        let wal = dir.path().join("x.db-wal");
        std::fs::write(&wal, b"").unwrap();
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        private_sqlite_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&wal), 0o600);
        assert!(private_sqlite_file(&dir.path().join("missing/x.db")).is_err());
    }

    #[test]
    fn secret_files_readable_by_others_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, b"s").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let w = exposure_warning(&f, "token.key").unwrap();
        assert!(w.contains("0644") && w.contains("token.key"), "{w}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(exposure_warning(&f, "x").is_some());
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(exposure_warning(&f, "x").is_none());
        assert!(exposure_warning(&dir.path().join("missing"), "x").is_none());
    }
}
