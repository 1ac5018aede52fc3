"""Redaction: every planted secret gone, placeholders stable, JSON kept valid, fail-closed, few false positives."""
import json
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

from gt_finetune.corpus.records import make_record
from gt_finetune.corpus.redact import PlaceholderScope, RedactionConfig, Redactor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from planted_secrets import KEPT, planted_corpus, strings  # noqa: E402

PLACEHOLDER = re.compile(r"<(SECRET|PII):([a-z_0-9]+)#(\d+)>")
GHP = "ghp_" + "aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gH3jK5"
GHO = "gho_" + "Zq8Wx2Cv4Bn6Ml0Kj9Hg7Fd5Sa3Pl1Ok2Ij4U"


def redact_all(records, redactor=None):
    redactor = redactor or Redactor()
    out, totals = [], Counter()
    for record in records:
        red, counts, reason = redactor.redact_record(record)
        assert red is not None, reason
        out.append(red)
        totals.update(counts)
    return out, totals


def record_with(*messages, meta=None) -> dict:
    return make_record(list(messages), meta or {"source": "test"})


def text(value: str, **config) -> str:
    return Redactor(RedactionConfig(**config)).redact_text(value, PlaceholderScope())[0]


@pytest.fixture(scope="module")
def planted():
    records, secrets = planted_corpus(seed=0)
    redacted, totals = redact_all(records)
    return records, secrets, redacted, totals


# -- recall on the planted corpus ----------------------------------------------------------------

def test_planted_corpus_is_large_and_varied(planted):
    records, secrets, _, _ = planted
    assert len(secrets) >= 300
    assert len({family for family, _ in secrets}) >= 15
    assert planted_corpus(seed=0) == (records, secrets)  # deterministic


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_planted_secret_is_gone(seed):
    records, secrets = planted_corpus(seed=seed)
    redacted, totals = redact_all(records)
    stored = "\n\0".join(s for record in redacted for s in strings(record))
    leaked = [family for family, raw in secrets if raw in stored or json.dumps(raw)[1:-1] in stored]
    assert leaked == [], f"{len(leaked)} planted values survived, families: {Counter(leaked)}"
    reported = json.dumps(totals)
    assert not any(raw in reported for _, raw in secrets)
    for record in redacted:
        for call in (c for m in record["messages"] for c in m.get("tool_calls", [])):
            arguments = call["function"]["arguments"]
            assert json.dumps(json.loads(arguments), sort_keys=True) == arguments


def test_counts_per_family(planted):
    _, secrets, _, totals = planted
    planted_families = Counter(family for family, _ in secrets)
    assert set(totals) == set(planted_families)
    short = {f: (totals[f], n) for f, n in planted_families.items() if totals[f] < n}
    assert not short, f"families counted fewer times than distinct values planted: {short}"


def test_decoys_and_ids_survive(planted):
    records, _, redacted, _ = planted
    before = "\n\0".join(s for r in records for s in strings([r["messages"], r["tools"]]))
    after = "\n\0".join(s for r in redacted for s in strings([r["messages"], r["tools"]]))
    for kept in KEPT:
        assert before.count(kept) == after.count(kept) > 0, kept
    ids = re.compile(r"\b(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{40}|[0-9a-f]{64})\b")
    for found in set(ids.findall(before)):
        assert after.count(found) == before.count(found), found


# -- what each rule replaces and keeps -----------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    (f"export GITHUB_TOKEN={GHP}", "export GITHUB_TOKEN=<SECRET:github_token#1>"),
    ("postgres://app:S3cretPw9@db:5432/x", "postgres://app:<SECRET:database_url_password#1>@db:5432/x"),
    ("https://deploy:hunter2x@git.corp.io/x.git", "https://deploy:<SECRET:basic_auth_url#1>@git.corp.io/x.git"),
    ("curl -H 'Authorization: Bearer Zx8Qw2Er4Ty6Ui8Op0As2Df4' https://api.x.io",
     "curl -H 'Authorization: Bearer <SECRET:authorization_header#1>' https://api.x.io"),
    ("DB_PASSWORD=Tide-anchor-42!\nLOG_LEVEL=info", "DB_PASSWORD=<SECRET:dotenv_assignment#1>\nLOG_LEVEL=info"),
    ('SMTP_PASSWORD="four words in quotes"', 'SMTP_PASSWORD="<SECRET:dotenv_assignment#1>"'),
    ('{"password": "hunter2!", "max_tokens": "100"}', '{"password": "<SECRET:config_secret#1>", "max_tokens": "100"}'),
    ("twilio sid AC0123456789abcdef0123456789abcdef", "twilio sid <SECRET:twilio_key#1>"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1234abcd\nQWERTYqwerty==\n-----END RSA PRIVATE KEY-----\nok",
     "<SECRET:private_key#1>\nok"),
    ("see /home/alice/gt and -home-alice-gt-harbor and /Users/bob/.beads",
     "see /home/<PII:home_user#1>/gt and -home-<PII:home_user#1>-gt-harbor and /Users/<PII:home_user#2>/.beads"),
    ("mail carol.jones@fastmail.fm from 8.8.4.4 or 2a01:4f8:c17:b8f::2",
     "mail <PII:email#1> from <PII:ip#1> or <PII:ip#2>"),
    ("cookie 9fQ2xL7pZ3mK8vR1tY6wB4nJ0hG5dS2a end", "cookie <SECRET:high_entropy#1> end"),
    ("code b61ef79d49191027e2672165075143ce end", "code <SECRET:high_entropy#1> end"),
    # base64 of `OPENAI_API_KEY=sk-proj-…`: replaced whole, as the secret inside it
    ("blob T1BFTkFJX0FQSV9LRVk9c2stcHJvai1BYjEyQ2QzNEVmNTZHaDc4SWo5MEtsMTJNbjM0T3A1NlFyNzhTdDkwVXYK",
     "blob <SECRET:openai_key#1>"),
])
def test_rule_replaces_only_the_secret(raw, expected):
    assert text(raw) == expected


@pytest.mark.parametrize("raw", [
    "API_KEY=your-api-key", "SECRET_KEY=changeme", "TOKEN=<token>", "GITHUB_TOKEN=$GITHUB_TOKEN",
    "DB_PASSWORD=${DB_PASSWORD}", "PASSWORD=", "AUTH_TOKEN=xxxxxxxx", "OPENAI_API_KEY=sk-...",
    'password = os.environ["DB_PASSWORD"]', 'curl -H "Authorization: Bearer $TOKEN"', "password: ********",
    "postgres://app:${PGPASSWORD}@db:5432/x", "gt mail send mayor/ and harbor/witness and harbor/polecats/nux",
    "listen 127.0.0.1:3306, 0.0.0.0:8080, ::1, docs 192.0.2.10, gguf 0.10.0.0", "ssh git@github.com:harbor-co/harbor.git",
    "owner operator@example.com, Co-Authored-By: Claude <noreply@anthropic.com>", "icon@2x.png",
    "bead hq-wisp-9sw29 convoy hq-cv-3k2m1 cf-5qpo-conversion-optimization",
    "content_hash df9b1e677a2912e767feee05fec3e9cf7bb2ed3b0188c8cd3efcacef742273bb",
    "commit 3adf61e1234567890abcdef1234567890abcdef1 short 3adf61e", "session ed7ee1bf-cb55-4761-985d-c4048152e4e0",
    "toolu_01XFDUDYJgAACzvnptvVoYEL msg_01XFDUDYJgAACzvnptvVoYEL", "sha512-Zq8Wx2Cv4Bn6Ml0Kj9Hg7Fd5Sa3Pl1Ok2Ij4Uy6",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaa 0123456789abcdef0123456789abcdef ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "setupAccessibleDialog sendSwatchConfirmationEmail CONVOY_NEEDS_FEEDING",
    "https://github.com/steveyegge/gastown/actions/runs/22492526303/job/65158320111",
    "/tmp/gt-cache/build/df9b1e677a2912e767feee05fec3e9cf7bb2ed3b0188c8cd3efcacef742273bb/index.json",
    "DreadPirateRobertz/feat/ar-web-screen-cm-e7g v0.51.2 at 12:32:20 with x[10::2]",
    "PWD=/tmp/gt OLDPWD=/srv/harbor https://docs.harbor.io/home/index.html",
    "plain blob aGVsbG8gd29ybGQgdGhpcyBpcyBqdXN0IHNvbWUgY29uZmlnIHRleHQK",  # base64 of prose: data
])
def test_lookalikes_are_kept(raw):
    assert text(raw) == raw


# -- placeholders and structure ------------------------------------------------------------------

def test_same_secret_in_call_and_result_gets_one_placeholder():
    call_args = json.dumps({"command": f"gh auth login --with-token <<< {GHP}", "env": {"GH_TOKEN": GHP}})
    record = record_with(
        {"role": "user", "content": "log in"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "Bash", "arguments": call_args}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "name": "Bash", "content": f"token {GHP} ok; old {GHO} revoked"})
    red, counts, reason = Redactor().redact_record(record)
    assert reason == "" and counts == {"github_token": 4}
    args = json.loads(red["messages"][1]["tool_calls"][0]["function"]["arguments"])
    assert args["env"]["GH_TOKEN"] == "<SECRET:github_token#1>" and args["command"].endswith("<SECRET:github_token#1>")
    assert red["messages"][2]["content"] == "token <SECRET:github_token#1> ok; old <SECRET:github_token#2> revoked"
    assert red["messages"][1]["tool_calls"][0]["id"] == "toolu_1" and red["messages"][2]["tool_call_id"] == "toolu_1"


def test_tool_arguments_stay_valid_json():
    arguments = json.dumps({"z": [{"password": "Tide-anchor-42!", "note": "key\n" + GHP}], "a": 1, "ok": True})
    record = record_with({"role": "assistant", "content": "", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "Write", "arguments": arguments}},
        {"id": "c2", "type": "function", "function": {"name": "Bash", "arguments": f"not json {GHP}"}}]})
    red, counts, _ = Redactor().redact_record(record)
    first = red["messages"][0]["tool_calls"][0]["function"]["arguments"]
    assert first == json.dumps(json.loads(first), sort_keys=True)
    assert json.loads(first) == {"a": 1, "ok": True, "z": [{"password": "<SECRET:config_secret#1>",
                                                            "note": "key\n<SECRET:github_token#1>"}]}
    assert red["messages"][0]["tool_calls"][1]["function"]["arguments"] == "not json <SECRET:github_token#1>"
    assert counts == {"config_secret": 1, "github_token": 2}


def test_keys_and_tools_are_scanned_too():
    record = make_record([{"role": "tool", "tool_call_id": "c", "name": "Bash", "content": "ok"}], {},
                         tools=[{"type": "function", "function": {"name": "deploy", "description": f"uses {GHP}",
                                                                  "parameters": {GHO: {"type": "string"}}}}])
    red, counts, _ = Redactor().redact_record(record)
    function = red["tools"][0]["function"]
    assert function["description"] == "uses <SECRET:github_token#1>"
    assert list(function["parameters"]) == ["<SECRET:github_token#2>"] and counts == {"github_token": 2}


def test_meta_paths_and_people_are_redacted_and_hash_recomputed():
    meta = {"source": "transcripts", "actor": "dana.whitfield@fastmail.fm", "cwd": "/home/pnair/gt/harbor/witness",
            "location": "/home/pnair/.claude/projects/-home-pnair-gt-harbor-witness/s.jsonl", "rig": "harbor",
            "session": "ed7ee1bf-cb55-4761-985d-c4048152e4e0"}
    record = record_with({"role": "user", "content": "cd /home/pnair/gt"}, meta=meta)
    red, counts, _ = Redactor().redact_record(record)
    assert red["meta"]["actor"] == "<PII:email#1>"
    assert red["meta"]["cwd"] == "/home/<PII:home_user#1>/gt/harbor/witness"
    assert red["meta"]["location"] == ("/home/<PII:home_user#1>/.claude/projects/"
                                       "-home-<PII:home_user#1>-gt-harbor-witness/s.jsonl")
    assert red["meta"]["session"] == meta["session"] and red["meta"]["rig"] == "harbor"
    assert red["meta"]["content_hash"] == make_record(red["messages"], {}, red["tools"])["meta"]["content_hash"]
    assert counts == {"email": 1, "home_user": 4}
    assert record["meta"]["actor"] == "dana.whitfield@fastmail.fm"  # the input is not touched


def test_scope_numbers_per_family_and_hides_values():
    scope = PlaceholderScope()
    assert scope.placeholder("SECRET", "jwt", "RAW-1") == "<SECRET:jwt#1>"
    assert scope.placeholder("SECRET", "jwt", "RAW-2") == "<SECRET:jwt#2>"
    assert scope.placeholder("PII", "email", "RAW-3") == "<PII:email#1>"
    assert scope.placeholder("SECRET", "jwt", "RAW-1") == "<SECRET:jwt#1>"
    assert "RAW" not in repr(scope)


# -- configuration -------------------------------------------------------------------------------

def test_allowlist_disabled_rules_and_pii_switch():
    raw = f"{GHP} and {GHO} for carol.jones@fastmail.fm in /home/alice/gt"
    assert text(raw, allowlist=(r"ghp_[A-Za-z0-9]{36}",)).startswith(f"{GHP} and <SECRET:github_token#1>")
    assert "carol.jones@fastmail.fm" in text(raw, disabled_rules=frozenset({"email"}))
    assert text(raw, pii=False).endswith("carol.jones@fastmail.fm in /home/alice/gt")
    assert text("cookie 9fQ2xL7pZ3mK8vR1tY6wB4nJ0hG5dS2a", disabled_rules=frozenset({"high_entropy"})).endswith("2a")
    assert {"github_token", "email", "home_user", "ip", "high_entropy", "base64_blob"} <= set(Redactor().rules)


@pytest.mark.parametrize("config, message", [
    ({"disabled_rules": frozenset({"emails"})}, "unknown rule id"),
    ({"allowlist": ("ghp_[",)}, "not a valid regex"),
    ({"entropy_threshold": 0}, "entropy_threshold"),
    ({"max_record_chars": 0}, "max_record_chars"),
])
def test_bad_config_is_refused(config, message):
    with pytest.raises(ValueError, match=message):
        RedactionConfig(**config)


# -- fail closed ---------------------------------------------------------------------------------

def test_unscannable_records_are_dropped_without_values(monkeypatch):
    big = record_with({"role": "user", "content": f"{GHP} " + "x" * 200})
    red, counts, reason = Redactor(RedactionConfig(max_record_chars=100)).redact_record(big)
    assert red is None and counts == {} and "max_record_chars" in reason and GHP not in reason

    surrogate = {"messages": [{"role": "tool", "tool_call_id": "c", "name": "Bash", "content": f"{GHP} \udc80"}],
                 "tools": [], "meta": {}}  # a byte that was not UTF-8, read with surrogateescape
    red, _, reason = Redactor().redact_record(surrogate)
    assert red is None and "not valid UTF-8" in reason and "messages[0].content" in reason and GHP not in reason

    red, _, reason = Redactor().redact_record(record_with({"role": "user", "content": b"raw bytes"}))
    assert red is None and "bytes" in reason

    def broken(self, text, depth):
        raise RuntimeError(f"boom on {text}")

    monkeypatch.setattr(Redactor, "_spans", broken)
    red, counts, reason = Redactor().redact_record(record_with({"role": "user", "content": GHP}))
    assert red is None and counts == {} and "RuntimeError" in reason and GHP not in reason


# -- false positives on real Gas Town text -------------------------------------------------------

def issue_record(row: dict) -> dict:
    user = f"Bead {row['id']} (content_hash {row['content_hash']}): {row['title']}\n\n{row['description'] or ''}"
    return record_with({"role": "user", "content": user}, {"role": "assistant", "content": row["close_reason"] or ""})


def test_false_positives_on_carolina_issues(shared):
    path = shared / "fixtures" / "real" / "carolina-futons" / "backup" / "issues.jsonl"
    records = [issue_record(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]
    redacted, totals = redact_all(records)
    tokens = sum(len(m["content"].split()) for r in records for m in r["messages"])
    # The only real PII in these issues is one operator's home directory (`/Users/<name>/gt/...`).
    false_positives = sum(n for family, n in totals.items() if family != "home_user")
    examples = [m for r in redacted for msg in r["messages"] for m in PLACEHOLDER.findall(msg["content"])
                if m[1] != "home_user"][:5]
    print(f"\ncarolina: {len(records)} issues, {tokens} tokens, {false_positives} false positives "
          f"({false_positives / tokens:.4%}), counts {dict(totals)}, examples {examples}")
    assert false_positives / tokens < 0.01
