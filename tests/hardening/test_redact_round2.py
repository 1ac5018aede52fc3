"""Issue 15, items 3, 4 and 12 (redactor part): forms of secrets and PII the redactor missed, every
string of a record's `meta`, and inputs that made its rules quadratic (or worse).

The planted values come from `round2_cases` in tests/corpus/planted_secrets.py, the generator the
end-to-end "no planted value anywhere" test uses too.
"""
import json
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from gt_finetune.corpus import redact
from gt_finetune.corpus.records import make_record
from gt_finetune.corpus.redact import PlaceholderScope, RedactionConfig, Redactor

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1] / "corpus")]
from fuzz_settings import fuzz  # noqa: E402
from kit import time_limit  # noqa: E402
from planted_secrets import KEPT_ROUND2, META_FIELDS, round2_cases, round2_records, strings  # noqa: E402

REDACTOR = Redactor()
CASES = round2_cases(seed=0)
TEXT_CASES = [c for c in CASES if isinstance(c.carrier, str)]
META_CASES = [c for c in CASES if isinstance(c.carrier, dict)]
GHP = "ghp_" + "aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gH3jK5"
HEX40 = "3f9a1c0e7b2d4f6a8c0e1b3d5f7a9c2e4b6d8f01"


def redacted(text: str, **config) -> str:
    return Redactor(RedactionConfig(**config)).redact_text(text, PlaceholderScope())[0]


def leaked(raw: str, value) -> bool:
    stored = "\n\0".join(strings(value))
    return raw in stored or json.dumps(raw)[1:-1] in stored


# -- item 4: forms missed in text -----------------------------------------------------------------

@pytest.mark.parametrize("case", TEXT_CASES, ids=[c.form for c in TEXT_CASES])
def test_missed_form_is_redacted_in_text(case):
    assert not leaked(case.raw, redacted(case.carrier)), case.carrier


@pytest.mark.parametrize("form", sorted({c.form.rsplit("_line_", 1)[0] for c in TEXT_CASES}))
def test_missed_form_is_redacted_in_every_part_of_a_record(form):
    records, _ = round2_records(seed=0)
    for case in (c for c in TEXT_CASES if c.form.rsplit("_line_", 1)[0] == form):
        carrying = [r for r in records if leaked(case.raw, r)]
        assert carrying, case.form
        for record in carrying:
            red, counts, reason = REDACTOR.redact_record(record)
            assert red is not None, reason
            assert not leaked(case.raw, red) and counts, case.form
            for message in red["messages"]:
                for call in message.get("tool_calls", []):
                    json.loads(call["function"]["arguments"])  # arguments stay JSON


# Prose around a form: letters, marks, symbols, spaces, line breaks (as in test_fuzz_redact.py).
prose = st.text(st.characters(blacklist_categories=("Cs", "Nd"), blacklist_characters="@/=:\\$"), max_size=40)


@fuzz(80)
@given(case=st.sampled_from(TEXT_CASES), before=prose, after=prose)
def test_missed_forms_are_redacted_in_any_surroundings(case, before, after):
    assert not leaked(case.raw, redacted(f"{before} {case.carrier} {after}"))


@pytest.mark.parametrize("raw", KEPT_ROUND2)
def test_gas_town_text_that_only_looks_like_these_forms_is_kept(raw):
    assert redacted(raw) == raw


@pytest.mark.parametrize("raw, expected", [
    # key-name context beats the git-SHA exemption, wherever the value ends
    (f"api_key: {HEX40} # staging", "api_key: <SECRET:config_secret#1> # staging"),
    (f"api_key: {HEX40}, region: us-east-1", "api_key: <SECRET:config_secret#1>, region: us-east-1"),
    # and the value goes wherever else it occurs in the record, though it looks like a SHA there
    (f"Merged as {HEX40}; api_key: {HEX40} x",
     "Merged as <SECRET:config_secret#1>; api_key: <SECRET:config_secret#1> x"),
    ("The DB password is Tide-anchor-42!", "The DB password is <SECRET:config_secret#1>"),
    ("https://x.io/a?foo=1&auth=s3cr3tvalue99#top", "https://x.io/a?foo=1&auth=<SECRET:url_query_secret#1>#top"),
    ("mysql -uroot -pTide-anchor-42! harbor", "mysql -uroot -p<SECRET:cli_password#1> harbor"),
    ("curl -u admin:Tide-anchor-42! https://x.io", "curl -u admin:<SECRET:cli_password#1> https://x.io"),
    ('{"pw": "Tide-anchor-42!"}', '{"pw": "<SECRET:config_secret#1>"}'),
    ("DB_PASS=Tide-anchor-42!", "DB_PASS=<SECRET:dotenv_assignment#1>"),
    ("SSN 437-73-6915 on file", "SSN <PII:ssn#1> on file"),
    ("card 4111 1111 1111 1111 exp 04/29", "card <PII:card_number#1> exp 04/29"),
    ("amex 3782-822463-10005.", "amex <PII:card_number#1>."),
])
def test_placeholder_replaces_only_the_value(raw, expected):
    assert redacted(raw) == expected


def test_a_wrapped_base64_secret_goes_whole():
    lines = [c.raw for c in TEXT_CASES if c.form.startswith("base64_wrapped_24_line_")]
    block = "\n".join(lines)
    assert redacted(f"data:\n{block}\nend") == "data:\n<SECRET:stripe_key#1>\nend"


def test_card_numbers_need_the_luhn_check_and_a_card_network():
    assert redacted("card 4111111111111111") == "card <PII:card_number#1>"
    assert redacted("order 4111111111111112") == "order 4111111111111112"  # Luhn fails
    assert redacted("order 1111111111111117") == "order 1111111111111117"  # Luhn passes, no network starts with 1
    assert redacted("card 4111 1111-1111 1111") == "card 4111 1111-1111 1111"  # mixed separators: not a card
    assert redacted("card 4111111111111111", pii=False) == "card 4111111111111111"


def test_ssn_rules_follow_the_assignment_rules():
    for invalid in ("000-12-3456", "666-12-3456", "912-12-3456", "123-00-4567", "123-45-0000"):
        assert redacted(f"id {invalid}") == f"id {invalid}"
    assert redacted("SSN: 437 73 6915") == "SSN: <PII:ssn#1>"
    assert redacted("room 437 73 6915") == "room 437 73 6915"  # spaced digits need the word SSN near


def test_a_value_found_by_its_context_is_replaced_everywhere_in_the_record():
    pw = "Tide-anchor-42!"
    record = make_record([{"role": "user", "content": f'{{"pw": "{pw}"}}'},
                          {"role": "assistant", "content": f"Logged in with {pw}; DB_PASSWORD=lanternharbor"},
                          {"role": "user", "content": "the lanternharbor rig is fine"}], {"summary": f"used {pw}"})
    red, counts, _ = REDACTOR.redact_record(record)
    assert not leaked(pw, red) and counts["config_secret"] == 3
    assert red["messages"][1]["content"] == ("Logged in with <SECRET:config_secret#1>; "
                                             "DB_PASSWORD=<SECRET:dotenv_assignment#1>")
    assert red["messages"][2]["content"] == "the lanternharbor rig is fine"  # a plain word is not looked for again


def test_a_record_with_too_many_context_values_to_look_for_is_dropped(monkeypatch):
    monkeypatch.setattr(redact, "ECHO_BUDGET", 10_000)
    record = make_record([{"role": "user", "content": " ".join(f"PW=Tide-anchor-{i}!" for i in range(200))}], {})
    red, counts, reason = REDACTOR.redact_record(record)
    assert red is None and counts == {} and "too many" in reason and "Tide" not in reason


def test_every_string_of_a_record_is_scanned_ids_names_and_other_fields_too():
    record = {"messages": [
        {"role": "assistant", "content": "", "name": GHP,
         "tool_calls": [{"id": GHP, "type": "function", "function": {"name": GHP, "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": GHP, "name": "Bash", "content": "ok"}],
        "tools": [], "extra": {"note": (GHP,)}, "meta": {}}
    red, counts, reason = REDACTOR.redact_record(record)
    assert red is not None, reason
    assert not leaked(GHP, red) and counts == {"github_token": 5}
    assert red["messages"][0]["tool_calls"][0]["id"] == red["messages"][1]["tool_call_id"] == "<SECRET:github_token#1>"
    assert [m["role"] for m in red["messages"]] == ["assistant", "tool"]


# -- item 3: every string of `meta` ----------------------------------------------------------------

@pytest.mark.parametrize("case", META_CASES, ids=[c.form for c in META_CASES])
def test_every_meta_field_is_redacted(case):
    record = make_record([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
                         case.carrier)
    red, counts, reason = REDACTOR.redact_record(record)
    assert red is not None, reason
    assert not leaked(case.raw, red["meta"]) and counts
    assert red["meta"]["content_hash"] == record["meta"]["content_hash"]  # computed by us: never rewritten


def test_every_listed_meta_field_is_planted():
    planted = {c.form.removeprefix("meta_") for c in META_CASES}
    assert set(META_FIELDS) <= planted and {"nested_dict", "nested_list"} <= planted


def test_the_generator_plants_every_string_field_the_sources_write(tmp_path, isolated, capsys):
    """A source that starts writing a new `meta` field must get it planted too (see META_FIELDS)."""
    from gt_finetune.cli import main
    from gt_finetune.corpus import SAMPLE_TOWN

    town = tmp_path / "town"
    shutil.copytree(SAMPLE_TOWN, town)
    with open(town / ".beads" / "routes.jsonl", "a") as f:  # where job beads would go (never used here)
        f.write('{"prefix":"ft-","path":"finetune/mayor/rig"}\n')
    (town / "finetune" / "mayor" / "rig").mkdir(parents=True)
    assert main(["corpus", "build", "--scope", "all", "--town", str(town)]) == 0, capsys.readouterr().err
    [records] = isolated.glob("corpus/corpus-*/records.jsonl")
    written = {key for line in records.read_text().splitlines()
               for key, value in json.loads(line)["meta"].items() if isinstance(value, str)}
    assert written - {"content_hash"} <= set(META_FIELDS), sorted(written - set(META_FIELDS))


def test_meta_keys_and_values_of_any_type_pass_through_unharmed():
    meta = {"source": "beads", "line": 7, "sidechain": False, "abandoned_lines": 0, "lines": "3-17",
            "session": "ed7ee1bf-cb55-4761-985d-c4048152e4e0", "created_at": "2026-11-03T00:56:45Z",
            "bead_id": "hb-03n", "rig": "harbor", "generated_by": "agent:harbor/polecats/nux",
            "model": "claude-opus-4-5-20251101", "formula": "mol-polecat-work", "extra": {"n": [1, None]}}
    record = make_record([{"role": "user", "content": "hi"}], meta)
    red, counts, _ = REDACTOR.redact_record(record)
    assert red["meta"] == record["meta"] and counts == {}


def test_a_provider_key_in_meta_is_redacted_even_with_pii_off():
    record = make_record([{"role": "user", "content": "hi"}], {"rig": GHP, "generated_by": f"agent:{GHP}"})
    red, counts, _ = Redactor(RedactionConfig(pii=False)).redact_record(record)
    assert red["meta"]["rig"] == "<SECRET:github_token#1>"
    assert red["meta"]["generated_by"] == "agent:<SECRET:github_token#1>" and counts == {"github_token": 2}


# -- item 12: no input makes a rule quadratic -----------------------------------------------------

# The issue's two inputs, and one per rule or filter that was superlinear on its own shape.
ISSUE_INPUTS = {
    "token_then_dashes": lambda n: "token\n" + "-" * n,
    "private_key_headers": lambda n: "-----BEGIN PRIVATE KEY-----!" * (n // 28),
}
PATHOLOGICAL = {
    **ISSUE_INPUTS,
    "private_key_header_then_dashes": lambda n: "-----BEGIN PRIVATE KEY-----\n" + "-" * n,
    "path_segment_of_letters": lambda n: "see a/" + "a" * 60 + "1 " + "x" * n,  # was exponential in the 60
    "closing_brackets_in_a_value": lambda n: 'X_TOKEN="' + ")" * n + '"',
    "keyword_repeated_in_a_value": lambda n: 'password="' + "password" * (n // 8) + 'X"',
    "long_value_found_by_its_context": lambda n: "password: " + "+/" * (n // 2) + '"',
    "password_is_then_dashes": lambda n: "The password is\n" + "-" * n,
    "mysql_then_flags": lambda n: "mysql" + " -u" * (n // 3),
    "query_then_ampersands": lambda n: "?auth=x" + "&" * n,
    "digits_and_spaces": lambda n: "4 " * (n // 2),
    "base64_lines": lambda n: "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY\n" * (n // 33),
}


@pytest.mark.parametrize("name, size", [(name, 2_000_000) for name in ISSUE_INPUTS]
                         + [(name, 200_000) for name in PATHOLOGICAL])
def test_pathological_input_finishes(name, size):
    """At 200k characters a quadratic rule needs about 10^10 steps and trips the alarm; linear work is
    well under a second."""
    text = PATHOLOGICAL[name](size)
    with time_limit(20, "redaction"):
        REDACTOR.redact_text(text, PlaceholderScope())


def test_a_pathological_record_finishes():
    content = PATHOLOGICAL["long_value_found_by_its_context"](200_000) + PATHOLOGICAL["private_key_headers"](200_000)
    record = make_record([{"role": "user", "content": content}],
                         {"summary": PATHOLOGICAL["token_then_dashes"](200_000)})
    with time_limit(20, "redaction"):
        red, _, reason = REDACTOR.redact_record(record)
    assert red is not None, reason

