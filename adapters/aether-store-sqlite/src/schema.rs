//! The SQLite schema. A session's tree is a chain of layers (top first); layers below the top
//! are frozen and may be shared by forks and checkpoints.

use rusqlite::Connection;

use aether_domain::Result;

use crate::backend;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    base_fingerprint TEXT NOT NULL,
    source_ref TEXT,
    status TEXT NOT NULL,
    tags TEXT NOT NULL,
    generation INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    last_activity_at INTEGER NOT NULL,
    approval_policy TEXT NOT NULL,
    chain TEXT NOT NULL,
    next_event INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS sessions_by_tenant ON sessions(tenant, id);

CREATE TABLE IF NOT EXISTS layers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    parent INTEGER,
    refs INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS entries (
    layer INTEGER NOT NULL,
    path TEXT NOT NULL,
    parent TEXT NOT NULL,
    present INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    mode INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    gid INTEGER NOT NULL,
    size INTEGER NOT NULL,
    hash TEXT,
    target TEXT,
    rdev INTEGER NOT NULL,
    nlink INTEGER NOT NULL,
    atime INTEGER NOT NULL,
    mtime INTEGER NOT NULL,
    ctime INTEGER NOT NULL,
    version INTEGER NOT NULL,
    xattrs BLOB,
    inode INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (layer, path)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_by_parent ON entries(layer, parent, path);
-- Only files with several names are ever looked up by inode (their names all have nlink > 1).
CREATE INDEX IF NOT EXISTS entries_by_inode ON entries(layer, inode) WHERE present = 1 AND nlink > 1;

CREATE TABLE IF NOT EXISTS checkpoints (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    session TEXT NOT NULL,
    name TEXT,
    generation INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    layer INTEGER NOT NULL,
    chain TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS checkpoints_by_session ON checkpoints(session, id);

CREATE TABLE IF NOT EXISTS events (
    session TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    path TEXT,
    to_path TEXT,
    related_id TEXT,
    principal TEXT NOT NULL,
    generation INTEGER NOT NULL,
    time INTEGER NOT NULL,
    PRIMARY KEY (session, seq)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS idempotency (
    tenant TEXT NOT NULL,
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    outcome TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, scope, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_by_age ON idempotency(created_at);

-- The knowledge cache. A NULL value is a deleted key kept for its version (versions never
-- repeat); an expired one reads as absent until it is written again.
CREATE TABLE IF NOT EXISTS kv (
    session TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB,
    version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    ttl INTEGER,
    expires_at INTEGER,
    PRIMARY KEY (session, key)
) WITHOUT ROWID;

-- Review records keep their API JSON in `body`; the other columns are what queries need.
CREATE TABLE IF NOT EXISTS approvals (
    session TEXT NOT NULL,
    id TEXT NOT NULL,
    status TEXT NOT NULL,
    generation INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (session, id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS commits (
    session TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (session, id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS annotations (
    session TEXT NOT NULL,
    id TEXT NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (session, id)
) WITHOUT ROWID;

-- Sources keep their API JSON in `body`; `holder` is the hidden session whose checkpoints
-- are the revisions' trees.
CREATE TABLE IF NOT EXISTS sources (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    holder TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS revisions (
    source TEXT NOT NULL,
    id TEXT NOT NULL,
    checkpoint TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (source, id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS jobs (
    source TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (source, id)
) WITHOUT ROWID;

-- Retained bus messages (a bounded tail per session), as their API JSON.
CREATE TABLE IF NOT EXISTS bus (
    session TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (session, seq)
) WITHOUT ROWID;

-- Secrets, sealed by the service before they get here. `tenant` is `*` for unscoped ones;
-- `scope` is a session id, `tenant` or `unscoped`.
CREATE TABLE IF NOT EXISTS secrets (
    tenant TEXT NOT NULL,
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    sealed BLOB NOT NULL,
    version INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, scope, name)
) WITHOUT ROWID;

-- Per-session counters for analytics and usage, and the last health report.
CREATE TABLE IF NOT EXISTS session_stats (
    session TEXT PRIMARY KEY,
    writes INTEGER NOT NULL,
    bytes_written INTEGER NOT NULL,
    bytes_read INTEGER NOT NULL,
    first_write_at INTEGER
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS session_health (
    session TEXT PRIMARY KEY,
    body TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS blobs (
    hash TEXT PRIMARY KEY,
    refs INTEGER NOT NULL
) WITHOUT ROWID;
"#;

pub(crate) fn init(conn: &Connection) -> Result<()> {
    conn.execute_batch(SCHEMA)
        .map_err(|e| backend("create the schema", e))
}
