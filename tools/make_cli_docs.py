"""Write docs/cli.md from the `--help` of every command; `--check` fails when the file is stale.

    .venv/bin/python tools/make_cli_docs.py [--check]
"""
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gt_finetune.cli import cli  # noqa: E402


def commands(group: click.Group, prefix: tuple[str, ...] = ()):
    yield prefix, group
    if isinstance(group, click.Group):
        for name in sorted(group.commands):
            yield from commands(group.commands[name], prefix + (name,))


def render() -> str:
    parts = ["# gt-finetune command reference", "",
             "Generated from `--help` by `tools/make_cli_docs.py`; a test fails when it is stale.", ""]
    for path, command in commands(cli):
        name = " ".join(("gt-finetune", *path))
        with click.Context(command, info_name=name, terminal_width=100, max_content_width=100,
                           help_option_names=["-h", "--help"]) as ctx:
            text = command.get_help(ctx)
        parts += [f"## `{name}`", "", "```", text, "```", ""]
    return "\n".join(parts)


def main() -> int:
    target = ROOT / "docs" / "cli.md"
    text = render()
    if "--check" in sys.argv:
        if not target.is_file() or target.read_text() != text:
            print("docs/cli.md is stale: run `.venv/bin/python tools/make_cli_docs.py`", file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
