//! Persistent store of registered clients (SQLite via rusqlite).
//!
//! Owns: the database file under `store.data_source`, its schema and migrations, and the
//! three operations the daemon needs on client records (get, insert-if-absent, delete).
//! Holds only `clientID → argon2id hash`; never plaintext keys, never sessions or calls.
//! Must not touch: HTTP, auth policy, the media path. Calls are blocking; callers off the
//! async runtime threads use `spawn_blocking`.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

/// Longest clientID the store accepts (upstream's key-size limit).
pub const MAX_CLIENT_ID_LEN: usize = 64;

/// Database file name inside the `data_source` directory.
pub const DB_FILE_NAME: &str = "rtcd.db";

/// Schema migrations, applied in order; `PRAGMA user_version` counts the applied ones.
const MIGRATIONS: &[&str] = &["CREATE TABLE clients (
        client_id  TEXT PRIMARY KEY NOT NULL,
        key_hash   TEXT NOT NULL,
        created_at INTEGER NOT NULL DEFAULT (unixepoch())
    ) STRICT;"];

/// Errors of store operations. Display strings are the ones upstream surfaces via the API.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("error: not found")]
    NotFound,
    #[error("error: empty key")]
    EmptyKey,
    #[error("error: conflict")]
    Conflict,
    #[error("failed to set key: error: key too large")]
    KeyTooLarge,
    #[error("failed to create data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// The data directory exists but may not be used (wrong owner, writable by others, or not
    /// writable by the daemon's user); the text names the directory and the fix.
    #[error("store directory {path}: {why}")]
    Unusable { path: PathBuf, why: String },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// The fix named in every unusable-directory error.
const FIX: &str = "use a directory of the daemon's own: set store.data_source \
    (RTCD_STORE_DATASOURCE), or remove the directory, or give it to the daemon's user \
    (chown) with mode 0700";

/// Refuses an existing data directory the daemon cannot or must not use.
fn check_directory(dir: &Path, default_location: bool) -> Result<(), StoreError> {
    use std::os::unix::fs::MetadataExt as _;
    let unusable = |why: String| StoreError::Unusable {
        path: dir.to_owned(),
        why: format!("{why}; {FIX}"),
    };
    let meta = fs::metadata(dir).map_err(|e| unusable(e.to_string()))?;
    if !meta.is_dir() {
        return Err(unusable("not a directory".into()));
    }
    // The daemon's effective user owns /proc/self (no unsafe call to geteuid needed).
    let me = fs::metadata("/proc/self").map(|m| m.uid()).ok();
    if default_location {
        if let Some(me) = me
            && meta.uid() != me
        {
            return Err(unusable(format!(
                "owned by uid {}, but rtcd runs as uid {me}; in the shared default location it \
                 is refused (another local user may have created it)",
                meta.uid()
            )));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(unusable(format!(
                "writable by group or others (mode {:o}); in the shared default location it is \
                 refused",
                meta.mode() & 0o777
            )));
        }
    }
    // Writable by us? (root may write anywhere.)
    let probe = dir.join(".rtcd-write-probe");
    match fs::write(&probe, b"") {
        Ok(()) => {
            let _ = fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(unusable(format!(
            "not writable by the daemon's user (uid {}): {e}",
            me.map_or("?".into(), |u| u.to_string())
        ))),
    }
}

/// Handle to the client database. One connection, serialised by a mutex: the store sees a
/// handful of operations per plugin (re)connect, never per packet.
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the database in directory `data_source`. When that is the
    /// built-in default (`/tmp/rtcd_db`, in a directory every local user can write), an
    /// existing directory must belong to the daemon's user and not be writable by others:
    /// another user could have created it to read or plant client records.
    pub fn open(data_source: &Path, default_location: bool) -> Result<Self, StoreError> {
        if data_source.exists() {
            check_directory(data_source, default_location)?;
        } else {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(data_source)
                .map_err(|source| StoreError::CreateDir {
                    path: data_source.to_owned(),
                    source,
                })?;
        }
        let path = data_source.join(DB_FILE_NAME);
        let db_path = path.clone();
        let open_err = |source| StoreError::Open {
            path: db_path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(open_err)?;
        // Owner-only file, as upstream's store; the WAL and SHM files follow the umask.
        let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o600));
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        // FULL: every committed registration survives power loss and kill -9.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        let store = Self {
            conn: Mutex::new(conn),
            path,
        };
        store.migrate().map_err(open_err)?;
        Ok(store)
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&self) -> Result<(), rusqlite::Error> {
        let mut conn = self.lock();
        let applied: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied.max(0) as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", index as i64 + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll
        // back), so a poisoned mutex is still usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stored key hash of `client_id`.
    pub fn get(&self, client_id: &str) -> Result<String, StoreError> {
        check_key(client_id)?;
        self.lock()
            .query_row(
                "SELECT key_hash FROM clients WHERE client_id = ?1",
                [client_id],
                |row| row.get(0),
            )
            .optional()?
            .ok_or(StoreError::NotFound)
    }

    /// Inserts a new client; an existing record is never overwritten ([`StoreError::Conflict`]).
    pub fn insert(&self, client_id: &str, key_hash: &str) -> Result<(), StoreError> {
        check_key(client_id)?;
        let inserted = self.lock().execute(
            "INSERT INTO clients (client_id, key_hash) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![client_id, key_hash],
        )?;
        if inserted == 0 {
            return Err(StoreError::Conflict);
        }
        Ok(())
    }

    /// Deletes a client record.
    pub fn delete(&self, client_id: &str) -> Result<(), StoreError> {
        check_key(client_id)?;
        let deleted = self
            .lock()
            .execute("DELETE FROM clients WHERE client_id = ?1", [client_id])?;
        if deleted == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Number of registered clients.
    pub fn count(&self) -> Result<u64, StoreError> {
        let count: i64 = self
            .lock()
            .query_row("SELECT COUNT(*) FROM clients", [], |r| r.get(0))?;
        Ok(count.max(0) as u64)
    }
}

fn check_key(client_id: &str) -> Result<(), StoreError> {
    if client_id.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    if client_id.len() > MAX_CLIENT_ID_LEN {
        return Err(StoreError::KeyTooLarge);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_delete_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nested/db");
        let store = Store::open(&data, false).unwrap();
        store.insert("a", "hash-a").unwrap();
        assert!(matches!(
            store.insert("a", "other"),
            Err(StoreError::Conflict)
        ));
        assert_eq!(store.get("a").unwrap(), "hash-a");
        assert!(matches!(store.get("b"), Err(StoreError::NotFound)));
        drop(store);
        let store = Store::open(&data, false).unwrap();
        assert_eq!(store.get("a").unwrap(), "hash-a");
        store.delete("a").unwrap();
        assert!(matches!(store.delete("a"), Err(StoreError::NotFound)));
        assert_eq!(store.count().unwrap(), 0);
    }

    #[test]
    fn key_limits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        assert_eq!(
            store.insert("", "h").unwrap_err().to_string(),
            "error: empty key"
        );
        let long = "x".repeat(65);
        assert_eq!(
            store.insert(&long, "h").unwrap_err().to_string(),
            "failed to set key: error: key too large"
        );
        store.insert(&"y".repeat(64), "h").unwrap();
    }

    #[test]
    fn an_unsafe_default_directory_is_refused_naming_the_fix() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = Store::open(&data, true).err().expect("refused").to_string();
        assert!(err.contains(&data.display().to_string()), "{err}");
        assert!(err.contains("writable by group or others"), "{err}");
        assert!(err.contains("RTCD_STORE_DATASOURCE"), "{err}");
        // Elsewhere the operator chose the directory: accepted.
        Store::open(&data, false).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        Store::open(&data, true).unwrap();
        // A file where the directory should be.
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let err = Store::open(&file, false)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("not a directory"), "{err}");
    }
}
