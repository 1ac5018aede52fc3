"""Register a fine-tuned model as a Gas Town agent alias, and take it back without clobbering.

Gas Town launches agent CLIs and has no base-URL provider (reference §9), so a deployment is two
kinds of entries in the town (or rig) `settings/config.json`:

    agents[<alias>]        a RuntimeConfig that starts an agent CLI pointed at our endpoint
    role_agents[<role>]    = <alias>, for each role asked for

No other key is touched, and the file keeps its formatting. `plan_deploy` computes the new file
and a diff and writes nothing (the dry run); `apply_deploy` writes it atomically and records what
was there before; `rollback` restores the original bytes when the file is still as the deployment
left it, and otherwise reverts only the deployment's own keys, keeping everyone else's edits.

    plan = plan_deploy(town / "settings" / "config.json", alias="ft-local", model_name="ft-3f9a",
                       endpoint="http://127.0.0.1:8000/v1", roles=["dog"])
    print(plan.diff)
    record = apply_deploy(plan, record_dir=home / "deployments")
    rollback(previous_deployment(home / "deployments"))
"""
from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from gt_finetune.deploy.jsonfile import (DEFAULT_STYLE, MAX_DEPTH, atomic_write, detect_style, json_depth,
                                        read_bytes, sha256_of, unified_diff, write_target)
from gt_finetune.errors import InputError
from gt_finetune.workspace import content_id, short_id, write_json

ROLES = ("mayor", "deacon", "witness", "refinery", "polecat", "crew", "boot", "dog")  # `role_agents` keys (§9)
AGENT_CLIS = ("goose", "opencode")
# gt's built-in presets (§9): an alias with one of these names would shadow the preset for every
# session in the town that uses it, so it is refused.
BUILTIN_AGENTS = ("claude", "gemini", "codex", "cursor", "auggie", "amp", "opencode", "copilot", "pi",
                  "omp", "vibe", "groq-compound")
# Never an API key in a settings file: gt's own presets name the key variable and resolve it at
# spawn time (`groq-compound`'s "$GROQ_API_KEY"). A local vLLM / llama.cpp server started without
# `--api-key` ignores the Authorization header, and goose wants a non-empty OPENAI_API_KEY in
# older releases, so goose gets this placeholder; opencode's openai-compatible provider needs none.
LOCAL_API_KEY = "local"
RECORD_SCHEMA_VERSION = 1
RECORD_KIND = "gt-finetune-deployment"
_ALIAS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_MISSING = object()


@dataclass(frozen=True, slots=True)
class DeployPlan:
    """The new content of one settings file; nothing has been written yet.

    `original` is None when the file does not exist (it will be created). `files` are extra files
    the agent needs (opencode's config), written by `apply_deploy` before the settings.
    """

    settings: Path
    alias: str
    model_name: str
    endpoint: str                  # normalised OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1
    roles: tuple[str, ...]
    agent_cli: str
    agent: dict                    # the RuntimeConfig written to agents[alias]
    original: bytes | None
    new: bytes
    diff: str                      # unified diff, original → new
    style: str                     # how the file is formatted, in words
    changes: tuple[str, ...]       # one line per key set, e.g. "set `role_agents.dog` = `ft-local` (was `llama4`)"
    notes: tuple[str, ...]         # fallbacks and side effects worth reading before applying
    files: tuple[tuple[Path, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class DeployRecord:
    """What one deployment changed, enough to undo it (stored as `<record_dir>/<id>.json`).

    `previous_agents` is `{alias: value}` when `agents[alias]` existed before and `{}` when it was
    absent; `previous_role_agents` holds only the touched roles that had a value.
    """

    id: str
    path: Path
    seq: int
    created_at: str
    settings: Path
    alias: str
    model_name: str
    endpoint: str
    agent_cli: str
    roles: tuple[str, ...]
    agent: dict
    original: bytes | None          # the file's bytes before; None: there was no file
    had_agents: bool
    had_role_agents: bool
    previous_agents: dict
    previous_role_agents: dict
    written_sha256: str
    files: tuple[Path, ...] = ()
    created_dirs: tuple[Path, ...] = ()
    rolled_back_at: str | None = None
    rollback_mode: str | None = None


@dataclass(frozen=True, slots=True)
class RollbackResult:
    """How a rollback went: `mode` is "exact" (original bytes back, or the created file removed)
    or "key-level" (the file was edited since; only this deployment's keys were reverted)."""

    id: str
    settings: Path
    mode: str
    restored: tuple[str, ...]       # keys put back, e.g. "agents.ft-local", "role_agents.dog"
    kept: tuple[str, ...]           # keys left alone because someone changed them since
    diff: str
    notes: tuple[str, ...]
    dry_run: bool = False


# --- reading settings ---------------------------------------------------------------------------

class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


def _parse(data: bytes, path: Path) -> dict:
    """The settings object; InputError (with file:line:col) for anything we could not rewrite safely."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"`{path}` is not UTF-8 (byte {e.start}): {e.reason}",
                         hint=f"save `{path}` as UTF-8, then run the command again; nothing was changed") from None
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates)
        if json_depth(obj) > MAX_DEPTH:
            raise RecursionError
    except RecursionError:
        raise InputError(f"`{path}` nests JSON more than {MAX_DEPTH} levels deep; gt settings are a few levels deep",
                         hint=f"fix `{path}` (or restore it from a backup), then run the command again; "
                              "nothing was changed") from None
    except json.JSONDecodeError as e:
        raise InputError(f"`{path}`:{e.lineno}:{e.colno}: not valid JSON ({e.msg})",
                         hint=f"fix line {e.lineno} of `{path}` (`python -m json.tool {path}` points at the same "
                              "place), then run the command again; nothing was changed") from None
    except _DuplicateKey as e:
        key = str(e)
        hits = list(re.finditer(re.escape(json.dumps(key)) + r"\s*:", text))
        where = ""
        if len(hits) > 1:
            line = text.count("\n", 0, hits[1].start()) + 1
            where = f":{line}:{hits[1].start() - text.rfind(chr(10), 0, hits[1].start())}"
        raise InputError(f"`{path}`{where}: key `{key}` appears twice in one object; gt would keep only the last",
                         hint=f"remove one `{key}` from `{path}`, then run the command again; nothing was changed") from None
    if not isinstance(obj, dict):
        raise InputError(f"`{path}` holds a JSON {type(obj).__name__}, not an object of settings",
                         hint=f"`{path}` should look like {{\"type\": \"town-settings\", \"version\": 1, …}}")
    for key in ("agents", "role_agents"):
        if key in obj and not isinstance(obj[key], dict):
            raise InputError(f"`{key}` in `{path}` is a JSON {type(obj[key]).__name__}, not an object",
                             hint=f"make `{key}` an object (`\"{key}\": {{}}`) or remove it, then run the command again")
    return obj


def _settings_type(settings: Path) -> tuple[str, str | None]:
    """`type` for a new settings file, from what sits beside `settings/` (§6.1)."""
    root = settings.parent.parent
    if (root / "mayor" / "town.json").is_file():
        return "town-settings", None
    try:
        if json.loads(read_bytes(root / "config.json") or b"{}").get("type") == "rig":
            return "rig-settings", None
    except (InputError, ValueError, AttributeError, RecursionError):
        pass
    return "town-settings", (f"`{root}` has neither `mayor/town.json` nor a rig `config.json`; "
                             "the new file says `\"type\": \"town-settings\"`")


# --- agent entries ------------------------------------------------------------------------------

def _base_url(endpoint: str) -> tuple[str, str | None]:
    """The OpenAI-compatible base URL (…/v1) and a note when it was completed."""
    parts = urlsplit(endpoint.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"endpoint `{endpoint}` is not an http(s) URL",
                         hint="pass the server's OpenAI-compatible base URL, e.g. `http://127.0.0.1:8000/v1`")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InputError(f"endpoint `{endpoint}` carries credentials, a query or a fragment; settings files must not",
                         hint="pass only scheme, host, port and path, e.g. `http://127.0.0.1:8000/v1`")
    path, note = parts.path.rstrip("/"), None
    if path.endswith("/chat/completions"):
        path = path[: -len("/chat/completions")]
        note = f"endpoint `{endpoint}` names the chat route; using its base `{path or '/'}`"
    if not path:
        path = "/v1"
        note = f"endpoint `{endpoint}` has no path; using `/v1` (vLLM and llama.cpp serve `/v1/chat/completions`)"
    return urlunsplit((parts.scheme, parts.netloc, path, "", "")), note


def _goose_agent(model_name: str, base_url: str) -> dict:
    """goose's `openai` provider aimed at our endpoint, by environment only (no goose config file).

    goose reads each setting from the upper-cased environment variable before its config.yaml
    (block/goose `crates/goose/src/config/base/params.rs`, `get_param`). Variables:
    GOOSE_PROVIDER / GOOSE_MODEL (`documentation/docs/guides/environment-variables.md`);
    OPENAI_HOST (scheme://host:port, default https://api.openai.com), OPENAI_BASE_PATH (default
    v1/chat/completions) and OPENAI_API_KEY (`crates/goose/src/providers/openai.rs`, `from_env`).
    Args match the goose agents already in the immortan town: gt appends the prompt (`prompt_mode`
    "arg"), so the session runs `goose run --interactive --text "<prompt>"`.
    """
    parts = urlsplit(base_url)
    return {
        "command": "goose",
        "args": ["run", "--interactive", "--text"],
        "env": {
            "GOOSE_PROVIDER": "openai",
            "GOOSE_MODEL": model_name,
            "OPENAI_HOST": f"{parts.scheme}://{parts.netloc}",
            "OPENAI_BASE_PATH": parts.path.strip("/") + "/chat/completions",
            "OPENAI_API_KEY": LOCAL_API_KEY,  # a placeholder, never a real key (see LOCAL_API_KEY)
        },
        "prompt_mode": "arg",
    }


def _opencode_config(alias: str, model_name: str, base_url: str) -> dict:
    """An opencode config with one OpenAI-compatible provider (opencode.ai/docs/providers, "llama.cpp":
    `npm` "@ai-sdk/openai-compatible", `options.baseURL`, `models`). No `apiKey`: the local server
    needs none, and a key would belong in `{env:VAR}`, never in a file. `small_model` keeps title
    and summary calls on our endpoint too."""
    model = f"{alias}/{model_name}"
    return {
        "$schema": "https://opencode.ai/config.json",
        "provider": {alias: {"npm": "@ai-sdk/openai-compatible", "name": f"{alias} (gt-finetune, local)",
                             "options": {"baseURL": base_url}, "models": {model_name: {"name": model_name}}}},
        "model": model,
        "small_model": model,
    }


def _opencode_agent(alias: str, model_name: str, config_path: Path) -> dict:
    """opencode as gt's own example runs it (GT:docs/examples/town-settings.example.json, `kimi-k2.5`:
    `-m provider/model`, OPENCODE_PERMISSION, `prompt_mode` "none"), plus OPENCODE_CONFIG, the
    documented custom config path (sst/opencode `packages/web/src/content/docs/config.mdx`)."""
    return {
        "command": "opencode",
        "args": ["-m", f"{alias}/{model_name}"],
        "env": {"OPENCODE_CONFIG": str(config_path), "OPENCODE_PERMISSION": '{"*":"allow"}'},
        "prompt_mode": "none",
    }


# --- deploy -------------------------------------------------------------------------------------

def plan_deploy(settings: Path, *, alias: str, model_name: str, endpoint: str, roles: Sequence[str] = (),
                agent_cli: str = "goose", record_dir: Path | None = None) -> DeployPlan:
    """Compute the settings file with `agents[alias]` and `role_agents[role] = alias`; write nothing.

    Args:
        settings: the town's or a rig's `settings/config.json` (created when missing).
        alias: the agent name roles and `gt sling --agent` will use, e.g. `ft-local`.
        model_name: the model id the endpoint serves.
        endpoint: the OpenAI-compatible base URL, e.g. `http://127.0.0.1:8000/v1`.
        roles: roles to point at the alias (mayor, deacon, witness, refinery, polecat, crew, boot, dog).
        agent_cli: `goose` (environment only) or `opencode` (a config file under `record_dir`).
        record_dir: where deployment records live; needed for `opencode`, whose config file goes there.

    Raises:
        InputError: a bad alias, role, CLI or endpoint; a settings file that is not valid JSON
            (with file:line:col), has duplicate keys, or whose `agents`/`role_agents` is not an object.
    """
    settings = Path(settings).absolute()
    if not _ALIAS.fullmatch(alias or ""):
        raise InputError(f"alias `{alias}` is not a usable agent name",
                         hint="use letters, digits, `.`, `_` and `-`, starting with a letter or digit, e.g. `ft-local`")
    if alias in BUILTIN_AGENTS:
        raise InputError(f"alias `{alias}` is a gt built-in agent; defining it would change every session that uses "
                         "the built-in", hint=f"pick another alias, e.g. `ft-{model_name.split('/')[-1] or 'local'}`")
    if not model_name or not model_name.strip():
        raise InputError("model name is empty", hint="pass the id the endpoint serves (its `/v1/models` lists it)")
    if agent_cli not in AGENT_CLIS:
        raise InputError(f"agent CLI `{agent_cli}` is not supported; supported: {', '.join(AGENT_CLIS)}",
                         hint="use `goose` (the default) or `opencode`")
    roles = (roles,) if isinstance(roles, str) else tuple(roles)
    bad = [r for r in roles if r not in ROLES]
    if bad:
        raise InputError(f"unknown role{'s' * (len(bad) > 1)} {', '.join(f'`{r}`' for r in bad)}; "
                         f"valid roles: {', '.join(ROLES)}", hint="e.g. `--role dog --role witness`")
    roles = tuple(dict.fromkeys(roles))
    base_url, endpoint_note = _base_url(endpoint)
    notes = [endpoint_note] if endpoint_note else []
    if settings.parts[-2:] != ("settings", "config.json"):
        notes.append(f"gt reads agents only from `<town>/settings/config.json` and `<rig>/settings/config.json`, "
                     f"not `{settings}`")

    original = read_bytes(write_target(settings))
    if original is None:
        kind, note = _settings_type(settings)
        before, style = {"type": kind, "version": 1}, DEFAULT_STYLE
        notes += [note] if note else []
        notes.append(f"`{settings}` does not exist; it will be created (rollback removes it again)")
    else:
        before = _parse(original, settings)
        found = detect_style(original.decode("utf-8"), before)
        style = found or DEFAULT_STYLE
        if found is None:
            notes.append(f"no json.dumps setting reproduces `{settings}` byte for byte; it will be rewritten with "
                         "2-space indent, so the diff shows more lines than the keys set")

    files: tuple[tuple[Path, bytes], ...] = ()
    if agent_cli == "goose":
        agent = _goose_agent(model_name, base_url)
    else:
        if record_dir is None:
            raise InputError("`opencode` deployments need a record folder for opencode's config file",
                             hint="pass `record_dir` (the CLI passes its deployments folder)")
        data = (json.dumps(_opencode_config(alias, model_name, base_url), indent=2) + "\n").encode()
        path = Path(record_dir).absolute() / "opencode" / f"{alias}-{short_id(sha256_of(data))}.json"
        agent, files = _opencode_agent(alias, model_name, path), ((path, data),)

    after = copy.deepcopy(before)
    agents, role_agents = after.setdefault("agents", {}), None
    changes = []
    if alias in agents:
        changes.append(f"replace `agents.{alias}` (the old entry is recorded; rollback puts it back)")
    else:
        changes.append(f"add `agents.{alias}` ({agent_cli} → `{model_name}` at {base_url})")
    agents[alias] = agent
    if before.get("default_agent") == alias:
        notes.append(f"`{alias}` is also `default_agent`: every role without a `role_agents` entry will use it")
    if roles:
        role_agents = after.setdefault("role_agents", {})
    for role in roles:
        was = role_agents.get(role, _MISSING)
        changes.append(f"set `role_agents.{role}` = `{alias}`" + ("" if was is _MISSING else f" (was `{was}`)"))
        role_agents[role] = alias

    text = style.dumps(after)
    _check_only_ours(before, json.loads(text), alias, roles)
    new = text.encode("utf-8")
    if new == original:
        notes.append("the file already holds exactly this deployment; applying records one that changes nothing")
    return DeployPlan(settings=settings, alias=alias, model_name=model_name, endpoint=base_url, roles=roles,
                      agent_cli=agent_cli, agent=agent, original=original, new=new,
                      diff=unified_diff(original, new, settings), style=style.describe(), changes=tuple(changes),
                      notes=tuple(notes), files=files)


def _without_ours(obj: dict, alias: str, roles: Sequence[str]) -> dict:
    obj = copy.deepcopy(obj)
    for key, names in (("agents", (alias,)), ("role_agents", roles)):
        section = obj.get(key)
        if isinstance(section, dict):
            for name in names:
                section.pop(name, None)
            if not section:
                obj.pop(key)
    return obj


def _check_only_ours(before: dict, after: dict, alias: str, roles: Sequence[str]) -> None:
    if _without_ours(before, alias, roles) != _without_ours(after, alias, roles):
        raise RuntimeError("bug: the deploy changed settings keys other than its own")  # never expected


def apply_deploy(plan: DeployPlan, *, record_dir: Path, made: Sequence[Path] = ()) -> DeployRecord:
    """Write the planned settings atomically and record how to undo it in `record_dir/<id>.json`.

    The record is written first, so a deployment is never left unrecorded. Where others may deploy
    into the same file, plan and apply inside `settings_lock(plan.settings)` and pass the folders it
    made as `made` (rollback removes them with the file).

    Raises:
        InputError: the settings file changed after the plan was made (nothing is written).
    """
    record_dir = Path(record_dir).absolute()
    target = write_target(plan.settings)
    if read_bytes(target) != plan.original:
        raise InputError(f"`{plan.settings}` changed after this deployment was planned",
                         hint="run the same `gt-finetune deploy` command again to plan on the current file; "
                              "nothing was written")
    before = _parse(plan.original, plan.settings) if plan.original is not None else {}
    agents, role_agents = before.get("agents", {}), before.get("role_agents", {})
    created_dirs = list(made)
    for parent in target.parents:
        if parent.exists():
            break
        created_dirs.append(parent)

    existing = list_deployments(record_dir)
    seq = max((r.seq for r in existing), default=0) + 1
    created_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    written = sha256_of(plan.new)
    rid = short_id(content_id([str(plan.settings), plan.alias, plan.model_name, plan.endpoint, written,
                               created_at, seq]))
    record = DeployRecord(
        id=rid, path=record_dir / f"{rid}.json", seq=seq, created_at=created_at, settings=plan.settings,
        alias=plan.alias, model_name=plan.model_name, endpoint=plan.endpoint, agent_cli=plan.agent_cli,
        roles=plan.roles, agent=plan.agent, original=plan.original, had_agents="agents" in before,
        had_role_agents="role_agents" in before,
        previous_agents={plan.alias: agents[plan.alias]} if plan.alias in agents else {},
        previous_role_agents={r: role_agents[r] for r in plan.roles if r in role_agents},
        written_sha256=written, files=tuple(p for p, _ in plan.files), created_dirs=tuple(created_dirs))
    _save_record(record)
    try:
        for path, data in plan.files:  # content-addressed: an existing file already holds these bytes
            if read_bytes(path) != data:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, data)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, plan.new)
    except BaseException:
        record.path.unlink(missing_ok=True)
        raise
    return record


# --- records ------------------------------------------------------------------------------------

def _save_record(record: DeployRecord, rolled_back: dict | None = None) -> None:
    original = None
    if record.original is not None:
        try:
            original = {"text": record.original.decode("utf-8")}
        except UnicodeDecodeError:
            original = {"base64": base64.b64encode(record.original).decode("ascii")}
    write_json(record.path, {
        "schema_version": RECORD_SCHEMA_VERSION, "kind": RECORD_KIND, "id": record.id, "seq": record.seq,
        "created_at": record.created_at, "settings": str(record.settings), "alias": record.alias,
        "model_name": record.model_name, "endpoint": record.endpoint, "agent_cli": record.agent_cli,
        "roles": list(record.roles), "agent": record.agent,
        "before": {"file": original, "sha256": None if record.original is None else sha256_of(record.original),
                   "had_agents": record.had_agents, "had_role_agents": record.had_role_agents,
                   "agents": record.previous_agents, "role_agents": record.previous_role_agents},
        "written_sha256": record.written_sha256, "files": [str(p) for p in record.files],
        "created_dirs": [str(p) for p in record.created_dirs], "rolled_back": rolled_back,
    }, sort_keys=False)


def load_deployment(path: Path) -> DeployRecord:
    """Read one deployment record.

    Raises:
        InputError: the record is missing, unreadable, or from a newer gt-finetune.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"no deployment record at `{path}`",
                         hint="`gt-finetune rollback` with no argument undoes the latest deployment") from None
    except (OSError, ValueError) as e:
        raise InputError(f"deployment record `{path}` cannot be read: {e}",
                         hint="restore the file from a backup, or undo the deployment by hand") from None
    if not isinstance(raw, dict) or raw.get("kind") != RECORD_KIND:
        raise InputError(f"`{path}` is not a gt-finetune deployment record")
    if raw.get("schema_version", 0) > RECORD_SCHEMA_VERSION:
        raise InputError(f"deployment record `{path}` has schema_version {raw['schema_version']}; this gt-finetune "
                         f"reads up to {RECORD_SCHEMA_VERSION}", hint="upgrade gt-finetune (`pip install -U gt-finetune`)")
    try:
        return _record_from(raw, path)
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"deployment record `{path}` is incomplete ({type(e).__name__}: {e})",
                         hint="restore the file from a backup, or undo the deployment by hand") from None


def _record_from(raw: dict, path: Path) -> DeployRecord:
    before, file, done = raw["before"], raw["before"]["file"], raw.get("rolled_back") or {}
    original = None if file is None else (file["text"].encode("utf-8") if "text" in file
                                          else base64.b64decode(file["base64"]))
    return DeployRecord(
        id=raw["id"], path=path, seq=raw["seq"], created_at=raw["created_at"], settings=Path(raw["settings"]),
        alias=raw["alias"], model_name=raw["model_name"], endpoint=raw["endpoint"], agent_cli=raw["agent_cli"],
        roles=tuple(raw["roles"]), agent=raw["agent"], original=original, had_agents=before["had_agents"],
        had_role_agents=before["had_role_agents"], previous_agents=before["agents"],
        previous_role_agents=before["role_agents"], written_sha256=raw["written_sha256"],
        files=tuple(Path(p) for p in raw.get("files", ())), created_dirs=tuple(Path(p) for p in raw.get("created_dirs", ())),
        rolled_back_at=done.get("at"), rollback_mode=done.get("mode"))


def list_deployments(record_dir: Path) -> list[DeployRecord]:
    """Every deployment recorded in `record_dir`, oldest first (other JSON files there are skipped)."""
    record_dir = Path(record_dir)
    if not record_dir.is_dir():
        return []
    records = []
    for path in record_dir.glob("*.json"):
        try:
            kind = json.loads(path.read_text(encoding="utf-8")).get("kind")
        except (OSError, ValueError, AttributeError):
            kind = RECORD_KIND  # let load_deployment say what is wrong with it
        if kind == RECORD_KIND:
            records.append(load_deployment(path))
    return sorted(records, key=lambda r: (r.seq, r.created_at))


def previous_deployment(record_dir: Path, *, settings: Path | None = None) -> DeployRecord | None:
    """The latest deployment not rolled back (of `settings`, when given), or None."""
    want = None if settings is None else Path(settings).absolute()
    live = [r for r in list_deployments(record_dir) if r.rolled_back_at is None and want in (None, r.settings)]
    return live[-1] if live else None


# --- rollback -----------------------------------------------------------------------------------

def _revert_keys(obj: dict, record: DeployRecord) -> tuple[list[str], list[str]]:
    """Undo this deployment's keys in `obj` where they still hold what it wrote; the rest is kept."""
    restored, kept = [], []
    agents = obj.get("agents")
    key = f"agents.{record.alias}"
    if isinstance(agents, dict) and agents.get(record.alias, _MISSING) == record.agent:
        if record.alias in record.previous_agents:
            agents[record.alias] = record.previous_agents[record.alias]
        else:
            del agents[record.alias]
            if not agents and not record.had_agents:
                del obj["agents"]
        restored.append(key)
    else:
        gone = not isinstance(agents, dict) or record.alias not in agents
        kept.append(f"{key} ({'removed' if gone else 'changed'} since the deploy)")
    role_agents = obj.get("role_agents")
    for role in record.roles:
        key = f"role_agents.{role}"
        if isinstance(role_agents, dict) and role_agents.get(role) == record.alias:
            if role in record.previous_role_agents:
                role_agents[role] = record.previous_role_agents[role]
            else:
                del role_agents[role]
            restored.append(key)
        else:
            gone = not isinstance(role_agents, dict) or role not in role_agents
            kept.append(f"{key} ({'removed' if gone else 'changed'} since the deploy)")
    if (any(k.startswith("role_agents.") for k in restored) and not obj["role_agents"]
            and not record.had_role_agents):
        del obj["role_agents"]
    return restored, kept


def rollback(record: DeployRecord | Path, *, dry_run: bool = False) -> RollbackResult:
    """Undo a deployment and mark its record rolled back.

    If the settings file is byte-identical to what the deployment wrote, the original bytes come
    back exactly (a file the deployment created is removed). Otherwise only `agents[alias]` and the
    touched `role_agents` entries are reverted, and only where they still hold what the deployment
    wrote; every other edit stays. `dry_run` computes the result and diff and writes nothing.

    Raises:
        InputError: the deployment was already rolled back; a later deployment of the same file is
            still live; the edited settings file is not valid JSON.
    """
    path = record.path if isinstance(record, DeployRecord) else Path(record)
    rec = load_deployment(path)  # fresh from disk: the caller's copy may predate a rollback
    if rec.rolled_back_at is not None:
        live = previous_deployment(path.parent, settings=rec.settings)
        raise InputError(f"deployment `{rec.id}` was already rolled back ({rec.rolled_back_at}, {rec.rollback_mode})",
                         hint=(f"the latest live deployment of `{rec.settings}` is `{live.id}`; "
                               "`gt-finetune rollback` with no argument undoes it") if live else
                         f"nothing deployed to `{rec.settings}` is left to undo")
    later = [r for r in list_deployments(path.parent)
             if r.seq > rec.seq and r.rolled_back_at is None and r.settings == rec.settings]
    if later:
        raise InputError(f"deployment `{rec.id}` lies under a later one, `{later[-1].id}`, on `{rec.settings}`",
                         hint=f"roll back `{later[-1].id}` first (`gt-finetune rollback` undoes the latest)")

    target = write_target(rec.settings)
    current = read_bytes(target)
    notes: list[str] = []
    if current is not None and sha256_of(current) == rec.written_sha256:
        mode, new = "exact", rec.original
        restored = (f"agents.{rec.alias}",) + tuple(f"role_agents.{r}" for r in rec.roles)
        kept: tuple[str, ...] = ()
        if new is None:
            notes.append(f"`{rec.settings}` did not exist before the deployment; it is removed")
    elif current is None:
        mode, new, restored, kept = "key-level", None, (), ()
        notes.append(f"`{rec.settings}` no longer exists; nothing to revert (recreating it would undo whoever "
                     "removed it)")
    else:
        mode = "key-level"
        obj = _parse(current, rec.settings)
        style = detect_style(current.decode("utf-8"), obj)
        if style is None:
            notes.append(f"no json.dumps setting reproduces the edited `{rec.settings}`; rewritten with 2-space indent")
        restored_l, kept_l = _revert_keys(obj, rec)
        restored, kept = tuple(restored_l), tuple(kept_l)
        new = (style or DEFAULT_STYLE).dumps(obj).encode("utf-8") if restored else current
        notes.append(f"`{rec.settings}` was edited after the deployment; reverted only its keys and kept the "
                     "other edits")
        if kept:
            notes.append("left as someone edited them: " + ", ".join(f"`{k}`" for k in kept))

    diff = "" if new == current else unified_diff(current, new, rec.settings)
    if not dry_run:
        if new != current:
            if new is None:
                target.unlink()
                for folder in rec.created_dirs:  # deepest first; only if still empty
                    try:
                        folder.rmdir()
                    except OSError:
                        break
            else:
                atomic_write(target, new)
        _save_record(rec, rolled_back={
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "mode": mode,
            "restored": list(restored), "kept": list(kept), "notes": notes})
    return RollbackResult(id=rec.id, settings=rec.settings, mode=mode, restored=restored, kept=kept, diff=diff,
                          notes=tuple(notes), dry_run=dry_run)
