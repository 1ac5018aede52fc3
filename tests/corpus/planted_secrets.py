"""Gas Town records with planted fake secrets, for the redaction tests and `benchmarks/redaction.py`.

    records, planted = planted_corpus(seed=0)

Every secret is drawn from `random.Random(seed)` in the shape of its real format (prefix, length,
alphabet) and is fake: none was ever issued by a provider. `planted` lists (family, raw value) once
per distinct value; families are the redactor's rule ids. A base64 blob is planted under the family
of the secret inside it, because the redactor replaces the whole blob as that family. The records
also carry `KEPT` strings and ids (UUIDs, git SHAs, content hashes, bead ids) that must survive.

    cases = round2_cases(seed=0)             # Case(raw, carrier: text or meta, form), issue 15's forms
    records, raws = round2_records(seed=0)   # the same as canonical records, and their raw values
    planted_values(seed=0)                   # every raw value both generators plant

The round-2 cases add what the first corpus lacked: key names that make a git-SHA-like value a
secret, prose, credential query parameters, shell flags, base64 wrapped over lines, short key names
(JSON, YAML, dotenv, tool input), SSNs and card numbers, and a provider-format key in every `meta`
field a source writes (`KEPT_ROUND2` holds their look-alikes that must survive).
"""
from __future__ import annotations

import base64
import json
import random
import string
from typing import NamedTuple

from gt_finetune.corpus.records import make_record

B62 = string.ascii_letters + string.digits
B64URL = B62 + "-_"
HEX = "0123456789abcdef"
USERS = ("jmartinez", "pnair", "okonkwo", "lfernandes", "tkowalski", "hnakamura", "adubois", "mbecker",
         "sraman", "ecastillo", "rvasquez", "kowens")
PEOPLE = ("dana.whitfield", "marco.bellini", "aisha.rahman", "tom.okafor", "yuki.tanaka", "lena.schulz",
          "omar.haddad", "grace.liu")
DOMAINS = ("fastmail.fm", "gmail.com", "harbor-co.io", "proton.me", "outlook.com")
WORDS = ("harbor", "lantern", "anchor", "tide", "berth", "pilot", "ledger", "copper", "falcon", "meadow",
         "quartz", "saffron", "ember", "willow", "granite", "orbit")
AGENTS = ("harbor/polecats/nux", "harbor/polecats/rictus", "harbor/witness", "harbor/refinery", "harbor/crew/max",
          "lantern/polecats/coma")
# Text that looks like a secret or PII and is not: the redactor must leave every one of these.
KEPT = ("mayor/", "harbor/witness", "hq-wisp-9sw29", "hq-cv-3k2m1", "$GITHUB_TOKEN", "${DB_PASSWORD}",
        "API_KEY=your-api-key", "SECRET_KEY=changeme", "TOKEN=<token>", "OPENAI_API_KEY=sk-...",
        "127.0.0.1:3306", "0.0.0.0:8080", "localhost:5432", "operator@example.com", "noreply@anthropic.com",
        "git@github.com:harbor-co/harbor.git", "https://github.com/steveyegge/gastown/pull/2114", "v0.51.2",
        "toolu_01XFDUDYJgAACzvnptvVoYEL", "/tmp/gt-cache/build", "~/gt/harbor/polecats/nux",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "0123456789abcdef0123456789abcdef", "PatrolMoleculesExistCheck",
        "sendSwatchConfirmationEmail", "DreadPirateRobertz/carolina-futons-mobile")


class _Fake:
    """Random fakes in real formats; each call records what it planted."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.planted: list[tuple[str, str]] = []

    def plant(self, family: str, value: str) -> str:
        self.planted.append((family, value))
        return value

    def s(self, alphabet: str, n: int) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def pick(self, items):
        return self.rng.choice(items)

    # ids and decoys
    def bead(self, prefix: str = "hb") -> str:
        return f"{prefix}-{self.s(string.ascii_lowercase + string.digits, self.rng.choice((3, 4, 5)))}"

    def uuid(self) -> str:
        h = self.s(HEX, 32)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    def sha(self, n: int = 40) -> str:
        return self.s(HEX, n)

    def call_id(self) -> str:
        return "toolu_01" + self.s(B62, 22)

    def password(self) -> str:
        return f"{self.pick(WORDS).title()}-{self.pick(WORDS)}-{self.rng.randint(10, 9999)}{self.pick('!%^*.~')}"

    def passphrase(self) -> str:
        """Words and digits, safe in a URL: too regular for the entropy layer, only its context gives it away."""
        return f"{self.pick(WORDS)}{self.rng.randint(100, 9999)}{self.pick(WORDS)}"

    # secrets, one method per family
    def aws_access_key_id(self, prefix: str = "AKIA") -> str:
        return self.plant("aws_access_key_id", prefix + self.s(string.ascii_uppercase + "234567", 16))

    def aws_secret_access_key(self) -> str:
        return self.plant("aws_secret_access_key", self.s(B62 + "+/", 40))

    def github_token(self) -> str:
        if self.rng.random() < 0.25:
            return self.plant("github_token", f"github_pat_{self.s(B62, 22)}_{self.s(B62, 59)}")
        return self.plant("github_token", f"gh{self.pick('pousr')}_{self.s(B62, 36)}")

    def gitlab_token(self) -> str:
        return self.plant("gitlab_token", "glpat-" + self.s(B64URL, 20))

    def huggingface_token(self) -> str:
        return self.plant("huggingface_token", "hf_" + self.s(string.ascii_letters, 34))

    def openai_key(self) -> str:
        if self.rng.random() < 0.3:
            return self.plant("openai_key", f"sk-{self.s(B62, 20)}T3BlbkFJ{self.s(B62, 20)}")
        return self.plant("openai_key", "sk-proj-" + self.s(B64URL, self.rng.randint(100, 156)))

    def anthropic_key(self) -> str:
        return self.plant("anthropic_key", f"sk-ant-api03-{self.s(B64URL, 93)}AA")

    def slack_token(self) -> str:
        kind = self.pick("bpa")
        return self.plant("slack_token", f"xox{kind}-{self.s(string.digits, 12)}-{self.s(string.digits, 13)}-"
                                         f"{self.s(B62, 24)}")

    def slack_webhook(self) -> str:
        ids = string.ascii_uppercase + string.digits
        path = f"T{self.s(ids, 9)}/B{self.s(ids, 10)}/{self.s(B62, 24)}"
        return "https://hooks.slack.com/services/" + self.plant("slack_webhook", path)

    def stripe_key(self) -> str:
        prefix = self.pick(("sk_live_", "rk_live_", "sk_test_"))
        return self.plant("stripe_key", prefix + self.s(B62, self.rng.randint(24, 99)))

    def npm_token(self) -> str:
        return self.plant("npm_token", "npm_" + self.s(B62, 36))

    def pypi_token(self) -> str:
        return self.plant("pypi_token", "pypi-AgEIcHlwaS5vcmc" + self.s(B64URL, self.rng.randint(70, 120)))

    def private_key(self, escaped: bool = False) -> str:
        label = self.pick(("RSA PRIVATE KEY", "OPENSSH PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY"))
        lines = [self.s(B62 + "+/", 64) for _ in range(self.rng.randint(6, 20))]
        lines.append(self.s(B62 + "+/", self.rng.randint(8, 60)) + "==")
        block = f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----"
        self.plant("private_key", json.dumps(block)[1:-1] if escaped else block)
        return block

    def jwt(self) -> str:
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")))
        claims = {"sub": self.s(string.digits, 8), "iat": self.rng.randint(1_760_000_000, 1_790_000_000),
                  "scope": self.pick(("berths:write", "tides:read", "billing:admin"))}
        return self.plant("jwt", f"{header}.{_b64url(json.dumps(claims, separators=(',', ':')))}.{self.s(B64URL, 43)}")

    def google_api_key(self) -> str:
        return self.plant("google_api_key", "AIza" + self.s(B64URL, 35))

    def sendgrid_key(self) -> str:
        return self.plant("sendgrid_key", f"SG.{self.s(B64URL, 22)}.{self.s(B64URL, 43)}")

    def twilio_key(self, prefix: str) -> str:
        return self.plant("twilio_key", prefix + self.s(HEX, 32))

    def discord_bot_token(self) -> str:
        return self.plant("discord_bot_token",
                          f"{self.pick('MNO')}{self.s(B62, 23)}.{self.s(B64URL, 6)}.{self.s(B64URL, 38)}")

    def telegram_bot_token(self) -> str:
        return self.plant("telegram_bot_token", f"{self.rng.randint(10**8, 10**10 - 1)}:AA{self.s(B64URL, 33)}")

    def high_entropy(self, alphabet: str = B62, n: int = 40) -> str:
        return self.plant("high_entropy", self.s(alphabet, n))

    def email(self) -> str:
        return self.plant("email", f"{self.pick(PEOPLE)}{self.rng.randint(1, 99)}@{self.pick(DOMAINS)}")

    def home_user(self) -> str:
        return self.plant("home_user", self.pick(USERS))

    def ip(self) -> str:
        r = self.rng.randint
        if self.rng.random() < 0.15:
            return self.plant("ip", f"2a01:4f8:{r(1, 0xfff):x}:{r(1, 0xffff):x}::{r(2, 0xff):x}")
        first = self.pick((23, 34, 45, 52, 63, 78, 89, 95, 104, 142, 151, 176, 185, 10, 192))
        second = 168 if first == 192 else r(0, 255)
        return self.plant("ip", f"{first}.{second}.{r(0, 255)}.{r(2, 254)}")

    def blob(self, family: str, text: str) -> str:
        """A base64 blob of `text`, planted under the family of the secret in it."""
        return self.plant(family, base64.b64encode(text.encode()).decode())

    def ssn(self) -> str:
        """A US social security number that passes the format rules (no 000/666/9xx area, 00 group, 0000 serial)."""
        area = self.pick([a for a in range(1, 900) if a != 666])
        return self.plant("ssn", f"{area:03d}-{self.rng.randint(1, 99):02d}-{self.rng.randint(1, 9999):04d}")

    def card_number(self, sep: str = "") -> str:
        """A Luhn-valid card number of a real network (Visa, Mastercard, Amex), grouped as printed on the card."""
        prefix, length, groups = self.pick((("4", 16, (4, 4, 4, 4)), ("5" + self.pick("12345"), 16, (4, 4, 4, 4)),
                                            ("3" + self.pick("47"), 15, (4, 6, 5))))
        body = prefix + self.s(string.digits, length - len(prefix) - 1)
        digits = body + str(luhn_check_digit(body))
        parts, at = [], 0
        for n in groups:
            parts.append(digits[at:at + n])
            at += n
        return self.plant("card_number", sep.join(parts) if sep else digits)


def _b64url(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def luhn_check_digit(body: str) -> int:
    """The digit that makes `body` + it pass the Luhn check."""
    total = sum(d if i % 2 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(map(int, reversed(body))))
    return -total % 10


TOOLS = [
    {"type": "function", "function": {"name": "Bash", "description": "Run a shell command in the agent's worktree.",
                                      "parameters": {"type": "object", "properties": {"command": {"type": "string"}},
                                                     "required": ["command"]}}},
    {"type": "function", "function": {"name": "Read", "description": "Read a file by absolute path.",
                                      "parameters": {"type": "object", "properties": {"file_path": {"type": "string"}},
                                                     "required": ["file_path"]}}},
]


class _Session:
    """Builds one record turn by turn: `call` adds an assistant tool call and its tool result."""

    def __init__(self, fake: _Fake, system: str):
        self.fake = fake
        self.messages: list[dict] = [{"role": "system", "content": system}]

    def say(self, role: str, content: str) -> _Session:
        self.messages.append({"role": role, "content": content})
        return self

    def call(self, name: str, arguments: dict, result: str, text: str = "") -> _Session:
        call_id = self.fake.call_id()
        function = {"name": name, "arguments": json.dumps(arguments, sort_keys=True)}
        self.messages.append({"role": "assistant", "content": text,
                              "tool_calls": [{"id": call_id, "type": "function", "function": function}]})
        self.messages.append({"role": "tool", "tool_call_id": call_id, "name": name, "content": result})
        return self

    def record(self, *, actor: str, user: str | None = None, tools: list | None = None) -> dict:
        f = self.fake
        agent = actor if "/" in actor else "harbor/polecats/nux"
        meta = {"source": "transcripts", "session": f.uuid(), "rig": agent.split("/")[0], "actor": actor,
                "created_at": f"2026-11-{f.rng.randint(1, 28):02d}T{f.rng.randint(0, 23):02d}:00:00Z"}
        if user:
            work = agent.replace("/", "-")
            meta["cwd"] = f"/home/{user}/gt/{agent}"
            meta["location"] = f"/home/{user}/.claude/projects/-home-{user}-gt-{work}/{f.uuid()}.jsonl"
        return make_record(self.messages, meta, tools if tools is not None else TOOLS)


def _system(f: _Fake) -> str:
    return f"You are a Gas Town polecat agent in rig `harbor`. Your hook holds {f.bead()}."


# -- scenarios: each builds one record ---------------------------------------------------------

def _env_file(f: _Fake) -> dict:
    user, bead, key, db_ip = f.home_user(), f.bead(), f.openai_key(), f.ip()
    db_pw = f.plant("database_url_password", f.password())
    redis_pw = f.plant("database_url_password", f.s(B62, 20))
    session_secret = f.plant("dotenv_assignment", f.s(B62, 32))
    smtp = f.plant("dotenv_assignment", " ".join(f.pick(WORDS) for _ in range(4)))
    env = (f"# harbor service settings\nDATABASE_URL=postgres://harbor:{db_pw}@db.harbor.internal:5432/harbor\n"
           f"REDIS_URL=redis://:{redis_pw}@{db_ip}:6379/0\nOPENAI_API_KEY={key}\n"
           f"ANTHROPIC_API_KEY={f.anthropic_key()}\nSTRIPE_SECRET_KEY={f.stripe_key()}\n"
           f"SESSION_SECRET={session_secret}\nSMTP_PASSWORD=\"{smtp}\"\nLOG_LEVEL=info\n"
           f"API_KEY=your-api-key\nGITHUB_TOKEN=$GITHUB_TOKEN\nDB_PASSWORD=${{DB_PASSWORD}}\n")
    s = _Session(f, _system(f)).say("user", f"Bead {bead}: the harbor API 500s on staging since the last deploy. "
                                            "Check the environment the service starts with.")
    s.call("Read", {"file_path": f"/home/{user}/gt/harbor/polecats/nux/.env"}, env,
           "Reading the worktree's .env first.")
    s.call("Bash", {"command": f"bd create --title 'Rotate OpenAI key committed in nux .env' --description "
                               f"'The key {key} sits in .env in plain text; rotate it and move it to the vault.' -p 1"},
           f"✓ Created issue: {f.bead()}\n  Priority: P1\n  Status: open")
    s.say("assistant", f"Filed the rotation bead. The key `{key}` must be revoked before the next `gt sling`.")
    return s.record(actor="harbor/polecats/nux", user=user)


def _aws(f: _Fake) -> dict:
    ids = [f.aws_access_key_id() for _ in range(2)]
    secrets = [f.aws_secret_access_key() for _ in range(2)]
    creds = "".join(f"[{name}]\naws_access_key_id = {i}\naws_secret_access_key = {s}\nregion = us-east-1\n\n"
                    for name, i, s in zip(("default", "harbor-deploy"), ids, secrets))
    sts = json.dumps({"Credentials": {"AccessKeyId": f.aws_access_key_id("ASIA"),
                                      "SecretAccessKey": f.aws_secret_access_key(),
                                      "SessionToken": f.plant("config_secret", f.s(B62 + "+/", 180) + "=="),
                                      "Expiration": "2026-11-03T11:00:00Z"},
                      "AssumedRoleUser": {"Arn": "arn:aws:sts::123456789012:assumed-role/deploy/dog"}}, indent=2)
    s = _Session(f, _system(f)).say("user", "The deploy dog failed: `aws s3 cp` says ExpiredToken. Look at it.")
    s.call("Bash", {"command": "cat ~/.aws/credentials"}, creds, "Checking which profile the dog uses.")
    s.call("Bash", {"command": "aws sts assume-role --role-arn arn:aws:iam::123456789012:role/deploy "
                               "--role-session-name dog --output json"}, sts)
    s.say("assistant", f"The default profile still carries {ids[0]}; the assumed role works. "
                       f"Closing with `bd close {f.bead()} --reason 'profile fixed'`.")
    return s.record(actor="harbor/polecats/rictus", user=f.home_user())


def _git_remote(f: _Fake) -> dict:
    token, pw = f.github_token(), f.plant("basic_auth_url", f.password())
    remotes = (f"origin\thttps://x-access-token:{token}@github.com/harbor-co/harbor.git (fetch)\n"
               f"origin\thttps://x-access-token:{token}@github.com/harbor-co/harbor.git (push)\n"
               f"mirror\thttps://deploy-bot:{pw}@gitea.harbor.lan/harbor/tides.git (push)\n")
    log = "\n".join(f"{f.sha(7)} {msg}" for msg in ("Fix berth allocator tie-break", "Add tide fixtures",
                                                      "Bump deps"))
    s = _Session(f, _system(f)).say("user", "Refinery says the push to main was rejected. Why?")
    s.call("Bash", {"command": "git remote -v"}, remotes)
    s.call("Bash", {"command": "git log --oneline -3"}, log)
    bead = f.bead()
    s.call("Bash", {"command": f"bd close {bead} --reason 'Removed the token from the origin URL "
                               f"(was https://x-access-token:{token}@github.com/...); now "
                               f"git@github.com:harbor-co/harbor.git. Merged as {f.sha(40)}.'"},
           f"✓ Closed {bead}: Removed the token from the origin URL")
    return s.record(actor="harbor/refinery")


def _curl(f: _Fake) -> dict:
    bearer = f.plant("authorization_header", f.s(B62, 40))
    basic = f.plant("authorization_header", base64.b64encode(f"ops:{f.password()}".encode()).decode())
    api_key = f.plant("authorization_header", f.s(HEX, 32))
    body = json.dumps({"berth": 42, "owner_email": f.email(), "last_login_ip": f.ip(), "vessel": "Marguerite",
                       "content_hash": f.sha(64), "updated_by": "harbor/crew/max"}, indent=2)
    s = _Session(f, _system(f)).say("user", f"Berth 42 shows the wrong owner. Bead {f.bead()}.")
    s.call("Bash", {"command": f'curl -sS -H "Authorization: Bearer {bearer}" https://api.harbor.io/v1/berths/42'},
           body)
    s.call("Bash", {"command": f"curl -sS -H 'Authorization: Basic {basic}' -H 'X-Api-Key: {api_key}' "
                               "http://127.0.0.1:3306/health"}, '{"status": "ok", "listen": "0.0.0.0:8080"}')
    s.say("assistant", "The owner record is stale; the health endpoint on 127.0.0.1:3306 is fine.")
    return s.record(actor="harbor/polecats/nux", user=f.home_user())


def _k8s(f: _Fake) -> dict:
    token = "gh" + f.pick("pousr") + "_" + f.s(B62, 36)
    docker = f.blob("github_token", json.dumps({"auths": {"ghcr.io": {"username": "deploy-bot", "password": token}}}))
    hook = f"T{f.s(string.ascii_uppercase, 9)}/B{f.s(string.ascii_uppercase, 10)}/{f.s(B62, 24)}"
    notify = f.blob("slack_webhook", f"SLACK_WEBHOOK_URL=https://hooks.slack.com/services/{hook}\nCHANNEL=#ops\n")
    stripe = f.blob("stripe_key", f"STRIPE_API_KEY=sk_live_{f.s(B62, 40)}\n")
    db = f.blob("config_secret", f.password())
    yaml = (f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: harbor-registry\n  uid: {f.uuid()}\n"
            f"type: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {docker}\n  notify.env: {notify}\n"
            f"  billing.env: {stripe}\n  db-password: {db}\n")
    s = _Session(f, _system(f)).say("user", "Check the registry secret before the refinery rolls the deploy.")
    s.call("Read", {"file_path": "/srv/harbor/deploy/k8s/secret.yaml"}, yaml)
    s.call("Bash", {"command": f"echo {stripe} | base64 -d"}, "STRIPE_API_KEY=<redacted in review>")
    s.say("assistant", f"The manifest embeds live credentials; filing {f.bead()} to move them to sealed secrets.")
    return s.record(actor="harbor/polecats/nux")


def _keys(f: _Fake) -> dict:
    ssh = f.private_key()
    sa_key = f.private_key(escaped=True)  # inside JSON text the block's newlines read `\n`
    service = json.dumps({"type": "service_account", "project_id": "harbor-prod-311", "private_key_id": f.sha(40),
                          "private_key": sa_key + "\n", "client_email": f.email()}, indent=2)
    s = _Session(f, _system(f)).say("user", "The deploy key stopped working after the witness restarted.")
    s.call("Bash", {"command": "cat ~/.ssh/id_ed25519"}, ssh + "\n")
    s.call("Read", {"file_path": "/srv/harbor/deploy/gcp-sa.json"}, service)
    s.say("assistant", "Both keys are readable by every polecat; they should live outside the worktree.")
    return s.record(actor="harbor/polecats/rictus", user=f.home_user())


def _close_reasons(f: _Fake) -> dict:
    npm, pypi, hf = f.npm_token(), f.pypi_token(), f.huggingface_token()
    glpat = f.gitlab_token()
    bead, other = f.bead(), f.bead("lt")
    s = _Session(f, _system(f)).say("user", f"Close out {bead} and {other}; the tokens are rotated.")
    s.call("Bash", {"command": f"bd close {bead} --reason 'Rotated the npm token {npm} and the PyPI token {pypi}; "
                               "both revoked in the registry UIs.'"}, f"✓ Closed {bead}")
    s.call("Bash", {"command": f"bd update {other} --notes 'HF token {hf} was printed in the notebook output; "
                               f"GitLab mirror used {glpat}.'"}, f"✓ Updated {other}")
    s.call("Bash", {"command": f"bd show {other} --json"}, json.dumps([{
        "id": other, "title": "Scrub tokens from notebook output", "status": "closed", "priority": 1,
        "notes": f"HF token {hf} was printed in the notebook output; GitLab mirror used {glpat}.",
        "owner": f.email(), "created_by": "mayor/", "content_hash": f.sha(64), "closed_by_session": f.uuid()}],
        indent=2))
    s.say("assistant", f"Both beads are closed; {other} notes still quote the HF token, so I asked the witness to "
                       "compact them.")
    return s.record(actor="harbor/crew/max")


def _mail(f: _Fake) -> dict:
    bot, user_token, reporter = f.slack_token(), f.slack_token(), f.email()
    message = (f"The witness log printed {bot} and {user_token} at 03:12. Revoke both, then check "
               f"{f.bead('hq-wisp')} for the patrol that logged them. Reported by {reporter}.")
    s = _Session(f, "You are the Gas Town witness for rig `harbor`.").say("user", "Patrol: scan the last hour of logs.")
    s.call("Bash", {"command": f"gt mail send mayor/ -s 'Escalation: leaked Slack tokens' -m '{message}'"},
           f"✓ Sent to mayor/ ({f.bead('hq')})")
    s.say("assistant", json.dumps({"action": "escalate", "reason": f"Slack tokens in logs; mailed mayor/ about {bot}"}))
    return s.record(actor="harbor/witness")


def _trace(f: _Fake) -> dict:
    user, ip, pw = f.home_user(), f.ip(), f.plant("database_url_password", f.password())
    trace = (f'Traceback (most recent call last):\n  File "/Users/{user}/src/harbor/harbor/db/session.py", line 88, '
             f"in get_session\n    engine = create_engine(settings.database_url)\n"
             f'  File "/Users/{user}/src/harbor/.venv/lib/python3.11/site-packages/sqlalchemy/engine/create.py", '
             f"line 640, in connect\n    return dialect.connect(*cargs, **cparams)\n"
             f"sqlalchemy.exc.OperationalError: (psycopg2.OperationalError) connection to server at \"{ip}\", "
             f"port 5432 failed: FATAL:  password authentication failed for user \"harbor\"\n"
             f"(Background on this error at: https://sqlalche.me/e/20/e3q8)\n"
             f"  settings.database_url = 'postgresql://harbor:{pw}@{ip}:5432/harbor'\n")
    s = _Session(f, _system(f)).say("user", f"`pytest -q tests/db` fails on the refinery gate ({f.bead()}).")
    s.call("Bash", {"command": "pytest -q tests/db/test_session.py -x"}, trace)
    s.say("assistant", f"The gate connects to {ip} with a stale password; the DSN should come from ${{DB_PASSWORD}}.")
    return s.record(actor="harbor/refinery", user=f.home_user())


def _plugin_config(f: _Fake) -> dict:
    auth_token = f.plant("config_secret", f.s(HEX, 32))
    toml = (f"# plugins/notify/config.toml\n[slack]\nwebhook = \"{f.slack_webhook()}\"\n\n"
            f"[discord]\nbot_token = \"{f.discord_bot_token()}\"\n\n"
            f"[telegram]\nbot_token = \"{f.telegram_bot_token()}\"\n"
            f"chat_id = \"-100{f.s(string.digits, 10)}\"\n\n[twilio]\naccount_sid = \"{f.twilio_key('AC')}\"\n"
            f"api_key = \"{f.twilio_key('SK')}\"\nauth_token = \"{auth_token}\"\n\n[sendgrid]\n"
            f"api_key = \"{f.sendgrid_key()}\"\n\n[google]\nmaps_key = \"{f.google_api_key()}\"\n")
    s = _Session(f, _system(f)).say("user", "The notify plugin stopped posting patrol summaries.")
    s.call("Read", {"file_path": "/srv/harbor/plugins/notify/config.toml"}, toml)
    s.say("assistant", "The config looks complete; the Slack webhook returns 404, so it was revoked.")
    return s.record(actor="harbor/polecats/nux")


def _session_tokens(f: _Fake) -> dict:
    jwt, refresh, csrf = f.jwt(), f.plant("config_secret", f.s(B62, 40)), f.plant("config_secret", f.s(B62, 32))
    login = json.dumps({"access_token": f.jwt(), "refresh_token": refresh, "token_type": "Bearer", "expires_in": 3600})
    s = _Session(f, _system(f)).say("user", f"Users get logged out every minute. Request from the browser:\n"
                                            f"GET /v1/me\nCookie: session={jwt}; csrftoken={csrf}\n")
    s.call("Bash", {"command": "http POST :8080/v1/login username=ops password=$OPS_PASSWORD"}, login)
    s.say("assistant", f"The session cookie {jwt} expires after 60s; `expires_in` on login is 3600.")
    return s.record(actor="harbor/polecats/nux")


def _ci(f: _Fake) -> dict:
    hf, pypi = f.huggingface_token(), f.pypi_token()
    yaml = (f"variables:\n  GITLAB_TOKEN: {f.gitlab_token()}\n  HF_HOME: /cache/hf\n"
            f"publish:\n  script:\n    - huggingface-cli login --token {hf}\n"
            f"    - twine upload -u __token__ -p {pypi} dist/*\n    - curl -X POST {f.slack_webhook()}\n")
    s = _Session(f, _system(f)).say("user", "Why does the publish job leak secrets into the job log?")
    s.call("Read", {"file_path": "/srv/harbor/.gitlab-ci.yml"}, yaml)
    s.say("assistant", "The tokens are inline in `.gitlab-ci.yml`; they belong in masked CI variables.")
    return s.record(actor="harbor/polecats/rictus", user=f.home_user())


def _entropy(f: _Fake) -> dict:
    whsec = "whsec_" + f.high_entropy(B62, 32)
    cookie, recovery = f.high_entropy(B62, 40), f.high_entropy(HEX, 32)
    signed = f.plant("high_entropy", f.s(B62 + "+/", 43) + "=")
    text = (f"Webhook signing material for the billing endpoint is {whsec}; the admin session id was "
            f"sid:{cookie} and the recovery code {recovery}. Vault export line: {signed}\n"
            f"Build {f.uuid()} at commit {f.sha(40)} (content {f.sha(64)}), toolu_01XFDUDYJgAACzvnptvVoYEL.")
    s = _Session(f, _system(f)).say("user", text)
    s.say("assistant", f"Those values are credentials; filing {f.bead()} to rotate them. Cache lives in "
                       f"/tmp/gt-cache/build/{f.sha(64)}/index.json.")
    return s.record(actor="harbor/polecats/nux")


def _decoys(f: _Fake) -> dict:
    bead = f.bead()
    show = json.dumps({"id": bead, "title": "Refinery merge gate flaky on tides", "status": "in_progress",
                       "assignee": "harbor/polecats/nux", "created_by": "mayor/", "owner": "operator@example.com",
                       "content_hash": f.sha(64), "wisp": "hq-wisp-9sw29", "convoy": "hq-cv-3k2m1",
                       "closed_by_session": f.uuid(),
                       "external_ref": "https://github.com/steveyegge/gastown/pull/2114"},
                      indent=2)
    s = _Session(f, _system(f)).say("user", f"Pick up {bead}. Use the token from $GITHUB_TOKEN, never inline it. "
                                            "Template lines like API_KEY=your-api-key, SECRET_KEY=changeme, "
                                            "TOKEN=<token> and OPENAI_API_KEY=sk-... are fine to keep.")
    s.call("Bash", {"command": f"bd show {bead} --json"}, show)
    s.call("Bash", {"command": "gt nudge harbor/witness 'gate flaky' && git log -1 --format=%H"},
           f"{f.sha(40)}\nCo-Authored-By: Claude <noreply@anthropic.com>\n")
    s.say("assistant", "Running gt v0.51.2 against localhost:5432 and 0.0.0.0:8080; cache in /tmp/gt-cache/build; "
                       "worktree ~/gt/harbor/polecats/nux; remote git@github.com:harbor-co/harbor.git. Test "
                       "fixtures: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa and 0123456789abcdef0123456789abcdef. "
                       "Code: PatrolMoleculesExistCheck, sendSwatchConfirmationEmail, "
                       "DreadPirateRobertz/carolina-futons-mobile, toolu_01XFDUDYJgAACzvnptvVoYEL.")
    return s.record(actor="mayor/")


def _overseer(f: _Fake) -> dict:
    """PII in meta: the overseer's email as actor, home paths in cwd/location; a key in the tools list."""
    overseer, key = f.email(), f.google_api_key()
    tools = [*TOOLS, {"type": "function", "function": {
        "name": "geocode", "description": f"Geocode a berth address with the Maps key {key}.",
        "parameters": {"type": "object", "properties": {"address": {"type": "string"}}}}}]
    s = _Session(f, "You are the Gas Town mayor.").say("user", f"Sling {f.bead()} to harbor and ping me at {overseer}.")
    s.call("Bash", {"command": f"gt sling {f.bead()} harbor"}, f"✓ Slung to harbor/polecats/nux ({f.ip()})")
    return s.record(actor=overseer, user=f.home_user(), tools=tools)


SCENARIOS = (_env_file, _aws, _git_remote, _curl, _k8s, _keys, _close_reasons, _mail, _trace, _plugin_config,
             _session_tokens, _ci, _entropy, _decoys, _overseer)


def planted_corpus(seed: int = 0) -> tuple[list[dict], list[tuple[str, str]]]:
    """Canonical records with fake secrets planted, and (family, raw value) for each distinct one.

    Deterministic for a seed: six rounds over every scenario, each drawing fresh values.
    """
    fake = _Fake(seed)
    records = [scenario(fake) for _ in range(6) for scenario in SCENARIOS]
    return records, list(dict.fromkeys(fake.planted))


def strings(value):
    """Every string in a record: keys, values, and tool arguments as the JSON text they are stored as."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


# -- round 2 (issue 15): key contexts, shell flags, PII kinds and metadata the first corpus left out --------

class Case(NamedTuple):
    """One planted value: `raw` must appear nowhere after redaction; `carrier` is the text or the record
    `meta` holding it; `form` names the shape, for test ids (`tool_input_…` texts are tool-call arguments)."""

    raw: str
    carrier: str | dict
    form: str


# Every `meta` field a source writes, and a future one nested in a dict and a list.
META_FIELDS = ("generated_by", "rig", "bead_id", "session", "created_at", "updated_at", "closed_at", "summary",
               "formula", "actor", "assignee", "recipient", "cwd", "location", "model", "role", "kind", "event",
               "lines", "source")
# Look like round-2 secrets or PII and are not: order numbers that fail the Luhn check, flags without a
# value, git SHAs in commit messages, `bd`/`gt` commands, test output.
KEPT_ROUND2 = (
    "order 4111111111111112 shipped", "invoice 5500-0000-0000-0005 paid", "mysql -u root -p harbor",
    "curl -u $DEPLOY_USER:$DEPLOY_PASSWORD https://api.harbor.io", "https://api.harbor.io/v1/berths?page=2&sort=name",
    "Merged as 3adf61e1234567890abcdef1234567890abcdef1 on main", "bd close hb-03n --reason 'fixed in 3adf61e'",
    "gt sling hb-7gv harbor && gt nudge harbor/witness 'check hb-7gv'", "--- PASS: TestParse/case_1 (0.00s)",
    "the password is correct", "the token is valid for 3600 seconds", "api_key: str = None", "token: 4096",
    "PWD=/srv/harbor", '{"key": "hb-03n", "pwd": "/srv/harbor/polecats/nux"}', "SSN field 000-12-3456 is invalid",
    "call 415-555-0100", "built 2026-11-03 at 12:32:20", "?auth=$HARBOR_TOKEN", "pass: 12/12 tests",
    "sha: 3adf61e1234567890abcdef1234567890abcdef1, ok",
)
_META_KEYS = ("github_token", "anthropic_key", "openai_key", "slack_token", "huggingface_token", "aws_access_key_id",
              "stripe_key", "npm_token", "gitlab_token", "google_api_key")


def _wrapped(text: str, width: int) -> list[str]:
    blob = base64.b64encode(text.encode()).decode()
    return [blob[i:i + width] for i in range(0, len(blob), width)]


def round2_cases(seed: int = 0) -> list[Case]:
    """Every form issue 15 found missed: key names beating the SHA exemption, prose, query strings, shell
    flags, base64 split across lines, short key names in JSON/YAML/dotenv and tool input, SSNs and card
    numbers, and a provider-format key in every `meta` field (nested ones too). Deterministic per seed."""
    f = _Fake(seed)
    pw, phrase = f.password, f.passphrase
    cases: list[Case] = []

    def text(form: str, template: str, raw: str) -> None:
        cases.append(Case(raw, template.format(raw), form))

    # key-name context beats the git-SHA and identifier exemptions
    text("api_key_hex_before_comment", "api_key: {} # rotated in hb-03n", f.sha(40))
    text("api_key_hex_mid_line", "loaded config api_key: {}, region: us-east-1", f.sha(40))
    text("secret_hex_mid_line", "client_secret: {} (from the vault)", f.sha(64))
    text("token_bead_like", "deploy token: {} expires tonight", f"hb-{f.s(HEX, 12)}")
    # prose
    text("prose_password_is", "The DB password is {}", pw())
    text("prose_password_is_sentence", "The DB password is {}. Use it only from the vault host.", pw())
    text("prose_token_was", "the deploy token was {} until the rotation", phrase())
    text("prose_passphrase_quoted", "The SSH key passphrase is '{}'", pw())
    # query strings
    text("query_auth", "GET https://api.harbor.io/v1/berths?auth={} HTTP/1.1", phrase())
    text("query_token_after_amp", "POST https://hooks.harbor.io/notify?channel=ops&token={}", phrase())
    text("query_api_key", "curl 'https://maps.harbor.io/geo?q=berth+42&api_key={}'", phrase())
    text("query_sig", "https://harborblob.blob.core.windows.net/logs/a.txt?sv=2022-11-02&sig={}%3D", phrase())
    text("query_key_random", "wss://live.harbor.io/feed?key={}&v=2", f.s(B62, 40))
    # shell flags
    text("mysql_p_attached", "mysql -uroot -p{} harbor -e 'select 1'", pw())
    text("mysql_p_quoted", "mysql -h db.harbor.internal -u harbor -p'{}' harbor", pw())
    text("mysql_password_eq", "mysql -u root --password={} harbor", pw())
    text("mysqldump_p", "mysqldump -uharbor -p{} --single-transaction harbor > dump.sql", pw())
    text("curl_u", "curl -sS -u admin:{} https://api.harbor.io/v1/health", pw())
    text("curl_u_quoted", "curl -u 'deploy-bot:{}' -X POST https://ci.harbor.io/job/build", pw())
    text("curl_user_eq", "curl --user=ops:{} https://api.harbor.io", pw())
    text("wget_password", "wget --user ops --password {} https://files.harbor.io/dump.sql", pw())
    text("sshpass_p", "sshpass -p {} ssh ops@bastion.harbor.io", pw())
    text("redis_cli_a", "redis-cli -h cache.harbor.internal -a {} ping", pw())
    text("pass_flag_eq", "harbor-admin login --pass={} --user ops", pw())
    # a base64 blob wrapped over lines: each line must go, not only the one holding the secret's prefix
    for width in (76, 24):
        lines = _wrapped(f"STRIPE_API_KEY=sk_live_{f.s(B62, 40)}\nCHANNEL=#ops-{width}\n", width)
        carrier = f"kubectl get secret billing-{width} -o yaml\ndata:\n  billing.env: |\n" + "\n".join(lines) + "\n"
        for i, line in enumerate(lines):
            if len(line) >= 12:
                cases.append(Case(line, carrier, f"base64_wrapped_{width}_line_{i}"))
    escaped = "\\n".join(_wrapped(f"GITHUB_TOKEN=ghp_{f.s(B62, 36)}\n", 20))
    for i, line in enumerate(escaped.split("\\n")):
        cases.append(Case(line, f'{{"output": "{escaped}\\n"}}', f"base64_wrapped_escaped_line_{i}"))
    # short key names: JSON, tool input, YAML, dotenv
    for key in ("pw", "pwd", "pass", "passwd", "passphrase", "secret", "token", "auth"):
        text(f"json_{key}", f'{{{{"user": "ops", "{key}": "{{}}"}}}}', phrase())
        text(f"tool_input_{key}", f'{{{{"host": "db.harbor.internal", "{key}": "{{}}"}}}}', pw())
    for key in ("pw", "pass", "passwd", "passphrase"):
        text(f"yaml_{key}", f"database:\n  user: harbor\n  {key}: {{}}\n  host: db\n", pw())
    for name in ("DB_PASS", "PW", "SMTP_PW", "REDIS_PASS", "ADMIN_PASS"):
        text(f"dotenv_{name.lower()}", f"LOG_LEVEL=info\n{name}={{}}\nPORT=8080\n", pw())
    # PII
    for template in ("SSN {} on file", "ssn: {}", "Social security number {} (verified)"):
        text("ssn", template, f.ssn())
    for sep, template in (("", "card {} exp 04/29"), (" ", "Card number: {}, CVV on file"),
                          ("-", "charged {} twice"), ("", '{{"card": "{}"}}')):
        text(f"card_{sep or 'plain'}", template, f.card_number(sep))
    # a provider-format key (or PII) in every meta field, nested future fields too
    keys = [getattr(f, family)() for family in _META_KEYS]
    for i, field in enumerate(META_FIELDS):
        key = keys[i % len(keys)]
        value = {"generated_by": f"agent:harbor/{key}", "cwd": f"/srv/harbor/{key}", "summary": f"Rotated {key}",
                 "location": f"/srv/harbor/transcripts/{key}.jsonl", "formula": f"mol-{key}"}.get(field, key)
        cases.append(Case(key, {"source": "planted", "rig": "harbor", field: value}, f"meta_{field}"))
    cases.append(Case(keys[0], {"source": "planted", "extra": {"reviewer": {"note": f"uses {keys[0]}"}}},
                      "meta_nested_dict"))
    cases.append(Case(keys[1], {"source": "planted", "tags": ["ok", keys[1]]}, "meta_nested_list"))
    ssn, email = f.ssn(), f.email()
    cases.append(Case(ssn, {"source": "planted", "summary": f"customer SSN {ssn}"}, "meta_summary_ssn"))
    cases.append(Case(email, {"source": "planted", "generated_by": email}, "meta_generated_by_email"))
    return cases


def round2_records(seed: int = 0) -> tuple[list[dict], list[str]]:
    """Canonical records carrying every `round2_cases` value, and the raw values. A text goes in a user
    message, an assistant tool call and its tool result (a `tool_input_…` one as the call's arguments),
    once per distinct text; a meta case is a record's meta. No two records are duplicates."""
    records, raws, texts = [], [], set()
    for n, case in enumerate(round2_cases(seed)):
        raws.append(case.raw)
        if isinstance(case.carrier, dict):
            messages = [{"role": "user", "content": f"Patrol the harbor rig ({case.form})."},
                        {"role": "assistant", "content": "Nothing to report."}]
            records.append(make_record(messages, case.carrier, TOOLS))
            continue
        if case.carrier in texts:
            continue
        texts.add(case.carrier)
        call_id = f"toolu_01round2{n:04d}"
        arguments = case.carrier if case.form.startswith("tool_input_") else json.dumps({"command": case.carrier})
        messages = [{"role": "user", "content": f"Look at this:\n{case.carrier}"},
                    {"role": "assistant", "content": "", "tool_calls": [
                        {"id": call_id, "type": "function", "function": {"name": "Bash", "arguments": arguments}}]},
                    {"role": "tool", "tool_call_id": call_id, "name": "Bash", "content": case.carrier},
                    {"role": "assistant", "content": "Filed hb-03n to rotate it."}]
        records.append(make_record(messages, {"source": "planted", "rig": "harbor", "actor": "harbor/polecats/nux"},
                                   TOOLS))
    return records, list(dict.fromkeys(raws))


def planted_values(seed: int = 0) -> list[str]:
    """Every raw value both generators plant for a seed: nothing in this list may survive a build."""
    return list(dict.fromkeys([raw for _, raw in planted_corpus(seed)[1]] + round2_records(seed)[1]))
