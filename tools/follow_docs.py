"""Follow a doc's walkthrough: run its commands in order in a throwaway workspace; stop at the first failure.

    .venv/bin/python tools/follow_docs.py docs/operator-guide.md [--base-model DIR] [--workdir DIR]
                                          [--show-output] [--timeout S] [--list]

The convention a doc follows:

- The walkthrough is the text between `<!-- walkthrough -->` and `<!-- /walkthrough -->`.
- Commands are the lines that start with `$ ` inside its ```console blocks; the other lines of
  those blocks show what you should see and are not run. A command ending in `\\` goes on with the
  next line.
- Install lines (`python3 -m venv …`, `… -m pip install …`, or `make install` alone) are checked,
  not run: in order, they must be exactly the commands `make -n -B install` prints, leaving out
  pip's output flags (`-q`, `--disable-pip-version-check`) and make's `touch` of its stamp file.
  CI's fresh-machine `make install` runs those same commands, so the doc and the Makefile stay in step.
- `source <venv>/bin/activate` puts this checkout's venv (where `make install` put
  `gt-finetune`) first on PATH; the venv folder must be the Makefile's `VENV`.
- Everything else runs literally with bash, one command at a time, in `<workdir>/work`, with
  HOME at `<workdir>/user` (so `~/.gt-finetune` is the workspace), GT_FINETUNE_HOME set to it,
  the machine lock in `<workdir>/lock`, and the Gas Town variables (BEADS_DIR, GT_TOWN_ROOT, …)
  cleared: no real town, home or running job is touched.
- Placeholders: `<ft-id>` is replaced by the job id the latest command printed as its last stdout
  line (`gt-finetune run` prints the job id last). A placeholder used before any command printed
  one fails the walkthrough.

`--base-model DIR` (or $GT_FINETUNE_WALKTHROUGH_BASE_MODEL) adds `--var base_model=DIR` to each
`gt-finetune run`: a tiny local model makes the walkthrough fast while debugging this script.
`--workdir DIR` keeps everything there (default: a temp dir, removed on success).
`--timeout S` is how long one command may run (3600 s). `--list` prints the commands and checks
the install lines without running anything.

Exit status: 0 every command passed; 1 a command failed (it is printed with its output), or the
doc breaks the convention.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- walkthrough -->", "<!-- /walkthrough -->"
PIP_NOISE = ("-q", "--disable-pip-version-check")
TOWN_VARS = ("BEADS_DIR", "GT_TOWN_ROOT", "GT_ROOT", "GT_DOLT_PORT", "GT_DOLT_HOST", "GT_DOLT_USER",
             "GT_DOLT_PASSWORD", "BD_ACTOR", "BEADS_ACTOR", "GT_FINETUNE_BUDGET_GB", "GT_FINETUNE_LOCK_DIR")
PLACEHOLDERS = {"ft-id": re.compile(r"ft-[0-9a-z]+")}  # name -> what a command's last stdout line must be
TIMEOUT_S = 3600


@dataclass(frozen=True, slots=True)
class Command:
    line: int  # 1-based line of the doc where the command starts
    text: str  # the command, continuation lines joined

    @property
    def kind(self) -> str:
        """`install`, `activate` or `run`."""
        words = self.text.split()
        if words[:1] in (["source"], ["."]) and len(words) == 2:
            return "activate"
        if "-m" in words and ("venv" in words or "pip" in words) or words[:2] == ["make", "install"]:
            return "install"
        return "run"


class WalkthroughError(Exception):
    """The doc breaks the convention, or a command failed."""


def extract(doc: Path) -> list[Command]:
    """The walkthrough's commands, in order."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    inside = [i for i, text in enumerate(lines) if text.strip() in (START, END)]
    if len(inside) != 2 or lines[inside[0]].strip() != START:
        raise WalkthroughError(f"{doc}: expected one `{START}` … `{END}` section")
    commands: list[Command] = []
    in_console, pending, pending_line = False, "", 0
    for i in range(inside[0] + 1, inside[1]):
        text = lines[i]
        if text.startswith("```"):
            if in_console and pending:
                raise WalkthroughError(f"{doc}:{pending_line}: a command ends with `\\` but the block ends")
            in_console = not in_console and text.strip() == "```console"
            continue
        if not in_console:
            continue
        if pending:
            pending += " " + text.strip()
        elif text.startswith("$ "):
            pending, pending_line = text[2:].strip(), i + 1
        else:
            continue
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        commands.append(Command(pending_line, pending))
        pending = ""
    if not commands:
        raise WalkthroughError(f"{doc}: the walkthrough has no `$ ` command in a ```console block")
    return commands


def makefile_install(root: Path = ROOT) -> tuple[list[str], str]:
    """The commands `make install` runs (normalised), and the Makefile's venv folder."""
    proc = subprocess.run(["make", "-n", "-B", "-C", str(root), "--no-print-directory", "install"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise WalkthroughError(f"`make -n -B install` failed: {proc.stderr.strip()}")
    recipe = [normalise(x) for x in proc.stdout.splitlines() if x.strip()]
    venv = recipe[0].split()[-1] if recipe and " -m venv " in recipe[0] else ".venv"
    return [x for x in recipe if not x.startswith("touch ")], venv


def normalise(command: str) -> str:
    """One spacing, pip's output flags dropped: what the command does, not how loudly."""
    words = shlex.split(command)
    if "pip" in words:
        words = [w for w in words if w not in PIP_NOISE]
    return shlex.join(words)


def check_install(commands: list[Command]) -> tuple[list[str], str]:
    """Raise unless the install lines are the Makefile's install recipe; return it and the venv."""
    recipe, venv = makefile_install()
    documented = [normalise(c.text) for c in commands if c.kind == "install"]
    if documented != recipe and documented != ["make install"]:
        raise WalkthroughError("the walkthrough's install lines are not the Makefile's `install` recipe:\n"
                               + "  doc:      " + "\n            ".join(documented or ["(none)"]) + "\n"
                               + "  Makefile: " + "\n            ".join(recipe))
    for c in commands:
        if c.kind == "activate" and shlex.split(c.text)[-1] != f"{venv}/bin/activate":
            raise WalkthroughError(f"line {c.line}: `{c.text}`: the Makefile's venv is `{venv}`")
    return recipe, venv


def environment(workdir: Path, venv_bin: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in TOWN_VARS}
    user = workdir / "user"
    env.update(HOME=str(user), GT_FINETUNE_HOME=str(user / ".gt-finetune"),
               GT_FINETUNE_LOCK_DIR=str(workdir / "lock"), NO_COLOR="1", GT_FINETUNE_NO_PROGRESS="1")
    if venv_bin is not None:
        env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(venv_bin.parent)
    return env


def fill(command: Command, values: dict[str, str]) -> str:
    def one(match: re.Match) -> str:
        name = match[1]
        if name not in values:
            raise WalkthroughError(f"line {command.line}: `<{name}>` is used before any command printed one")
        return values[name]
    return re.sub(r"<(" + "|".join(map(re.escape, PLACEHOLDERS)) + r")>", one, command.text)


def with_base_model(text: str, base_model: str) -> str:
    return re.sub(r"^(gt-finetune run \S+)", lambda m: f"{m[1]} --var base_model={shlex.quote(base_model)}", text)


def follow(doc: Path, *, workdir: Path, base_model: str = "", show_output: bool = False,
           timeout_s: float = TIMEOUT_S) -> float:
    """Run the walkthrough of `doc` in `workdir`; return the seconds it took. Raises WalkthroughError."""
    commands = extract(doc)
    _, venv = check_install(commands)
    (workdir / "work").mkdir(parents=True, exist_ok=True)
    (workdir / "user").mkdir(parents=True, exist_ok=True)
    venv_bin: Path | None = None
    values: dict[str, str] = {}
    started = time.monotonic()
    for c in commands:
        if c.kind == "install":
            print(f"$ {c.text}\n  (install: the Makefile's `install` runs it; not run here)", file=sys.stderr)
            continue
        if c.kind == "activate":
            venv_bin = ROOT / venv / "bin"
            if not (venv_bin / "gt-finetune").is_file():
                raise WalkthroughError(f"line {c.line}: no {venv_bin / 'gt-finetune'}; run `make install` first")
            print(f"$ {c.text}\n  (PATH now starts with {venv_bin})", file=sys.stderr)
            continue
        text = fill(c, values)
        if base_model:
            text = with_base_model(text, base_model)
        print(f"$ {text}", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            proc = subprocess.run(["bash", "-o", "pipefail", "-c", text], cwd=workdir / "work",
                                  env=environment(workdir, venv_bin), capture_output=True, text=True,
                                  timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise WalkthroughError(f"line {c.line}: `{text}` did not finish in {timeout_s:.0f} s (killed)\n"
                                   f"--- stdout\n{_text(exc.stdout)}--- stderr\n{_text(exc.stderr)}") from None
        took = time.monotonic() - t0
        if proc.returncode != 0:
            raise WalkthroughError(f"line {c.line}: `{text}` exited {proc.returncode} after {took:.0f} s\n"
                                   f"--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}")
        if show_output:
            print(indent(proc.stdout) + indent(proc.stderr, "  ! "), file=sys.stderr)
        print(f"  ok ({took:.1f} s)", file=sys.stderr, flush=True)
        last = (proc.stdout.strip().splitlines() or [""])[-1].strip()
        for name, pattern in PLACEHOLDERS.items():
            if pattern.fullmatch(last):
                values[name] = last
    return time.monotonic() - started


def _text(output: str | bytes | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def indent(text: str, prefix: str = "  | ") -> str:
    return "".join(f"{prefix}{line}\n" for line in text.splitlines())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("doc", type=Path)
    parser.add_argument("--base-model", default=os.environ.get("GT_FINETUNE_WALKTHROUGH_BASE_MODEL", ""),
                        help="add `--var base_model=DIR` to each `gt-finetune run` (debugging)")
    parser.add_argument("--workdir", type=Path, help="run there and keep it (default: a temp dir)")
    parser.add_argument("--show-output", action="store_true", help="print each command's output")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds one command may take")
    parser.add_argument("--list", action="store_true", help="print the commands and check the install lines only")
    args = parser.parse_args(argv)
    if args.list:
        try:
            commands = extract(args.doc)
            check_install(commands)
        except WalkthroughError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        for c in commands:
            print(f"{args.doc}:{c.line}: [{c.kind}] {c.text}")
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="follow-docs-"))
    try:
        took = follow(args.doc, workdir=workdir, base_model=args.base_model, show_output=args.show_output,
                      timeout_s=args.timeout)
    except WalkthroughError as exc:
        print(f"error: {exc}\n\nhint: the workspace is kept at {workdir}", file=sys.stderr)
        return 1
    print(f"walkthrough of {args.doc} passed in {took:.0f} s", file=sys.stderr)
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
