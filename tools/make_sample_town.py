#!/usr/bin/env python3
"""Write the fictional demo town `sampletown` into gt_finetune/data/sample_town/.

Run from the repository root:  python3 tools/make_sample_town.py

Standard library only, fixed seed: two runs give byte-identical files. The output folder
is deleted and rebuilt on every run. All content is invented (people, hosts and addresses
are fictional; e-mail addresses use example.com).

The town has no README or docs on purpose; it mirrors what a real `~/gt` holds:

    sample_town/
    ├── mayor/town.json, mayor/rigs.json          town identity + rig registry
    ├── .beads/metadata.json, routes.jsonl        hq DB metadata + prefix routes
    ├── .beads/backup/*.jsonl                     beads JSONL backup (issues, labels, events,
    │                                             comments, dependencies, config)
    ├── .beads/formulas/mol-harbor-release.formula.toml
    ├── .events.jsonl                             gt event feed
    ├── harbor/config.json, lantern/config.json   rig identity files
    └── claude/projects/<workdir-hash>/<session-uuid>.jsonl   Claude Code transcripts

Two rigs: `harbor` (prefix hb; a Python berth-scheduling API) and `lantern` (prefix lt;
a Go metrics/uptime collector with a TypeScript web UI). Town beads use prefix hq.
"""
from __future__ import annotations

import hashlib
import json
import random
import shutil
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

SEED = 20260901
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "gt_finetune" / "data" / "sample_town"

OWNER = "operator@example.com"
HOME = "/home/op/gt"
T0 = datetime(2026, 9, 2, 8, 0, tzinfo=timezone.utc)       # first bead
NOW = datetime(2026, 11, 30, 18, 0, tzinfo=timezone.utc)   # "today" for the snapshot
B36 = "0123456789abcdefghijklmnopqrstuvwxyz"

rng = random.Random(SEED)


# --------------------------------------------------------------------------- helpers

def ts(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def ts_ms(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def go_json(obj, sort_keys: bool = False) -> str:
    """Compact JSON the way Go's encoding/json writes it (HTML-escaped <, >, &)."""
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)
    return (s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
             .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def js_json(obj) -> str:
    """Compact JSON the way JSON.stringify writes it (Claude Code transcripts)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def new_uuid() -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def sha7() -> str:
    return "%07x" % rng.getrandbits(28)


def sha40() -> str:
    return "%040x" % rng.getrandbits(160)


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def minutes(a: float, b: float) -> timedelta:
    return timedelta(minutes=rng.uniform(a, b))


_used_ids: set[str] = set()


def new_id(prefix: str) -> str:
    while True:
        n = 3 if rng.random() < 0.8 else 4
        bid = f"{prefix}-" + "".join(rng.choice(B36) for _ in range(n))
        if bid not in _used_ids:
            _used_ids.add(bid)
            return bid


def pick(seq):
    return seq[rng.randrange(len(seq))]


# --------------------------------------------------------------------------- rigs

HARBOR = {
    "rig": "harbor", "prefix": "hb", "lang": "py",
    "polecats": ["nux", "rictus", "slit", "capable", "ace", "keeper"], "crew": ["max"],
    "test_all": "make check", "lint_cmd": "ruff check harbor tests",
    "logger": "structlog", "metrics_port": 8081,
    "config_file": "harbor/settings.py",
    "modules": [
        {
            "file": "harbor/scheduler/allocator.py", "test": "tests/scheduler/test_allocator.py",
            "component": "berth allocator", "funcs": ["allocate_berth", "score_candidates", "release_berth"],
            "edges": "zero free berths, a stay that ends exactly when another starts, and vessels with no recorded draft",
            "log_fields": "arrival id, chosen berth and the top three candidate scores",
            "refactor": ("allocate_berth", "candidate scoring", "the slot-locking SQL", "_lock_free_slots", 140, 70),
            "metric": ("harbor_allocations_total", "counter", "`result` (placed, waitlisted, rejected)",
                       "often the allocator has to waitlist an arrival"),
            "bugs": [
                {"func": "allocate_berth", "short": "double-books a berth when two arrivals share an ETA",
                 "long": "can give the same berth to two arrivals whose ETAs fall in the same minute",
                 "err": 'IntegrityError: duplicate key value violates unique constraint "berth_slots_berth_id_starts_at_key"',
                 "impact": "The second booking fails with a 500 and the harbour office re-enters it by hand",
                 "cause": "the candidate query and the slot insert run in separate transactions, so both requests see the berth as free",
                 "fix": "wrapped the candidate lookup and the slot insert in one transaction with `SELECT ... FOR UPDATE SKIP LOCKED` on the berth row",
                 "test": "test_concurrent_arrivals_get_distinct_berths"},
                {"func": "score_candidates", "short": "ignores vessel draft at low tide",
                 "long": "ranks shallow berths first even when the vessel's draft exceeds the berth depth at low water",
                 "err": "AssertionError: berth B-07 depth 3.2m < draft 3.8m",
                 "impact": "Deep-draft yachts get berths they cannot enter at low water",
                 "cause": "`_fits_draft` compared the draft against chart depth instead of chart depth plus the lowest tide height in the stay window",
                 "fix": "passed the tide window into `_fits_draft` and compared against `berth.chart_depth_m + window.min_height_m`",
                 "test": "test_deep_draft_vessel_skips_shallow_berths"},
                {"func": "release_berth", "short": "leaves the slot reserved after a cancelled arrival",
                 "long": "does not clear `berth_slots.reserved_by` when an arrival is cancelled before check-in",
                 "err": "WARN holds: slot 2026-10-03T06:00Z still reserved_by arrival 4411 (status=cancelled)",
                 "impact": "Cancelled arrivals keep blocking berths until the nightly purge",
                 "cause": "the cancel path only updated the arrival row and never called `release_berth`",
                 "fix": "called `release_berth` from the cancel handler inside the same transaction",
                 "test": "test_cancel_before_checkin_frees_slot"},
            ],
            "features": [
                {"short": "berth preference per vessel",
                 "motivation": "Regular visitors always ask for the same berth, and the harbour office overrides the allocator by hand",
                 "design": "store an optional `preferred_berth_id` on the vessel and give it a scoring bonus in `score_candidates` when it is free for the whole stay",
                 "impl": "a nullable `vessels.preferred_berth_id` and a +25 bonus in `score_candidates`",
                 "accept": "The preferred berth wins when it is free; otherwise normal scoring applies."},
            ],
        },
        {
            "file": "harbor/api/arrivals.py", "test": "tests/api/test_arrivals.py",
            "component": "arrivals API", "funcs": ["create_arrival", "list_arrivals", "update_eta"],
            "edges": "an ETA in the past, a vessel with no MMSI, and a duplicate booking reference",
            "log_fields": "request id, arrival id and the caller's token scope",
            "refactor": ("create_arrival", "request validation", "the duplicate-reference check", "_find_duplicate_booking", 95, 52),
            "metric": ("harbor_eta_changes_total", "counter", "`source` (app, office, ais)",
                       "many ETA changes come from the mobile app versus the office"),
            "bugs": [
                {"func": "update_eta", "short": "returns 500 for an ETA without a timezone",
                 "long": "crashes when the client sends an ETA without a UTC offset",
                 "err": "TypeError: can't compare offset-naive and offset-aware datetimes",
                 "impact": "The mobile app sends local times, so every ETA change from it fails",
                 "cause": "the request model accepted naive datetimes while `arrival.window_start` is offset-aware",
                 "fix": "made the `eta` field require an offset and return 422 with a clear message for naive values",
                 "test": "test_update_eta_rejects_naive_datetime"},
                {"func": "list_arrivals", "short": "skips arrivals on page boundaries",
                 "long": "drops an arrival at each page boundary when several share the same `created_at`",
                 "err": "AssertionError: expected 120 arrivals across pages, got 117",
                 "impact": "The daily arrivals board silently misses vessels",
                 "cause": "the cursor paginated on `created_at` alone, which is not unique",
                 "fix": "switched the cursor to the `(created_at, id)` pair and encoded both in the opaque cursor",
                 "test": "test_pagination_is_stable_with_equal_timestamps"},
            ],
            "features": [
                {"short": "a `status` filter on GET /arrivals",
                 "motivation": "The harbour office wants to list only arrivals that are still expected or delayed",
                 "design": "accept a repeatable `status` query parameter and push the filter into the SQL query",
                 "impl": "the repeatable `status` query parameter, validated against `ArrivalStatus`",
                 "accept": "`GET /arrivals?status=expected&status=delayed` returns only those rows and unknown values give 422."},
            ],
        },
        {
            "file": "harbor/billing/invoices.py", "test": "tests/billing/test_invoices.py",
            "component": "invoice generator", "funcs": ["render_invoice", "prorate_stay", "apply_discount"],
            "edges": "a zero-night stay, a 100% discount, and a stay that crosses the month end",
            "log_fields": "invoice number, arrival id and the total before and after discounts",
            "refactor": ("render_invoice", "template rendering", "the line-item arithmetic", "_build_line_items", 120, 64),
            "metric": ("harbor_invoice_render_seconds", "histogram", "`format` (pdf, html)",
                       "long PDF invoices take to render at month end"),
            "bugs": [
                {"func": "prorate_stay", "short": "bills an extra night across the DST change",
                 "long": "counts nights from local wall-clock times, so a stay across the October DST change is billed one night too many",
                 "err": "AssertionError: expected 3 nights, got 4",
                 "impact": "Customers who stayed over 25 October were overcharged",
                 "cause": "nights were counted with `(end - start).days` on naive local datetimes",
                 "fix": "counted nights on the UTC dates of the check-in and check-out instants",
                 "test": "test_prorate_stay_across_dst_end"},
                {"func": "apply_discount", "short": "totals drift by a cent from the finance export",
                 "long": "rounds each line's discount before summing, so totals differ by a cent from the finance export",
                 "err": "AssertionError: Decimal('412.37') != Decimal('412.38')",
                 "impact": "Finance corrects a handful of invoices by hand every month",
                 "cause": "per-line `round()` on floats",
                 "fix": "moved the arithmetic to `Decimal` with `ROUND_HALF_EVEN` and rounded once on the invoice total",
                 "test": "test_discount_rounding_matches_finance_export"},
            ],
            "features": [
                {"short": "the harbour's VAT number on invoices",
                 "motivation": "Invoices sent to business customers in the EU are rejected without a VAT number",
                 "design": "read `billing.vat_number` from settings and render it in the invoice footer",
                 "impl": "the `billing.vat_number` setting and a footer block in `templates/invoice.html`",
                 "accept": "Invoices show the VAT number when the setting is present and omit the line otherwise."},
            ],
        },
        {
            "file": "harbor/tides/forecast.py", "test": "tests/tides/test_forecast.py",
            "component": "tide forecast loader", "funcs": ["load_tide_table", "window_for", "interpolate_height"],
            "edges": "a window that spans midnight, a missing station, and two readings with the same timestamp",
            "log_fields": "station id, table year and the number of readings parsed",
            "refactor": ("load_tide_table", "CSV parsing", "header normalisation", "_normalise_headers", 88, 41),
            "metric": ("harbor_tide_table_age_days", "gauge", "`station`",
                       "stale the loaded tide tables are"),
            "bugs": [
                {"func": "load_tide_table", "short": "fails on the new tide-table CSV header",
                 "long": "rejects the 2027 tide tables because the provider renamed the `Height (m)` column to `height_m`",
                 "err": "KeyError: 'Height (m)'",
                 "impact": "The nightly import stopped and the allocator fell back to chart depth only",
                 "cause": "column names were hard-coded",
                 "fix": "mapped both header spellings through a small alias table and raise a clear error on unknown headers",
                 "test": "test_load_tide_table_accepts_2027_header"},
                {"func": "interpolate_height", "short": "returns NaN after the last high water of the day",
                 "long": "returns NaN for any time after the last high water of the calendar day",
                 "err": "ValueError: cannot convert float NaN to integer",
                 "impact": "Late-evening arrivals crash the allocator's draft check",
                 "cause": "interpolation only used readings from the same calendar day",
                 "fix": "loaded the first reading of the next day as the right-hand neighbour",
                 "test": "test_interpolate_after_last_high_water"},
            ],
            "features": [
                {"short": "caching for parsed tide tables",
                 "motivation": "Every allocation parses the whole tide CSV again, which costs about 80ms per request",
                 "design": "cache parsed tables per station and year and invalidate on file mtime",
                 "impl": "an `lru_cache`-backed loader keyed on station, year and file mtime",
                 "accept": "Repeated calls hit the cache, and editing the CSV invalidates it."},
            ],
        },
        {
            "file": "harbor/notify/webhooks.py", "test": "tests/notify/test_webhooks.py",
            "component": "webhook dispatcher", "funcs": ["deliver", "sign_payload", "schedule_retry"],
            "edges": "a 301 redirect, an empty response body, and a receiver that closes the connection mid-body",
            "log_fields": "subscription id, event type, attempt number and HTTP status",
            "refactor": ("deliver", "HTTP sending", "retry classification", "_classify_response", 110, 58),
            "metric": ("harbor_webhook_queue_depth", "gauge", "`state` (pending, retrying)",
                       "far behind webhook delivery is"),
            "bugs": [
                {"func": "schedule_retry", "short": "retries forever on 410 Gone",
                 "long": "keeps rescheduling deliveries to endpoints that answer 410 Gone",
                 "err": "WARN webhooks: delivery 88213 attempt 214 got 410 Gone",
                 "impact": "The retry queue grew to 40k jobs and delayed real notifications",
                 "cause": "only 5xx and timeouts were meant to be retryable, but the fallthrough branch rescheduled everything",
                 "fix": "treated 410 as permanent: the subscription is disabled and retries stop",
                 "test": "test_gone_disables_subscription"},
                {"func": "sign_payload", "short": "signs different bytes than it sends",
                 "long": "produces signatures receivers cannot verify when the payload has non-ASCII characters",
                 "err": "hmac mismatch: expected sha256=9f1c20d4 got sha256=4b7a81e3",
                 "impact": "Partners reject events for vessels with accented names",
                 "cause": "we signed `json.dumps(payload)` but sent the body encoded with `ensure_ascii=False`",
                 "fix": "serialised the body once and signed exactly the bytes that are sent",
                 "test": "test_signature_covers_sent_bytes"},
            ],
            "features": [
                {"short": "a delivery log endpoint for webhook subscribers",
                 "motivation": "Partners e-mail the harbour office to ask whether an event was sent",
                 "design": "expose the last 100 delivery attempts per subscription with status code and latency",
                 "impl": "`GET /webhooks/{id}/deliveries`, backed by the existing `webhook_attempts` table",
                 "accept": "A partner sees attempts, status codes and latencies for their own subscriptions only."},
            ],
        },
        {
            "file": "harbor/auth/tokens.py", "test": "tests/auth/test_tokens.py",
            "component": "token service", "funcs": ["issue_token", "verify_token", "rotate_signing_key"],
            "edges": "a token that expires during the request, an unknown key id, and a malformed header",
            "log_fields": "key id, token scope and the rejection reason (never the token itself)",
            "refactor": ("verify_token", "signature checks", "key lookup", "_key_for_kid", 76, 39),
            "metric": ("harbor_token_rejections_total", "counter", "`reason` (expired, bad_signature, unknown_kid)",
                       "many requests fail authentication and why"),
            "bugs": [
                {"func": "verify_token", "short": "rejects valid tokens right after key rotation",
                 "long": "rejects tokens signed with the previous key for several minutes after `rotate_signing_key` runs",
                 "err": "InvalidSignatureError: Signature verification failed",
                 "impact": "Every client is logged out at each weekly rotation",
                 "cause": "the verifier loaded only the current key, not the previous key that is still in its grace period",
                 "fix": "verified against the current key and the previous key until its `retire_at`",
                 "test": "test_previous_key_verifies_during_grace"},
                {"func": "issue_token", "short": "sets token expiry in local time",
                 "long": "computes `exp` from `datetime.now()`, which is local time on the staging host",
                 "err": "ExpiredSignatureError: Signature has expired",
                 "impact": "Tokens issued on staging expire an hour early",
                 "cause": "a naive local `datetime.now()`",
                 "fix": "used `datetime.now(timezone.utc)` for both `iat` and `exp`",
                 "test": "test_exp_is_computed_in_utc"},
            ],
            "features": [
                {"short": "read-only API tokens",
                 "motivation": "The occupancy dashboard only reads data but currently uses an admin token",
                 "design": "add a `scope` claim and check it in a route dependency",
                 "impl": "a `scope` claim (read, write, admin) and a `require_scope` dependency",
                 "accept": "A read token gets 403 on write routes and works on every GET route."},
            ],
        },
        {
            "file": "harbor/importers/manifest_csv.py", "test": "tests/importers/test_manifest_csv.py",
            "component": "manifest importer", "funcs": ["read_manifest", "parse_row", "normalize_vessel_name"],
            "edges": "a BOM at the start of the file, trailing empty rows, and quoted commas in vessel names",
            "log_fields": "file name, detected encoding, rows read and rows rejected",
            "refactor": ("read_manifest", "file decoding", "row validation", "_validate_row", 102, 47),
            "metric": ("harbor_manifest_rows_rejected_total", "counter", "`reason`",
                       "many manifest rows we drop on import"),
            "bugs": [
                {"func": "read_manifest", "short": "crashes on Latin-1 manifests",
                 "long": "fails on manifests exported from the old port system, which writes Latin-1",
                 "err": "UnicodeDecodeError: 'utf-8' codec can't decode byte 0xe9 in position 1832",
                 "impact": "Manifests with accented vessel names cannot be imported at all",
                 "cause": "the file was opened with the default UTF-8 codec",
                 "fix": "sniffed the encoding (UTF-8 first, then cp1252) and recorded the detected one in the import log",
                 "test": "test_read_manifest_latin1"},
                {"func": "normalize_vessel_name", "short": "merges different vessels that share a name",
                 "long": "collapses vessels that share a name but have different MMSI numbers into one record",
                 "err": "AssertionError: 2 vessels expected, 1 found for 'SEA BREEZE'",
                 "impact": "Two unrelated yachts ended up sharing one berth history",
                 "cause": "deduplication was keyed on the normalised name only",
                 "fix": "deduplicated on (normalised name, MMSI) and kept name-only matching as a fallback when the MMSI is missing",
                 "test": "test_same_name_different_mmsi_kept_apart"},
            ],
            "features": [
                {"short": "a dry-run mode for manifest imports",
                 "motivation": "The office wants to see what an import would change before it touches the database",
                 "design": "add `--dry-run` to the import command that runs validation and prints a diff summary",
                 "impl": "a `dry_run` flag threaded through `read_manifest` and a summary printer",
                 "accept": "A dry run reports inserts, updates and rejects and writes nothing."},
            ],
        },
        {
            "file": "harbor/reports/occupancy.py", "test": "tests/reports/test_occupancy.py",
            "component": "occupancy report", "funcs": ["occupancy_by_day", "export_csv"],
            "edges": "a berth closed all day, a month with no bookings, and a booking that spans the report boundary",
            "log_fields": "report period, berth count and generation time",
            "refactor": ("occupancy_by_day", "date bucketing", "the ratio calculation", "_occupancy_ratio", 84, 45),
            "metric": ("harbor_report_generation_seconds", "histogram", "`report`",
                       "long the monthly reports take to build"),
            "bugs": [
                {"func": "occupancy_by_day", "short": "divides by zero for berths closed all day",
                 "long": "crashes when a berth has zero bookable hours on a day because of a maintenance closure",
                 "err": "ZeroDivisionError: division by zero",
                 "impact": "The monthly report fails for the whole harbour",
                 "cause": "occupancy was computed as booked / bookable hours with no guard",
                 "fix": "skipped berths with zero bookable hours and reported them as `closed` in the output",
                 "test": "test_closed_berth_excluded_from_ratio"},
                {"func": "export_csv", "short": "allows CSV formula injection through vessel names",
                 "long": "writes vessel names verbatim, so a name starting with `=` becomes a formula in the spreadsheet",
                 "err": "security review finding SR-12: CSV injection via vessel name",
                 "impact": "Untrusted input ends up evaluated in the finance team's spreadsheet",
                 "cause": "cells starting with `=`, `+`, `-` or `@` were not escaped",
                 "fix": "prefixed cells that start with `=`, `+`, `-` or `@` with a single quote",
                 "test": "test_export_csv_escapes_formula_prefixes"},
            ],
            "features": [
                {"short": "a weekly occupancy summary e-mail",
                 "motivation": "The harbour office builds the same occupancy summary by hand every Monday",
                 "design": "render the last seven days from `occupancy_by_day` and send it to the configured office address",
                 "impl": "a `weekly_summary` job and a plain-text template",
                 "accept": "The office address gets one summary per week and the job is idempotent per week."},
            ],
        },
        {
            "file": "harbor/db/session.py", "test": "tests/db/test_session.py",
            "component": "DB session layer", "funcs": ["get_session", "run_in_tx"],
            "edges": "a cancelled request, a nested transaction, and a serialization failure on the last retry",
            "log_fields": "transaction id, retry count and elapsed time",
            "refactor": ("run_in_tx", "retry looping", "error classification", "_is_retryable", 64, 35),
            "metric": ("harbor_db_pool_in_use", "gauge", "`pool`",
                       "close the API gets to exhausting the connection pool"),
            "bugs": [
                {"func": "get_session", "short": "leaks connections when a request times out",
                 "long": "does not return the connection to the pool when the server cancels a slow request",
                 "err": "QueuePool limit of size 10 overflow 5 reached, connection timed out, timeout 30.00",
                 "impact": "After a burst of slow requests the API stops answering until it is restarted",
                 "cause": "the session was closed in a `finally` block that never ran for cancelled tasks",
                 "fix": "moved the session into an async context manager so cancellation closes it",
                 "test": "test_cancelled_request_returns_connection"},
                {"func": "run_in_tx", "short": "repeats side effects when it retries",
                 "long": "retries the whole callback on a serialization failure, including the webhook enqueue",
                 "err": "SerializationFailure: could not serialize access due to concurrent update",
                 "impact": "Some partners receive duplicate `arrival.updated` events",
                 "cause": "side effects ran inside the retried block",
                 "fix": "moved the webhook enqueue into an after-commit hook",
                 "test": "test_retry_does_not_duplicate_side_effects"},
            ],
            "features": [],
        },
        {
            "file": "harbor/cli/admin.py", "test": "tests/cli/test_admin.py",
            "component": "admin CLI", "funcs": ["cmd_purge_holds", "cmd_reindex", "cmd_export"],
            "edges": "an empty database, an unknown berth code, and `--since` in the future",
            "log_fields": "command name, arguments and rows touched",
            "refactor": ("cmd_export", "argument parsing", "the export query", "_export_query", 90, 38),
            "metric": ("harbor_admin_commands_total", "counter", "`command`",
                       "often operators run destructive admin commands"),
            "bugs": [
                {"func": "cmd_purge_holds", "short": "deletes holds even with --dry-run",
                 "long": "deletes expired holds even when `--dry-run` is passed",
                 "err": "audit: 12 holds deleted by harbor-admin purge-holds --dry-run",
                 "impact": "An operator lost holds while trying to preview the purge",
                 "cause": "the flag was read after the delete query had already run",
                 "fix": "checked `--dry-run` before building the delete and printed the rows that would go",
                 "test": "test_purge_holds_dry_run_deletes_nothing"},
            ],
            "features": [
                {"short": "`harbor-admin export --since`",
                 "motivation": "Exports always dump the full history, which takes minutes and is mostly unused",
                 "design": "add a `--since` date option and filter on `updated_at`",
                 "impl": "the `--since` option with ISO date parsing",
                 "accept": "`harbor-admin export --since 2026-10-01` exports only rows changed since that date."},
            ],
        },
        {
            "file": "harbor/scheduler/holds.py", "test": "tests/scheduler/test_holds.py",
            "component": "hold expiry job", "funcs": ["expire_holds", "extend_hold"],
            "edges": "a hold that expires exactly now, extending an already expired hold, and two extensions at once",
            "log_fields": "hold id, berth and the old and new expiry",
            "refactor": ("expire_holds", "batch selection", "event emission", "_emit_hold_expired", 70, 36),
            "metric": ("harbor_holds_expired_total", "counter", "`reason` (timeout, released)",
                       "many holds expire without being converted to bookings"),
            "bugs": [
                {"func": "expire_holds", "short": "runs twice when two workers start together",
                 "long": "runs in every worker at startup, so two workers expire the same holds at the same time",
                 "err": 'IntegrityError: duplicate key value violates unique constraint "hold_events_hold_id_kind_key"',
                 "impact": "Worker restarts log a burst of errors and one of them crash-loops",
                 "cause": "each worker schedules the job at startup with no coordination",
                 "fix": "took a Postgres advisory lock around the job so only one worker runs it",
                 "test": "test_expire_holds_single_runner"},
            ],
            "features": [],
        },
    ],
    "perf": [
        {"what": "GET /arrivals", "entity": "arrivals", "n": "20k", "ms": 2400, "ms2": 180,
         "cause": "a sequential scan on `arrivals` filtered by `harbour_id` and `eta`",
         "fix": "Added a composite index on `(harbour_id, eta)` in migration `0047_arrivals_eta_idx`",
         "file": "harbor/api/arrivals.py"},
        {"what": "the monthly occupancy report", "entity": "berth slots", "n": "300k", "ms": 41000, "ms2": 3800,
         "cause": "one query per berth per day (N+1) inside `occupancy_by_day`",
         "fix": "Replaced the loop with a single grouped query using `generate_series` for the days",
         "file": "harbor/reports/occupancy.py"},
        {"what": "`allocate_berth`", "entity": "candidate berths", "n": "400", "ms": 900, "ms2": 120,
         "cause": "the tide window being recomputed for every candidate",
         "fix": "Computed the tide window once per arrival and passed it to `score_candidates`",
         "file": "harbor/scheduler/allocator.py"},
        {"what": "invoice PDF rendering", "entity": "line items", "n": "500", "ms": 7200, "ms2": 900,
         "cause": "the template re-rendering the full table for each page",
         "fix": "Split the line items into pages before rendering and cached the font metrics",
         "file": "harbor/billing/invoices.py"},
    ],
    "migrations": [
        ("arrivals", "cancelled_at", "timestamptz", "Reports need to know when an arrival was cancelled, not just that it was", "from the audit log where one exists"),
        ("vessels", "mmsi", "varchar(9)", "The importer needs a stable identifier that is not the vessel name", "from the last manifest that carried an MMSI"),
        ("berths", "max_beam_m", "numeric(5,2)", "Catamarans keep being placed in berths that are too narrow", "from the harbour survey spreadsheet"),
        ("invoices", "currency", "char(3)", "Visiting vessels from outside the eurozone want invoices in their own currency", "with 'EUR' for all existing rows"),
        ("webhook_subscriptions", "disabled_reason", "text", "Disabled subscriptions give partners no hint why they stopped receiving events", "with NULL; new disables record the reason"),
        ("holds", "extended_count", "integer", "Support wants to see how often a hold was extended before it expired", "with 0"),
    ],
    "deps": [
        ("sqlalchemy", "2.0.31", "2.0.36", "uv.lock", "2.0.31 has the asyncio pool bug that leaks connections on cancellation",
         "dropped our workaround in `harbor/db/session.py`"),
        ("pydantic", "2.8.2", "2.9.2", "uv.lock", "2.8 emits a DeprecationWarning on Python 3.12 that our pytest settings turn into an error",
         "renamed two `Config` classes to `model_config`"),
        ("httpx", "0.27.0", "0.27.2", "uv.lock", "0.27.0 mishandles proxy environment variables on the staging hosts",
         "no code changes were needed"),
        ("ruff", "0.6.4", "0.7.3", "uv.lock", "The pinned ruff misses the new `PLW` rules we want the refinery gate to enforce",
         "fixed the 9 new findings it reported"),
        ("alembic", "1.13.2", "1.13.3", "uv.lock", "1.13.2 renders server defaults wrongly in autogenerated migrations",
         "regenerated the pending migration to check the output"),
        ("jinja2", "3.1.3", "3.1.4", "uv.lock", "3.1.3 has a published advisory for the `xmlattr` filter",
         "we do not use `xmlattr`, so no template changes"),
        ("uvicorn", "0.30.1", "0.32.0", "uv.lock", "0.30 logs a spurious warning on every graceful shutdown, which confuses the witness",
         "removed the log filter we had added for it"),
    ],
    "lint": [
        ("harbor/api", "B008, UP007", 23, "most were `Optional[X]` annotations rewritten as `X | None`"),
        ("harbor/billing", "PLR2004, SIM108", 14, "magic numbers became named constants in `billing/constants.py`"),
        ("tests", "PT011, PT006", 31, "`pytest.raises` calls now pass `match=`"),
        ("harbor/scheduler", "C901, PLR0912", 6, "two functions were split instead of silenced"),
    ],
    "security": [
        {"title": "Bearer tokens written to the access log", "file": "harbor/api/middleware.py",
         "desc": "The request logging middleware writes the full `Authorization` header to the access log. Anyone with log access can replay a token until it expires.",
         "fix": "The middleware now logs only the token's key id and scope, and a test asserts that no `Bearer ` string reaches the log."},
        {"title": "Webhook secrets shown in the admin API response", "file": "harbor/api/webhooks_admin.py",
         "desc": "`GET /admin/webhooks` returns each subscription's signing secret in clear. The admin UI never needs it after creation.",
         "fix": "The secret is now returned only once at creation and masked as `whsec_****` afterwards; the response model enforces it."},
        {"title": "Manifest upload accepts any file size", "file": "harbor/api/uploads.py",
         "desc": "The manifest upload endpoint reads the whole body into memory with no size limit. A 2 GB upload took the staging API down.",
         "fix": "Uploads are streamed to a temp file with a 20 MB cap and a 413 response above it."},
    ],
    "configs": [
        ("allocator.search_horizon_days", "the allocator's search horizon", "14 days", "harbor/scheduler/allocator.py",
         "The winter season needs longer horizons for long-stay bookings"),
        ("webhooks.max_attempts", "the webhook retry limit", "25 attempts", "harbor/notify/webhooks.py",
         "Some partners want us to give up sooner so they can replay from their side"),
        ("holds.ttl_minutes", "the berth hold lifetime", "30 minutes", "harbor/scheduler/holds.py",
         "Phone bookings regularly take longer than 30 minutes to confirm"),
        ("reports.timezone", "the report timezone", "UTC", "harbor/reports/occupancy.py",
         "The office reads daily occupancy in local time and the day boundaries look wrong"),
    ],
}

LANTERN = {
    "rig": "lantern", "prefix": "lt", "lang": "go",
    "polecats": ["toast", "dag", "cheedo", "morsov", "scabrous", "coma"], "crew": ["jo"],
    "test_all": "go test -race ./... && npm --prefix web test", "lint_cmd": "golangci-lint run",
    "logger": "log/slog", "metrics_port": 9464,
    "config_file": "lantern.example.yaml",
    "modules": [
        {
            "file": "internal/collector/scrape.go", "test": "internal/collector/scrape_test.go",
            "component": "scrape loop", "funcs": ["scrapeTarget", "parseExposition", "backoffFor"],
            "edges": "an empty body, a gzip body without the header, and a target that redirects",
            "log_fields": "target name, duration, sample count and error class",
            "refactor": ("scrapeTarget", "HTTP fetching", "sample relabelling", "relabelSamples", 130, 61),
            "metric": ("lantern_scrape_duration_seconds", "histogram", "`target`",
                       "long each target takes to scrape"),
            "bugs": [
                {"func": "parseExposition", "short": "drops samples with escaped quotes in labels",
                 "long": "rejects exposition lines whose label values contain escaped quotes",
                 "err": "parse error: line 214: unexpected character after label value",
                 "impact": "Targets that export file paths as labels lose their whole scrape",
                 "cause": "the label-value lexer stopped at the first quote without honouring backslash escapes",
                 "fix": "handled backslash, quote and newline escapes in the label-value lexer",
                 "test": "TestParseExpositionEscapedQuotes"},
                {"func": "backoffFor", "short": "never backs off from dead targets",
                 "long": "resets the backoff to the base interval after every failed scrape",
                 "err": 'scrape target=node-7 err="dial tcp 10.0.4.12:9100: connect: connection refused" (600/h)',
                 "impact": "Dead targets are scraped every second and flood the log",
                 "cause": "the failure counter lived on a copy of the target struct",
                 "fix": "kept the counter on the pointer in the target map and capped the backoff at five minutes",
                 "test": "TestBackoffGrowsOnRepeatedFailure"},
            ],
            "features": [
                {"short": "a per-target scrape timeout",
                 "motivation": "One slow exporter holds a worker for the full global timeout and delays every other target",
                 "design": "allow `timeout` on each target and default it to the global value",
                 "impl": "a `Timeout` field on `TargetConfig`, applied through the request context",
                 "accept": "A target with `timeout: 2s` is cancelled after two seconds without affecting others."},
            ],
        },
        {
            "file": "internal/store/ring.go", "test": "internal/store/ring_test.go",
            "component": "ring-buffer store", "funcs": ["Append", "Range", "compact"],
            "edges": "an empty ring, a range that starts before the oldest point, and exactly one wraparound",
            "log_fields": "series count, points dropped and compaction time",
            "refactor": ("Range", "bounds checking", "the wraparound index maths", "oldestIndex", 72, 33),
            "metric": ("lantern_store_series", "gauge", "`shard`",
                       "many series the store holds and how close it is to the memory limit"),
            "bugs": [
                {"func": "Range", "short": "returns points out of order after wraparound",
                 "long": "returns the newest points before the oldest ones once the buffer has wrapped",
                 "err": "ring_test.go:88: points not sorted at index 512",
                 "impact": "Charts draw a vertical line back to the start of the window",
                 "cause": "the index maths used `head` instead of `(head+1) % cap` for the oldest point",
                 "fix": "computed the oldest index once in a helper and iterated from it",
                 "test": "TestRangeAfterWrap"},
                {"func": "compact", "short": "races with Append",
                 "long": "reads the buffer without holding the lock while `Append` writes to it",
                 "err": "WARNING: DATA RACE: read at store.(*Ring).compact by goroutine 41",
                 "impact": "The race detector fails the refinery gate intermittently and production could read torn points",
                 "cause": "`compact` read `r.buf` without holding `r.mu`",
                 "fix": "took the read lock in `compact` and swapped the buffers under the write lock",
                 "test": "TestConcurrentAppendCompact"},
            ],
            "features": [
                {"short": "downsampling for ranges longer than a day",
                 "motivation": "A seven-day chart pulls 600k points and the browser stalls",
                 "design": "return max/min/avg buckets when the requested range is longer than 24h",
                 "impl": "a `RangeDownsampled` method with fixed-width buckets",
                 "accept": "A seven-day query returns at most 2,000 points per series with the same shape."},
            ],
        },
        {
            "file": "internal/alert/rules.go", "test": "internal/alert/rules_test.go",
            "component": "alert rule evaluator", "funcs": ["Evaluate", "parseDuration", "fire"],
            "edges": "a rule with no matching series, a `for` of zero, and a series that disappears mid-alert",
            "log_fields": "rule name, state transition and the value that triggered it",
            "refactor": ("Evaluate", "state tracking", "threshold comparison", "crossesThreshold", 115, 57),
            "metric": ("lantern_alert_evaluations_total", "counter", "`rule`, `result`",
                       "often each rule is evaluated and how often it fires"),
            "bugs": [
                {"func": "parseDuration", "short": "rejects `1d` in `for` clauses",
                 "long": "fails to load rules that use day units such as `for: 1d`",
                 "err": 'time: unknown unit "d" in duration "1d"',
                 "impact": "The new disk-usage rules could not be loaded at all",
                 "cause": "we passed the value straight to `time.ParseDuration`, which has no day unit",
                 "fix": "accepted `d` and `w` suffixes by converting them to hours before calling `time.ParseDuration`",
                 "test": "TestParseDurationDaysAndWeeks"},
                {"func": "Evaluate", "short": "flaps alerts when a series has gaps",
                 "long": "treats missing points as zero, so alerts on sparse series fire and resolve repeatedly",
                 "err": "alert disk_full fired/resolved 38 times in 1h",
                 "impact": "The on-call channel got dozens of notifications for one real problem",
                 "cause": "gaps in the series were read as zero values",
                 "fix": "treated gaps as no-data and kept the previous state until the `for` duration elapses",
                 "test": "TestEvaluateKeepsStateAcrossGaps"},
                {"func": "fire", "short": "sends resolved notices for alerts that never fired",
                 "long": "sends a resolved notification when a pending alert clears before its `for` duration",
                 "err": "slack: [RESOLVED] api_latency_high (never fired)",
                 "impact": "People see resolved messages for alerts they never saw start and stop trusting the channel",
                 "cause": "the resolve path did not check whether the alert had reached the firing state",
                 "fix": "only emitted resolved events for alerts that were firing",
                 "test": "TestPendingAlertClearsSilently"},
            ],
            "features": [
                {"short": "alert silences with an expiry",
                 "motivation": "During maintenance people mute the whole Slack channel and forget to unmute it",
                 "design": "add silences matched on labels with a mandatory end time, stored next to the rules",
                 "impl": "a `Silence` type, a matcher in `Evaluate` and `lantern silence add|list|expire`",
                 "accept": "Matching alerts are not notified while a silence is active and silences expire on their own."},
            ],
        },
        {
            "file": "internal/api/query.go", "test": "internal/api/query_test.go",
            "component": "query API", "funcs": ["handleQuery", "decodeRange", "writeSeries"],
            "edges": "a zero-length range, a step larger than the range, and an unknown series name",
            "log_fields": "query, range length, series returned and latency",
            "refactor": ("handleQuery", "parameter decoding", "response encoding", "encodeResult", 98, 44),
            "metric": ("lantern_query_duration_seconds", "histogram", "`endpoint`",
                       "slow dashboard queries are"),
            "bugs": [
                {"func": "decodeRange", "short": "accepts an end before the start",
                 "long": "accepts ranges whose end is before their start and returns an empty result",
                 "err": "GET /api/query?start=1732460000&end=1732450000 returned 200 with 0 series",
                 "impact": "Dashboard bugs that swap the bounds show empty charts instead of an error",
                 "cause": "the only check was that both values parse",
                 "fix": "returned 400 with `end must be after start` for inverted ranges",
                 "test": "TestDecodeRangeRejectsInverted"},
                {"func": "writeSeries", "short": "fails on NaN values",
                 "long": "fails to encode series that contain NaN, which some exporters emit for empty summaries",
                 "err": "json: unsupported value: NaN",
                 "impact": "One bad series turns the whole dashboard request into a 500",
                 "cause": "`encoding/json` cannot encode NaN or Inf",
                 "fix": "encoded NaN and Inf as `null` in a custom point marshaller",
                 "test": "TestWriteSeriesEncodesNaNAsNull"},
            ],
            "features": [
                {"short": "a `step` parameter on the query API",
                 "motivation": "The web UI asks for raw points and thins them in the browser",
                 "design": "accept `step` and align points to it on the server",
                 "impl": "the `step` parameter, validated to be at least the scrape interval",
                 "accept": "`/api/query?step=60s` returns one point per minute per series."},
            ],
        },
        {
            "file": "internal/config/load.go", "test": "internal/config/load_test.go",
            "component": "config loader", "funcs": ["Load", "applyEnv", "validateTargets"],
            "edges": "an empty file, an unknown top-level key, and environment overrides with empty values",
            "log_fields": "config path, target count and which values came from the environment",
            "refactor": ("Load", "YAML decoding", "default filling", "applyDefaults", 86, 40),
            "metric": ("lantern_config_reloads_total", "counter", "`result`",
                       "often config reloads fail"),
            "bugs": [
                {"func": "applyEnv", "short": "ignores LANTERN_RETENTION",
                 "long": "applies environment overrides before reading the file, so the file silently wins",
                 "err": "config: retention=24h (LANTERN_RETENTION=72h was set)",
                 "impact": "The staging deploy kept only one day of data",
                 "cause": "`applyEnv` ran before the YAML was decoded",
                 "fix": "applied environment overrides after decoding and logged each override",
                 "test": "TestEnvOverridesFile"},
                {"func": "validateTargets", "short": "accepts duplicate target names",
                 "long": "accepts two targets with the same name, and the second silently replaces the first",
                 "err": "no error; target api-eu missing from /api/targets",
                 "impact": "A copy-pasted target block made one region vanish from the dashboard",
                 "cause": "targets were put into a map keyed by name without checking for existing entries",
                 "fix": "reported duplicate target names as a validation error with both line numbers",
                 "test": "TestValidateTargetsRejectsDuplicates"},
            ],
            "features": [
                {"short": "config reload on SIGHUP",
                 "motivation": "Adding a target needs a restart, which drops the in-memory ring buffers",
                 "design": "reload and validate the file on SIGHUP and swap the target set atomically",
                 "impl": "a SIGHUP handler that calls `Load` and swaps targets under the collector lock",
                 "accept": "A valid reload changes targets without losing stored points, and an invalid one is logged and ignored."},
            ],
        },
        {
            "file": "internal/notify/slack.go", "test": "internal/notify/slack_test.go",
            "component": "Slack notifier", "funcs": ["Send", "formatAlert", "rateLimit"],
            "edges": "a 429 with Retry-After, a webhook URL that returns HTML, and an alert with no labels",
            "log_fields": "alert name, channel, HTTP status and retry count",
            "refactor": ("Send", "HTTP posting", "message formatting", "buildPayload", 80, 37),
            "metric": ("lantern_notifications_total", "counter", "`channel`, `status`",
                       "many notifications fail to send"),
            "bugs": [
                {"func": "Send", "short": "drops messages on 429",
                 "long": "drops the message when Slack answers 429 instead of waiting and retrying",
                 "err": "slack: 429 Too Many Requests",
                 "impact": "During incidents, when many alerts fire at once, most notifications are lost",
                 "cause": "non-2xx responses were all treated as permanent failures",
                 "fix": "honoured `Retry-After` on 429 with up to three retries",
                 "test": "TestSendRetriesAfter429"},
                {"func": "formatAlert", "short": "breaks formatting on labels with asterisks",
                 "long": "inserts label values into Slack markup unescaped, so values with `*` or `_` garble the message",
                 "err": "message rendered as bold from the middle of the label onwards",
                 "impact": "Alerts for glob-style job names are unreadable",
                 "cause": "label values were not escaped for Slack markup",
                 "fix": "escaped Slack control characters in label values and wrapped them in code spans",
                 "test": "TestFormatAlertEscapesMarkup"},
            ],
            "features": [],
        },
        {
            "file": "web/src/components/SeriesChart.tsx", "test": "web/src/components/SeriesChart.test.tsx",
            "component": "series chart", "funcs": ["SeriesChart", "useZoom", "formatTick"],
            "edges": "a single-point series, all-null values, and a range that crosses a DST change",
            "log_fields": "series count, point count and render time",
            "refactor": ("SeriesChart", "data shaping", "the zoom state", "useZoom", 210, 120),
            "metric": None,
            "bugs": [
                {"func": "formatTick", "short": "labels the axis in UTC while the tooltip uses local time",
                 "long": "formats axis ticks in UTC while the tooltip shows local time",
                 "err": "axis shows 14:00, tooltip shows 15:00 for the same point",
                 "impact": "People read incident times off the axis and report them an hour off",
                 "cause": "`formatTick` used `toISOString` while the tooltip used `toLocaleTimeString`",
                 "fix": "formatted both with one `Intl.DateTimeFormat` that follows the user's timezone setting",
                 "test": "formats ticks and tooltip in the same timezone"},
                {"func": "useZoom", "short": "resets the zoom on every poll",
                 "long": "loses the user's zoom selection each time new data arrives from polling",
                 "err": "expect(received).toEqual(expected): brush domain reset to [0, 3600]",
                 "impact": "It is impossible to inspect a spike while the dashboard is live",
                 "cause": "the zoom state was derived from the data array, which is a new object on every poll",
                 "fix": "kept the zoom domain in state keyed by series id and only reset it when the range changes",
                 "test": "keeps zoom across data refreshes"},
            ],
            "features": [
                {"short": "a threshold line on series charts",
                 "motivation": "People compare charts against alert thresholds from memory",
                 "design": "draw the matching alert rule's threshold as a dashed line",
                 "impl": "an optional `threshold` prop fed from `/api/rules`",
                 "accept": "Charts with a matching rule show a dashed threshold line with a label."},
            ],
        },
        {
            "file": "web/src/pages/Dashboard.tsx", "test": "web/src/pages/Dashboard.test.tsx",
            "component": "dashboard page", "funcs": ["Dashboard", "usePolling", "groupPanels"],
            "edges": "no panels, a panel with no group, and a failed first poll",
            "log_fields": "panel count and poll latency",
            "refactor": ("Dashboard", "layout", "polling", "usePolling", 180, 95),
            "metric": None,
            "bugs": [
                {"func": "usePolling", "short": "keeps polling in background tabs",
                 "long": "keeps requesting `/api/query` every five seconds while the tab is hidden",
                 "err": "network log: 720 /api/query requests per hour from one hidden tab",
                 "impact": "A few forgotten tabs double the load on the query API",
                 "cause": "the interval ignored `document.visibilityState`",
                 "fix": "paused polling on `visibilitychange` and refreshed immediately when the tab returns",
                 "test": "pauses polling while the tab is hidden"},
                {"func": "groupPanels", "short": "crashes when a panel has no group",
                 "long": "crashes while sorting when any panel is missing its `group` field",
                 "err": "TypeError: Cannot read properties of undefined (reading 'localeCompare')",
                 "impact": "The whole dashboard renders blank",
                 "cause": "the sort comparator assumed every panel has a group",
                 "fix": "put ungrouped panels in an `Other` group before sorting",
                 "test": "renders panels without a group"},
            ],
            "features": [
                {"short": "a dark theme for the dashboard",
                 "motivation": "The dashboard runs on the wall screen in the ops room at night",
                 "design": "follow `prefers-color-scheme` with a manual toggle stored in localStorage",
                 "impl": "CSS variables for both themes and a toggle in the header",
                 "accept": "The theme follows the OS by default and the toggle persists across reloads."},
            ],
        },
        {
            "file": "internal/probe/http.go", "test": "internal/probe/http_test.go",
            "component": "HTTP probe", "funcs": ["Probe", "followRedirects", "tlsExpiry"],
            "edges": "a self-signed certificate, a redirect to another host, and a response with no body",
            "log_fields": "probe target, status code, latency and certificate expiry",
            "refactor": ("Probe", "request building", "TLS inspection", "inspectTLS", 92, 48),
            "metric": ("lantern_probe_tls_expiry_days", "gauge", "`target`",
                       "soon the certificates we probe will expire"),
            "bugs": [
                {"func": "tlsExpiry", "short": "reports the expiry of the wrong certificate",
                 "long": "reports the expiry date of the last certificate in the chain instead of the leaf",
                 "err": "probe api-eu: cert expires 2031-06-01 (leaf actually expires 2026-12-09)",
                 "impact": "A certificate expiry alert never fired for an expiring leaf",
                 "cause": "the code took the last element of `PeerCertificates`",
                 "fix": "used `PeerCertificates[0]`, the leaf",
                 "test": "TestTLSExpiryUsesLeaf"},
                {"func": "followRedirects", "short": "loops on redirect cycles",
                 "long": "follows redirect cycles until the probe's deadline",
                 "err": "probe status-page: context deadline exceeded after 30s",
                 "impact": "A misconfigured target holds a probe worker for the whole timeout on every run",
                 "cause": "the custom `CheckRedirect` had no hop limit",
                 "fix": "stopped after ten redirects and reported `redirect loop` as the probe error",
                 "test": "TestProbeStopsOnRedirectLoop"},
            ],
            "features": [],
        },
        {
            "file": "cmd/lantern/main.go", "test": "cmd/lantern/main_test.go",
            "component": "lantern CLI", "funcs": ["runCheck", "runServe", "parseFlags"],
            "edges": "no arguments, an unknown subcommand, and `--config` pointing at a directory",
            "log_fields": "subcommand, config path and exit code",
            "refactor": ("runServe", "flag handling", "server wiring", "newServer", 120, 55),
            "metric": None,
            "bugs": [
                {"func": "runCheck", "short": "exits 0 on an invalid config",
                 "long": "prints validation errors but still exits with status 0",
                 "err": "lantern check --config bad.yaml; echo $? printed 0",
                 "impact": "CI never catches broken configs",
                 "cause": "the error was logged and then dropped instead of returned",
                 "fix": "returned the validation error so `main` exits with status 2",
                 "test": "TestCheckExitsNonZeroOnInvalidConfig"},
            ],
            "features": [
                {"short": "`lantern check --json`",
                 "motivation": "The deploy pipeline wants to show config errors inline in the review",
                 "design": "print validation findings as a JSON array with file, line and message",
                 "impl": "a `--json` flag on `lantern check` and a `Finding` type",
                 "accept": "`lantern check --json` prints a JSON array and keeps the exit codes."},
            ],
        },
    ],
    "perf": [
        {"what": "`/api/query` for seven-day ranges", "entity": "series", "n": "1,500", "ms": 3100, "ms2": 240,
         "cause": "every series being copied out of the ring buffer before filtering",
         "fix": "Filtered series by name before copying and reused the point slices from a sync.Pool",
         "file": "internal/api/query.go"},
        {"what": "rule evaluation", "entity": "rules", "n": "300", "ms": 1800, "ms2": 140,
         "cause": "each rule re-scanning the whole store for its series",
         "fix": "Built a label index once per evaluation cycle and looked series up in it",
         "file": "internal/alert/rules.go"},
        {"what": "the dashboard's first render", "entity": "panels", "n": "40", "ms": 5200, "ms2": 900,
         "cause": "all panels querying at once and re-rendering on each response",
         "fix": "Batched panel queries into one request and memoised the chart components",
         "file": "web/src/pages/Dashboard.tsx"},
        {"what": "startup", "entity": "targets", "n": "2,000", "ms": 48000, "ms2": 2500,
         "cause": "targets being validated one DNS lookup at a time",
         "fix": "Deferred DNS resolution to the first scrape and validated syntax only at startup",
         "file": "internal/config/load.go"},
    ],
    "migrations": [],
    "deps": [
        ("golang.org/x/net", "v0.28.0", "v0.30.0", "go.mod/go.sum", "v0.28.0 is flagged by govulncheck for the HTTP/2 rapid-reset fix",
         "no API changes affected us"),
        ("github.com/prometheus/common", "v0.55.0", "v0.60.1", "go.mod/go.sum", "We need the newer expfmt parser that handles UTF-8 metric names",
         "switched two call sites to `expfmt.NewTextParser`"),
        ("the Go toolchain", "1.22.6", "1.23.2", "go.mod", "1.22 is out of support at the end of the year",
         "replaced a custom `slices` helper with the standard library"),
        ("vite", "5.3.5", "5.4.10", "web/package-lock.json", "5.3.5 has a dev-server advisory about file access outside the root",
         "no config changes were needed"),
        ("recharts", "2.12.7", "2.13.0", "web/package-lock.json", "2.12 warns about `defaultProps` on every render under React 18.3",
         "updated one custom tooltip to the new props"),
        ("typescript", "5.4.5", "5.6.3", "web/package-lock.json", "We want `--noUncheckedSideEffectImports`",
         "fixed 4 new type errors in the chart code"),
    ],
    "lint": [
        ("internal/collector", "errcheck, ineffassign", 11, "every ignored `Close` error is now checked or explicitly discarded"),
        ("internal/api", "gosec G114, bodyclose", 7, "the debug server now sets read and write timeouts"),
        ("web/src", "react-hooks/exhaustive-deps", 18, "three of them were real stale-closure bugs"),
        ("internal/alert", "gocyclo, revive", 5, "`Evaluate` was split into two functions"),
    ],
    "security": [
        {"title": "Probe follows redirects to internal addresses", "file": "internal/probe/http.go",
         "desc": "A public target can redirect the HTTP probe to `169.254.169.254` or other internal addresses. That turns lantern into an SSRF proxy for anyone who can add targets.",
         "fix": "Redirects to loopback, link-local and private ranges are refused unless the target sets `allow_private: true`."},
        {"title": "Slack webhook URL logged at startup", "file": "internal/notify/slack.go",
         "desc": "The notifier logs its full configuration at startup, including the Slack webhook URL. The URL is a credential and the logs are shipped to a shared store.",
         "fix": "The config logger now redacts fields tagged `secret:\"true\"`, and the webhook URL field carries the tag."},
        {"title": "Query API has no request size limit", "file": "internal/api/query.go",
         "desc": "`POST /api/query` decodes the whole body with no limit. A 500 MB request pinned a core and used 3 GB of memory.",
         "fix": "The body is wrapped in `http.MaxBytesReader` with a 1 MB limit and oversize requests get 413."},
    ],
    "configs": [
        ("scrape.max_concurrency", "the scrape worker count", "16 workers", "internal/collector/scrape.go",
         "Large installs scrape more than 2,000 targets and fall behind"),
        ("store.retention", "the ring-buffer retention", "72h", "internal/store/ring.go",
         "Small installs want a week of data and have the memory for it"),
        ("notify.slack.min_interval", "the Slack rate limit", "one message per second", "internal/notify/slack.go",
         "Workspaces on the free plan hit Slack's own limit sooner"),
        ("ui.poll_interval", "the dashboard poll interval", "5 seconds", "web/src/pages/Dashboard.tsx",
         "Wall-screen dashboards do not need five-second refreshes"),
    ],
}

RIGS = {"harbor": HARBOR, "lantern": LANTERN}

PY_FLAKES = [
    {"err": "AssertionError: assert date(2026, 10, 31) == date(2026, 11, 1)",
     "cause": "The test builds its expectation from the wall clock and fails when the run crosses midnight UTC",
     "fix": "Froze the clock with the `fixed_now` fixture"},
    {"err": "AssertionError: assert ['B-02', 'B-01'] == ['B-01', 'B-02']",
     "cause": "It compares a list built from an unordered query result",
     "fix": "Added an `ORDER BY` to the query under test and sorted the expectation"},
    {"err": "OSError: [Errno 98] Address already in use",
     "cause": "The test's fake HTTP server binds a fixed port that parallel workers also use",
     "fix": "Bound the fake server to port 0 and read back the assigned port"},
    {"err": "FileExistsError: [Errno 17] File exists: '/tmp/harbor-test/fixture.json'",
     "cause": "Two workers share one hard-coded temp directory",
     "fix": "Switched the test to pytest's `tmp_path` fixture"},
    {"err": "TimeoutError: job did not finish within 2.0s",
     "cause": "The test sleep-polls for the background job and the gate runners are slower than laptops",
     "fix": "Replaced the sleep loop with an event the job sets on completion"},
]

GO_FLAKES = [
    {"err": "expected 2 events, got 1",
     "cause": "The test uses `time.Sleep` to wait for a goroutine and loses the race on a loaded runner",
     "fix": "Waited on a done channel instead of sleeping"},
    {"err": "listen tcp 127.0.0.1:9464: bind: address already in use",
     "cause": "The test server listens on a fixed port that another package's test also uses",
     "fix": "Used `httptest.NewServer` so each test gets a free port"},
    {"err": "mismatch (-want +got): map iteration order differs",
     "cause": "The expectation depends on Go map iteration order",
     "fix": "Sorted the keys before comparing with `cmp.Diff`"},
    {"err": "context deadline exceeded",
     "cause": "The 100ms test timeout is too tight under `-race` on the gate runners",
     "fix": "Drove the code with a fake clock instead of a real deadline"},
    {"err": "open /tmp/lantern-wal/000001.log: file exists",
     "cause": "Parallel tests share one hard-coded WAL directory",
     "fix": "Gave each test its own `t.TempDir()`"},
]

WEB_FLAKES = [
    {"err": "TestingLibraryElementError: Unable to find role=\"img\" within 1000ms",
     "cause": "The chart renders after a data fetch and the default `findBy` timeout is too short on CI",
     "fix": "Mocked the fetch to resolve synchronously and awaited the loading state explicitly"},
    {"err": "expect(received).toBe(expected): received \"14:00\", expected \"15:00\"",
     "cause": "The runner's timezone differs from the developer machines",
     "fix": "Pinned `TZ=UTC` in the test setup and passed the timezone explicitly"},
]

MAYOR = "mayor/"
DEACON = "deacon/"

# Fixed moments of the scripted sessions (transcripts, mail and feed agree on them).
NUX_SLING = datetime(2026, 11, 24, 14, 12, 3, tzinfo=timezone.utc)
NUX_DONE = NUX_SLING + timedelta(minutes=9, seconds=50)
W_START = NUX_DONE + timedelta(seconds=83)
W_READY = NUX_DONE + timedelta(minutes=5, seconds=46)
W_NUDGE = NUX_DONE + timedelta(minutes=8, seconds=17)
W_REPORT = NUX_DONE + timedelta(minutes=9, seconds=49)


# --------------------------------------------------------------------------- content builders
# Each builder returns a spec: {"kind", "type", "build": fn(ctx) -> dict | None}.
# build() runs in creation order, so it can refer to beads created earlier.

def test_cmd(m: dict) -> str:
    f = m["file"]
    if f.endswith(".py"):
        return f"pytest -q {m['test']}"
    if f.endswith(".go"):
        return f"go test ./{f.rsplit('/', 1)[0]}/..."
    return f"npm --prefix web test -- {f.rsplit('/', 1)[1].split('.')[0]}"


def test_ref(m: dict, name: str) -> str:
    return f'"{name}"' if m["file"].endswith(".tsx") else f"`{name}`"


def lang_of(m: dict) -> str:
    f = m["file"]
    return "py" if f.endswith(".py") else "go" if f.endswith(".go") else "web"


def earlier(ctx, pred=lambda b: True):
    return [b for b in ctx["beads"] if b["rig"] == ctx["rig"] and pred(b)]


def where_phrase(R: dict, ctx) -> str:
    opts = [
        f"in the refinery gate run for {new_id(R['prefix'])}",
        "on staging after the last deploy",
        f"by {R['rig']}/crew/{R['crew'][0]} during manual testing",
        "in two polecat sessions this week",
        "in the nightly job logs",
    ]
    prior = earlier(ctx)
    if prior:
        opts.append(f"while working {pick(prior[-15:])['id']}")
    return pick(opts)


def bug_spec(R, m, b):
    def build(ctx):
        comp = m["component"]
        title = pick([f"{cap(comp)}: {b['func']} {b['short']}", f"{b['func']} {b['short']}",
                      f"{cap(comp)} {b['short']}"])
        s = [f"`{b['func']}` in `{m['file']}` {b['long']}."]
        s.append(pick(["Error: `{e}`.", "Seen as `{e}`.", "The failure shows up as `{e}`."]).format(e=b["err"]))
        if rng.random() < 0.85:
            s.append(b["impact"] + ".")
        if rng.random() < 0.6:
            s.append(f"Found {where_phrase(R, ctx)}.")
        guessed = rng.random() < 0.4
        if guessed:
            s.append(f"Likely cause: {b['cause']}.")
        tr = test_ref(m, b["test"])
        closes = [
            f"Fixed in `{m['file']}`: {b['fix']}. Added {tr} to `{m['test']}`; `{test_cmd(m)}` passes.",
            f"{cap(b['fix'])} (`{m['file']}`). The new test {tr} fails before the change and passes after; `{R['test_all']}` is green.",
        ]
        if not guessed:
            closes.append(f"Root cause: {b['cause']}. {cap(b['fix'])} in `{b['func']}`, with regression test {tr}. "
                          f"Merged to main as {sha7()}.")
        close = pick(closes)
        return {"title": title, "desc": " ".join(s), "close": close, "module": m, "bug": b,
                "priority": pick([1, 1, 2, 2, 2, 3])}
    return {"kind": "bug", "type": "bug", "build": build, "module": m}


def feature_spec(R, m, f):
    def build(ctx):
        comp = m["component"]
        title = pick([f"Add {f['short']}", f"{cap(comp)}: add {f['short']}"])
        s = [f["motivation"] + ".", f"Proposal: {f['design']}.", f"Acceptance: {f['accept']}"]
        if rng.random() < 0.4:
            s.append(f"Requested by {R['rig']}/crew/{R['crew'][0]}.")
        close = pick([
            f"Added {f['impl']} in `{m['file']}`. Covered by new tests in `{m['test']}`; `{test_cmd(m)}` green. Merged as {sha7()}.",
            f"Implemented {f['impl']} (`{m['file']}`). Checked the acceptance case in `{m['test']}` and on a local run; the refinery merged it as {sha7()}.",
        ])
        return {"title": title, "desc": " ".join(s), "close": close, "module": m, "priority": pick([2, 2, 3])}
    return {"kind": "feature", "type": "feature", "build": build, "module": m}


def tests_spec(R, m):
    def build(ctx):
        func = pick(m["funcs"])
        base = m["test"].rsplit("/", 1)[1]
        title = pick([f"Add tests for {func} edge cases", f"Cover {func} edge cases in {base}"])
        pct = rng.randrange(38, 71)
        s = [f"`{func}` in `{m['file']}` has no tests for {m['edges']}.", f"Module coverage is {pct}%."]
        prior = [b for b in earlier(ctx, lambda b: b.get("module") is m and b["type"] == "bug")]
        if prior and rng.random() < 0.7:
            s.append(f"The last regression here ({prior[-1]['id']}) would have been caught by one of them.")
        s.append(f"Acceptance: one named test per case and `{test_cmd(m)}` stays green.")
        close = (f"Added {rng.randrange(3, 8)} tests to `{m['test']}` covering {m['edges']}; module coverage went from "
                 f"{pct}% to {min(97, pct + rng.randrange(12, 30))}%. `{test_cmd(m)}` passes.")
        return {"title": title, "desc": " ".join(s), "close": close, "module": m, "priority": pick([2, 3, 3])}
    return {"kind": "tests", "type": "task", "build": build, "module": m}


def logging_spec(R, m):
    def build(ctx):
        comp = m["component"]
        current = pick(["a bare exception message", "one generic `failed` line", "a stack trace with no request context"])
        run_hint = "LOG_LEVEL=debug make run" if lang_of(m) == "py" else "lantern serve --log-level=debug"
        s = [f"When the {comp} misbehaves the logs only show {current}.",
             f"Add structured log lines with the {m['log_fields']} so the witness and crew can grep for them."]
        if rng.random() < 0.5:
            s.append("Keep per-item lines at debug level so production logs stay small.")
        close = (f"The {comp} now logs the {m['log_fields']} through {R['logger']}; per-item lines are at debug level. "
                 f"Checked the output on a local run with `{run_hint}`.")
        return {"title": f"Add structured logging to the {comp}", "desc": " ".join(s), "close": close,
                "module": m, "priority": 3}
    return {"kind": "logging", "type": "task", "build": build, "module": m}


def refactor_spec(R, m):
    func, a, b, helper, loc, loc2 = m["refactor"]

    def build(ctx):
        title = pick([f"Extract {helper} from {func}", f"Split {b} out of {func}"])
        s = [f"`{func}` in `{m['file']}` is {loc} lines and mixes {a} with {b}.",
             f"Pull {b} into `{helper}` so it can be tested on its own."]
        if rng.random() < 0.7:
            s.append("No behaviour change intended.")
        close = (f"Moved {b} into `{helper}` in `{m['file']}`; `{func}` is now {loc2} lines. "
                 f"Pure refactor: existing tests unchanged and `{test_cmd(m)}` green.")
        return {"title": title, "desc": " ".join(s), "close": close, "module": m, "priority": 3}
    return {"kind": "refactor", "type": "chore", "build": build, "module": m}


def metric_spec(R, m):
    name, kind, labels, question = m["metric"]

    def build(ctx):
        title = pick([f"Expose {name} metric", f"{cap(m['component'])}: export {name}"])
        s = [f"We cannot tell from the ops dashboard how {question}.",
             f"Export a `{name}` {kind} from the {m['component']}, labelled by {labels}."]
        close = (f"Added `{name}` ({kind}) in `{m['file']}`, labelled by {labels}, plus a panel on the ops dashboard. "
                 f"Verified with `curl -s localhost:{R['metrics_port']}/metrics | grep {name}`.")
        return {"title": title, "desc": " ".join(s), "close": close, "module": m, "priority": 3}
    return {"kind": "metric", "type": "feature", "build": build, "module": m}


def hygiene_spec(R, m):
    def build(ctx):
        n = rng.randrange(6, 19)
        if lang_of(m) == "py":
            issue = pick(["an `Optional` passed where a value was required", "a `str` compared with an `int` id",
                          "a missing `await` on a coroutine", "a `dict` returned where a model was declared"])
            s = [f"`{m['file']}` is still in the strict-mypy exclude list in `pyproject.toml`.",
                 f"It has {n} untyped functions."]
            if rng.random() < 0.5:
                s.append("The last bug fixed in this file was a type confusion.")
            s.append("Annotate it and drop the exclude.")
            close = (f"Annotated {n} functions and removed `{m['file']}` from the mypy exclude list. "
                     f"Mypy found {rng.randrange(1, 4)} real issues ({issue}), fixed in the same change; `make check` passes.")
            return {"title": f"Enable strict mypy for {m['file']}", "desc": " ".join(s), "close": close,
                    "module": m, "priority": 3}
        func = pick(m["funcs"])
        bare = pick(["EOF", "connection refused", "unexpected end of JSON input", "file does not exist"])
        s = [f"Errors from `{func}` come back as a bare `{bare}` with no hint of what failed.",
             "Wrap them with `fmt.Errorf` and `%w` so logs say what failed and callers can still use `errors.Is`."]
        close = (f"Wrapped {n} error returns in `{m['file']}` with the name of the thing that failed; "
                 f"tests now check them with `errors.Is`. `{test_cmd(m)}` green.")
        return {"title": f"Wrap errors in the {m['component']} with context", "desc": " ".join(s),
                "close": close, "module": m, "priority": 3}
    return {"kind": "hygiene", "type": "chore", "build": build, "module": m}


def flaky_spec(R, m, fl):
    def build(ctx):
        lang = lang_of(m)
        func = pick(m["funcs"])
        suffix = pick(["basic", "round_trip", "with_fixture_data", "retry_path"])
        if lang == "py":
            name = f"test_{func}_{suffix}"
        elif lang == "go":
            name = "Test" + func[:1].upper() + func[1:] + "".join(p.capitalize() for p in suffix.split("_"))
        else:
            name = f"{func} {suffix.replace('_', ' ')}"
        k = pick([200, 300, 500])
        d = m["file"].rsplit("/", 1)[0]
        if lang == "py":
            loop = f"pytest -q {m['test']} -k {name} --count={k}"
        elif lang == "go":
            loop = f"go test -race -run {name} -count={k} ./{d}/"
        else:
            loop = f"for i in $(seq {k}); do npm --prefix web test -- {m['file'].rsplit('/', 1)[1].split('.')[0]} || break; done"
        base = m["test"].rsplit("/", 1)[1]
        title = pick([f"Flaky test: {name} in {base}", f"Intermittent failure in {name}"])
        s = [f"`{name}` in `{m['test']}` fails about 1 in {pick([10, 15, 20, 30])} runs on the refinery merge gate with `{fl['err']}`.",
             "It passes on retry, so MRs get bounced for no real reason."]
        if rng.random() < 0.5:
            s.append(fl["cause"] + ".")
        close = f"{fl['fix']} in `{m['test']}`. Ran the test {k} times with `{loop}` and saw no failures."
        if rng.random() < 0.4:
            close += " The refinery gate has been green since."
        return {"title": title, "desc": " ".join(s), "close": close, "module": m, "priority": 2,
                "labels": ["ci-failure"], "created_by": f"{R['rig']}/refinery"}
    return {"kind": "flaky", "type": "bug", "build": build, "module": m}


def perf_spec(R, p):
    def build(ctx):
        what = p["what"]
        title = pick([f"{cap(what)} is slow with {p['n']}+ {p['entity']}",
                      f"{cap(what)} takes {p['ms'] / 1000:.1f}s for {p['n']} {p['entity']}"])
        s = [f"{cap(what)} takes about {p['ms']}ms once there are more than {p['n']} {p['entity']}.",
             f"Profiling points at {p['cause']}."]
        if rng.random() < 0.5:
            s.append(f"Target is under {max(200, p['ms2'] * 2)}ms.")
        close = (f"{p['fix']} (`{p['file']}`). {cap(what)} now takes about {p['ms2']}ms on the staging dataset; "
                 f"`{R['test_all']}` green.")
        return {"title": title, "desc": " ".join(s), "close": close, "priority": pick([1, 2])}
    return {"kind": "perf", "type": "bug", "build": build}


_migration_rev = [46]


def migration_spec(R, mig):
    table, column, sqltype, purpose, backfill = mig

    def build(ctx):
        _migration_rev[0] += 1
        rev = f"{_migration_rev[0]:04d}"
        s = [f"{purpose}.", f"Add a nullable `{column}` column ({sqltype}) to `{table}` and backfill it {backfill}."]
        if rng.random() < 0.6:
            s.append("Make it NOT NULL in a follow-up once the backfill is verified.")
        close = (f"Migration `{rev}_{table}_{column}.py` adds `{table}.{column}` and backfills it {backfill}; "
                 f"`alembic upgrade head` ran against a staging snapshot in {rng.randrange(4, 90)}s. `make check` green.")
        return {"title": f"Add {column} to {table}", "desc": " ".join(s), "close": close, "priority": 2}
    return {"kind": "migration", "type": "feature", "build": build}


def dep_spec(R, d):
    dep, v1, v2, lock, reason, adjust = d

    def build(ctx):
        title = pick([f"Bump {dep} to {v2}", f"Upgrade {dep} from {v1} to {v2}"])
        s = [f"We pin {dep} {v1}.", reason + "."]
        if rng.random() < 0.4:
            s.append("Check the changelog for anything that touches our usage.")
        close = f"Bumped {dep} to {v2} in `{lock}`; {adjust}. `{R['test_all']}` green and merged by the refinery."
        return {"title": title, "desc": " ".join(s), "close": close, "priority": 3}
    return {"kind": "dep", "type": "chore", "build": build}


def lint_spec(R, li):
    d, rules, n, note = li

    def build(ctx):
        if d.startswith("web"):
            tool, cmd = "eslint", "npm --prefix web run lint"
        else:
            tool, cmd = ("ruff", R["lint_cmd"]) if R["lang"] == "py" else ("golangci-lint", R["lint_cmd"])
        s = [f"`{cmd}` reports {n} warnings in `{d}` ({rules}).",
             "The refinery gate only warns on these today, and we want to make it fail."]
        if rng.random() < 0.5:
            s.append("No behaviour changes expected.")
        close = f"Fixed all {n} warnings ({rules}); {note}. `{cmd}` is clean for `{d}`."
        return {"title": f"Clean up {tool} warnings in {d}", "desc": " ".join(s), "close": close, "priority": 4,
                "labels": ["cleanup"]}
    return {"kind": "lint", "type": "chore", "build": build}


def security_spec(R, sec):
    def build(ctx):
        s = [sec["desc"]]
        if rng.random() < 0.5:
            s.append("Found during the quarterly security review.")
        close = f"{sec['fix']} Change is in `{sec['file']}`; `{R['test_all']}` green."
        return {"title": sec["title"], "desc": " ".join(s), "close": close, "priority": 1, "labels": ["security"]}
    return {"kind": "security", "type": "bug", "build": build}


def config_spec(R, c):
    key, what, default, file, why = c

    def build(ctx):
        s = [f"{cap(what)} is hard-coded to {default} in `{file}`.", why + ".",
             f"Add `{key}` with the current value as the default."]
        close = (f"Added `{key}` (default {default}) to `{R['config_file']}`; `{file}` reads it at startup. "
                 f"Test added and `{R['test_all']}` green.")
        return {"title": f"Make {what} configurable", "desc": " ".join(s), "close": close, "priority": 3}
    return {"kind": "config", "type": "feature", "build": build}


def dup_spec(R):
    def build(ctx):
        cands = earlier(ctx, lambda b: b.get("bug") is not None and b["status"] == "closed"
                        and b["closed_at"] < ctx["created"] and not b.get("duped"))
        if not cands:
            return None
        orig = pick(cands)
        orig["duped"] = True
        m, b = orig["module"], orig["bug"]
        title = pick([f"{b['func']} {b['short']} again?", f"Possible regression: {b['func']} {b['short']}"])
        s = [f"Seeing `{b['err']}` from `{b['func']}` again, {pick(['on staging', 'in a polecat test run', 'in the nightly job logs'])}.",
             "Filing in case the earlier fix did not cover this path."]
        if rng.random() < 0.6:
            s.append(f"Might be related to {orig['id']}.")
        close = pick([
            f"no-changes: already fixed by {orig['id']} (merged {sha7()}); the report came from a host still running the old build. `{test_cmd(m)}` passes on main.",
            f"no-changes: could not reproduce on main; {test_ref(m, b['test'])} from {orig['id']} covers this path and passes. The failing run was on a branch cut before {orig['id']} merged.",
        ])
        return {"title": title, "desc": " ".join(s), "close": close, "module": m, "priority": 2}
    return {"kind": "dup", "type": "bug", "build": build, "closed_only": True}


def rig_pool(R, need: int) -> list[dict]:
    pool = []
    for m in R["modules"]:
        for b in m["bugs"]:
            if b["test"] == "test_deep_draft_vessel_skips_shallow_berths":
                continue  # reserved for the scripted polecat session
            pool.append(bug_spec(R, m, b))
        for f in m["features"]:
            pool.append(feature_spec(R, m, f))
        pool.append(tests_spec(R, m))
        pool.append(refactor_spec(R, m))
        if lang_of(m) != "web":
            pool.append(logging_spec(R, m))
            pool.append(hygiene_spec(R, m))
        if m["metric"]:
            pool.append(metric_spec(R, m))
    pool += [perf_spec(R, p) for p in R["perf"]]
    pool += [migration_spec(R, x) for x in R["migrations"]]
    pool += [dep_spec(R, d) for d in R["deps"]]
    pool += [lint_spec(R, li) for li in R["lint"]]
    pool += [security_spec(R, s) for s in R["security"]]
    pool += [config_spec(R, c) for c in R["configs"]]
    pool += [dup_spec(R) for _ in range(7)]
    flakes = {"py": PY_FLAKES, "go": GO_FLAKES, "web": WEB_FLAKES}
    combos = [(m, fl) for m in R["modules"] for fl in flakes[lang_of(m)]]
    rng.shuffle(combos)
    for m, fl in combos[:max(8, need - len(pool) + 4)]:
        pool.append(flaky_spec(R, m, fl))
    for spec in pool:
        spec["rig"] = R["rig"]
    rng.shuffle(pool)
    return pool


# --------------------------------------------------------------------------- town (hq) ops beads

STALL_PEEKS = [
    ("a permission prompt for `git push`",
     "The session was waiting on a permission prompt. Restarted it with `gt session restart {rig}/{p}`; it resumed from the hook and {bead} merged later that day."),
    ("the Claude Code login screen",
     "The account token had expired. Re-authenticated the account, then ran `gt session restart {rig}/{p}`; work resumed from the hook."),
    ("a test run that never returned",
     "A test was blocking on a real network call. Restarted the session with `gt session restart {rig}/{p}` and filed the test as separate work; {bead} finished on the next attempt."),
    ("an empty pane after a context compaction",
     "`gt polecat check-recovery {rig}/{p}` reported SAFE_TO_NUKE (no unpushed commits). Nuked it and re-slung {bead} with `gt sling {bead} {rig}`; a fresh polecat finished it."),
]

STORM_CAUSES = [
    ("the bead description pointed at `{file}`, which had been moved",
     "Updated the description with the new path, ran `gt sling respawn-reset {bead}` and re-slung it; the next polecat finished in one session."),
    ("each polecat ran `bd close` on the root issue and then had nothing to submit",
     "Added a rig directive reminding polecats to end with `gt done`, not `bd close`, then ran `gt sling respawn-reset {bead}`. The fourth attempt went through the merge queue normally."),
    ("a fixture file the tests need existed only in the crew clone, not on main",
     "Pushed the fixture from {rig}/crew/{crew} to main, reset the counter with `gt sling respawn-reset {bead}` and re-slung; it merged on the next try."),
    ("the polecat's context filled up reading a 9 MB fixture before it started work",
     "Trimmed the fixture and added a note on which file to read first, then ran `gt sling respawn-reset {bead}`; the next session finished well inside its context."),
]

# (wrong command, what they wanted, error, right command, role, short pattern)
DESIRE_PATHS = [
    ("gt mail send --human", "to reach the operator", "unknown flag: --human", "gt mail send overseer", "polecat", "--human"),
    ("bd sync", "to push bead changes", 'unknown command "sync" for "bd"', "bd dolt push", "crew", "bd sync"),
    ("bd complete {bead}", "to finish their work", 'unknown command "complete" for "bd"', "gt done", "polecat", "bd complete"),
    ("bd comments list {bead}", "to read a bead's comments", "issue list not found", "bd comments {bead}", "polecat", "bd comments list"),
    ("bd update {bead} --status=done", "to mark work finished", 'invalid status "done"', "gt done", "polecat", "--status=done"),
    ("bd create --rig {rig} --title=...", "to file a bead in the rig database", "unknown flag: --rig",
     "cd {rig}/mayor/rig && bd create --title=...", "crew", "bd create --rig"),
    ("bd show {bead}", "from the town root to read a rig bead", "no issue found matching {bead}", "gt show {bead}", "mayor", "bd show"),
    ("gt polecat kill {rig}/{p}", "to stop a stuck polecat", 'unknown command "kill" for "gt polecat"', "gt session stop {rig}/{p}", "witness", "gt polecat kill"),
]
ROLE_WORDS = {"polecat": ("polecat", "polecats"), "crew": ("crew", "crew members"),
              "mayor": ("mayor", "the mayor"), "witness": ("witness", "witnesses")}

TOWN_CONFIGS = [
    {"title": "Keep closed mail for 14 days instead of 7",
     "desc": "Witnesses look back at MERGED mail when auditing a polecat, but the reaper deletes closed wisps after 168h. Two audits last week found the mail already gone.",
     "close": "Set `lifecycle.reaper.delete_age` to 336h with `gt config set lifecycle.reaper.delete_age 336h`. Checked after the next reaper run that mail from 8 days ago was still there.",
     "type": "chore", "rig": None},
    {"title": "Run the full harbor gate in the refinery",
     "desc": "The harbor refinery runs only `pytest -q`, so ruff and mypy regressions land on main and the next polecat inherits them. The rig should gate on `make check`.",
     "close": "Set `merge_queue.test_command` to `make check` in `harbor/settings/config.json` with `gt rig settings set harbor merge_queue.test_command \"make check\"`. The next MR ran the full gate.",
     "type": "chore", "rig": "harbor"},
    {"title": "Lantern refinery should run the web tests",
     "desc": "Lantern MRs that touch `web/` merge without running the web test suite. Two broken charts reached main this month.",
     "close": "Set `merge_queue.test_command` to `go test -race ./... && npm --prefix web test` for lantern with `gt rig settings set`. Verified on the next web MR, which ran both suites.",
     "type": "chore", "rig": "lantern"},
    {"title": "Route crash escalations to the deacon",
     "desc": "HELP mail about crashed sessions goes to the mayor, who hands every one to the deacon anyway. The escalation config should route crash and database problems straight to the deacon.",
     "close": "Added a `crash` route to `deacon/` in `settings/escalation.json`. Tested with a dry-run escalation and it landed in the deacon's inbox.",
     "type": "chore", "rig": None},
    {"title": "Witness patrol should report merge-queue depth",
     "desc": "The witness patrol summary says nothing about the merge queue, so a stuck queue is only noticed when polecats go idle. Add the queue depth to each patrol report for harbor.",
     "close": "Added `harbor/formula-overlays/mol-witness-patrol.toml` with a `[[step-overrides]]` entry (mode `append`) on `check-refinery` that runs `gt mq list harbor` and includes the depth. The next `gt patrol report` summary showed it.",
     "type": "task", "rig": "harbor"},
    {"title": "Lantern polecats need the Go toolchain note in their directive",
     "desc": "New lantern polecats keep running `go test` with the system Go 1.21 and hit toolchain errors. The rig directive should tell them to use the pinned toolchain from `go.mod`.",
     "close": "Added a toolchain section to `lantern/directives/polecat.md`; `gt prime` shows it to every lantern polecat. The next four sessions used `GOTOOLCHAIN=auto` without prompting.",
     "type": "task", "rig": "lantern"},
]

CONVOY_THEMES = {
    "harbor": ["harbor tide-aware allocation", "harbor billing fixes for Q4", "harbor importer hardening"],
    "lantern": ["lantern alerting v2", "lantern web polish", "lantern scrape reliability"],
}


_ops_targets: set[str] = set()


def ops_stall(ctx):
    rig = pick(["harbor", "lantern"])
    prior = [b for b in ctx["beads"] if b["rig"] == rig and b["status"] == "closed"
             and "/polecats/" in b["assignee"] and b["id"] not in _ops_targets]
    if not prior:
        return None
    target = pick(prior[-10:])
    _ops_targets.add(target["id"])
    bead, p = target["id"], polecat_name(target["assignee"])
    peek, close = pick(STALL_PEEKS)
    s = [f"Witness patrol flagged {rig}/polecats/{p} as stalled: hooked to {bead} with no commits and no pane output for {rng.randrange(25, 95)} minutes.",
         f"`gt peek {rig}/{p}` shows {peek}."]
    if rng.random() < 0.8:
        s.append(f"Two nudges from {rig}/witness got no response.")
    return {"title": f"Polecat {rig}/{p} stalled on {bead}", "desc": " ".join(s),
            "close": close.format(rig=rig, p=p, bead=bead), "priority": 1, "type": "task",
            "created_by": f"{rig}/witness", "assignee": pick([MAYOR, DEACON]), "labels": [f"rig:{rig}"]}


def ops_storm(ctx):
    rig = pick(["harbor", "lantern"])
    R = RIGS[rig]
    prior = [b for b in ctx["beads"] if b["rig"] == rig and b.get("module") and b["id"] not in _ops_targets]
    if not prior:
        return None
    target = pick(prior[-12:])
    bead = target["id"]
    _ops_targets.add(bead)
    cause, close = pick(STORM_CAUSES)
    cause = cause.format(file=target["module"]["file"])
    s = [f"{bead} was slung three times in {rng.randrange(3, 9)} hours and each polecat exited without running `gt done`.",
         "`gt sling` now refuses it because of the respawn limit, and the witness reset it to open after each death.",
         f"From the transcripts it looks like {cause}."]
    return {"title": f"Spawn storm on {bead}: respawn limit hit", "desc": " ".join(s),
            "close": close.format(bead=bead, rig=rig, crew=R["crew"][0]), "priority": 1, "type": "bug",
            "created_by": f"{rig}/witness", "assignee": MAYOR, "labels": [f"rig:{rig}"]}


def ops_mq(ctx):
    rig = pick(["harbor", "lantern"])
    R = RIGS[rig]
    mr = new_id(R["prefix"])
    m = pick(R["modules"])
    s = [f"`gt mq list {rig}` has shown {mr} at the head of the queue for {rng.randrange(2, 7)} hours with {rng.randrange(3, 8)} MRs behind it.",
         f"The refinery retries the rebase each cycle and fails on the same conflict in `{m['file']}`."]
    if rng.random() < 0.5:
        s.append("Polecats behind it are idle waiting for their merges.")
    if rng.random() < 0.6:
        close = (f"The branch conflicted with {sha7()} on main. Sent REWORK_REQUEST through {rig}/witness; the polecat rebased and resubmitted, "
                 f"and `gt mq retry {rig} {mr}` merged it. The queue drained in {rng.randrange(20, 70)} minutes.")
    else:
        prior = [b for b in ctx["beads"] if b["rig"] == rig]
        other = pick(prior[-8:])["id"] if prior else "a newer MR"
        close = (f"Rejected {mr} with `gt mq reject {rig} {mr}` because the same change had already landed with {other}. "
                 "The rest of the queue merged within the hour.")
    return {"title": f"{cap(rig)} merge queue stuck behind {mr}", "desc": " ".join(s), "close": close,
            "priority": 1, "type": "bug", "created_by": pick([f"{rig}/witness", DEACON]), "assignee": MAYOR,
            "labels": [f"rig:{rig}"]}


DOLT_VARIANTS = [
    ("Dolt server slow during witness patrols",
     "Patrol steps that run `bd list` take {n}s instead of under a second.",
     "a leaked connection pool in an orphaned dog session", "killing the orphaned session after reviewing `gt orphans list`"),
    ("bd commands time out against the Dolt server",
     "Several polecats saw `dial tcp 127.0.0.1:3307: i/o timeout` from `bd show` within ten minutes.",
     "the nightly backup holding a long read transaction", "moving the backup window to 03:00"),
    ("Dolt CPU pinned at 100% after the reaper run",
     "The Dolt server has used a full core since the last reaper run and queries are queueing.",
     "the reaper deleting wisps one row at a time", "lowering the reaper batch and letting the backlog drain"),
]


def ops_dolt(variant):
    def build(ctx):
        title, first, cause, fix = variant
        s = [first.format(n=rng.randrange(8, 30)), f"`gt dolt status` shows {rng.randrange(60, 180)} open connections.",
             "Agents were told not to restart Dolt themselves."]
        close = (f"Collected a goroutine dump and the `gt dolt status` output, then escalated with `gt escalate -s HIGH`; "
                 f"the overseer restarted the server. Cause was {cause}, fixed by {fix}.")
        return {"title": title, "desc": " ".join(s), "close": close, "priority": 1, "type": "task",
                "created_by": DEACON, "assignee": DEACON, "labels": []}
    return build


def ops_desire(dp):
    def build(ctx):
        wrong, expected, err, right, role, pattern = dp
        role_s, role_p = ROLE_WORDS[role]
        rig = pick(["harbor", "lantern"])
        R = RIGS[rig]
        prior = [b for b in ctx["beads"] if b["rig"] == rig]
        bead = pick(prior[-10:])["id"] if prior else f"{R['prefix']}-abc"
        p = pick(R["polecats"])
        fmt = {"bead": bead, "rig": rig, "p": p}
        wrong, err, right = wrong.format(**fmt), err.format(**fmt), right.format(**fmt)
        directive = {"polecat": f"{rig}/directives/polecat.md", "crew": f"{rig}/directives/crew.md",
                     "mayor": "directives/mayor.md", "witness": f"{rig}/directives/witness.md"}[role]
        n = rng.randrange(3, 12)
        s = [f"Seen {n} times in {role_s} transcripts this week: agents run `{wrong}` {expected}.",
             f"It fails with `{err}` and they spend a few turns recovering.",
             f"The right command is `{right}`."]
        if rng.random() < 0.5:
            s.append("Either teach it in the role directive or make the wrong form work.")
        close = (f"Added a note to `{directive}` telling {role_p} to use `{right}`; `gt prime` now shows it. "
                 f"Checked the next {rng.randrange(4, 9)} {role_s} sessions with `gt seance` and none tried `{pattern}` again.")
        labels = ["desire-path"] + ([f"rig:{rig}"] if directive.startswith(rig) else [])
        return {"title": f"desire-path: agents run `{wrong}`", "desc": " ".join(s), "close": close,
                "priority": 3, "type": "task", "created_by": pick([MAYOR, f"{rig}/crew/{R['crew'][0]}"]),
                "assignee": pick([MAYOR, f"{rig}/crew/{R['crew'][0]}"]), "labels": labels}
    return build


def ops_config(c):
    def build(ctx):
        return {"title": c["title"], "desc": c["desc"], "close": c["close"], "priority": 2, "type": c["type"],
                "created_by": pick([MAYOR, DEACON]), "assignee": MAYOR,
                "labels": [f"rig:{c['rig']}"] if c["rig"] else []}
    return build


_convoy_themes = [(r, t) for r in ("harbor", "lantern") for t in CONVOY_THEMES[r]]


def ops_convoy(ctx):
    if not _convoy_themes:
        return None
    rig, theme = _convoy_themes[0]
    prior = [b for b in ctx["beads"] if b["rig"] == rig and b["status"] == "closed"][-12:]
    if len(prior) < 4:
        return None
    members = sorted(rng.sample(prior, rng.randrange(3, 6)), key=lambda b: b["id"])
    ids = " ".join(b["id"] for b in members)
    _convoy_themes.remove((rig, theme))
    cv = new_id("hq-cv")
    s = [f"Group the {len(members)} beads for {theme} into a convoy so the mayor can track them: {ids}.",
         "Notify the overseer when it lands."]
    close = (f"Created {cv} with `gt convoy create \"{theme}\" {ids} --notify overseer`. "
             f"`gt convoy status {cv}` showed {len(members)}/{len(members)} closed, and the overseer was notified.")
    return {"title": f"Convoy: {theme}", "desc": " ".join(s), "close": close, "priority": 2, "type": "task",
            "created_by": MAYOR, "assignee": MAYOR, "labels": [f"rig:{rig}"]}


def ops_orphans(rig):
    return lambda ctx: _ops_orphans(rig)


def _ops_orphans(rig):
    n = rng.randrange(3, 7)
    s = [f"`gt orphans list` shows {n} worktrees under `{rig}/polecats/` with no session and branches that are already merged.",
         f"They use {rng.randrange(2, 9)} GB of disk on the town host."]
    close = ("Checked each one with `gt polecat check-recovery`; all were SAFE_TO_NUKE. "
             "Removed them with `gt polecat nuke` (mayor) and pruned the merged branches.")
    return {"title": f"Clean up orphaned polecat worktrees in {rig}", "desc": " ".join(s), "close": close,
            "priority": 3, "type": "chore", "created_by": DEACON, "assignee": MAYOR,
            "labels": ["cleanup", f"rig:{rig}"]}


def hq_pool() -> list[dict]:
    rng.shuffle(_convoy_themes)
    builders = ([ops_stall] * 13 + [ops_storm] * 5 + [ops_mq] * 6 + [ops_dolt(v) for v in DOLT_VARIANTS]
                + [ops_convoy] * 4 + [ops_orphans("harbor"), ops_orphans("lantern")]
                + [ops_desire(d) for d in DESIRE_PATHS] + [ops_config(c) for c in TOWN_CONFIGS])
    pool = [{"kind": "ops", "type": None, "build": b, "rig": "hq",
             "closed_only": b in (ops_stall, ops_storm)} for b in builders]
    rng.shuffle(pool)
    return pool


# --------------------------------------------------------------------------- bead assembly

DURATIONS = {"bug": (60, 2400), "feature": (300, 5760), "task": (60, 1800), "chore": (40, 1200)}
OPS_DURATION = (20, 600)


def dt(s: str) -> datetime:
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def rand_time(a: datetime, b: datetime) -> datetime:
    return a + timedelta(seconds=rng.randrange(int((b - a).total_seconds())))


def agent_of(rig: str, R: dict) -> str:
    if rng.random() < 0.8:
        return f"{rig}/polecats/{pick(R['polecats'])}"
    return f"{rig}/crew/{pick(R['crew'])}"


def creator_of(rig: str, R: dict) -> str:
    r = rng.random()
    if r < 0.4:
        return MAYOR
    if r < 0.7:
        return f"{rig}/crew/{pick(R['crew'])}"
    if r < 0.8:
        return f"{rig}/witness"
    return f"{rig}/polecats/{pick(R['polecats'])}"


def make_slots() -> list[dict]:
    slots = []
    late_closed = NOW - timedelta(hours=36)
    for rig, n in (("harbor", 119), ("lantern", 100), ("hq", 39)):
        recent = datetime(2026, 11, 20, tzinfo=timezone.utc)
        for _ in range(n):
            lo = recent if rng.random() < 0.09 else T0
            slots.append({"rig": rig, "status": "closed", "created": rand_time(lo, late_closed)})
    open_from = datetime(2026, 10, 20, tzinfo=timezone.utc)
    for rig, n_open, inprog in (("harbor", 8, [("capable", None)]),
                                ("lantern", 9, [("dag", None), ("cheedo", None), ("morsov", None)]),
                                ("hq", 4, [(None, None), (None, None)])):
        for _ in range(n_open):
            slots.append({"rig": rig, "status": "open", "created": rand_time(open_from, NOW - timedelta(hours=2))})
        for who, when in inprog:
            slots.append({"rig": rig, "status": "in_progress", "polecat": who,
                          "created": when or rand_time(datetime(2026, 11, 18, tzinfo=timezone.utc), NOW - timedelta(hours=6))})
    # Scripted beads (the transcripts and mail refer to them).
    slots.append({"rig": "harbor", "status": "in_progress", "polecat": "rictus", "special": "rictus",
                  "created": dt("2026-11-23T16:20:44Z")})
    slots.append({"rig": "harbor", "status": "in_progress", "polecat": "slit", "special": "slit",
                  "created": dt("2026-11-24T11:05:09Z")})
    slots.append({"rig": "harbor", "status": "in_progress", "polecat": "nux",
                  "created": dt("2026-11-26T10:02:31Z")})
    slots.append({"rig": "harbor", "status": "closed", "special": "nux_draft",
                  "created": dt("2026-11-24T13:50:12Z")})
    slots.append({"rig": "hq", "status": "closed", "special": "rictus_stall",
                  "created": dt("2026-11-27T09:12:05Z")})
    slots.sort(key=lambda s: s["created"])
    return slots


def content_hash(b: dict) -> str:
    basis = {k: b[k] for k in ("id", "title", "description", "status", "priority", "issue_type",
                               "assignee", "close_reason", "created_at")}
    return hashlib.sha256(go_json(basis, sort_keys=True).encode()).hexdigest()


def build_beads():
    need = {"harbor": 131, "lantern": 112}
    pools = {"harbor": rig_pool(HARBOR, need["harbor"]), "lantern": rig_pool(LANTERN, need["lantern"]),
             "hq": hq_pool()}
    beads: list[dict] = []
    titles: set[str] = set()
    specials: dict[str, dict] = {}
    for slot in make_slots():
        rig = slot["rig"]
        R = RIGS.get(rig)
        created = slot["created"]
        ctx = {"rig": rig, "beads": beads, "created": ts(created)}
        content, spec = None, None
        if slot.get("special") == "nux_draft":
            m = HARBOR["modules"][0]
            b = m["bugs"][1]
            spec = bug_spec(HARBOR, m, b)
            content = spec["build"](ctx)
            content["title"] = f"{b['func']} {b['short']}"
            content["close"] = (f"Fixed in `{m['file']}`: {b['fix']}. Added `{b['test']}` to `{m['test']}`; "
                                f"`{test_cmd(m)}` passes.")
            content["priority"] = 1
        elif slot.get("special") == "rictus_stall":
            r = specials["rictus"]["id"]
            content = {
                "title": f"Polecat harbor/rictus stalled on {r}",
                "desc": (f"Witness patrol flagged harbor/polecats/rictus as stalled: hooked to {r} with no commits and no "
                         f"pane output for 70 minutes. `gt peek harbor/rictus` shows the dangerous-command guard blocking "
                         f"`git push --force` after a rebase. Two nudges from harbor/witness got no response."),
                "close": (f"rictus was stuck at the dangerous-command guard after trying `git push --force` on its rebased "
                          f"branch. Nudged it to use `git push --force-with-lease` instead; it pushed and went back to {r}."),
                "priority": 1, "type": "task", "created_by": "harbor/witness", "assignee": MAYOR,
                "labels": ["rig:harbor"]}
            spec = {"kind": "ops", "type": "task"}
        else:
            pool = pools[rig]
            for attempt in range(len(pool)):
                cand = pool.pop(0)
                if slot["status"] != "closed" and cand.get("closed_only"):
                    pool.append(cand)
                    continue
                got = cand["build"](ctx)
                if got is not None and got["title"] in titles:
                    got = None
                if got is None:
                    pool.append(cand)
                    continue
                content, spec = got, cand
                break
            if content is None:
                raise SystemExit(f"content pool for {rig} ran dry")
        itype = content.get("type") or spec["type"]
        bid = new_id("hq" if rig == "hq" else R["prefix"])
        status = slot["status"]
        if rig == "hq":
            assignee = content.get("assignee") if status != "open" else None
            created_by = content.get("created_by") or MAYOR
        else:
            if status == "closed":
                assignee = content.get("assignee") or agent_of(rig, R)
            elif status == "in_progress":
                assignee = f"{rig}/polecats/{slot['polecat']}"
            else:
                assignee = None
            created_by = content.get("created_by") or creator_of(rig, R)
        if slot.get("special") == "nux_draft":
            assignee, created_by = "harbor/polecats/nux", MAYOR
        closed_at = None
        if status == "closed":
            lo, hi = OPS_DURATION if rig == "hq" else DURATIONS[itype]
            closed = created + minutes(lo, hi)
            if slot.get("special") == "nux_draft":
                closed = dt("2026-11-24T15:32:40Z")
            elif slot.get("special") == "rictus_stall":
                closed = dt("2026-11-27T09:51:30Z")
            if closed > NOW - timedelta(minutes=15):
                closed = NOW - timedelta(minutes=rng.randrange(15, 240))
                if closed <= created:
                    closed = created + timedelta(minutes=20)
            closed_at = ts(closed)
            updated = closed
        elif status == "in_progress":
            updated = created + minutes(5, 300)
        else:
            updated = created if rng.random() < 0.6 else created + minutes(30, 2000)
        if updated > NOW:
            updated = NOW - timedelta(minutes=rng.randrange(5, 60))
        notes = ""
        if status == "in_progress" and content.get("module") and rng.random() < 0.7:
            m = content["module"]
            notes = pick([f"Reproduced on main. Working in `{m['file']}`; next step is the test in `{m['test']}`.",
                          f"Session 1: read `{m['file']}` and the related tests. Plan: change `{pick(m['funcs'])}` first, then run `{test_cmd(m)}`."])
        bead = {
            "id": bid, "rig": rig, "kind": spec["kind"], "type": itype, "title": content["title"],
            "desc": content["desc"], "close": content["close"] if status == "closed" else "",
            "status": status, "priority": content.get("priority", 2), "assignee": assignee,
            "created_by": created_by, "created_at": ts(created), "updated_at": ts(updated),
            "closed_at": closed_at, "labels": list(content.get("labels", [])), "notes": notes,
            "module": content.get("module"), "bug": content.get("bug"),
        }
        titles.add(bead["title"])
        if slot.get("special"):
            specials[slot["special"]] = bead
        beads.append(bead)
    # toast: the open lantern bead the mayor slings in the scripted mayor session
    sling_at = dt("2026-11-27T09:46:10Z")
    cands = [b for b in beads if b["rig"] == "lantern" and b["status"] == "open" and dt(b["created_at"]) < sling_at - timedelta(hours=6)]
    toast = min(cands, key=lambda b: (b["priority"], b["created_at"]))
    toast["status"], toast["assignee"] = "in_progress", "lantern/polecats/toast"
    toast["updated_at"] = ts(sling_at + timedelta(minutes=2, seconds=14))
    specials["toast"] = toast
    return beads, specials


# --------------------------------------------------------------------------- mail (hq beads)

def b36(n: int) -> str:
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = B36[r] + out
    return out or "0"


def polecat_name(addr: str) -> str:
    return addr.rsplit("/", 1)[1]


def lifecycle(b: dict) -> None:
    """Attach sling/branch/MR timing to a rig bead worked by a polecat."""
    created = dt(b["created_at"])
    b["sling_at"] = created + timedelta(minutes=rng.randrange(3, 12), seconds=rng.randrange(60))
    b["branch"] = f"polecat/{polecat_name(b['assignee'])}/{b['id']}@{b36(int(b['sling_at'].timestamp()))}"
    b["mr"] = new_id(RIGS[b["rig"]]["prefix"])
    if b["status"] == "closed":
        closed = dt(b["closed_at"])
        done = closed - timedelta(minutes=38, seconds=rng.randrange(60))
        if done <= b["sling_at"] + timedelta(minutes=10):
            done = b["sling_at"] + (closed - b["sling_at"]) * 0.6
        b["done_at"] = done


def mail_bead(sender: str, to: str, subject: str, body: str, mtype: str, when: datetime, priority: int = 2) -> dict:
    return {
        "id": new_id("hq"), "rig": "hq", "kind": "mail", "type": "task", "title": subject, "desc": body,
        "close": "", "status": "open", "priority": priority, "assignee": to, "created_by": sender,
        "created_at": ts(when), "updated_at": ts(when), "closed_at": None, "notes": "",
        "labels": ["gt:message", f"from:{sender}", f"msg-type:{mtype}", "delivery:pending"],
        "module": None, "bug": None, "mail_to": to, "mail_from": sender,
    }


def build_mail(beads: list[dict], specials: dict) -> tuple[list[dict], list[dict]]:
    window = ts(datetime(2026, 11, 23, tzinfo=timezone.utc))
    nux = specials["nux_draft"]
    cands = [b for b in beads if b["rig"] != "hq" and b["status"] == "closed" and b is not nux
             and b["closed_at"] >= window and b["kind"] != "dup" and "/polecats/" in b["assignee"]]
    chains = [nux]
    for rig in ("harbor", "lantern"):
        used = {"nux"} if rig == "harbor" else set()
        for c in cands:
            name = polecat_name(c["assignee"])
            if c["rig"] == rig and name not in used and len(used) < 4:
                chains.append(c)
                used.add(name)
    chains = chains[:7]
    failed = {id(chains[2]), id(chains[5])} if len(chains) > 5 else set()
    mails = []
    for b in chains:
        lifecycle(b)
        if b is nux:  # the scripted polecat session
            b["sling_at"] = NUX_SLING
            b["branch"] = f"polecat/nux/{b['id']}@{b36(int(b['sling_at'].timestamp()))}"
            b["done_at"] = NUX_DONE
        rig, name = b["rig"], polecat_name(b["assignee"])
        m = b.get("module")
        summary = (f"`{test_cmd(m)}` green locally." if m else f"`{RIGS[rig]['test_all']}` green locally.")
        done = b["done_at"]
        mails.append(mail_bead(b["assignee"], f"{rig}/witness", f"POLECAT_DONE {name}",
                               f"Exit: MERGED\nIssue: {b['id']}\nMR: {b['mr']}\nBranch: {b['branch']}\n\n{summary}",
                               "notification", done))
        ready_at = done + timedelta(minutes=5, seconds=rng.randrange(60))
        if b is nux:
            ready_at = W_READY
        b["ready_at"] = ready_at
        mails.append(mail_bead(f"{rig}/witness", f"{rig}/refinery", f"MERGE_READY {name}",
                               f"Branch: {b['branch']}\nIssue: {b['id']}\nPolecat: {name}\n"
                               f"Verified: clean git state, branch pushed, MR {b['mr']} open\n\nPlease merge when the gate passes.",
                               "task", ready_at))
        closed = dt(b["closed_at"])
        if id(b) in failed:
            fail_at = ready_at + (closed - ready_at) * 0.4
            err = (f"{test_cmd(m)}: 1 failed" if m else "gate: 1 test failed")
            b["failed_at"] = fail_at
            mails.append(mail_bead(f"{rig}/refinery", f"{rig}/witness", f"MERGE_FAILED {name}",
                                   f"Branch: {b['branch']}\nIssue: {b['id']}\nPolecat: {name}\nRig: {rig}\nTarget: main\n"
                                   f"Failed-At: {ts(fail_at)}\nFailure-Type: tests\nError: {err}\n\n"
                                   f"The branch fails the gate after rebasing onto main. The MR stays in the queue; the polecat should fix and resubmit.",
                                   "notification", fail_at))
        merged_at = closed - timedelta(seconds=rng.randrange(40, 110))
        b["merged_at"] = merged_at
        b["merge_commit"] = sha40()
        mails.append(mail_bead(f"{rig}/refinery", f"{rig}/witness", f"MERGED {name}",
                               f"Branch: {b['branch']}\nIssue: {b['id']}\nPolecat: {name}\nRig: {rig}\nTarget: main\n"
                               f"Merged-At: {ts(merged_at)}\nMerge-Commit: {b['merge_commit']}",
                               "notification", merged_at + timedelta(seconds=6)))

    # HELP mail
    rictus, stall = specials["rictus"], specials["rictus_stall"]
    help_mayor = mail_bead(
        "harbor/witness", MAYOR, "HELP: polecat rictus stuck at the dangerous-command guard",
        f"Agent: harbor/witness\nIssue: {rictus['id']}\nProblem: harbor/polecats/rictus has produced no output for 70 minutes; "
        f"`gt peek harbor/rictus` shows the guard blocking `git push --force` after a rebase.\n"
        f"Tried: two nudges (08:51, 09:04), no response.\n\nTracking in {stall['id']}. This needs a decision on how it should push.",
        "task", dt("2026-11-27T09:13:20Z"), priority=1)
    specials["help_mayor"] = help_mayor
    mails.append(help_mayor)
    lt_inprog = {polecat_name(b["assignee"]): b for b in beads if b["rig"] == "lantern" and b["status"] == "in_progress"}
    hb_inprog = {polecat_name(b["assignee"]): b for b in beads if b["rig"] == "harbor" and b["status"] == "in_progress"}
    dag = lt_inprog["dag"]
    mails.append(mail_bead(
        "lantern/polecats/dag", "lantern/witness", "HELP: go test -race fails on main before my change",
        f"Agent: lantern/polecats/dag\nIssue: {dag['id']}\nProblem: `go test -race ./internal/collector/...` fails on a clean checkout "
        f"of main (TestScrapeTargetRetryPath, 2 of 5 runs).\nTried: reran five times; my change does not touch internal/collector.\n\n"
        f"Should I file a bead for the flake and carry on?",
        "task", max(dt(dag["created_at"]) + timedelta(hours=2), dt("2026-11-25T16:40:00Z")), priority=1))
    cap_b = hb_inprog["capable"]
    mails.append(mail_bead(
        "harbor/polecats/capable", "harbor/witness", f"HELP: need a decision on {cap_b['id']}",
        f"Agent: harbor/polecats/capable\nIssue: {cap_b['id']}\nProblem: the acceptance criteria conflict with an existing test "
        f"in `{cap_b['module']['test'] if cap_b.get('module') else 'tests/'}` that pins the current behaviour, and the bead does not "
        f"say which one wins.\nTried: read the linked beads and the git history of the test; no earlier decision is recorded.\n\n"
        f"Pausing until someone decides.",
        "task", max(dt(cap_b["created_at"]) + timedelta(hours=3), dt("2026-11-28T11:05:00Z")), priority=1))
    mails.append(mail_bead(
        "lantern/witness", DEACON, "HELP: bd timeouts during lantern patrol",
        "Agent: lantern/witness\nIssue: none\nProblem: `bd list` calls in patrol take 20-30s and two polecats saw "
        "`dial tcp 127.0.0.1:3307: i/o timeout`.\nTried: waited one patrol cycle; not restarting Dolt myself.\n\n"
        "Goroutine dump not taken yet; over to you.",
        "task", dt("2026-11-29T02:17:44Z"), priority=1))

    # RECOVERED_BEAD mail
    reasons = ["session died with no commits (context overflow)",
               "polecat nuked after check-recovery reported SAFE_TO_NUKE",
               "account rate limit; the session exited before doing any work"]
    opens = [b for b in beads if b["rig"] != "hq" and b["status"] == "open"
             and b["created_at"] < ts(NOW - timedelta(days=3))]
    picked = [b for b in opens if b["rig"] == "harbor"][-1:] + [b for b in opens if b["rig"] == "lantern"][-2:]
    for i, b in enumerate(picked):
        R = RIGS[b["rig"]]
        p = R["polecats"][i % len(R["polecats"])]
        when = max(dt(b["updated_at"]), dt(b["created_at"]) + timedelta(hours=4), dt("2026-11-24T00:00:00Z")) \
            + timedelta(minutes=rng.randrange(10, 600))
        when = min(when, NOW - timedelta(minutes=30))
        b["updated_at"] = ts(max(dt(b["updated_at"]), when))
        mails.append(mail_bead(
            f"{b['rig']}/witness", DEACON, f"RECOVERED_BEAD {b['id']}",
            f"Bead: {b['id']}\nPolecat: {b['rig']}/polecats/{p}\nPrevious-Status: hooked\nReason: {reasons[i]}\n\n"
            f"Bead reset to open. Run `gt deacon redispatch {b['id']}` when a polecat is free.",
            "task", when))
        b["recovered"] = (p, when)
    return mails, chains


def fix_recent_assignees(beads: list[dict], specials: dict) -> None:
    """A polecat holds one hook at a time: keep recent polecat work from overlapping."""
    since = ts(datetime(2026, 11, 18, tzinfo=timezone.utc))
    busy: dict[str, list[tuple[str, str]]] = {}

    def free(addr, a, z):
        return all(z <= s or a >= e for s, e in busy.get(addr, []))

    for b in beads:
        if b["rig"] != "hq" and b["status"] == "in_progress":
            busy.setdefault(b["assignee"], []).append((b["created_at"], ts(NOW)))
    nd = specials["nux_draft"]
    busy.setdefault(nd["assignee"], []).append((nd["created_at"], nd["closed_at"]))
    for b in beads:
        if b["rig"] == "hq" or b["status"] != "closed" or b is nd or b["created_at"] < since:
            continue
        if "/polecats/" not in b["assignee"]:
            continue
        R = RIGS[b["rig"]]
        a, z = b["created_at"], b["closed_at"]
        options = [f"{b['rig']}/polecats/{p}" for p in R["polecats"]]
        rng.shuffle(options)
        choice = next((o for o in options if free(o, a, z)), None)
        b["assignee"] = choice or f"{b['rig']}/crew/{R['crew'][0]}"
        if choice:
            busy.setdefault(choice, []).append((a, z))


# --------------------------------------------------------------------------- dependencies, comments

def build_deps(beads: list[dict]) -> list[dict]:
    deps, seen = [], set()

    def add(child, parent, typ, who=None):
        key = (child["id"], parent["id"])
        if key in seen or child is parent:
            return False
        seen.add(key)
        deps.append({"created_at": child["created_at"], "created_by": who or pick([MAYOR, child["created_by"]]),
                     "depends_on_id": parent["id"], "issue_id": child["id"], "type": typ})
        return True

    rigb = [b for b in beads if b["rig"] != "hq" and b["kind"] != "mail"]
    parents = [b for b in rigb if b["kind"] == "feature" and b["status"] == "closed"]
    n_pc = 0
    for p in parents:
        if n_pc >= 17:
            break
        kids = [b for b in rigb if b.get("module") is p["module"] and b is not p and b["kind"] not in ("dup", "flaky")
                and p["created_at"] < b["created_at"] < ts(dt(p["created_at"]) + timedelta(days=30))]
        for k in kids[:3]:
            n_pc += add(k, p, "parent-child", MAYOR)
    n_bl = 0
    live = [b for b in rigb if b["status"] != "closed"]
    for b in live:
        if rng.random() < 0.4:
            blockers = [x for x in live if x["rig"] == b["rig"] and x["created_at"] < b["created_at"]]
            if blockers:
                n_bl += add(b, pick(blockers), "blocks")
    closed = [b for b in rigb if b["status"] == "closed" and b.get("module") and b["kind"] != "dup"]
    order = list(range(len(closed)))
    rng.shuffle(order)
    for i in order:
        if n_bl >= 24:
            break
        b = closed[i]
        blockers = [x for x in closed if x.get("module") is b["module"] and x["created_at"] < b["created_at"]
                    and x["closed_at"] < ts(dt(b["closed_at"]) - timedelta(hours=1))]
        if blockers:
            n_bl += add(b, blockers[-1], "blocks")
    deps.sort(key=lambda d: (d["issue_id"], d["depends_on_id"]))
    return deps


def between(a: str, b: str, lo: float = 0.1, hi: float = 0.9) -> datetime:
    x, y = dt(a), dt(b)
    return x + (y - x) * rng.uniform(lo, hi)


def build_comments(beads: list[dict]) -> list[dict]:
    out = []
    closed = [b for b in beads if b["rig"] != "hq" and b["status"] == "closed" and b.get("module") and b["kind"] != "dup"]
    live = [b for b in beads if b["rig"] != "hq" and b["status"] == "in_progress" and b.get("module")]
    chosen = rng.sample(closed, 34) + live[:6]
    for b in chosen:
        m, rig = b["module"], b["rig"]
        R = RIGS[rig]
        end = b["closed_at"] or b["updated_at"]
        worker = b["assignee"]
        name = polecat_name(worker)
        opts = []
        if b["kind"] == "bug":
            opts.append((worker, f"Reproduced on main at {sha7()}; starting with a failing test in `{m['test']}`.", 0.1, 0.3))
        if b["status"] == "in_progress":
            opts.append((worker, f"Notes for the next session: the change is in `{m['file']}`; what is left is the test in `{m['test']}`.", 0.3, 0.8))
        else:
            opts.append((f"{rig}/refinery", f"First MR bounced at the gate on an unrelated flaky test. Retried with `gt mq retry {rig} {new_id(R['prefix'])}`.", 0.6, 0.9))
            opts.append((f"{rig}/crew/{R['crew'][0]}",
                         "Confirmed the fix on staging; the harbour office is happy." if rig == "harbor"
                         else "Confirmed on the ops wall screen after the deploy.", 0.92, 0.99))
        if "/polecats/" in worker:
            opts.append((f"{rig}/witness", f"{name} was idle {rng.randrange(20, 45)} minutes on this; nudged it and it resumed.", 0.3, 0.7))
        if b["kind"] in ("feature", "tests", "refactor"):
            opts.append((worker, f"Plan: change `{pick(m['funcs'])}` first, then update `{m['test']}`. No schema changes needed.", 0.05, 0.2))
        author, text, lo, hi = pick(opts)
        when = between(b["created_at"], end, lo, hi)
        out.append({"author": author, "created_at": ts(when), "id": new_uuid(), "issue_id": b["id"], "text": text})
    out.sort(key=lambda c: (c["issue_id"], c["created_at"]))
    return out


# --------------------------------------------------------------------------- backup events (bd audit log)

def build_backup_events(beads: list[dict]) -> list[dict]:
    since = ts(datetime(2026, 10, 15, tzinfo=timezone.utc))
    rows = []
    seq = 0

    def add(when: str, **kw):
        nonlocal seq
        seq += 1
        rows.append((when, seq, kw))

    for b in beads:
        if b["created_at"] < since and b["kind"] != "mail":
            continue
        add(b["created_at"], actor=b["created_by"], comment=None, event_type="created", issue_id=b["id"],
            new_value="", old_value="")
        for label in b["labels"]:
            add(b["created_at"], actor=b["created_by"], comment=f"Added label: {label}", event_type="label_added",
                issue_id=b["id"], new_value=None, old_value=None)
        if b["kind"] == "mail" or b["status"] == "open" or not b["assignee"]:
            continue
        end = b["closed_at"] or b["updated_at"]
        start = b.get("sling_at") or between(b["created_at"], end, 0.02, 0.15)
        snapshot = {"id": b["id"], "title": b["title"], "description": b["desc"], "status": "open",
                    "priority": b["priority"], "issue_type": b["type"], "created_at": b["created_at"],
                    "updated_at": b["created_at"]}
        add(ts(start + timedelta(seconds=55)), actor=b["assignee"], comment=None, event_type="status_changed",
            issue_id=b["id"], new_value='{"status":"in_progress"}', old_value=go_json(snapshot))
        if b["status"] == "closed":
            closer = f"{b['rig']}/refinery" if b.get("merged_at") else b["assignee"]
            add(b["closed_at"], actor=closer, comment=None, event_type="closed", issue_id=b["id"],
                new_value=b["close"], old_value="")
    rows.sort(key=lambda r: (r[0], r[1]))
    out = []
    for i, (when, _, kw) in enumerate(rows, 1):
        out.append({"actor": kw["actor"], "comment": kw["comment"], "created_at": when, "event_type": kw["event_type"],
                    "id": i, "issue_id": kw["issue_id"], "new_value": kw["new_value"], "old_value": kw["old_value"]})
    return out


# --------------------------------------------------------------------------- gt event feed

def feed_actor(addr: str) -> str:
    return addr.rstrip("/")


class Feed:
    def __init__(self):
        self.rows = []

    def add(self, when: datetime, typ: str, actor: str, payload: dict):
        self.rows.append((ts(when), len(self.rows), {
            "ts": ts(when), "source": "gt", "type": typ, "actor": feed_actor(actor),
            "payload": dict(sorted(payload.items())), "visibility": "feed"}))

    def lines(self):
        return [r[2] for r in sorted(self.rows, key=lambda r: (r[0], r[1]))]


def session_payload(sid: str, role: str, topic: str, cwd: str) -> dict:
    return {"session_id": sid, "role": role, "actor_pid": f"{role}-{rng.randrange(20000, 90000)}",
            "topic": topic, "cwd": cwd}


def build_feed(beads, mails, chains, specials, sessions) -> list[dict]:
    f = Feed()
    window = ts(datetime(2026, 11, 23, tzinfo=timezone.utc))
    recent = ts(datetime(2026, 11, 28, tzinfo=timezone.utc))
    chain_ids = {id(b) for b in chains} | {id(specials["toast"])}
    work = [b for b in beads if b["rig"] != "hq" and b["kind"] != "mail" and b["assignee"]
            and "/polecats/" in b["assignee"] and b["status"] != "open"
            and (b["created_at"] >= window or id(b) in chain_ids)
            and (b["status"] == "in_progress" or b["created_at"] >= recent or id(b) in chain_ids)]
    for b in work:
        if "sling_at" not in b:
            lifecycle(b)
        rig, agent = b["rig"], b["assignee"]
        name = polecat_name(agent)
        slinger = b["created_by"] if (b["created_by"] == MAYOR or "/crew/" in b["created_by"]) else MAYOR
        if b is specials["toast"]:
            b["sling_at"] = dt("2026-11-27T09:46:10Z")
            b["branch"] = f"polecat/toast/{b['id']}@{b36(int(b['sling_at'].timestamp()))}"
            slinger = MAYOR
        s0 = b["sling_at"]
        sid = sessions.get(b["id"]) or new_uuid()
        b["session_id"] = sid
        f.add(s0, "sling", slinger, {"bead": b["id"], "target": agent})
        f.add(s0 + timedelta(seconds=3), "spawn", slinger, {"polecat": name, "rig": rig})
        f.add(s0 + timedelta(seconds=35), "session_start", agent,
              session_payload(sid, agent, b["id"], f"{HOME}/{rig}/polecats/{name}"))
        f.add(s0 + timedelta(seconds=48), "hook", agent, {"bead": b["id"]})
        if b["status"] != "closed":
            continue
        f.add(b["done_at"], "done", agent, {"bead": b["id"], "branch": b["branch"]})
        if b["kind"] == "dup":
            continue
        closed = dt(b["closed_at"])
        merged = b.get("merged_at") or closed - timedelta(seconds=rng.randrange(40, 110))
        b["merged_at"] = merged
        ready = b.get("ready_at") or b["done_at"] + timedelta(minutes=5)
        mq = {"branch": b["branch"], "mr": b["mr"], "worker": name}
        if b.get("failed_at"):
            f.add(ready + timedelta(minutes=2), "merge_started", f"{rig}/refinery", mq)
            f.add(b["failed_at"], "merge_failed", f"{rig}/refinery", dict(mq, reason="tests failed after rebase onto main"))
        f.add(merged - timedelta(minutes=rng.randrange(6, 11)), "merge_started", f"{rig}/refinery", mq)
        f.add(merged, "merged", f"{rig}/refinery", mq)
    for m in mails:
        f.add(dt(m["created_at"]), "mail", m["mail_from"], {"subject": m["title"], "to": m["mail_to"]})
    # witness patrols over the last ~30 hours (patrol events are pruned after a day)
    for rig in ("harbor", "lantern"):
        t = NOW - timedelta(hours=24) + timedelta(minutes=rng.randrange(0, 60))
        while t < NOW - timedelta(minutes=20):
            working = sum(1 for b in beads if b["rig"] == rig and b["status"] == "in_progress" and dt(b["created_at"]) < t)
            count = len(RIGS[rig]["polecats"])
            f.add(t, "patrol_started", f"{rig}/witness", {"polecat_count": count, "rig": rig})
            msg = pick([f"{working} working, {count - working} idle; merge queue empty; no stalls",
                        f"{working} working, {count - working} idle; {rng.randrange(1, 3)} MR(s) queued; no stalls",
                        f"{working} working; inbox processed; nothing to escalate"])
            f.add(t + timedelta(minutes=rng.randrange(2, 7), seconds=rng.randrange(60)), "patrol_complete",
                  f"{rig}/witness", {"message": msg, "polecat_count": count, "rig": rig})
            t += timedelta(minutes=rng.randrange(240, 330))
    # nudges
    rictus, slit = specials["rictus"], specials["slit"]
    f.add(dt("2026-11-27T08:51:12Z"), "nudge", "harbor/witness",
          {"reason": f"No output for 40m on {rictus['id']}. Are you blocked?", "rig": "harbor", "target": "harbor/polecats/rictus"})
    f.add(dt("2026-11-27T09:04:40Z"), "nudge", "harbor/witness",
          {"reason": f"Still no output on {rictus['id']}. Reply or run gt done --status ESCALATED.", "rig": "harbor",
           "target": "harbor/polecats/rictus"})
    f.add(W_NUDGE, "nudge", "harbor/witness",
          {"reason": f"Quiet for 30m on {slit['id']}. Still working? Reply with status.", "rig": "harbor",
           "target": "harbor/polecats/slit"})
    f.add(dt("2026-11-27T09:44:31Z"), "nudge", MAYOR,
          {"reason": "Plain --force is blocked by the guard. Push your rebased branch with: git push --force-with-lease origin HEAD. Then carry on with "
                     f"{rictus['id']}.", "rig": "harbor", "target": "harbor/polecats/rictus"})
    f.add(dt("2026-11-29T02:31:05Z"), "nudge", DEACON,
          {"reason": "Dolt timeouts escalated to the overseer. Keep patrolling; skip bd-heavy steps until it recovers.",
           "rig": "lantern", "target": "lantern/witness"})
    # the scripted witness and mayor sessions
    f.add(W_START, "session_start", "harbor/witness",
          session_payload(sessions["witness"], "harbor/witness", "patrol", f"{HOME}/harbor/witness"))
    f.add(dt("2026-11-27T09:38:49Z"), "session_start", MAYOR,
          session_payload(sessions["mayor"], "mayor", "status check", f"{HOME}/mayor"))
    return f.lines()


# --------------------------------------------------------------------------- Claude Code transcripts

MODEL = "claude-sonnet-4-5-20250929"
CC_VERSION = "2.0.37"
B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def rid(prefix: str, n: int = 22) -> str:
    return prefix + "".join(rng.choice(B62) for _ in range(n))


class Transcript:
    def __init__(self, sid: str, cwd: str, branch: str, start: datetime):
        self.sid, self.cwd, self.branch, self.t = sid, cwd, branch, start
        self.lines: list[dict] = []
        self.parent = None
        self.cache = rng.randrange(14000, 22000)

    def _base(self, typ: str) -> dict:
        return {"parentUuid": self.parent, "isSidechain": False, "userType": "external", "cwd": self.cwd,
                "sessionId": self.sid, "version": CC_VERSION, "gitBranch": self.branch, "type": typ}

    def _push(self, line: dict, secs: float) -> None:
        self.t += timedelta(seconds=secs, milliseconds=rng.randrange(0, 999))
        u = new_uuid()
        line["uuid"] = u
        line["timestamp"] = ts_ms(self.t)
        self.lines.append(line)
        self.parent = u

    def at(self, when: datetime) -> None:
        self.t = max(self.t, when)

    def user(self, text: str, secs: float = 0) -> None:
        line = self._base("user")
        line["message"] = {"role": "user", "content": [{"type": "text", "text": text}]}
        self._push(line, secs)

    def assistant(self, blocks: list[dict], secs: float, stop: str) -> None:
        out_tokens = sum(len(json.dumps(b)) for b in blocks) // 4 + rng.randrange(5, 40)
        usage = {"input_tokens": rng.randrange(3, 12), "cache_creation_input_tokens": rng.randrange(200, 1800),
                 "cache_read_input_tokens": self.cache, "output_tokens": out_tokens, "service_tier": "standard"}
        self.cache += rng.randrange(300, 2500)
        line = self._base("assistant")
        line["message"] = {"id": rid("msg_01"), "type": "message", "role": "assistant", "model": MODEL,
                           "content": blocks, "stop_reason": stop, "stop_sequence": None, "usage": usage}
        line["requestId"] = rid("req_011C")
        self._push(line, secs)

    def say(self, text: str, secs: float = 4) -> None:
        self.assistant([{"type": "text", "text": text}], secs, "end_turn")

    def tool(self, name: str, inp: dict, output: str, text: str | None = None, think: float = 5,
             run: float = 2, is_error: bool = False) -> None:
        tid = rid("toolu_01")
        blocks = ([{"type": "text", "text": text}] if text else []) + [
            {"type": "tool_use", "id": tid, "name": name, "input": inp}]
        self.assistant(blocks, think, "tool_use")
        line = self._base("user")
        line["message"] = {"role": "user", "content": [
            {"tool_use_id": tid, "type": "tool_result", "content": output, "is_error": is_error}]}
        if name == "Bash":
            line["toolUseResult"] = {"stdout": output, "stderr": "", "interrupted": False, "isImage": False}
        else:
            line["toolUseResult"] = output
        self._push(line, run)

    def bash(self, command: str, output: str, desc: str, text: str | None = None, think: float = 5,
             run: float = 2, is_error: bool = False) -> None:
        self.tool("Bash", {"command": command, "description": desc}, output, text, think, run, is_error)

    def summary(self, text: str) -> None:
        self.lines.append({"type": "summary", "summary": text, "leafUuid": self.parent})


def show_text(b: dict, status: str) -> str:
    return (f"{b['id']}: {b['title']}\nStatus: {status}\nPriority: P{b['priority']}\nType: {b['type']}\n"
            f"Assignee: {b['assignee']}\nCreated: {b['created_at'][:16].replace('T', ' ')} by {b['created_by']}\n\n"
            f"Description:\n{b['desc']}")


def polecat_transcript(b: dict, sid: str, mails: list[dict]) -> Transcript:
    m = b["module"]
    cwd = f"{HOME}/harbor/polecats/nux"
    tx = Transcript(sid, cwd, b["branch"], b["sling_at"] + timedelta(seconds=37))
    pid = rng.randrange(20000, 90000)
    tx.user(f"[GAS TOWN] harbor/polecats/nux <- mayor • {ts(b['sling_at'])} • work: {b['id']}\n\n"
            "Work is on your hook. Run `gt prime` and start.")
    prime = (f"[GAS TOWN] role:harbor/polecats/nux pid:{pid} session:{sid}\n\n"
             "# Polecat nux (rig: harbor)\n\n"
             f"You are a polecat: one worker, one job on your hook. Work only inside {cwd}.\n"
             "When the work is done and the checks pass, run `gt done`. Do not close the root issue yourself;\n"
             "the refinery closes it after the merge.\n\n"
             f"## 🪝 Hook\n{b['id']}  {b['title']}  [hooked, P{b['priority']}]\n\n"
             "## 📬 Mail\nNo unread mail.")
    tx.bash("gt prime", prime, "Load polecat context and hooked work", "Loading my context and checking the hook.", 3, 2)
    tx.bash(f"bd show {b['id']}", show_text(b, "hooked"), "Read the hooked bead", think=8, run=1)
    tx.bash(f"bd update {b['id']} --status=in_progress", f"✓ Updated issue: {b['id']}", "Claim the bead",
            "The draft check is the suspect. Claiming the bead, then reproducing before changing anything.", 20, 1)
    tx.bash('grep -n "_fits_draft" harbor/scheduler/allocator.py',
            "41:def _fits_draft(berth: Berth, vessel: Vessel) -> bool:\n"
            "42:    return berth.chart_depth_m >= vessel.draft_m + UNDER_KEEL_M\n"
            "97:        if not _fits_draft(cand.berth, vessel):",
            "Find the draft check", think=25, run=1)
    test_code = (
        "\n\ndef test_deep_draft_vessel_skips_shallow_berths(low_tide_window):\n"
        "    vessel = make_vessel(draft_m=3.8)\n"
        '    shallow = make_berth("B-07", chart_depth_m=2.4)\n'
        '    deep = make_berth("B-12", chart_depth_m=4.6)\n'
        "    chosen = score_candidates([shallow, deep], vessel, low_tide_window)[0].berth\n"
        "    depth = chosen.chart_depth_m + low_tide_window.min_height_m\n"
        '    assert depth >= vessel.draft_m, f"berth {chosen.code} depth {depth:.1f}m < draft {vessel.draft_m}m"\n')
    tx.bash(f"cat >> {m['test']} <<'EOF'{test_code}EOF", "", "Add a failing regression test",
            "`_fits_draft` only looks at chart depth, so at low water a 2.4m berth looks fine for a 3.8m draft. "
            "Writing the regression test first.", 75, 1)
    tx.bash(f"pytest -q {m['test']} -k deep_draft",
            "F                                                                        [100%]\n"
            "=================================== FAILURES ===================================\n"
            "________________ test_deep_draft_vessel_skips_shallow_berths _________________\n"
            f"{m['test']}:221: in test_deep_draft_vessel_skips_shallow_berths\n"
            '    assert depth >= vessel.draft_m, f"berth {chosen.code} depth {depth:.1f}m < draft {vessel.draft_m}m"\n'
            "E   AssertionError: berth B-07 depth 3.2m < draft 3.8m\n"
            "=========================== short test summary info ============================\n"
            f"FAILED {m['test']}::test_deep_draft_vessel_skips_shallow_berths\n"
            "1 failed, 23 deselected in 0.58s", "Run the new test", think=20, run=4, is_error=True)
    fpath = f"{cwd}/{m['file']}"
    tx.tool("Edit", {"file_path": fpath,
                     "old_string": "def _fits_draft(berth: Berth, vessel: Vessel) -> bool:\n"
                                   "    return berth.chart_depth_m >= vessel.draft_m + UNDER_KEEL_M",
                     "new_string": "def _fits_draft(berth: Berth, vessel: Vessel, window: TideWindow) -> bool:\n"
                                   "    depth_at_low_water = berth.chart_depth_m + window.min_height_m\n"
                                   "    return depth_at_low_water >= vessel.draft_m + UNDER_KEEL_M"},
            f"The file {fpath} has been updated.",
            "Reproduced. The tide window is already computed in `score_candidates`, so I'll pass it through.", 95, 1)
    tx.tool("Edit", {"file_path": fpath,
                     "old_string": "        if not _fits_draft(cand.berth, vessel):",
                     "new_string": "        if not _fits_draft(cand.berth, vessel, window):"},
            f"The file {fpath} has been updated.", think=30, run=1)
    tx.bash(f"pytest -q {m['test']} && make check",
            "........................                                                 [100%]\n"
            "24 passed in 1.91s\n"
            "ruff check harbor tests\nAll checks passed!\n"
            "mypy harbor\nSuccess: no issues found in 61 source files\n"
            "pytest -q\n412 passed, 3 skipped in 38.72s", "Run module tests and the full gate", think=15, run=52)
    sha = sha7()
    tx.bash(f'git add -A && git commit -m "fix(allocator): check draft against depth at low water ({b["id"]})"',
            f"[{b['branch']} {sha}] fix(allocator): check draft against depth at low water ({b['id']})\n"
            " 2 files changed, 12 insertions(+), 3 deletions(-)", "Commit the fix", think=40, run=1)
    tx.at(b["done_at"] - timedelta(seconds=9))
    tx.bash("gt done",
            f"Verifying work for {b['id']}...\n✓ Working tree clean\n✓ Pushed {b['branch']} to origin\n"
            f"✓ Merge request {b['mr']} submitted to the harbor merge queue\n✓ POLECAT_DONE sent to harbor/witness\n"
            "✓ Hook cleared; nux is idle (sandbox kept)",
            "Submit to the merge queue",
            "Checks are green. Submitting with `gt done`; the refinery merges and closes the bead.", 3, 6)
    tx.say(f"Done. {b['id']} is in the merge queue as {b['mr']}: `_fits_draft` now takes the tide window and compares "
           f"`chart_depth_m + window.min_height_m` with the draft, and `test_deep_draft_vessel_skips_shallow_berths` "
           "covers it. The refinery will merge and close the bead.", 4)
    tx.summary(f"Polecat nux fixes {b['id']}: allocator draft check at low tide")
    return tx


def witness_transcript(sid: str, nux: dict, mails: list[dict], beads: list[dict], specials: dict) -> Transcript:
    start = W_START
    tx = Transcript(sid, f"{HOME}/harbor/witness", "", start)
    done_mail = next(m for m in mails if m["title"] == "POLECAT_DONE nux")
    ready_mail = next(m for m in mails if m["title"] == "MERGE_READY nux")
    pid = rng.randrange(20000, 90000)
    tx.user(f"[GAS TOWN] harbor/witness <- daemon • {ts(start)} • patrol")
    tx.bash("gt prime",
            f"[GAS TOWN] role:harbor/witness pid:{pid} session:{sid}\n\n# Witness (rig: harbor)\n\n"
            "You watch the health of harbor's polecats. You do not write code and you do not close work you did not do.\n"
            "Restart before you escalate; never nuke a polecat that has a pending MR.\n\n"
            "## Patrol: mol-witness-patrol\n"
            "inbox-check → process-cleanups → check-refinery → survey-workers → check-timer-gates → "
            "check-swarm-completion → patrol-cleanup → context-check → loop-or-exit\n\n"
            "## 📬 Mail\n1 unread: POLECAT_DONE nux",
            "Load witness context", "Starting patrol. Loading context first.", 3, 2)
    tx.bash("gt mail inbox", f" 1. {done_mail['id']}  POLECAT_DONE nux   from harbor/polecats/nux   1m ago   [unread]",
            "Check the inbox", think=3, run=1)
    tx.bash(f"gt mail read {done_mail['id']}",
            f"From: harbor/polecats/nux\nTo: harbor/witness\nSubject: POLECAT_DONE nux\nDate: {done_mail['created_at']}\n\n"
            f"{done_mail['desc']}", "Read the completion mail", think=3, run=1)
    tx.bash("gt polecat status harbor/nux",
            f"harbor/nux\n  state:    idle\n  branch:   {nux['branch']} (pushed, clean)\n  hook:     empty\n"
            f"  MR:       {nux['mr']} (open)\n  cleanup:  clean",
            "Verify nux's sandbox before handing off",
            f"nux finished {nux['id']} with an MR. Checking its sandbox before I hand the branch to the refinery.", 5, 1)
    tx.at(dt(ready_mail["created_at"]) - timedelta(seconds=5))
    tx.bash(f"gt mail send harbor/refinery -s \"MERGE_READY nux\" --type task --stdin <<'BODY'\n{ready_mail['desc']}\nBODY",
            f"✓ Message sent to harbor/refinery ({ready_mail['id']})", "Hand the branch to the refinery", think=4, run=2)
    slit = specials["slit"]
    rows = []
    for name in HARBOR["polecats"]:
        addr = f"harbor/polecats/{name}"
        if name == "nux":
            rows.append(f"  {name:<8} idle      MR {nux['mr']} queued")
            continue
        if name == "slit":
            rows.append(f"  {name:<8} working   {slit['id']}   last activity 31m   ⚠ possible stall")
            continue
        busy = [b for b in beads if b["assignee"] == addr and b["created_at"] < ts(start)
                and (b["status"] == "in_progress" or (b["closed_at"] or "") > ts(start))]
        if busy:
            rows.append(f"  {name:<8} working   {busy[0]['id']}   last activity {rng.randrange(1, 9)}m")
        else:
            rows.append(f"  {name:<8} idle")
    tx.bash("gt patrol scan --notify",
            f"harbor polecats ({len(rows)})\n" + "\n".join(rows) + "\n1 possible stall: slit",
            "Survey workers", think=4, run=3)
    tx.at(W_NUDGE - timedelta(seconds=7))
    tx.bash(f'gt nudge harbor/slit "Quiet for 30m on {slit["id"]}. Still working? Reply with status."',
            "✓ Nudged harbor/polecats/slit", "Nudge the quiet polecat",
            f"slit has been quiet for half an hour on {slit['id']}. A nudge first; restart only if it stays silent.", 5, 1)
    tx.at(W_REPORT - timedelta(seconds=5))
    tx.bash('gt patrol report --summary "nux done (MERGE_READY sent for ' + nux["mr"] + '); slit nudged after 31m quiet; '
            'rictus working; no escalations"',
            "✓ Patrol report filed; next cycle armed (await-signal, backoff 30s to 5m)", "Close this patrol cycle",
            think=4, run=1)
    tx.say(f"Patrol done: handed nux's branch for {nux['id']} to the refinery, nudged slit, nothing to escalate.", 3)
    tx.summary("Witness patrol: MERGE_READY for nux, nudge to slit")
    return tx


def mayor_transcript(sid: str, beads: list[dict], specials: dict) -> Transcript:
    start = dt("2026-11-27T09:38:52Z")
    tx = Transcript(sid, f"{HOME}/mayor", "", start)
    help_m, stall, rictus, toast = specials["help_mayor"], specials["rictus_stall"], specials["rictus"], specials["toast"]
    pid = rng.randrange(20000, 90000)
    tx.user("Morning. Is anything stuck? And is anyone working on lantern's open beads?")
    tx.bash("gt prime",
            f"[GAS TOWN] role:mayor pid:{pid} session:{sid}\n\n# Mayor (town: sampletown)\n\n"
            "You coordinate work across the rigs harbor and lantern. Dispatch with `gt sling`, track batches with convoys, "
            "answer escalations.\n\n## 📬 Mail\n1 unread: HELP: polecat rictus stuck at the dangerous-command guard",
            "Load mayor context", "Let me load context and check mail first.", 3, 2)
    tx.bash("gt mail inbox", f" 1. {help_m['id']}  {help_m['title']}   from harbor/witness   25m ago   [unread]",
            "Check the inbox", think=3, run=1)
    tx.bash(f"gt mail read {help_m['id']}",
            f"From: harbor/witness\nTo: mayor/\nSubject: {help_m['title']}\nDate: {help_m['created_at']}\n\n{help_m['desc']}",
            "Read the escalation", think=3, run=1)
    tx.bash("gt peek harbor/rictus 6",
            "$ git push --force origin HEAD\n"
            "PreToolUse hook blocked the command: gt tap guard dangerous-command\n"
            "  git push --force is blocked. --force-with-lease is allowed.\n"
            "  If this is intentional, ask the user to run it manually.\n"
            "? Waiting for input",
            "Look at rictus's pane", "The witness escalated rictus. Looking at its pane before deciding.", 4, 2)
    tx.bash(f'gt nudge harbor/rictus "Plain --force is blocked by the guard. Push your rebased branch with: '
            f'git push --force-with-lease origin HEAD. Then carry on with {rictus["id"]}."',
            "✓ Nudged harbor/polecats/rictus", "Tell rictus how to push",
            "It rebased its branch and tried a plain force-push, which the guard blocks. `--force-with-lease` on its own "
            "branch is allowed, so it only needs the right command.", 7, 1)
    ready = [b for b in beads if b["rig"] == "lantern" and b["kind"] != "mail"
             and (b["status"] == "open" or b is toast) and dt(b["created_at"]) < start]
    ready.sort(key=lambda b: (b["priority"], b["created_at"]))
    listing = "\n".join(f"  {b['id']}  P{b['priority']}  {b['title']}" for b in ready[:6])
    tx.bash("gt ready --rig=lantern", f"lantern: {len(ready)} ready\n{listing}", "List ready lantern work", think=4, run=2)
    tx.at(dt("2026-11-27T09:46:05Z"))
    tx.bash(f"gt sling {toast['id']} lantern",
            f"✓ Slung {toast['id']} to lantern\n  Spawned polecat toast (lantern/polecats/toast)\n"
            f"  Hooked {toast['id']} on lantern/polecats/toast", "Dispatch lantern work",
            f"None of these is assigned. {toast['id']} is the top priority, so I'm slinging it to lantern.", 5, 4)
    tx.at(dt("2026-11-27T09:50:40Z"))
    tx.bash("gt peek harbor/rictus 4",
            f"$ git push --force-with-lease origin HEAD\n + {sha7()}...{sha7()} HEAD -> {rictus['branch']} (forced update)\n"
            f"Pushed. Continuing with {rictus['id']}.", "Check rictus recovered", think=3, run=2)
    tx.at(dt(stall["closed_at"]) - timedelta(seconds=6))
    tx.bash(f"bd close {stall['id']} --reason '{stall['close']}'", f"✓ Closed {stall['id']}: {stall['close']}",
            "Close the stall bead", "rictus is moving again. Closing the tracking bead.", 4, 1)
    tx.say(f"Two things:\n\n1. **Stuck:** harbor/rictus was blocked by the force-push guard on {rictus['id']}. I told it to use "
           f"`--force-with-lease`; it pushed and is working again. Closed {stall['id']}.\n"
           f"2. **Lantern:** {len(ready)} ready beads were unassigned. I slung the top one, {toast['id']} ({toast['title']}), "
           "to lantern; polecat toast has it.\n\n"
           "Nothing else is escalated right now.", 5)
    tx.summary("Mayor: unstick rictus (force-push guard), sling lantern work to toast")
    return tx


# --------------------------------------------------------------------------- static town files

FORMULA = '''description = """
Cut a harbor release: freeze main, run the full gate on the release candidate, tag it,
and tell the town. Sling it onto the release bead with
`gt sling mol-harbor-release --on <bead> harbor --var version=0.9.0`.
"""
formula = "mol-harbor-release"
type = "workflow"
version = 1

[[steps]]
id = "freeze"
title = "Freeze main for {{version}}"
description = """
Ask the refinery to stop merging new work: `gt mail send harbor/refinery -s "FREEZE {{version}}"`.
Wait until `gt mq list harbor` shows no MR in flight, then note the head commit on the bead
with `bd update <bead> --notes "release head: <sha>"`.
"""

[[steps]]
id = "gate"
title = "Run the full gate on the {{version}} candidate"
needs = ["freeze"]
description = """
From a clean worktree at the frozen head, run `make check` and the migration dry run
(`alembic upgrade head --sql`). If anything fails, file a bug bead for it and stop here;
do not fix it inside this molecule.
"""
acceptance = "make check passes on the frozen head and the migration SQL renders"

[[steps]]
id = "tag"
title = "Tag harbor {{version}}"
needs = ["gate"]
description = """
Bump `harbor/__init__.py` to {{version}}, commit, and tag `v{{version}}`. Push the tag with
`git push origin v{{version}}` (never force-push tags).
"""

[[steps]]
id = "announce"
title = "Announce {{version}} and unfreeze"
needs = ["tag"]
description = """
Mail the mayor with the tag and the list of beads closed since the last release
(`bd list --status=closed --closed-after <last release date>`), then tell the refinery to resume merging.
"""

[vars]

[vars.version]
description = "Version to release, without the leading v (for example 0.9.0)"
default = "0.9.0"
'''


def pretty(obj) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def static_files() -> dict[str, str]:
    files = {}
    files["mayor/town.json"] = pretty({"type": "town", "version": 2, "name": "sampletown", "owner": OWNER,
                                       "public_name": "sampletown",
                                       "created_at": "2026-09-01T09:14:27.503118-04:00"})
    files["mayor/rigs.json"] = pretty({"version": 1, "rigs": {
        "harbor": {"git_url": "", "added_at": "2026-09-01T09:31:52.118402-04:00", "beads": {"repo": "", "prefix": "hb"}},
        "lantern": {"git_url": "", "added_at": "2026-09-01T10:06:13.774590-04:00", "beads": {"repo": "", "prefix": "lt"}},
    }})
    files[".beads/metadata.json"] = pretty({"backend": "dolt", "dolt_mode": "server", "dolt_database": "hq"})
    files[".beads/routes.jsonl"] = "".join(go_json(r) + "\n" for r in (
        {"prefix": "hq-", "path": "."}, {"prefix": "hq-cv-", "path": "."},
        {"prefix": "hb-", "path": "harbor/mayor/rig"}, {"prefix": "lt-", "path": "lantern/mayor/rig"}))
    for rig, prefix in (("harbor", "hb"), ("lantern", "lt")):
        files[f"{rig}/config.json"] = pretty({"type": "rig", "version": 1, "name": rig, "git_url": "",
                                              "beads": {"prefix": prefix}})
    config = {
        "allowed_prefixes": "hq,hq-cv", "auto_compact_enabled": "false", "compact_batch_size": "50",
        "compact_parallel_workers": "5", "compact_tier1_days": "30", "compact_tier1_dep_levels": "2",
        "compact_tier2_commits": "100", "compact_tier2_days": "90", "compact_tier2_dep_levels": "5",
        "compaction_enabled": "false", "issue_prefix": "hq", "schema_version": "6",
        "status.custom": "staged_ready,staged_warnings",
        "types.custom": "agent,role,rig,convoy,slot,queue,event,message,molecule,gate,merge-request",
    }
    files[".beads/backup/config.jsonl"] = "".join(go_json({"key": k, "value": v}) + "\n" for k, v in sorted(config.items()))
    files[".beads/formulas/mol-harbor-release.formula.toml"] = FORMULA
    return files


def issue_row(b: dict) -> dict:
    row = {
        "acceptance_criteria": "", "actor": "", "agent_state": "", "assignee": b["assignee"], "await_id": "",
        "await_type": "", "close_reason": b["close"], "closed_at": b["closed_at"], "closed_by_session": "",
        "compacted_at": None, "compacted_at_commit": None, "compaction_level": 0, "content_hash": "",
        "created_at": b["created_at"], "created_by": b["created_by"], "crystallizes": 0, "defer_until": None,
        "description": b["desc"], "design": "", "due_at": None, "ephemeral": 0, "estimated_minutes": None,
        "event_kind": "", "external_ref": None, "hook_bead": "", "id": b["id"], "is_template": 0,
        "issue_type": b["type"], "last_activity": None, "metadata": "{}", "mol_type": "", "notes": b["notes"],
        "original_size": None, "owner": OWNER, "payload": "", "pinned": 0, "priority": b["priority"],
        "quality_score": None, "rig": "", "role_bead": "", "role_type": "", "sender": "", "source_repo": "",
        "source_system": "", "spec_id": "", "status": b["status"], "target": "", "timeout_ns": 0,
        "title": b["title"], "updated_at": b["updated_at"], "waiters": "", "wisp_type": "", "work_type": "",
    }
    row["content_hash"] = content_hash({**row, "description": b["desc"]})
    return row


# --------------------------------------------------------------------------- main

def jsonl(rows, dump) -> str:
    return "".join(dump(r) + "\n" for r in rows)


def generate() -> dict[str, str]:
    beads, specials = build_beads()
    fix_recent_assignees(beads, specials)
    mails, chains = build_mail(beads, specials)
    allb = beads + mails
    sessions = {specials["nux_draft"]["id"]: new_uuid(), "witness": new_uuid(), "mayor": new_uuid()}
    feed = build_feed(beads, mails, chains, specials, sessions)
    deps = build_deps(beads)
    comments = build_comments(beads)
    events = build_backup_events(sorted(allb, key=lambda b: b["created_at"]))
    labels = sorted({(b["id"], label) for b in allb for label in b["labels"]})

    files = static_files()
    files[".beads/backup/issues.jsonl"] = jsonl(sorted((issue_row(b) for b in allb), key=lambda r: r["id"]),
                                                lambda r: go_json(r, sort_keys=True))
    files[".beads/backup/labels.jsonl"] = jsonl([{"issue_id": i, "label": lab} for i, lab in labels],
                                                lambda r: go_json(r, sort_keys=True))
    files[".beads/backup/events.jsonl"] = jsonl(events, lambda r: go_json(r, sort_keys=True))
    files[".beads/backup/comments.jsonl"] = jsonl(comments, lambda r: go_json(r, sort_keys=True))
    files[".beads/backup/dependencies.jsonl"] = jsonl(deps, lambda r: go_json(r, sort_keys=True))
    files[".events.jsonl"] = jsonl(feed, go_json)

    nux = specials["nux_draft"]
    txs = [
        ("-home-op-gt-harbor-polecats-nux", polecat_transcript(nux, sessions[nux["id"]], mails)),
        ("-home-op-gt-harbor-witness", witness_transcript(sessions["witness"], nux, mails, beads, specials)),
        ("-home-op-gt-mayor", mayor_transcript(sessions["mayor"], beads, specials)),
    ]
    for proj, tx in txs:
        files[f"claude/projects/{proj}/{tx.sid}.jsonl"] = jsonl(tx.lines, js_json)
    return files


def main() -> None:
    files = generate()
    if OUT.exists():
        shutil.rmtree(OUT)
    for rel in sorted(files):
        path = OUT / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[rel].encode("utf-8"))
    total = sum(len(v.encode("utf-8")) for v in files.values())
    print(f"wrote {len(files)} files, {total:,} bytes, to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
