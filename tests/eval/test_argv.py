import pytest

from gt_finetune.eval.argv import commands_in, match, normalise, split_command

SAME = [
    # quoting and `=` forms
    ('bd close hb-1 --reason "no-changes: fine"', "bd close hb-1 --reason='no-changes: fine'", {}),
    ("bd update hb-1 --status=in_progress", "bd update hb-1 --status in_progress", {}),
    # flag order and position
    ("bd create Fix --type bug --priority 2", "bd create --priority 2 Fix --type bug", {}),
    ("gt sling shiny --on hb-3 harbor --var a=1 --var b=2", "gt sling shiny harbor --var b=2 --on hb-3 --var a=1", {}),
    # documented aliases (reference §0.5, §2.2, §2.5, §4.1)
    ("bd create 'Flaky test' --type bug", 'bd new "Flaky test" -t bug', {}),
    ("bd close hb-1 --reason done", "bd done hb-1 -r done", {}),
    ("bd show hb-1", "bd view hb-1", {}),
    ("bd create T --label a --label b", "bd create T -l a,b", {}),
    ("bd create T --label a", "bd create T --labels a", {}),
    ("bd create T --description d", "bd create T -d d", {}),
    ("bd update hb-1 --status open", "bd update hb-1 -s open", {}),
    ("bd update hb-1 --priority 0", "bd update hb-1 -p P0", {}),
    ("bd update hb-1 --priority 1", "bd update hb-1 -p1", {}),
    ("bd create 'Fix it' --type task", "bd create --title='Fix it' --type task", {}),
    ("gt mail send mayor/ --subject Hi --message Body", "gt mail send mayor/ -s Hi -m Body", {}),
    ("gt mail send mayor/ -s Hi -m Body", "gt mail send mayor/ -s Hi --body Body", {}),
    # dependency spellings of one edge (§2.5)
    ("bd dep add hb-2 hb-1", "bd dep add hb-2 --blocked-by hb-1", {}),
    ("bd dep add hb-2 hb-1", "bd dep add hb-2 --depends-on hb-1", {}),
    ("bd dep add hb-2 hb-1", "bd dep hb-1 --blocks hb-2", {}),
    # prompts, environment, output plumbing
    ("bd ready", "$ bd ready", {}),
    ("bd ready", "> bd ready", {}),
    ("bd show hb-1", "BD_ACTOR=harbor/witness bd show hb-1", {}),
    ("bd show hb-1", "bd show hb-1 | cat", {}),
    ("bd show hb-1", "bd show hb-1 2>&1", {}),
    ("bd ready", "bd ready  # what can I take?", {}),
    # boolean flags do not swallow positionals
    ("bd close hb-1 --force", "bd close --force hb-1", {}),
    ("gt patrol scan --notify", "gt patrol scan --notify", {}),
    # `--` ends options
    ("bd create -- -weird-title", "bd create -- -weird-title", {}),
    # globs, free and optional flags
    ('gt mail send harbor/witness -s "MERGED *" -m x', 'gt mail send harbor/witness -s "MERGED nux" -m x', {}),
    ("gt escalate * -s HIGH", 'gt escalate "Dolt is down" -s HIGH', {}),
    ("gt patrol report --summary x", 'gt patrol report --summary "2 nudged"', {"free": ["--summary"]}),
    ("gt mail send mayor/ -s S -m x", "gt mail send mayor/ -s S --message 'anything at all'", {"free": ["-m"]}),
    ("bd ready", "bd ready --json", {"optional": ["--json"]}),
    # forbidden-style matching lets the answer add flags
    ("gt polecat nuke harbor/toast", "gt polecat nuke harbor/toast --force", {"partial": True}),
]

DIFFERENT = [
    ("bd dep add hb-p2 hb-p1", "bd dep add hb-p1 hb-p2", {}, "wrong order"),
    ("bd dep add hb-p2 hb-p1", "bd dep hb-p2 --blocks hb-p1", {}, "wrong order"),
    ("bd close hb-1", "bd update hb-1 --status closed", {}, "expected `bd close`, got `bd update`"),
    ("bd update hb-1 --status in_progress", "bd update hb-1", {}, "missing flag `--status`"),
    ("bd show hb-1", "bd show hb-2", {}, "positional 1 is `hb-2`"),
    ("bd show hb-1", "bd show hb-1 hb-2", {}, "positional(s)"),
    ("gt done", "gt done --status ESCALATED", {}, "unexpected flag `--status`"),
    ("gt done --status ESCALATED", "gt done --status DEFERRED", {}, "flag `--status` is `DEFERRED`"),
    ("gt mail send harbor/refinery -s 'MERGE_READY *'", "gt mail send harbor/refinery -s 'MERGED nux'", {},
     "flag `--subject`"),
    ("gt mail send mayor/ -s S -m x", "gt mail send mayor/ -s S -m ''", {"free": ["-m"]}, "non-empty"),
    ("gt escalate x -s HIGH", "gt escalate x -s high", {}, "`high`"),
    ("bd create T --label a --label b", "bd create T -l a", {}, "flag `--label`"),
    ("gt mail send overseer -s S", "bd mail send overseer -s S", {}, "expected `gt mail send`"),
    ("BD_ACTOR=harbor/witness bd ready", "bd ready", {}, "missing environment"),
    ("gt polecat nuke harbor/toast", "gt polecat nuke harbor/nux --force", {"partial": True}, "positional 1"),
]


@pytest.mark.parametrize("expected, actual, kwargs", SAME)
def test_equivalent_spellings_match(expected, actual, kwargs):
    result = match(expected, actual, **kwargs)
    assert result.ok, result.why


@pytest.mark.parametrize("expected, actual, kwargs, why", DIFFERENT)
def test_different_commands_fail_with_a_reason(expected, actual, kwargs, why):
    result = match(expected, actual, **kwargs)
    assert not result.ok
    assert why in result.why


@pytest.mark.parametrize("text", ['bd update hb-1 --notes "unbalanced', "gt nudge x 'it", "bd close \\", '"', "",
                                  "$ ", "gt mail send <<"])
def test_unbalanced_or_odd_input_never_raises(text):
    split_command(text)
    normalise(split_command(text))
    match("bd ready", text)
    commands_in(text)


def test_unbalanced_quote_is_closed_at_the_end():
    assert split_command('bd update hb-1 --notes "half a note') == ["bd", "update", "hb-1", "--notes", "half a note"]


def test_normalise_separates_env_subcommands_positionals_and_flags():
    command = normalise(split_command("BD_ACTOR=harbor/nux bd new -t bug 'Flaky' -l a,b -p P1 --json"))
    assert command.env == (("BD_ACTOR", "harbor/nux"),)
    assert (command.program, command.path, command.args) == ("bd", ("create",), ("Flaky",))
    assert dict(command.flags) == {"--type": ("bug",), "--label": ("a", "b"), "--priority": ("1",), "--json": ()}


def test_nested_subcommands_only_when_the_tree_says_so():
    assert normalise(split_command("gt hook hb-1")).path == ("hook",)
    assert normalise(split_command("gt hook clear")).path == ("hook", "clear")
    assert normalise(split_command("bd mol wisp gc --closed")).path == ("mol", "wisp", "gc")
    assert normalise(split_command("gt mq integration land hb-e1")).args == ("hb-e1",)


def test_short_flags_of_unknown_programs_are_split_and_take_no_value():
    command = normalise(split_command("rm -rf ~/.dolt-data/hq"))
    assert dict(command.flags) == {"-r": (), "-f": ()}
    assert command.args == ("~/.dolt-data/hq",)


def test_canonical_text_round_trips():
    command = normalise(split_command('bd done hb-1 -r "no-changes: ok" --force'))
    assert normalise(split_command(command.text())) == command


def test_commands_in_finds_every_kind_of_command():
    answer = "\n".join([
        "First look:",
        "```bash",
        "bd show hb-1 && bd ready; gt hook",
        "gt mail send mayor/ -s Hi --stdin <<'BODY'",
        "gt inside the heredoc is not a command",
        "BODY",
        "```",
        "Then run `bd close hb-1` and",
        "$ gt done",
        "gt mail inbox | grep hb-1",
        '<tool_call>\n{"name": "Bash", "arguments": {"command": "gt prime"}}\n</tool_call>',
        '{"name": "bash", "arguments": "{\\"command\\": \\"bd blocked\\"}"}',
        '{"function": {"name": "Bash", "arguments": "{\\"command\\": \\"gt ready\\"}"}}',
    ])
    found = commands_in(answer)
    assert found == ["gt prime", "bd blocked", "gt ready", "bd show hb-1", "bd ready", "gt hook",
                     "gt mail send mayor/ -s Hi --stdin <<'BODY'", "bd close hb-1", "gt done", "gt mail inbox",
                     "grep hb-1"]
    assert "bd close hb-1" not in commands_in(answer, inline=False)


def test_console_blocks_keep_only_prompted_lines():
    answer = "```console\n$ bd ready\nhb-1  open  Fix flush\n$ bd show hb-1\n```"
    assert commands_in(answer) == ["bd ready", "bd show hb-1"]


def test_non_shell_fences_and_prose_are_not_commands():
    answer = "The status is `open`.\n```toml\nformula = \"x\"\n```\n```json\n{\"action\": \"nudge\"}\n```"
    assert commands_in(answer) == []


def test_a_quoted_multiline_message_stays_one_command():
    answer = '```bash\ngt mail send harbor/witness -s "MERGED nux" -m "Branch: b\nIssue: hb-1"\nbd ready\n```'
    assert commands_in(answer) == ['gt mail send harbor/witness -s "MERGED nux" -m "Branch: b\nIssue: hb-1"',
                                   "bd ready"]
    assert match("gt mail send harbor/witness -s 'MERGED *' -m x", commands_in(answer)[0], free=["-m"]).ok
