-- Beads (bd) SQL schema for tests: a MariaDB/MySQL-8 rendering of the tables a Gas Town beads
-- database holds (BD:internal/storage/schema/migrations; see shared/reference/gastown.md §3.2),
-- with the NEW dependencies shape (migrations 0041/0043: one of three target columns).
-- The OLD dependencies shape is in beads_schema_old_deps.sql (run after this file).
--
-- Differences from the real schema, on purpose:
--   * No FOREIGN KEYs.  JSONL backups are scrubbed of wisps/agents/convoys but keep their child
--     rows, so real backups have labels, events and dependencies whose issue is not in
--     issues.jsonl (carolina-futons: 832 of 2625 dependencies, 400 of 2652 events).
--   * spec_id is indexed on a 255-character prefix: InnoDB keys are at most 3072 bytes and
--     VARCHAR(1024) in utf8mb4 is 4096 (Dolt has no such limit).
--   * Text bodies are LONGTEXT throughout (bd widened most of them in 0033/0043/0049).
-- The character set and collation come from CREATE DATABASE (tests/sql/load.py).
-- Only whole-line "--" comments and no ";" inside statements: load.py splits on ";".

CREATE TABLE issues (
    id VARCHAR(255) NOT NULL,
    content_hash VARCHAR(64),
    title VARCHAR(500) NOT NULL,
    description LONGTEXT NOT NULL,
    design LONGTEXT NOT NULL,
    acceptance_criteria LONGTEXT NOT NULL,
    notes LONGTEXT NOT NULL,
    status VARCHAR(32) NOT NULL DEFAULT 'open',
    priority INT NOT NULL DEFAULT 2,
    issue_type VARCHAR(32) NOT NULL DEFAULT 'task',
    assignee VARCHAR(255),
    estimated_minutes INT,
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    created_by VARCHAR(255) DEFAULT '',
    owner VARCHAR(255) DEFAULT '',
    updated_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    started_at DATETIME,
    closed_at DATETIME,
    closed_by_session VARCHAR(255) DEFAULT '',
    close_reason LONGTEXT DEFAULT (''),
    external_ref VARCHAR(255),
    spec_id VARCHAR(1024),
    compaction_level INT DEFAULT 0,
    compacted_at DATETIME,
    compacted_at_commit VARCHAR(64),
    original_size INT,
    source_system VARCHAR(255) DEFAULT '',
    source_repo VARCHAR(512) DEFAULT '',
    sender VARCHAR(255) DEFAULT '',
    ephemeral TINYINT(1) DEFAULT 0,
    wisp_type VARCHAR(32) DEFAULT '',
    pinned TINYINT(1) DEFAULT 0,
    is_template TINYINT(1) DEFAULT 0,
    crystallizes TINYINT(1) DEFAULT 0,
    no_history TINYINT(1) DEFAULT 0,
    is_blocked TINYINT(1) NOT NULL DEFAULT 0,
    mol_type VARCHAR(32) DEFAULT '',
    work_type VARCHAR(32) DEFAULT 'mutex',
    quality_score DOUBLE,
    metadata JSON DEFAULT (JSON_OBJECT()),
    event_kind VARCHAR(32) DEFAULT '',
    actor VARCHAR(255) DEFAULT '',
    target VARCHAR(255) DEFAULT '',
    payload LONGTEXT DEFAULT (''),
    await_type VARCHAR(32) DEFAULT '',
    await_id VARCHAR(255) DEFAULT '',
    timeout_ns BIGINT DEFAULT 0,
    waiters LONGTEXT DEFAULT (''),
    hook_bead VARCHAR(255) DEFAULT '',
    role_bead VARCHAR(255) DEFAULT '',
    agent_state VARCHAR(32) DEFAULT '',
    last_activity DATETIME,
    role_type VARCHAR(32) DEFAULT '',
    rig VARCHAR(255) DEFAULT '',
    due_at DATETIME,
    defer_until DATETIME,
    PRIMARY KEY (id),
    INDEX idx_issues_status (status),
    INDEX idx_issues_priority (priority),
    INDEX idx_issues_issue_type (issue_type),
    INDEX idx_issues_assignee (assignee),
    INDEX idx_issues_created_at (created_at),
    INDEX idx_issues_spec_id (spec_id(255)),
    INDEX idx_issues_external_ref (external_ref),
    INDEX idx_issues_blocked_status (is_blocked, status)
);

CREATE TABLE labels (
    issue_id VARCHAR(255) NOT NULL,
    label VARCHAR(255) NOT NULL,
    PRIMARY KEY (issue_id, label),
    INDEX idx_labels_label (label)
);

CREATE TABLE comments (
    id CHAR(36) NOT NULL DEFAULT (UUID()),
    issue_id VARCHAR(255) NOT NULL,
    author VARCHAR(255) NOT NULL,
    text LONGTEXT NOT NULL,
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (id),
    INDEX idx_comments_issue (issue_id),
    INDEX idx_comments_created_at (created_at)
);

-- Backups written before migration 0037 carry integer event ids: they are stored as text.
CREATE TABLE events (
    id CHAR(36) NOT NULL DEFAULT (UUID()),
    issue_id VARCHAR(255) NOT NULL,
    event_type VARCHAR(32) NOT NULL,
    actor VARCHAR(255) NOT NULL,
    old_value LONGTEXT,
    new_value LONGTEXT,
    comment TEXT,
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (id),
    INDEX idx_events_issue (issue_id),
    INDEX idx_events_created_at (created_at)
);

CREATE TABLE dependencies (
    id CHAR(36) NOT NULL DEFAULT (UUID()),
    issue_id VARCHAR(255) NOT NULL,
    depends_on_issue_id VARCHAR(255),
    depends_on_wisp_id VARCHAR(255),
    depends_on_external VARCHAR(255),
    type VARCHAR(32) NOT NULL DEFAULT 'blocks',
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    created_by VARCHAR(255) NOT NULL DEFAULT '',
    metadata JSON DEFAULT (JSON_OBJECT()),
    thread_id VARCHAR(255) DEFAULT '',
    PRIMARY KEY (id),
    UNIQUE KEY uq_dep_issue_target (issue_id, depends_on_issue_id),
    UNIQUE KEY uq_dep_wisp_target (issue_id, depends_on_wisp_id),
    UNIQUE KEY uq_dep_external_target (issue_id, depends_on_external),
    INDEX idx_dep_issue_target (depends_on_issue_id),
    INDEX idx_dep_wisp_target (depends_on_wisp_id),
    INDEX idx_dep_external_target (depends_on_external),
    INDEX idx_dep_thread (thread_id),
    CONSTRAINT ck_dep_one_target CHECK (
        (depends_on_issue_id IS NOT NULL) + (depends_on_wisp_id IS NOT NULL)
        + (depends_on_external IS NOT NULL) = 1)
);

CREATE TABLE interactions (
    id VARCHAR(64) NOT NULL,
    kind VARCHAR(64) NOT NULL,
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    actor VARCHAR(255),
    issue_id VARCHAR(255),
    model VARCHAR(255),
    prompt LONGTEXT,
    response LONGTEXT,
    error LONGTEXT,
    tool_name VARCHAR(255),
    exit_code INT,
    parent_id VARCHAR(64),
    label VARCHAR(64),
    reason LONGTEXT,
    extra JSON,
    PRIMARY KEY (id),
    INDEX idx_interactions_kind (kind),
    INDEX idx_interactions_created_at (created_at),
    INDEX idx_interactions_issue (issue_id),
    INDEX idx_interactions_parent (parent_id)
);

CREATE TABLE config (
    `key` VARCHAR(255) NOT NULL,
    value LONGTEXT NOT NULL,
    PRIMARY KEY (`key`)
);

-- Dolt-ignored tables (not versioned): wisps mirror issues, wisp_* mirror the child tables.
-- CREATE TABLE ... LIKE copies columns, defaults, indexes and CHECK constraints (MariaDB, MySQL 8).
CREATE TABLE wisps LIKE issues;
ALTER TABLE wisps ALTER COLUMN ephemeral SET DEFAULT 1;
CREATE TABLE wisp_labels LIKE labels;
CREATE TABLE wisp_events LIKE events;
CREATE TABLE wisp_comments LIKE comments;
CREATE TABLE wisp_dependencies LIKE dependencies;
