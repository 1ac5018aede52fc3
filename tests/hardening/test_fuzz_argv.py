"""Fuzzing the argv normaliser that scores model answers: any text is read without an exception, and
normalising is stable: canonical text parses back to the same command, flag order never matters.
"""
import json
import shlex
import sys
from pathlib import Path

from hypothesis import assume, given, strategies as st

from gt_finetune.eval.argv import commands_in, json_objects, match, normalise, prose_of, split_command

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_settings import fuzz  # noqa: E402

FUZZ = fuzz(200)
# Markdown and shell pieces that steer the scanner: fences (nested, unclosed), prompts, heredocs,
# tool-call JSON, unbalanced quotes, continuations, separators.
PIECES = ["```", "```bash", "```sh", "~~~", "````", "```python", "$ ", "> ", "bd ready", "gt done", "bd close hb-1",
          "gt mail send mayor/ -s 'Hi", '"', "'", "\\", "\n", " && ", "; ", " | cat", " # note", "<<EOF", "<<-'END'",
          "EOF", "END", "`", "{", "}", '{"name": "Bash", "arguments": {"command": "bd show hb-2"}}',
          '{"function": {"name": "Bash", "arguments": "{\\"command\\": \\"gt hook\\"}"}}', "<tool_call>", "2>&1",
          "FOO=bar ", "--", "-p", "P1", "=", "git push --force", "rm -rf /"]
answers = st.lists(st.sampled_from(PIECES) | st.text(max_size=8), max_size=30).map("".join)
# bd/gt commands with the flags the alias tables know, as (program + path, flags with values).
COMMANDS = {
    "bd create": {"--type": ["bug", "task"], "--priority": ["1", "P2"], "--label": ["flaky", "a,b"],
                  "--description": ["Fix it", "two words"], "--assignee": ["harbor/polecats/nux"]},
    "bd update": {"--status": ["in_progress", "open"], "--priority": ["0", "P3"], "--assignee": ["mayor/"]},
    "bd close": {"--reason": ["done", "no-changes: fine"]},
    "bd list": {"--status": ["open"], "--label": ["ci"], "--limit": ["5"], "--type": ["bug"]},
    "gt mail send": {"--subject": ["Hi", "MERGE_READY nux"], "--message": ["Body text", "ok"]},
}
SHORT = {"--type": "-t", "--priority": "-p", "--label": "-l", "--description": "-d", "--assignee": "-a",
         "--status": "-s", "--reason": "-r", "--limit": "-n", "--subject": "-s", "--message": "-m"}
BOOLEANS = ["--json", "--force", "--quiet"]
POSITIONALS = ["hb-1", "hb-2a", "mayor/", "Fix the allocator", "ft-7k2.1"]


@st.composite
def bd_gt_commands(draw):
    """(head words, flag groups as word lists, positionals): one command, spelled many ways."""
    head = draw(st.sampled_from(sorted(COMMANDS)))
    table = COMMANDS[head]
    chosen = draw(st.lists(st.sampled_from(sorted(table)), unique=True, max_size=3))
    groups = []
    for flag in chosen:
        value = draw(st.sampled_from(table[flag]))
        name = draw(st.sampled_from([flag, SHORT[flag]]))
        groups.append(draw(st.sampled_from([[name, value], [f"{name}={value}"]])))
    groups += [[b] for b in draw(st.lists(st.sampled_from(BOOLEANS), unique=True, max_size=2))]
    positionals = draw(st.lists(st.sampled_from(POSITIONALS), min_size=1, max_size=2))
    return head.split(), groups, positionals


def spell(head, groups, positionals, order) -> str:
    """The command with flag groups in `order`, positionals kept in their order among them."""
    slots = [("flag", g) for g in groups] + [("arg", [p]) for p in positionals]
    slots = [slots[i] for i in order]
    args = iter(positionals)
    words = [w for kind, group in slots for w in (group if kind == "flag" else [next(args)])]
    return shlex.join(head + words)


@FUZZ
@given(text=st.text(max_size=200) | answers)
def test_any_text_is_read_without_an_exception(text):
    words = split_command(text)
    assert all(isinstance(w, str) for w in words)
    normalise(words)
    for command in commands_in(text) + commands_in(text, inline=False):
        assert isinstance(command, str) and command
        normalise(split_command(command))
    assert isinstance(prose_of(text), str)
    assert match(text, text).ok  # whatever it is, it matches itself
    list(json_objects(text))


@FUZZ
@given(text=st.text(max_size=120) | answers | bd_gt_commands().map(lambda c: spell(*c, range(len(c[1]) + len(c[2])))))
def test_normalising_is_idempotent(text):
    command = normalise(split_command(text))
    words = [command.program, *command.path, *command.args, *(v for _, values in command.flags for v in values)]
    # A word of shell operators (`'|'`) reads as an operator again: shlex gives no sign it was quoted.
    assume(not any(w and not w.strip("|&;<>()") for w in words))
    again = normalise(split_command(command.text()))
    assert again == command
    assert again.text() == command.text()


@FUZZ
@given(command=bd_gt_commands(), data=st.data())
def test_flag_order_does_not_matter(command, data):
    head, groups, positionals = command
    n = len(groups) + len(positionals)
    written = spell(head, groups, positionals, range(n))
    shuffled = spell(head, groups, positionals, data.draw(st.permutations(range(n))))
    assert normalise(split_command(shuffled)) == normalise(split_command(written))
    assert match(written, shuffled).ok


# -- huge inputs and regressions: the minimal failing examples fuzzing found ---------------------

def test_huge_and_deeply_nested_answers_are_read_without_an_exception():
    for text in ('{"a":' * 1200, '{"name": "Bash", "arguments": ' + "[" * 1200, "bd close '" * 3000,
                 "```bash\n" * 3000 + "bd ready\n", "bd " + "x " * 20_000, "\\" * 50_000,
                 '{"name": "Bash", "arguments": {"command": "bd ready"}} ' * 2000):
        commands_in(text)
        prose_of(text)
        normalise(split_command(text))


def test_json_past_pythons_limits_is_not_a_tool_call():
    digits = "1" + "0" * 4300
    assert list(json_objects('{"a":' * 1200)) == []
    assert list(json_objects('{"a": %s}' % digits)) == []
    call = {"name": "Bash", "arguments": '{"command": "bd ready", "n": %s}' % digits}
    assert commands_in(json.dumps(call)) == []


def test_short_flags_with_digits_of_unknown_programs_stay_one_flag():
    command = normalise(["create", "-p2"])
    assert command.flags == (("-p2", ()),)
    assert normalise(split_command(command.text())) == command


def test_canonical_text_keeps_positionals_from_a_flag_without_a_value():
    command = normalise(["bd", "x", "bd", "-p"])  # `-p` at the end has no value
    assert command.text() == "bd x -p -- bd"
    assert normalise(split_command(command.text())) == command


def test_after_a_double_dash_a_word_is_a_positional_not_a_subcommand():
    assert normalise(split_command("bd -- -p")).args == ("-p",)
    command = normalise(split_command("bd -- create"))
    assert (command.path, command.args) == ((), ("create",))
    assert normalise(split_command(command.text())) == command


def test_a_program_named_like_an_assignment_stays_the_program():
    command = normalise(split_command("/A="))
    assert command.program == "A=" and normalise(split_command(command.text())) == command


def test_a_short_flag_value_that_starts_with_a_dash_stays_with_its_flag():
    command = normalise(["gt", "escalate", "Dolt is down", "-s=-x"])  # `-s` of `gt escalate` has no long alias
    assert command.flags == (("-s", ("-x",)),)
    assert command.text() == "gt escalate -s=-x 'Dolt is down'"
    assert normalise(split_command(command.text())) == command


def test_model_output_nested_past_the_stack_fails_the_json_checks_without_a_crash():
    from gt_finetune.eval.bench import _turn_commands
    from gt_finetune.eval.promptfoo_checks import _equals, _is_json

    deep = "[" * 100_000 + "]" * 100_000
    huge = '{"command": ' + "9" * 5000 + "}"
    assert _is_json(deep, None, {}, 0)[0] is False
    assert _equals(deep, [1], {}, 0)[0] is False
    assert _turn_commands({"tool_calls": [{"function": {"arguments": huge}}, {"function": {"arguments": deep}}]}) == []
