-- The OLD dependencies shape (before beads migration 0041; still shown in Gas Town's
-- docs/design/dolt-storage.md): one depends_on_id column, primary key (issue_id, depends_on_id).
-- Run after beads_schema.sql: it replaces dependencies and wisp_dependencies.

DROP TABLE IF EXISTS wisp_dependencies;
DROP TABLE IF EXISTS dependencies;

CREATE TABLE dependencies (
    issue_id VARCHAR(255) NOT NULL,
    depends_on_id VARCHAR(255) NOT NULL,
    type VARCHAR(32) NOT NULL DEFAULT 'blocks',
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    created_by VARCHAR(255) NOT NULL DEFAULT '',
    PRIMARY KEY (issue_id, depends_on_id),
    INDEX idx_dependencies_depends_on (depends_on_id),
    INDEX idx_dependencies_depends_on_type (depends_on_id, type)
);

CREATE TABLE wisp_dependencies LIKE dependencies;
