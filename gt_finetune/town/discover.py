"""Find the Gas Town this command runs in, and read what gt-finetune needs from it.

Facts come from gastown.md §6 (layout), §2.4 (routes) and §3.1 (Dolt settings). Nothing
here writes to the town. Agents write in the town, so every file read here is hostile: any JSON
shape, bytes that are not UTF-8, a FIFO, a route or a symlink that leads out of the town. The
files that define the town (`town.json`, `routes.jsonl`) are errors naming the file when bad; a
bad rig registry, rig `config.json` or daemon setting is a warning and costs only what it held.
"""
from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..errors import InputError
from ..workspace import NotRegularFile, open_regular, parse_json, safe_name, shown

DEFAULT_DOLT_PORT = 3307
MAX_TOWN_FILE = 8 << 20  # bytes; gt's JSON files are a few KiB, so more is not a town file
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Route:
    prefix: str  # with its trailing hyphen, e.g. "ft-"
    path: str  # relative to the town root; "." is the town's own beads


@dataclass(frozen=True, slots=True)
class Rig:
    name: str
    prefix: str  # without the hyphen, e.g. "ft"
    path: Path  # <town>/<rig>


@dataclass(frozen=True, slots=True)
class DoltSettings:
    host: str
    port: int
    user: str
    password: str
    port_source: str  # where the port came from, printed so people can check it


@dataclass(frozen=True, slots=True)
class Town:
    root: Path
    name: str
    rigs: tuple[Rig, ...]
    routes: tuple[Route, ...]
    dolt: DoltSettings

    @property
    def beads_dir(self) -> Path:
        return self.root / ".beads"

    def rig(self, name: str) -> Rig:
        for rig in self.rigs:
            if rig.name == name:
                return rig
        known = ", ".join(r.name for r in self.rigs) or "none"
        raise InputError(
            f"rig `{name}` is not in {self.root / 'mayor' / 'rigs.json'} (rigs: {known})",
            hint=f"add it with `gt rig add {name} <git-url> --prefix ft`",
        )

    def rig_for_prefix(self, prefix: str) -> Rig | None:
        prefix = prefix.rstrip("-")
        return next((r for r in self.rigs if r.prefix == prefix), None)

    def outside(self, path: Path) -> Path | None:
        """Where `path` really leads (symlinks followed) when that is outside the town, else None: a
        route or a symlink an agent wrote must not steer gt-finetune's writes or `bd` out of it."""
        resolved = Path(os.path.realpath(path))
        return None if resolved.is_relative_to(os.path.realpath(self.root)) else resolved

    def workdir_for(self, bead_id_or_prefix: str) -> Path:
        """The directory `bd` must run in for this bead: the longest matching route wins.

        Raises:
            InputError: no route or rig knows the prefix, or the folder it names is outside the town.
        """
        routes = self.beads_dir / "routes.jsonl"
        best: Route | None = None
        for route in self.routes:
            if bead_id_or_prefix.startswith(route.prefix) and (best is None or len(route.prefix) > len(best.prefix)):
                best = route
        if best is None:
            prefix = bead_id_or_prefix.split("-", 1)[0]
            rig = self.rig_for_prefix(prefix)
            if rig is None:
                raise InputError(
                    f"no route for `{bead_id_or_prefix}` in {routes}",
                    hint="run `gt-finetune install` to register the `ft` rig, or pass --home for an embedded store",
                )
            folder, what = rig.path / "mayor" / "rig", f"the folder of rig `{rig.name}` ({rig.path})"
        else:
            folder, what = self.root / best.path, f"route `{best.prefix}` → `{shown(best.path)}` in {routes}"
        escaped = self.outside(folder)
        if escaped is not None:
            raise InputError(f"{what} leads to {shown(escaped)}, outside the town {self.root}: `bd` is not run there",
                             hint="point it at a folder inside the town (`<rig>/mayor/rig`), or remove the symlink")
        return Path(os.path.realpath(folder))


def find_town(start: Path | None = None, *, explicit: str | os.PathLike | None = None,
              env: Mapping[str, str] = os.environ) -> Town | None:
    """`--town`, then `$GT_TOWN_ROOT`, then `$GT_ROOT`, then walk up from `start` to `mayor/town.json`."""
    for source, value in (("--town", explicit), ("GT_TOWN_ROOT", env.get("GT_TOWN_ROOT")), ("GT_ROOT", env.get("GT_ROOT"))):
        if value:
            return load_town(_named_root(source, os.fspath(value)), env=env)
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "mayor" / "town.json").is_file():
            return load_town(folder, env=env)
    return None


def _named_root(source: str, value: str) -> Path:
    root: Path | str = value
    try:
        root = Path(value).expanduser().resolve()
        if (root / "mayor" / "town.json").is_file():
            return root
    except (OSError, RuntimeError, ValueError):  # a name too long, a symlink loop, `~nobody`, a NUL byte
        pass
    raise InputError(f"{source} points at {shown(root)}, which has no mayor/town.json",
                     hint="point it at your town root (the folder `gt town root` prints), or unset it")


def load_town(root: Path, *, env: Mapping[str, str] = os.environ) -> Town:
    town_json = read_json(root / "mayor" / "town.json")
    name = town_json.get("name")
    if name is not None and not (isinstance(name, str) and name.isprintable() and 0 < len(name) <= 128):
        warn(f"{root / 'mayor' / 'town.json'}: `name` {shown(repr(name))} is not a short name; "
             f"using the folder's, `{root.name}`")
        name = None
    return Town(
        root=root,
        name=name or root.name,
        rigs=_read_rigs(root),
        routes=tuple(read_routes(root / ".beads" / "routes.jsonl")),
        dolt=dolt_settings(root, env=env),
    )


def _read_rigs(root: Path) -> tuple[Rig, ...]:
    """The rigs of `mayor/rigs.json`; a rig's prefix falls back to its own `config.json`."""
    path = root / "mayor" / "rigs.json"
    registry = (optional(path, read_json) or {}).get("rigs") or {}
    if not isinstance(registry, dict):
        warn(f"{path}: `rigs` is a {type(registry).__name__}, not an object of rigs; no rigs were read from it")
        return ()
    rigs = []
    for name, entry in sorted(registry.items()):
        try:  # a rig's name is a folder in the town: `../x` would lead install's writes out of it
            safe_name(name, what="rig name")
        except InputError as exc:
            warn(f"ignored a rig in {path}: {shown(exc.message)}")
            continue
        config = root / name / "config.json"
        prefix = _prefix(entry, path, name) or _prefix(optional(config, read_json), config, name)
        rigs.append(Rig(name=name, prefix=prefix, path=root / name))
    return tuple(rigs)


def _prefix(entry: object, path: Path, rig: str) -> str:
    """`beads.prefix` of a rig's entry in rigs.json or of its config.json; "" when absent or mis-shaped."""
    beads = entry.get("beads") if isinstance(entry, dict) else None
    prefix = beads.get("prefix") if isinstance(beads, dict) else None
    for what, value, kind in (("its entry", entry, dict), ("`beads`", beads, dict), ("`beads.prefix`", prefix, str)):
        if value is not None and not isinstance(value, kind):
            warn(f"{path}: rig `{rig}`: {what} is a {type(value).__name__} ({shown(repr(value))}); "
                 "its prefix is not read from here")
            return ""
    return prefix or ""


def read_routes(path: Path) -> list[Route]:
    """routes.jsonl: one JSON object a line, `#` comments and blank lines allowed, a BOM skipped."""
    if not os.path.lexists(path):
        return []
    routes = []
    for lineno, line in enumerate(read_town_file(path).split("\n"), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            routes.append(_route(parse_json(line)))
        except ValueError as exc:
            raise InputError(
                f"{path}:{lineno}: not a route ({exc}): {shown(line[:80])}",
                hint='each line must look like {"prefix":"ft-","path":"finetune/mayor/rig"}',
            ) from None
    return routes


def _route(obj: object) -> Route:
    if not isinstance(obj, dict):
        raise ValueError(f"expected an object, got {type(obj).__name__}")
    for key in ("prefix", "path"):
        value = obj.get(key)
        if not isinstance(value, str) or not value or "\0" in value:
            raise ValueError(f"`{key}` must be a non-empty string, got {shown(repr(value))}")
    return Route(prefix=obj["prefix"], path=obj["path"])


def dolt_settings(root: Path, *, env: Mapping[str, str] = os.environ) -> DoltSettings:
    """Port: `.dolt-data/config.yaml` listener.port > `$GT_DOLT_PORT` > mayor/daemon.json env > 3307."""
    port, source = DEFAULT_DOLT_PORT, "default"
    yaml_path, daemon = root / ".dolt-data" / "config.yaml", root / "mayor" / "daemon.json"
    yaml_port = _listener_port(optional(yaml_path, read_town_file) or "")
    if yaml_port:
        port, source = yaml_port, str(yaml_path)
    elif env_port := _port(env.get("GT_DOLT_PORT", "")):
        port, source = env_port, "GT_DOLT_PORT"
    else:
        daemon_env = (optional(daemon, read_json) or {}).get("env")
        value = _port(str(daemon_env.get("GT_DOLT_PORT", ""))) if isinstance(daemon_env, dict) else None
        if value:
            port, source = value, str(daemon)
    return DoltSettings(
        host=env.get("GT_DOLT_HOST") or "127.0.0.1",
        port=port,
        user=env.get("GT_DOLT_USER") or "root",
        password=env.get("GT_DOLT_PASSWORD") or "",
        port_source=source,
    )


def _port(value: str) -> int | None:
    """A TCP port number written in ASCII digits, else None (`auto`, `²`, 5,000 digits, 70000)."""
    return int(value) if re.fullmatch(r"[0-9]{1,5}", value) and 0 < int(value) < 65536 else None


def _listener_port(text: str) -> int | None:
    """`listener:` → `port:` from Dolt's config.yaml, without a YAML dependency."""
    in_listener = False
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if re.match(r"^\S", line):
            in_listener = line.split("#", 1)[0].strip() == "listener:"
            continue
        match = re.match(r"^\s+port:\s*\"?([0-9]+)\"?", line)
        if in_listener and match:
            return _port(match.group(1))
    return None


def read_town_file(path: Path) -> str:
    """A town file's text, a BOM skipped. Opened without blocking and checked to be a regular file
    (a FIFO would hang the read, `/dev/zero` never end), at most MAX_TOWN_FILE bytes, UTF-8.

    Raises:
        InputError: naming `path` and what is wrong with it.
    """
    try:
        fd = open_regular(path)
    except NotRegularFile as exc:
        raise InputError(f"{path}: {exc}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_TOWN_FILE + 1)
    if len(data) > MAX_TOWN_FILE:
        raise InputError(f"{path}: larger than {MAX_TOWN_FILE >> 20} MiB, too large for a town file")
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


def read_json(path: Path) -> dict:
    """A town file holding one JSON object.

    Raises:
        InputError: naming `path` (and the line) and what is wrong.
    """
    text = read_town_file(path)
    try:
        data = parse_json(text)
    except ValueError as exc:
        line = getattr(exc.__cause__, "lineno", 1)
        raise InputError(f"{path}:{line}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def optional(path: Path, read: Callable[[Path], T]) -> T | None:
    """`read(path)` of a town file gt-finetune can do without: None when absent, and when unusable
    (said on stderr), so one bad file costs only what it holds."""
    if not os.path.lexists(path):
        return None
    try:
        return read(path)
    except InputError as exc:
        warn(f"{exc.message}; ignoring it")
        return None


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)
