"""Secret and PII redaction for corpus records: mandatory and fail-closed (DESIGN.md §1, "Secrets").

Three layers, as gitleaks / detect-secrets / BigCode do (anchors.md §5):

1. Provider rules: a regex per credential format (`github_token`, `aws_access_key_id`, …), plus
   structural ones (`database_url_password`, `dotenv_assignment`, …) that replace only the value.
2. Tokens of 20+ base64/hex characters: a blob that decodes to text is scanned again and replaced
   whole when that text holds a secret (`base64_blob`, counted under the inner family) and kept
   when it does not (encoded config or prose is data, not a credential); other tokens are
   `high_entropy` when they look random, after filters for what Gas Town text is full of: UUIDs,
   git SHAs and sha256 content hashes, bead ids, API object ids, `$VAR` references, paths,
   identifiers and sequential strings.
3. PII: email addresses, home-directory user names in paths, IP addresses, US social security
   numbers, card numbers (Luhn-valid, of a card network).

A key name beats the id filters: `api_key: <40 hex>` is a secret although it looks like a git SHA.
A value found only by its context (a key name, a flag, a URL) is replaced wherever else it occurs
in the record too. Every string of a record is scanned, `meta` included, except the content hash
this pipeline computes.

A hit becomes a typed placeholder (`<SECRET:github_token#1>`, `<PII:email#2>`) that stays the same
for the same raw value throughout one record, so a tool call and its result still agree. Only
counts leave this module; a record that cannot be fully scanned is dropped, never passed through.

Every rule runs in time linear in the text (hostile input must not stall a build): regexes start
only at token boundaries, repeat unambiguously, or scan a bounded distance.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from ..workspace import canonical_json

HASH_FIELDS = frozenset({"content_hash"})  # computed by the pipeline over redacted text: never scanned
ECHO_MIN_CHARS, ECHO_MAX_CHARS = 8, 256  # a context-found value this long (not a plain word) is replaced everywhere
ECHO_BUDGET = 200_000_000  # context-found values x characters: over it, a record is dropped, not half-checked
CONTEXT_CHARS = 120  # how far a rule's context word may be from its match
DECODE_DEPTH = 2  # base64 inside base64 is followed this far
KEEP_USERS = frozenset({"runner", "ubuntu", "user", "users", "root", "node", "vscode", "codespace", "linuxbrew",
                        "shared", "circleci", "jenkins", "ec2-user", "admin", "docker", "git", "gitpod", "travis",
                        "builder", "you", "me", "name", "username", "yourname", "your_name", "your-name", "x"})
EMAIL_KEEP_TLDS = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "js", "ts", "py", "css", "json",
                             "md", "txt", "html", "go", "rs", "toml", "yaml", "yml"})
RESERVED_DOMAIN = re.compile(r"(?i)(?:.*\.)?(?:example(?:\.com|\.net|\.org)?|test|invalid|localhost)")
DB_SCHEMES = frozenset({"postgres", "postgresql", "mysql", "mariadb", "mongodb", "mongodb+srv", "redis", "rediss",
                        "amqp", "amqps", "mssql", "sqlserver", "cockroachdb", "clickhouse", "oracle"})
DOC_NETS = tuple(ipaddress.ip_network(n) for n in
                 ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"))

_PLACEHOLDER = re.compile(r"""(?ix)
    [x*.#?_-]+ | \d{1,8} | \.\.\. | %\w+% | your[\w-]*
  | (?=[\w-]*+\Z)[\w-]*?(?:example|placeholder|changeme|change_me|change-me|redacted|dummy|sample)[\w-]*+
  | password | passwd | secret | token | none | null | nil | true | false | test | todo | tbd | foo | bar | foobar
  | replace[_-]?me | undefined | empty | hidden | value
  | str | string | int | bool | bytes | any | optional                            # type annotations: `password: str`
  | [a-z_]\w*(?:\.[a-z_]\w*)+                                                    # code: self.password, os.environ.get
  | (?-i:(?=[a-z0-9_]*+\Z)[a-z0-9_]*?(?:password|passwd|pwd|secret|token|key|credentials?)[a-z0-9_]*+)  # api_token
""")  # `(?=…\Z)` first: a value of many keywords and one odd character would otherwise backtrack quadratically
# Words only, one of them naming what the value is: a label (`X-Xet-Access-Token`), not the secret.
_LABEL = re.compile(r"(?i)(?=.*\b(?:token|key|secret|password|auth)\b)[a-z]+(?:[-_ .:][a-z]+)*")
_PIECE = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_WORD_SEGMENT = re.compile(r"[A-Za-z][a-z]++(?:[-_.]?[A-Za-z][a-z]++)*+|\d+")  # possessive: `a…a1` was exponential
_WORD = re.compile(r"[A-Za-z][a-z]{4,}")
_HEX = re.compile(r"[0-9a-fA-F]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*$")
_FIELD = re.compile(r"[a-z_]{1,24}")
_WINDOWS_PATH = re.compile(r"[A-Za-z]:[\\/]")
_SSN_WORD = re.compile(r"(?i)\bssn\b|social security")
_IDENTIFIER = re.compile(r"[a-z]+(?:_[a-z]+)+|[A-Z]+(?:_[A-Z0-9]+)+")  # snake_case words, UPPER_CASE constants
# Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay: prefix and length (a Luhn-valid order number rarely fits).
_CARD_NETWORK = re.compile(r"4\d{12}(?:\d{3}){0,2}|(?:5[1-5]\d\d|2(?:22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720))\d{12}"
                           r"|3[47]\d{13}|(?:6011|64[4-9]\d|65\d\d|35(?:2[89]|[3-8]\d)|62\d\d)\d{12,15}"
                           r"|3(?:0[0-5]|[689]\d)\d{11,16}")
_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
_OPENERS = {")": "(", "]": "[", "}": "{"}
_ID_LIKE = re.compile(r"""(?x)
    [0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}   # UUID
  | [0-9a-fA-F]{40} | [0-9a-fA-F]{64} | [0-9a-fA-F]{7,12} | [0-9a-f]{24}          # SHAs, sha256, ObjectId
  | [a-z][a-z0-9]{0,9}(?:-[a-z0-9]{1,16})+                                       # bead ids and slugs: hq-wisp-9sw29
  | (?:sha1|sha256|sha384|sha512)-[A-Za-z0-9+/]+=*                               # subresource integrity hashes
  | (?:toolu|srvtoolu|msg|req|call|resp|run|asst|thread|batch)_[A-Za-z0-9]+ | chatcmpl-[A-Za-z0-9]+  # API object ids
""")


# -- is it random? -------------------------------------------------------------------------------

def _entropy(text: str) -> float:
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def _wordy(text: str) -> bool:
    """Identifiers and words split into long pieces (`setupAccessibleDialog`); random strings into
    pieces of about two characters, so the mean piece length tells them apart. CamelCase splits
    finer (`FalAITextToVideoTask`), so mixed case gets a lower bar."""
    pieces = _PIECE.findall(text)
    mixed = text.lower() != text and text.upper() != text
    return not pieces or sum(map(len, pieces)) / len(pieces) >= (3.0 if mixed else 3.5)


def _sequential(text: str) -> bool:
    """`aaaa…`, `0123…`, `abcd…`, `abab…`: made by hand, not by a random generator."""
    low = text.lower()
    steps = sum(1 for a, b in zip(low, low[1:]) if ord(b) - ord(a) in (0, 1))
    return steps >= len(low) / 2 or low in (low + low)[1:-1]


def _random(text: str, threshold: float) -> bool:
    """Looks generated: two character classes, not wordy or sequential, entropy over the limit.

    Short strings cannot reach high entropy (at most log2(len) bits), so the limit eases below 32
    characters. Smaller alphabets lower it too: hex (16 symbols) by one bit, as in detect-secrets
    (4.5 base64 / 3.0 hex), one letter case plus digits (36) by half a bit.
    """
    upper, lower = text.lower() != text, text.upper() != text
    hex_only = _HEX.fullmatch(text) is not None  # words cannot hide in hex; its digit runs are long anyway
    if upper + lower + any(map(str.isdigit, text)) < 2:
        return False
    limit = min(threshold, 0.85 * math.log2(len(text))) - (1.0 if hex_only else 0.0 if upper and lower else 0.5)
    return _entropy(text) >= limit and not _sequential(text) and (hex_only or not _wordy(text))


def _random_token(token: str, threshold: float) -> bool:
    """`_random`, and no word of 5+ letters after a separator: `SmolLM2-135M-Instruct` is a name, while
    a word before the first one is a secret's prefix (`whsec_…`)."""
    return _random(token, threshold) and not any(_WORD.fullmatch(part) for part in re.split(r"[-_/]", token)[1:])


# -- keep filters: (value, text, start) → True leaves a hit alone ---------------------------------

def _placeholder(value: str, text: str = "", start: int = 0) -> bool:
    """Values that stand in for a secret: `$VAR`, `${VAR}`, `<token>`, `changeme`, `sk-...`, code, prose."""
    value = value.strip()
    if value.endswith(("...", "…")) or "***" in value or len(value.split()) >= 5:  # elided, masked, prose
        return True
    value = value.strip("`").rstrip(".,;:!?")
    return (not value or value[0] in "$<{[" or any(c in value for c in "()[]{}")
            or _PLACEHOLDER.fullmatch(value) is not None or _LABEL.fullmatch(value) is not None)


def _placeholder_or_word(value: str, text: str, start: int) -> bool:
    """Unquoted values after `password:` or `--password` are often words, type names or constants in
    prose and code: `--password options`, `token: TextGenerationOutputToken`, `"eos_token": END_OF_TURN`,
    `the token is reported.`"""
    word = value.rstrip(".,;:!?")
    return (_placeholder(value) or word.isalpha() and (word.islower() or _wordy(word))
            or _IDENTIFIER.fullmatch(word) is not None)


def _placeholder_word_or_path(value: str, text: str, start: int) -> bool:
    """`_placeholder_or_word`, and paths: `"pwd": "/srv/harbor"` is a working directory, not a password."""
    return (_placeholder_or_word(value, text, start) or value.startswith(("/", "~/"))
            or _WINDOWS_PATH.match(value) is not None)


def _keep_ssn(value: str, text: str, start: int) -> bool:
    """Numbers never assigned (area 000, 666 or 9xx, group 00, serial 0000); spaced digits far from `SSN`."""
    area, group, serial = value[:3], value[4:6], value[7:]
    near = text[max(0, start - CONTEXT_CHARS):start + len(value) + CONTEXT_CHARS]
    return (area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000"
            or value[3] == " " and not _SSN_WORD.search(near))


def _keep_card(value: str, text: str, start: int) -> bool:
    """Order and invoice numbers: a card number starts as a card network's do and passes the Luhn check."""
    digits = value.replace(" ", "").replace("-", "")
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(map(int, reversed(digits))))
    return total % 10 != 0 or _CARD_NETWORK.fullmatch(digits) is None


def _not_random(value: str, text: str, start: int) -> bool:
    return _ID_LIKE.fullmatch(value) is not None or not _random(value, 3.0)


def _keep_password(database: bool):
    """`scheme://user:password@host`: database schemes make `database_url_password`, others `basic_auth_url`."""
    def keep(value: str, text: str, start: int) -> bool:
        at = text.rfind("://", 0, start)
        scheme = _SCHEME.search(text, max(0, at - 30), at)
        return ((scheme.group().lower() if scheme else "") in DB_SCHEMES) != database or _placeholder(value)
    return keep


def _keep_email(value: str, text: str, start: int) -> bool:
    """Bots, reserved domains and `icon@2x.png` are no one; `user:pass@host` in a URL is a password."""
    local, _, domain = value.lower().rpartition("@")
    in_url = "://" in re.split(r"[\s\"'<>]", text[max(0, start - 200):start])[-1]
    return (in_url or local == "git" or local.startswith(("noreply", "no-reply"))
            or RESERVED_DOMAIN.fullmatch(domain) is not None or domain.rsplit(".", 1)[-1] in EMAIL_KEEP_TLDS)


def _keep_user(value: str, text: str, start: int) -> bool:
    return value.lower() in KEEP_USERS or _placeholder(value)


def _keep_ip(value: str, text: str, start: int) -> bool:
    """Loopback, unspecified (`0.x`), multicast, reserved and documentation addresses name no one."""
    try:  # `2a01:4f8::2:` before a colon in prose: the address is all but the last colon
        ip = ipaddress.ip_address(value[:-1] if value.endswith(":") and not value.endswith("::") else value)
    except ValueError:
        return True
    if ip.version == 6 and (sum(c in "0123456789abcdefABCDEF" for c in value) < 5 or not any(map(str.isdigit, value))):
        return True  # `dead::beef`, `x[1::2]`: code, not addresses
    return (ip.is_loopback or ip.is_unspecified or ip.is_multicast or ip.is_reserved or ip.is_link_local
            or value.startswith("0.") or any(ip in net for net in DOC_NETS))


@dataclass(frozen=True, slots=True)
class _Rule:
    """One detector regex. The replaced part is group `v` when the pattern has one, else the match, up to
    the end of group `tail` when it has one (a lookahead: hits of such a rule may overlap)."""

    id: str
    pattern: re.Pattern
    hints: tuple[str, ...] = ()  # lowercase literals; the regex runs only on text holding one (as gitleaks)
    gate: re.Pattern | None = None  # or a cheap regex that must match first
    keep: Callable[[str, str, int], bool] | None = None  # (value, text, start) → True to leave the hit alone
    context: re.Pattern | None = None  # must occur within CONTEXT_CHARS of the hit
    lower: bool = False  # match the lowercased text: far faster than re.IGNORECASE on keyword alternations
    kind: str = "SECRET"


def _rule(id_: str, pattern: str, hints=(), *, gate: str | None = None, keep=None, context: str | None = None,
          lower=False, kind="SECRET") -> _Rule:
    return _Rule(id_, re.compile(pattern), tuple(hints), re.compile(gate) if gate else None, keep,
                 re.compile(context) if context else None, lower, kind)


def _start(chars: str) -> str:
    """A token start: none of `chars` before it, or a JSON escape (`\\n`, `\\t`) when the text is escaped JSON."""
    return rf"(?:(?<![{chars}])|(?<=\\[nrt]))"


_B = _start("A-Za-z0-9_-")  # token start
_E = r"(?![A-Za-z0-9_-])"  # token end
_KEYWORD = (r"(?:password|passwd|[_-]pwd|secret|token|api[_-]?key|credentials?"  # bare `pwd`/`PWD` is a directory
            r"|(?:access|secret|private|signing|encryption|master|client|auth)[_-]?key)")
# Families whose values are secrets only because of what surrounds them: such a value is looked for again elsewhere.
CONTEXT_FAMILIES = frozenset({"config_secret", "dotenv_assignment", "cli_password", "url_query_secret",
                              "database_url_password", "basic_auth_url", "authorization_header",
                              "aws_secret_access_key", "twilio_key"})
_ENV_HINTS = ("key", "token", "secret", "pass", "pw", "credential")
_URL_CREDENTIALS = r"://[^\s:/@'\"<>]*:(?P<v>[^\s@/'\"<>]+)@"
_SHORT_KEY = r"(?:pw|pwd|pass|passphrase|auth)"  # key names too short or common for `_KEYWORD`; whole names only
_QUERY_KEY = (r"(?:auth|token|key|apikey|secret|password|passwd|pwd|pw|pass|sig|signature|session|sessionid|sid|code"
              r"|credentials?)")

# Specific formats first: where hits overlap, the earlier rule names the family.
PROVIDER_RULES = (
    # The body runs up to its END line or the first character no PEM block holds; it never searches ahead
    # for an END line (that search made `-----BEGIN PRIVATE KEY-----!` repeated quadratic).
    _rule("private_key", r"-----BEGIN[A-Z0-9 ]{0,30}PRIVATE KEY(?: BLOCK)?-----(?:[A-Za-z0-9+/=\s:,]|-(?!----END)"
          r"|\\[nr])*+(?:-----END[A-Z0-9 ]{0,30}PRIVATE KEY(?: BLOCK)?-----)?", ["private key"]),
    _rule("jwt", _B + r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", ["eyj"]),
    _rule("aws_access_key_id", r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])",
          ["akia", "asia", "abia", "acca"]),
    _rule("aws_secret_access_key", r"(?:aws_?secret_?(?:access_?)?key|secret_?access_?key)[\"']?\s*(?:[:=]|=>)\s*"
          r"[\"']?(?P<v>[a-z0-9/+]{40})(?![a-z0-9/+=])", ["secret"], lower=True),
    _rule("aws_secret_access_key", r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])", ["secret"],
          keep=_not_random, context=r"(?i)aws.{0,20}secret|secret.?access.?key"),
    _rule("github_token", _start("A-Za-z0-9_") + r"(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})"
          r"(?![A-Za-z0-9_])", ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"]),
    _rule("gitlab_token", _start("A-Za-z0-9") + r"glpat-[A-Za-z0-9_-]{20,}", ["glpat-"]),
    _rule("huggingface_token", _start("A-Za-z0-9_") + r"hf_[A-Za-z0-9]{30,}(?![A-Za-z0-9_])", ["hf_"]),
    _rule("anthropic_key", _start("A-Za-z0-9") + r"sk-ant-[A-Za-z0-9_-]{32,}", ["sk-ant-"]),
    _rule("openai_key", _start("A-Za-z0-9") + r"sk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{32,}", ["sk-"],
          keep=_not_random),
    _rule("slack_token", _start("A-Za-z0-9") + r"(?:xox[abposr]-[A-Za-z0-9-]{10,}|xapp-\d-[A-Z0-9]+-\d+-[a-z0-9]+)",
          ["xox", "xapp-"]),
    _rule("slack_webhook", r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<v>[A-Za-z0-9_/-]{20,})",
          ["hooks.slack.com"]),
    _rule("stripe_key", _start("A-Za-z0-9") + r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}", ["_live_", "_test_"]),
    _rule("npm_token", _start("A-Za-z0-9_") + r"npm_[A-Za-z0-9]{36}(?![A-Za-z0-9_])", ["npm_"]),
    _rule("pypi_token", _start("A-Za-z0-9") + r"pypi-AgE[A-Za-z0-9_-]{50,}", ["pypi-age"]),
    _rule("google_api_key", _B + r"AIza[0-9A-Za-z_-]{35}" + _E, ["aiza"]),
    _rule("sendgrid_key", _B + r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}" + _E, ["sg."]),
    _rule("twilio_key", _start("A-Za-z0-9") + r"(?:SK|AC)[0-9a-f]{32}(?![A-Za-z0-9])", ["twilio"],
          context=r"(?i)twilio"),
    _rule("discord_bot_token", _B + r"[MNO][A-Za-z0-9_-]{23,27}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,40}" + _E,
          ["discord"], keep=_not_random),
    _rule("telegram_bot_token", r"(?<![0-9])\d{8,10}:AA[A-Za-z0-9_-]{33}" + _E, [":aa"]),
    # Structural rules: the credential is a part of a larger, otherwise useful string.
    _rule("database_url_password", _URL_CREDENTIALS, ["://"], keep=_keep_password(database=True)),
    _rule("basic_auth_url", _URL_CREDENTIALS, ["://"], keep=_keep_password(database=False)),
    _rule("authorization_header", r"\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?(?:bearer|basic|token|bot"
          r"|digest|apikey)\s+(?P<v>[a-z0-9._~+/-]{8,}=*)", ["authorization"], keep=_placeholder, lower=True),
    _rule("authorization_header", r"\b(?:x-api-key|api-key|x-auth-token|private-token|x-access-token)[\"']?"
          r"\s*:\s*[\"']?(?P<v>[a-z0-9._~+/-]{8,}=*)", ["api-key", "auth-token", "private-token", "access-token"],
          keep=_placeholder, lower=True),
    # `?auth=…`, `&access_token=…`, `&X-Amz-Signature=…`: a query parameter named for a credential.
    _rule("url_query_secret", rf"[?&](?:[\w.-]*[_-])?{_QUERY_KEY}=(?P<v>[^&\s#\"'<>`\\]{{3,}})", ["?", "&"],
          keep=_placeholder_or_word, lower=True),
    # `NAME=value`, `NAME="value"`, `NAME = f"…"`: group q is the opening quote, if any; it decides what the
    # value may hold. A bare `…KEY` is too common in code (`CACHE_KEY`, `SORT_KEY`) to count.
    _rule("dotenv_assignment", r"(?<![\w$])(?:[A-Z][A-Z0-9_]*?(?:(?:API|ACCESS|SECRET|PRIVATE|SIGNING|ENCRYPTION"
          r"|MASTER|CLIENT|AUTH|LICENSE|SERVICE|ADMIN)_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|_PWD|_PASS|_PW|CREDENTIALS?)"
          r"|PASS|PW)\s*=\s*(?P<q>[fFrRbBuU]{0,2}[\"'])?(?P<v>(?(q)[^\"'\n]+|[^\s\"'`;,&|#]{3,}))", _ENV_HINTS,
          keep=_placeholder),
    _rule("config_secret", rf"{_KEYWORD}[\"']?\s*(?:[:=]|=>|:=)\s*[\"'](?P<v>[^\"'\n]{{3,}})[\"']", _ENV_HINTS,
          keep=_placeholder, lower=True),
    _rule("config_secret", rf"{_KEYWORD}=(?P<v>[^\s\"'`&#;,)]{{3,}})", _ENV_HINTS, keep=_placeholder, lower=True),
    _rule("config_secret", rf"(?m)^[ \t-]*+[\"']?[\w.-]*?{_KEYWORD}[\"']?[ \t]*:[ \t]+(?P<v>[^\s\"'#]\S{{2,}})[ \t]*$",
          _ENV_HINTS, keep=_placeholder_or_word, lower=True),
    # Anywhere in a line: `api_key: <40 hex> # staging`. The key name beats the git-SHA and id filters.
    _rule("config_secret", rf"{_KEYWORD}[\"']?(?::[ \t]+|[ \t]*(?:=>|:=)[ \t]*)(?P<v>[^\s\"'`#,;<>()\[\]{{}}]{{3,}})",
          _ENV_HINTS, keep=_placeholder_or_word, lower=True),
    # Short key names, quoted (`{"pw": "…"}`, tool input) or at the start of a YAML line: lowercase only
    # (`--- PASS: TestX` is test output) and with a letter in the value (`pass: 12/12` is a count).
    _rule("config_secret", rf"(?<![\w-])[\"']?{_SHORT_KEY}[\"']?[ \t]*(?:[:=]|=>|:=)[ \t]*[\"'](?P<v>[^\"'\n]{{3,}})"
          r"[\"']", ["pw", "pass", "auth"], keep=_placeholder_word_or_path, lower=True),
    _rule("config_secret", rf"(?m)^[ \t-]*+[\"']?{_SHORT_KEY}[\"']?[ \t]*:[ \t]+(?=\S*[A-Za-z])"
          r"(?P<v>[^\s\"'#]\S{2,})", ["pw", "pass", "auth"], keep=_placeholder_word_or_path),
    # Prose: `The DB password is Tide-anchor-42!`.
    _rule("config_secret", r"\b(?:password|passwd|passphrase|token|secret|api[ _-]?key)\s+(?:is|was):?\s+[`'\"]?"
          r"(?P<v>[^\s`'\"]{3,})", ["pass", "token", "secret", "key"], keep=_placeholder_or_word, lower=True),
    _rule("config_secret", r"(?<![\w-])--?(?:password|passwd|pass|pw|passphrase|token|api-key|secret|client-secret"
          r"|auth-token|access-token)(?:\s+|=)[\"']?(?P<v>[^\s\"'$<-][^\s\"']{2,})", _ENV_HINTS,
          keep=_placeholder_or_word, lower=True),
    # Command lines: `mysql -uroot -pX`, `curl -u admin:X`, `sshpass -p X`, `redis-cli -a X`. A flag is looked
    # for at most 300 characters after the command, on its line.
    _rule("cli_password", r"(?<![\w-])(?:mysql\w*|mariadb[\w-]*)\b[^\n|;&]{0,300}?[ \t]-p[\"']?(?P<v>[^\s\"'\\]+)",
          ["mysql", "mariadb"], keep=_placeholder),
    _rule("cli_password", r"(?<![\w-])(?:curl|wget|https?|xh)\b[^\n|;&]{0,300}?[ \t](?:-[A-Za-z]*u|--user|-a|--auth)"
          r"(?:[ \t]+|=)?[\"']?[^\s:\"'/@\\]+:(?P<v>[^\s\"'\\]+)", ["curl", "wget", "http", "xh"], keep=_placeholder),
    _rule("cli_password", r"(?<![\w-])(?:sshpass[ \t]+-p|redis-cli\b[^\n|;&]{0,300}?[ \t]-a)[ \t]*[\"']?"
          r"(?P<v>[^\s\"'\\]+)", ["sshpass", "redis-cli"], keep=_placeholder),
)

PII_RULES = (
    _rule("email", r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
          r"\.)+[A-Za-z]{2,24}(?!\w|-\w)", ["@"], keep=_keep_email, kind="PII"),
    _rule("home_user", _start(r"\w.-") + r"/(?:home|Users)/(?P<v>[^/\s\\\"'`:<>$*]+)", ["/home/", "/users/"],
          keep=_keep_user, kind="PII"),
    _rule("home_user", r"[A-Za-z]:(?:\\\\|\\|/)Users(?:\\\\|\\|/)(?P<v>[^\\/\s\"'<>:]+)", ["users"],
          keep=_keep_user, kind="PII"),
    # Claude Code's project folders spell the workdir with dashes: `-home-alice-gt-harbor-witness`.
    _rule("home_user", r"(?<![\w-])-(?:home|Users)-(?P<v>[A-Za-z0-9_.]+)(?=[-/\s\"']|$)", ["-home-", "-users-"],
          keep=_keep_user, kind="PII"),
    _rule("ip", r"\d(?:(?<![\w.]\d)|(?<=\\[nrt]\d))\d{0,2}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?!\w|\.\d)",
          gate=r"\.\d{1,3}\.\d{1,3}\.", keep=_keep_ip, kind="PII"),
    _rule("ip", _start(r"\w:") + r"(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])",
          gate=r":[0-9A-Fa-f]{0,4}:", keep=_keep_ip, kind="PII"),
    # US social security numbers (`123-45-6789`; spaced digits only near the word). The number patterns
    # start with a digit, not a lookbehind, so the regex engine skips ahead to the next digit.
    _rule("ssn", r"\d(?<![\w-]\d)\d\d(?P<s>[- ])\d\d(?P=s)\d{4}(?![\w-])", keep=_keep_ssn, kind="PII"),
    # Card numbers: plain, or in the groups printed on cards (4-4-4-4, Amex 4-6-5) with one separator.
    # The rest is a lookahead, so a number right before the card (`2026 4111 1111 …`) cannot hide it.
    _rule("card_number", r"\d(?<![\w.-]\d)(?=(?P<tail>\d{12,18}|\d{3}(?P<s>[ -])\d{4}(?P=s)\d{4}(?P=s)\d{1,4}"
          r"(?:(?P=s)\d{3})?|\d{3}(?P<t>[ -])\d{6}(?P=t)\d{4,5})(?![\w-]|\.\d))", keep=_keep_card, kind="PII"),
)

TOKEN_RULES = ("base64_blob", "high_entropy")
_TOKEN = re.compile(r"[A-Za-z0-9+/_-]{20,}={0,2}")  # leftmost-longest, so always a whole run
_BASE64_LINE = re.compile(r"[A-Za-z0-9+/]+={0,2}")  # a line of wrapped base64 (standard alphabet)
_LINE_BREAK = re.compile(r"(?:\r?\n|(?:\\r)?\\n)[ \t]*")  # a real one, or `\n` in JSON-escaped text
_LAST_LINE = re.compile(_LINE_BREAK.pattern + r"(?P<line>[A-Za-z0-9+/]{1,19}={0,2})(?![A-Za-z0-9+/=_-])")
RULE_IDS = tuple(dict.fromkeys(r.id for r in (*PROVIDER_RULES, *PII_RULES))) + TOKEN_RULES
PII_IDS = frozenset(r.id for r in PII_RULES)


@dataclass(frozen=True, slots=True)
class RedactionConfig:
    """What the redactor skips and how hard it looks (`[redaction]` in config.toml).

    Args:
        disabled_rules: rule ids to switch off (see `Redactor.rules`), e.g. `{"email"}`.
        allowlist: regexes; a hit whose whole text matches one is kept.
        entropy_threshold: bits per character a token must reach to count as `high_entropy`.
        max_record_chars: records with more characters in their strings are dropped unscanned.
        pii: redact email addresses, home-directory user names and IP addresses.
    """

    disabled_rules: frozenset[str] = frozenset()
    allowlist: tuple[str, ...] = ()
    entropy_threshold: float = 4.0
    max_record_chars: int = 2_000_000
    pii: bool = True

    def __post_init__(self):
        unknown = sorted(set(self.disabled_rules) - set(RULE_IDS))
        if unknown:
            raise ValueError(f"unknown rule id(s) in `disabled_rules`: {', '.join(unknown)} "
                             f"(known: {', '.join(RULE_IDS)})")
        for pattern in self.allowlist:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"`allowlist` entry {pattern!r} is not a valid regex: {exc}") from exc
        if not self.entropy_threshold > 0:
            raise ValueError(f"`entropy_threshold` must be above 0, got {self.entropy_threshold}")
        if self.max_record_chars < 1:
            raise ValueError(f"`max_record_chars` must be at least 1, got {self.max_record_chars}")


class PlaceholderScope:
    """Raw value → placeholder for one record: the same value always gets the same `<SECRET:family#n>`.

    It holds raw values in memory only; its repr shows counts, never values.
    """

    __slots__ = ("_by_raw", "_issued")

    def __init__(self):
        self._by_raw: dict[str, str] = {}
        self._issued: Counter = Counter()

    def placeholder(self, kind: str, family: str, raw: str) -> str:
        found = self._by_raw.get(raw)
        if found is None:
            self._issued[family] += 1
            found = self._by_raw[raw] = f"<{kind}:{family}#{self._issued[family]}>"
        return found

    def context_values(self) -> list[tuple[str, str]]:
        """(raw, placeholder) of the secrets found only by their context (`CONTEXT_FAMILIES`) that are
        secret-sized and not a plain word, longest first: these are looked for again everywhere."""
        found = [(raw, ph) for raw, ph in self._by_raw.items()
                 if ph.startswith("<SECRET:") and ph[8:].partition("#")[0] in CONTEXT_FAMILIES
                 and ECHO_MIN_CHARS <= len(raw) <= ECHO_MAX_CHARS and not raw.isalpha()]
        return sorted(found, key=lambda item: -len(item[0]))

    def __repr__(self) -> str:
        return f"PlaceholderScope({dict(self._issued)})"


class _Unscannable(Exception):
    """A value the detectors cannot read; its message names where, never what."""


@dataclass(slots=True)
class _Span:
    start: int
    end: int
    rank: int  # lower wins the family when spans overlap
    family: str
    kind: str


class Redactor:
    """Finds secrets and PII in records and replaces them with placeholders (see the module docstring)."""

    def __init__(self, config: RedactionConfig = RedactionConfig()):
        self.config = config
        off = set(config.disabled_rules) | (PII_IDS if not config.pii else set())
        self._rules = tuple(r for r in (*PROVIDER_RULES, *PII_RULES) if r.id not in off)
        self._hints = frozenset(h for r in self._rules for h in r.hints)
        self._base64 = "base64_blob" not in off
        self._entropy = "high_entropy" not in off
        self._allow = tuple(re.compile(p) for p in config.allowlist)

    @property
    def rules(self) -> tuple[str, ...]:
        """Every rule id, enabled or not."""
        return RULE_IDS

    def redact_record(self, record: dict) -> tuple[dict | None, dict[str, int], str]:
        """A redacted copy of a canonical record, with counts per rule family.

        Scans message content, tool-call arguments (as JSON when they parse), tool results, `tools`,
        any other field, and every string in `meta`, keys and nested values too, but the
        `HASH_FIELDS`. One `PlaceholderScope` covers the record; a value found only by its context is
        then replaced wherever else it occurs in the record. `meta.content_hash` is recomputed so it
        still covers what is stored.

        Returns:
            (record, counts, "") or, when any part cannot be scanned (too large, not valid UTF-8, a
            detector failed), (None, {}, reason); the reason names where, never a value.
        """
        try:
            size = _chars(record, "record")
            if size > self.config.max_record_chars:
                return None, {}, (f"record has {size:,} characters, over `max_record_chars` "
                                  f"({self.config.max_record_chars:,}); dropped unscanned")
            scope, counts = PlaceholderScope(), Counter()
            out = {key: [self._message(m, scope, counts) for m in value or []] if key == "messages"
                   else self._walk(value, scope, counts) for key, value in record.items() if key != "meta"}
            meta = dict(record.get("meta") or {})
            kept = {key: meta.pop(key) for key in HASH_FIELDS if key in meta}
            meta = self._walk(meta, scope, counts)
            echo = self._echo(scope, size)
            if echo is not None:
                out, meta = echo(out, counts), echo(meta, counts)
            meta.update(kept)
            if "content_hash" in meta:
                body = canonical_json({"messages": out.get("messages", []), "tools": out.get("tools", [])})
                meta["content_hash"] = f"sha256:{hashlib.sha256(body.encode('utf-8')).hexdigest()}"
            out["meta"] = meta
        except _Unscannable as exc:
            return None, {}, str(exc)
        except Exception as exc:  # fail closed: a detector bug must not let the record through
            return None, {}, f"a detector failed ({type(exc).__name__}); record dropped unscanned"
        return out, dict(counts), ""

    def redact_text(self, text: str, scope: PlaceholderScope) -> tuple[str, Counter]:
        """`text` with every hit replaced, and the count of replacements per family. Values found by
        their context are looked for again in the whole text, unless that is over `ECHO_BUDGET` (this
        is for short strings: paths, reasons; records go through `redact_record`, which drops them)."""
        counts: Counter = Counter()
        out = self._scan(text, scope, counts)
        try:
            echo = self._echo(scope, len(text))
        except _Unscannable:
            return out, counts
        return (echo(out, counts) if echo else out), counts

    @staticmethod
    def _echo(scope: PlaceholderScope, chars: int):
        """A function replacing, in any value, every other occurrence of the values `scope` found by their
        context (`api_key: X` here, a bare `X` there); None when there are none. Each value costs a pass
        over the record, so past `ECHO_BUDGET` this raises `_Unscannable`."""
        values = scope.context_values()
        if not values:
            return None
        if len(values) * chars > ECHO_BUDGET:
            raise _Unscannable(f"record holds {len(values):,} values found by their context in {chars:,} characters, "
                               "too many to look for elsewhere; record dropped unscanned")
        searches = []
        for raw, placeholder in values:
            forms = tuple(dict.fromkeys((raw, json.dumps(raw)[1:-1])))  # as is, and inside JSON text
            pattern = re.compile(r"(?<![A-Za-z0-9\\])(?:%s)(?![A-Za-z0-9])" % "|".join(map(re.escape, forms)))
            searches.append((forms, pattern, placeholder, placeholder[8:].partition("#")[0]))

        def echo(value, counts: Counter):
            if isinstance(value, str):
                for forms, pattern, placeholder, family in searches:
                    if any(form in value for form in forms):
                        value, n = pattern.subn(lambda _: placeholder, value)
                        counts[family] += n
                return value
            if isinstance(value, (list, tuple)):
                return [echo(v, counts) for v in value]
            if isinstance(value, dict):
                return {echo(k, counts): echo(v, counts) for k, v in value.items()}
            return value
        return echo

    # -- record walk ---------------------------------------------------------------------------

    def _message(self, message: dict, scope: PlaceholderScope, counts: Counter) -> dict:
        """Every field but `role`; ids too (a call and its result get the same placeholder)."""
        out = dict(message)
        for key, value in message.items():
            if key == "tool_calls":
                out[key] = [self._tool_call(call, scope, counts) for call in value or []]
            elif key != "role":
                out[key] = self._walk(value, scope, counts)
        return out

    def _tool_call(self, call: dict, scope: PlaceholderScope, counts: Counter) -> dict:
        out = {key: self._walk(value, scope, counts) for key, value in call.items() if key != "function"}
        if "function" not in call:
            return out
        function = {key: self._walk(value, scope, counts) for key, value in (call["function"] or {}).items()
                    if key != "arguments"}
        arguments = (call["function"] or {}).get("arguments")
        if isinstance(arguments, str):
            try:
                parsed = json.loads(arguments)
            except json.JSONDecodeError:
                function["arguments"] = self._scan(arguments, scope, counts)
            else:
                function["arguments"] = json.dumps(self._walk(parsed, scope, counts), sort_keys=True)
        elif arguments is not None:
            function["arguments"] = self._walk(arguments, scope, counts)
        return {**out, "function": function}

    def _walk(self, value, scope: PlaceholderScope, counts: Counter):
        """Every string inside, keys too; a string value is scanned after its key, so `"password": "…"`
        keeps its context."""
        if isinstance(value, str):
            return self._scan(value, scope, counts)
        if isinstance(value, (list, tuple)):
            return [self._walk(v, scope, counts) for v in value]
        if isinstance(value, dict):
            return {self._walk(k, scope, counts): self._scan(v, scope, counts, key=str(k)) if isinstance(v, str)
                    else self._walk(v, scope, counts) for k, v in value.items()}
        return value

    # -- detection -----------------------------------------------------------------------------

    def _scan(self, text: str, scope: PlaceholderScope, counts: Counter, key: str | None = None) -> str:
        if key is None:
            spans = self._spans(text, 0)
        else:  # scan `"key": "value"`, keep what falls in the value
            prefix = f'"{key}": "'
            shift = len(prefix)
            spans = [_Span(max(s.start - shift, 0), min(s.end - shift, len(text)), s.rank, s.family, s.kind)
                     for s in self._spans(f'{prefix}{text}"', 0) if s.end > shift and s.start < shift + len(text)]
        if not spans:
            return text
        spans.sort(key=lambda s: s.start)
        merged = [spans[0]]
        for span in spans[1:]:  # overlapping hits become one; the best-ranked names it
            last = merged[-1]
            if span.start < last.end:
                last.end = max(last.end, span.end)
                if span.rank < last.rank:
                    last.rank, last.family, last.kind = span.rank, span.family, span.kind
            else:
                merged.append(span)
        parts, pos = [], 0
        for span in merged:
            parts += [text[pos:span.start], scope.placeholder(span.kind, span.family, text[span.start:span.end])]
            counts[span.family] += 1
            pos = span.end
        parts.append(text[pos:])
        return "".join(parts)

    def _spans(self, text: str, depth: int) -> list[_Span]:
        low = text.lower()
        if len(low) != len(text):  # a few characters lowercase to two; offsets must line up
            low = text.translate(_ASCII_LOWER)
        present = {h for h in self._hints if h in low}
        spans = []
        for rank, rule in enumerate(self._rules):
            if rule.hints and present.isdisjoint(rule.hints) or rule.gate and not rule.gate.search(text):
                continue
            for m in rule.pattern.finditer(low if rule.lower else text):
                start, end = m.span("v") if "v" in rule.pattern.groupindex else m.span()
                if "tail" in rule.pattern.groupindex:
                    end = m.end("tail")
                value = _without_outer_closers(text[start:end])
                end = start + len(value)
                if not value or self._allowed(value) or rule.keep and rule.keep(value, text, start):
                    continue
                if rule.context and not rule.context.search(
                        text, max(0, start - CONTEXT_CHARS), min(len(text), end + CONTEXT_CHARS)):
                    continue
                spans.append(_Span(start, end, rank, rule.id, rule.kind))
        if self._base64 or self._entropy:
            spans += self._token_spans(text, depth)
        return spans

    def _token_spans(self, text: str, depth: int) -> list[_Span]:
        """Layer 2. A run holding `/` is a path when words and ids fill 40% of it; then each segment
        is judged alone (so a sha256 in a cache path stays), otherwise the run is one blob."""
        runs = []
        for m in _TOKEN.finditer(text):
            run, start = m.group(), m.start()
            if start and text[start - 1] == "\\" and run[0] in "nrt":  # `\nTOKEN` inside JSON-escaped text
                run, start = run[1:], start + 1
            if not text[max(0, start - 2):start].endswith(("$", "${")):  # not a `$VAR` / `${VAR}` reference
                runs.append((run, start))
        spans = self._wrapped_spans(text, runs, depth) if self._base64 and depth < DECODE_DEPTH else []
        for run, start in runs:
            parts = [(run, start)]
            if "/" in run and "+" not in run and not run.endswith("="):
                segments = run.split("/")
                explained = sum(len(s) for s in segments if _WORD_SEGMENT.fullmatch(s) or _ID_LIKE.fullmatch(s))
                if explained >= 0.4 * len(run):
                    parts, offset = [], start
                    for segment in segments:
                        if len(segment) >= 20:
                            parts.append((segment, offset))
                        offset += len(segment) + 1
            for token, offset in parts:
                found = self._judge(token, depth)
                if found and not self._allowed(token):
                    spans.append(_Span(offset, offset + len(token), *found))
        return spans

    def _wrapped_spans(self, text: str, runs: list[tuple[str, int]], depth: int) -> list[_Span]:
        """Base64 wrapped over lines (`base64`, MIME; `\\n` in JSON text) is decoded joined, and replaced
        whole when it holds a secret: one line alone holds half a secret, or none."""
        spans, block = [], []  # block: (start, end) of lines that follow each other
        for run, start in [*runs, ("", len(text) + 1)]:  # a sentinel ends the last block
            if block and _BASE64_LINE.fullmatch(run) and _LINE_BREAK.fullmatch(text, block[-1][1], start):
                block.append((start, start + len(run)))
                continue
            last = _LAST_LINE.match(text, block[-1][1]) if block else None
            if last and (sum(b - a for a, b in block) + len(last.group("line"))) % 4:
                last = None  # base64 comes in fours: a short word after the blob is not its last line
            for lines in ([*block, last.span("line")], block) if last else (block,):
                decoded = _decode_text("".join(text[a:b] for a, b in lines)) if len(lines) >= 2 else None
                if decoded is not None:
                    inner = self._spans(decoded, depth + 1)
                    if inner and not self._allowed(text[lines[0][0]:lines[-1][1]]):
                        best = min(inner, key=lambda s: s.rank)
                        spans.append(_Span(lines[0][0], lines[-1][1], best.rank, best.family, best.kind))
                    break
            block = [(start, start + len(run))] if _BASE64_LINE.fullmatch(run) else []
        return spans

    def _judge(self, token: str, depth: int) -> tuple[int, str, str] | None:
        """(rank, family, kind) for one token, or None to keep it. A blob takes its best inner hit's
        rank and family, so `password: <base64 of ghp_…>` counts as `github_token`."""
        if sum(map(str.isalnum, token)) < 16 or _ID_LIKE.fullmatch(token):
            return None
        decoded = _decode_text(token) if self._base64 and depth < DECODE_DEPTH else None
        if decoded is not None:
            inner = self._spans(decoded, depth + 1)
            if not inner:
                return None  # encoded text without secrets: data, kept
            best = min(inner, key=lambda s: s.rank)
            return best.rank, best.family, best.kind
        if self._entropy and _random_token(token, self.config.entropy_threshold):
            return len(self._rules) + 1, "high_entropy", "SECRET"
        return None

    def _allowed(self, raw: str) -> bool:
        return any(p.fullmatch(raw) for p in self._allow)


def _without_outer_closers(value: str) -> str:
    """`pw!` of `pw!)` in `(set DB_PASSWORD=pw!)`: a closing bracket with no opener in the value closes the
    text around it, and left in, it would make the value look like code (`get_password()`) and be kept."""
    end = len(value)
    if not end or value[-1] not in _OPENERS:
        return value
    # counted once: recounting per character was quadratic on `)))…`
    surplus = {c: value.count(c) - value.count(opener) for c, opener in _OPENERS.items()}
    while end and value[end - 1] in _OPENERS and surplus[value[end - 1]] > 0:
        surplus[value[end - 1]] -= 1
        end -= 1
    return value[:end]


def _decode_text(token: str) -> str | None:
    """The text a base64 token encodes, or None when it is not base64 of printable UTF-8."""
    altchars = b"-_" if ("-" in token or "_" in token) else None
    body = token.rstrip("=")
    if len(body) % 4 == 1:
        return None
    try:
        raw = base64.b64decode(body + "=" * (-len(body) % 4), altchars=altchars, validate=True)
        decoded = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    if len(decoded) < 8 or not decoded.replace("\n", "").replace("\r", "").replace("\t", "").isprintable():
        return None
    return decoded


def _chars(value, where: str) -> int:
    """Characters in every string of a record; raises `_Unscannable` on bytes or invalid UTF-8."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _Unscannable(f"{where} is not valid UTF-8 (lone surrogate); record dropped unscanned") from None
        return len(value)
    if isinstance(value, dict):  # only plain field names go into `where`: a key could be a secret
        return sum(_chars(k, where) + _chars(v, f"{where}.{k if _FIELD.fullmatch(str(k)) else '?'}")
                   for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return sum(_chars(v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, (bytes, bytearray)):
        raise _Unscannable(f"{where} holds bytes, not text; record dropped unscanned")
    return 0
