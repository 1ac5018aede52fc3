"""Fuzzing the redactor: a secret of any family it knows, in any surroundings (unicode prose, JSON,
tool calls, line breaks), never comes out raw; nothing crashes; text without secrets comes out as it went in.

Secrets come from the same generators as the planted corpus (tests/corpus/planted_secrets.py):
real formats, fake values.
"""
import json
import sys
from pathlib import Path

from hypothesis import given, strategies as st

from gt_finetune.corpus.records import make_record
from gt_finetune.corpus.redact import PlaceholderScope, Redactor

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1] / "corpus")]
from fuzz_settings import fuzz  # noqa: E402
from planted_secrets import _Fake, strings  # noqa: E402

FUZZ = fuzz(150)
REDACTOR = Redactor()


def _secret(family: str, fake: _Fake) -> tuple[str, str]:
    """(text that carries the secret as it appears in the wild, the raw secret value)."""
    plain = {
        "github_token": fake.github_token, "gitlab_token": fake.gitlab_token,
        "huggingface_token": fake.huggingface_token, "anthropic_key": fake.anthropic_key,
        "openai_key": fake.openai_key, "slack_token": fake.slack_token, "stripe_key": fake.stripe_key,
        "npm_token": fake.npm_token, "pypi_token": fake.pypi_token, "google_api_key": fake.google_api_key,
        "sendgrid_key": fake.sendgrid_key, "jwt": fake.jwt, "aws_access_key_id": fake.aws_access_key_id,
        "telegram_bot_token": fake.telegram_bot_token, "discord_bot_token": fake.discord_bot_token,
        "private_key": fake.private_key, "email": fake.email, "ip": fake.ip,
    }
    if family in plain:
        raw = plain[family]()
        return raw, raw
    if family == "slack_webhook":
        url = fake.slack_webhook()
        return url, url.rsplit("services/", 1)[1]
    raw = {"aws_secret_access_key": fake.aws_secret_access_key, "twilio_key": lambda: fake.twilio_key("SK"),
           "high_entropy": fake.high_entropy}.get(family, fake.password)()
    return {"aws_secret_access_key": f"aws_secret_access_key = {raw}", "twilio_key": f"twilio api key {raw}",
            "database_url_password": f"postgres://harbor:{raw}@db.harbor.internal:5432/harbor",
            "basic_auth_url": f"https://deploy-bot:{raw}@gitea.harbor.lan/tides.git",
            "dotenv_assignment": f"SESSION_SECRET={raw}", "config_secret": f'"password": "{raw}"',
            "home_user": f"/home/{fake.home_user()}/gt/harbor", "high_entropy": f"sid {raw}"}[family], raw


FAMILIES = ["github_token", "gitlab_token", "huggingface_token", "anthropic_key", "openai_key", "slack_token",
            "stripe_key", "npm_token", "pypi_token", "google_api_key", "sendgrid_key", "jwt", "aws_access_key_id",
            "telegram_bot_token", "discord_bot_token", "private_key", "email", "ip", "slack_webhook",
            "aws_secret_access_key", "twilio_key", "database_url_password", "basic_auth_url", "dotenv_assignment",
            "config_secret", "high_entropy"]
secrets = st.builds(_secret, st.sampled_from(FAMILIES), st.integers(0, 2**32).map(_Fake))
# Prose around the secret: any letters (some lowercase to two characters), marks, symbols, spaces,
# line breaks; no digits, `@`, `/`, `=` or `:`, which would make URLs, addresses and assignments.
prose = st.text(st.characters(blacklist_categories=("Cs", "Nd"), blacklist_characters="@/=:\\$"), max_size=40)
# What sits right before and after a secret in the wild: quotes, brackets, JSON escapes (`\\n`), punctuation.
before_secret = st.sampled_from(["", "\n", "\r\n", "\t", "\\n", "\\t", '"', "'", "`", "=", "(", "[", "<", ",", "|",
                                 "\n\n> "])
after_secret = st.sampled_from(["", "\n", "\r\n", "\\n", '"', "'", "`", ")", "]", "}", ">", ",", ";", ".", ":", "!",
                                "?", "-"])


def leaked(raw: str, record_or_text) -> bool:
    stored = "\n\0".join(strings(record_or_text))
    return raw in stored or json.dumps(raw)[1:-1] in stored


@FUZZ
@given(secret=secrets, before=prose, after=prose, left=before_secret, right=after_secret)
def test_no_secret_survives_in_text(secret, before, after, left, right):
    carried, raw = secret
    out, counts = REDACTOR.redact_text(f"{before} {left}{carried}{right} {after}", PlaceholderScope())
    assert raw not in out and counts


@FUZZ
@given(secret=secrets, before=prose, after=prose, key=st.text(max_size=10), where=st.sampled_from(
    ["content", "arguments", "result", "nested", "tools"]))
def test_no_secret_survives_in_a_record(secret, before, after, key, where):
    carried, raw = secret
    text = f"{before} {carried} {after}"
    arguments = json.dumps({"command": text} if where == "arguments" else
                           {key or "k": {"list": [1, None, text]}} if where == "nested" else {"command": "ls"})
    messages = [{"role": "user", "content": text if where == "content" else before},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "Bash", "arguments": arguments}}]},
                {"role": "tool", "tool_call_id": "toolu_1", "name": "Bash",
                 "content": text if where == "result" else ""}]
    tools = [{"type": "function", "function": {"name": "x", "description": text}}] if where == "tools" else []
    record = make_record(messages, {"source": "transcripts", "cwd": "/srv/harbor"}, tools)
    red, counts, reason = REDACTOR.redact_record(record)
    assert red is not None, reason
    assert not leaked(raw, red)
    for call in red["messages"][1]["tool_calls"]:
        json.loads(call["function"]["arguments"])  # arguments stay JSON


@FUZZ
@given(record=st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=3), max_leaves=12))
def test_any_record_shape_is_redacted_or_refused_never_a_crash(record):
    red, counts, reason = REDACTOR.redact_record(record if isinstance(record, dict) else {"messages": record})
    assert (red is None) == bool(reason)


@FUZZ
@given(text=st.lists(prose, max_size=6).map(" ".join))
def test_text_without_secrets_comes_out_unchanged(text):
    out, counts = REDACTOR.redact_text(text, PlaceholderScope())
    assert out == text and not counts


# -- regressions: the minimal failing examples fuzzing found --------------------------------------

def redacted(text: str) -> str:
    return REDACTOR.redact_text(text, PlaceholderScope())[0]


def test_a_secret_right_after_a_json_escape_is_found():
    slack = "xoxb-914177763170-6690743915000-PIa84yRnBUbHoWC8FJowoRoW"
    assert redacted(f'"log": "started\\n{slack}\\tok"') == '"log": "started\\n<SECRET:slack_token#1>\\tok"'
    assert redacted("peers:\\n10.2.3.4") == "peers:\\n<PII:ip#1>"
    assert redacted("cwd:\\t/home/pnair/gt") == "cwd:\\t/home/<PII:home_user#1>/gt"


def test_a_bracket_that_closes_the_text_around_a_value_is_not_part_of_it():
    assert redacted("(set DB_PASSWORD=Tide-anchor-42!)") == "(set DB_PASSWORD=<SECRET:dotenv_assignment#1>)"
    assert redacted("[DB_PASSWORD=Tide-anchor-42!]") == "[DB_PASSWORD=<SECRET:dotenv_assignment#1>]"
    assert redacted("use --password Tide-anchor-42!)") == "use --password <SECRET:config_secret#1>)"
    assert redacted("DB_PASSWORD=get_password()") == "DB_PASSWORD=get_password()"  # code, balanced: kept


def test_an_address_before_punctuation_is_found():
    assert redacted("mail omar.haddad98@proton.me- thanks") == "mail <PII:email#1>- thanks"
    assert redacted("reach 2a01:4f8:d90:cd62::c5: refused") == "reach <PII:ip#1> refused"
