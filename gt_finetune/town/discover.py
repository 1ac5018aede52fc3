"""Find the Gas Town this command runs in, and read what gt-finetune needs from it.

Facts come from gastown.md §6 (layout), §2.4 (routes) and §3.1 (Dolt settings). Nothing
here writes to the town.
"""
from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..workspace import safe_name

DEFAULT_DOLT_PORT = 3307


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

    def workdir_for(self, bead_id_or_prefix: str) -> Path:
        """The directory `bd` must run in for this bead: the longest matching route wins."""
        best: Route | None = None
        for route in self.routes:
            if bead_id_or_prefix.startswith(route.prefix) and (best is None or len(route.prefix) > len(best.prefix)):
                best = route
        if best is None:
            prefix = bead_id_or_prefix.split("-", 1)[0]
            rig = self.rig_for_prefix(prefix)
            if rig is None:
                raise InputError(
                    f"no route for `{bead_id_or_prefix}` in {self.beads_dir / 'routes.jsonl'}",
                    hint="run `gt-finetune install` to register the `ft` rig, or pass --home for an embedded store",
                )
            return rig.path / "mayor" / "rig"
        return (self.root / best.path).resolve()


def find_town(start: Path | None = None, *, explicit: str | os.PathLike | None = None,
              env: Mapping[str, str] = os.environ) -> Town | None:
    """`--town`, then `$GT_TOWN_ROOT`, then `$GT_ROOT`, then walk up from `start` to `mayor/town.json`."""
    for source, value in (("--town", explicit), ("GT_TOWN_ROOT", env.get("GT_TOWN_ROOT")), ("GT_ROOT", env.get("GT_ROOT"))):
        if value:
            root = Path(value).expanduser().resolve()
            if not (root / "mayor" / "town.json").is_file():
                raise InputError(
                    f"{source} points at {root}, which has no mayor/town.json",
                    hint="point it at your town root (the folder `gt town root` prints), or unset it",
                )
            return load_town(root, env=env)
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "mayor" / "town.json").is_file():
            return load_town(folder, env=env)
    return None


def load_town(root: Path, *, env: Mapping[str, str] = os.environ) -> Town:
    town_json = _read_json(root / "mayor" / "town.json")
    rigs_json = _read_json(root / "mayor" / "rigs.json") if (root / "mayor" / "rigs.json").exists() else {}
    rigs = []
    for name, entry in sorted((rigs_json.get("rigs") or {}).items()):
        try:  # a rig's name is a folder in the town: `../x` would lead install's writes out of it
            safe_name(name, what="rig name")
        except InputError as exc:
            print(f"warning: ignored a rig in {root / 'mayor' / 'rigs.json'}: {exc.message}", file=sys.stderr)
            continue
        prefix = ((entry or {}).get("beads") or {}).get("prefix") or ""
        rig_config = root / name / "config.json"
        if not prefix and rig_config.is_file():
            prefix = (_read_json(rig_config).get("beads") or {}).get("prefix") or ""
        rigs.append(Rig(name=name, prefix=prefix, path=root / name))
    return Town(
        root=root,
        name=str(town_json.get("name") or root.name),
        rigs=tuple(rigs),
        routes=tuple(read_routes(root / ".beads" / "routes.jsonl")),
        dolt=dolt_settings(root, env=env),
    )


def read_routes(path: Path) -> list[Route]:
    """routes.jsonl: one JSON object a line, `#` comments and blank lines allowed."""
    if not path.is_file():
        return []
    routes = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            obj = json.loads(line)
            routes.append(Route(prefix=str(obj["prefix"]), path=str(obj["path"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(
                f"{path}:{lineno}: not a route ({exc}): {line[:80]}",
                hint='each line must look like {"prefix":"ft-","path":"finetune/mayor/rig"}',
            ) from exc
    return routes


def dolt_settings(root: Path, *, env: Mapping[str, str] = os.environ) -> DoltSettings:
    """Port: `.dolt-data/config.yaml` listener.port > `$GT_DOLT_PORT` > mayor/daemon.json env > 3307."""
    port, source = DEFAULT_DOLT_PORT, "default"
    yaml_port = _listener_port(root / ".dolt-data" / "config.yaml")
    if yaml_port:
        port, source = yaml_port, str(root / ".dolt-data" / "config.yaml")
    elif env.get("GT_DOLT_PORT", "").isdigit():
        port, source = int(env["GT_DOLT_PORT"]), "GT_DOLT_PORT"
    else:
        daemon = root / "mayor" / "daemon.json"
        value = str(((_read_json(daemon) if daemon.is_file() else {}).get("env") or {}).get("GT_DOLT_PORT", ""))
        if value.isdigit():
            port, source = int(value), str(daemon)
    return DoltSettings(
        host=env.get("GT_DOLT_HOST") or "127.0.0.1",
        port=port,
        user=env.get("GT_DOLT_USER") or "root",
        password=env.get("GT_DOLT_PASSWORD") or "",
        port_source=source,
    )


def _listener_port(path: Path) -> int | None:
    """`listener:` → `port:` from Dolt's config.yaml, without a YAML dependency."""
    if not path.is_file():
        return None
    in_listener = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if re.match(r"^\S", line):
            in_listener = line.split("#", 1)[0].strip() == "listener:"
            continue
        match = re.match(r"^\s+port:\s*\"?(\d+)\"?", line)
        if in_listener and match:
            return int(match.group(1))
    return None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{path}:{getattr(exc, 'lineno', 1)}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data
