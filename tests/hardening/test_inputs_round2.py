"""Careless and hostile input to `dataset inspect`, `formulas`, `--var` and `config.toml`: one `error:`
line and exit 1, never a traceback (exit 4), a hang or a request to a model hub.
"""
import ast
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import gt_finetune
from gt_finetune.cli import main
from gt_finetune.config import load_section
from gt_finetune.corpus.health import HealthConfig
from gt_finetune.errors import InputError
from gt_finetune.train.plan import PlanSettings

from kit import time_limit

PACKAGE = Path(gt_finetune.__file__).resolve().parent
LONG = "x" * 5000


@pytest.fixture(autouse=True)
def no_hang():
    with time_limit(60, "the command"):
        yield


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error(code, err, *needles):
    """Exit 1 with one short `error:` line (and maybe a hint) that names what was wrong."""
    assert code == 1, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    first = errors[0]
    assert len(first) < 600, first  # a 5,000-char value is shortened, not echoed whole
    for needle in needles:
        assert needle in first, first


# -- dataset inspect --------------------------------------------------------------------------

def make_dataset(home: Path, model_dir: str, *, train=None, eval_rows=None) -> Path:
    folder = home / "dataset" / "ds-test"
    folder.mkdir(parents=True)
    rows = train if train is not None else [
        {"id": "a", "group": "g", "input_ids": [72, 105], "labels": [-100, 105]}]
    (folder / "train.jsonl").write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    if eval_rows is not None:
        (folder / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in eval_rows))
    (folder / "manifest.json").write_text(json.dumps({
        "schema_version": 1, "stage": "dataset", "id": "sha256:" + "ab" * 32, "inputs": ["corpus-x"],
        "model_dir": model_dir, "counts": {"train": len(rows), "eval": 0, "dropped": 0}}))
    return folder


def test_inspect_refuses_a_corpus_folder(isolated, capsys):
    folder = isolated / "corpus" / "corpus-20260101T000000-abcdefabcdef"
    folder.mkdir(parents=True)
    (folder / "records.jsonl").write_text("")
    (folder / "manifest.json").write_text(json.dumps({"schema_version": 1, "stage": "corpus", "id": folder.name}))
    one_error(*run_cli(capsys, "dataset", "inspect", str(folder))[::2], "corpus")


def test_inspect_refuses_a_missing_split(isolated, tiny_model, capsys):
    make_dataset(isolated, str(tiny_model()))
    one_error(*run_cli(capsys, "dataset", "inspect", "ds-test", "--split", "eval")[::2], "eval")


def test_inspect_refuses_a_truncated_manifest(isolated, capsys):
    folder = make_dataset(isolated, "/nowhere")
    (folder / "manifest.json").write_text('{"schema_version": 1, "stage": "data')
    one_error(*run_cli(capsys, "dataset", "inspect", str(folder))[::2], "manifest.json")


@pytest.mark.parametrize("bad", [
    '{"id": "b", "group": "g", "input_ids": [1, 2',  # cut off mid-line
    '{"id": "b", "group": "g"}',  # no tokens
    '{"id": "b", "group": "g", "input_ids": [1, 2], "labels": [1]}',  # labels do not line up
    '{"id": "b", "group": "g", "input_ids": ["x", 2], "labels": [-100, 2]}',
    '{"id": "b", "group": "g", "input_ids": [1, 99999999999999999999], "labels": [-100, -100]}',
    '[1, 2, 3]',
])
def test_inspect_names_a_corrupt_example_and_still_shows_the_good_ones(isolated, tiny_model, capsys, bad):
    good = {"id": "a", "group": "g", "input_ids": [72, 105], "labels": [-100, 105]}
    make_dataset(isolated, str(tiny_model()), train=[good, bad])
    code, out, err = run_cli(capsys, "dataset", "inspect", "ds-test", "--example", "1")
    one_error(code, err, "train.jsonl:2")
    code, out, err = run_cli(capsys, "dataset", "inspect", "ds-test", "--example", "0")
    assert code == 0, err
    assert out.strip()


def test_inspect_with_a_5000_char_name_is_a_user_error(isolated, capsys):
    one_error(*run_cli(capsys, "dataset", "inspect", LONG)[::2])
    one_error(*run_cli(capsys, "dataset", "inspect", "/tmp/" + "y" * 300)[::2])
    one_error(*run_cli(capsys, "dataset", "inspect", "ft-" + LONG)[::2])  # read as a job id


class CountingListener:
    """A TCP listener on 127.0.0.1 that counts the connections made to it and closes each."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.count, self.stop = 0, False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.count += 1
            conn.close()

    def close(self):
        self.stop = True
        self.thread.join()
        self.sock.close()


def test_inspect_never_contacts_a_model_hub(isolated, tiny_model, tmp_path):
    """A `model_dir` that is no folder (a hub id) is an input error; a real folder loads offline."""
    hub = make_dataset(isolated, "org/model")
    local = tmp_path / "local"
    local.mkdir()
    make_dataset(local, str(tiny_model()))
    listener = CountingListener()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(HF_ENDPOINT=listener.url, HF_HOME=str(tmp_path / "hf"), GT_FINETUNE_HOME=str(isolated))
    code = ("import sys; from gt_finetune.cli import main\n"
            f"print('codes', main(['dataset', 'inspect', {str(hub)!r}]), "
            f"main(['dataset', 'inspect', {str(local / 'dataset' / 'ds-test')!r}]))\n")
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=50, env=env,
                              cwd=tmp_path)
    finally:
        listener.close()
    assert "codes 1 0" in done.stdout, done.stderr[-3000:]
    assert "org/model" in done.stderr and "not a folder" in done.stderr
    assert listener.count == 0


def test_every_model_load_in_the_package_is_local_only():
    """`from_pretrained` with a name that is no folder downloads it; each call must say local files only."""
    missing = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "from_pretrained":
                local = [k for k in node.keywords if k.arg == "local_files_only"]
                if not (local and isinstance(local[0].value, ast.Constant) and local[0].value.value is True):
                    missing.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert missing == []


# -- formulas and vars ------------------------------------------------------------------------

def test_formulas_show_with_a_5000_char_name_is_a_user_error(capsys):
    one_error(*run_cli(capsys, "formulas", "show", LONG)[::2], "not found")


def test_a_5000_char_var_is_refused_before_any_work(isolated, capsys):
    one_error(*run_cli(capsys, "plan", "finetune-lora", "--var", f"source={LONG}")[::2], "source")
    assert not (isolated / "corpus").exists()


@pytest.mark.parametrize("target", ["/dev/zero", "fifo", "big", "/dev/null"])
def test_formulas_check_reads_only_regular_files_of_sane_size(tmp_path, target):
    """In a child with a memory cap: reading `/dev/zero` whole would take all the memory there is."""
    if target == "fifo":
        target = str(tmp_path / "x.formula.toml")
        os.mkfifo(target)  # nobody writes: opening it to read blocks for ever
    elif target == "big":
        target = str(tmp_path / "big.formula.toml")
        Path(target).write_text("# " + "x" * 4_000_000 + "\n")
    cap = "import resource; resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
    code = cap + f"from gt_finetune.cli import main; raise SystemExit(main(['formulas', 'check', {target!r}]))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=40)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.startswith("error: ") and target[-20:] in done.stderr
    assert ("over 1 MB" if target.endswith("big.formula.toml") else "not a regular file") in done.stderr \
        or target == "/dev/null"


# -- config.toml ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, needle", [
    ("redaction = 5\n", "redaction"),
    ('redaction = "off"\n', "redaction"),
    ("[redaction]\npii = \"yes\"\n", "pii"),
    ("[redaction]\nentropy_threshold = \"x\"\n", "entropy_threshold"),
    ("[redaction]\nentropy_threshold = true\n", "entropy_threshold"),
    ("[redaction]\nmax_record_chars = 1.5\n", "max_record_chars"),
    ("[redaction]\ndisabled_rules = [1]\n", "disabled_rules"),
    ("[redaction]\ndisabled_rules = [{ a = 1 }]\n", "disabled_rules"),
    ("[redaction]\nallowlist = \"^x$\"\n", "allowlist"),
    ("[redaction]\nallowlist = " + "[" * 100_000 + "\n", "config.toml"),
    (b"[redaction]\npii = \xff\n", "config.toml"),  # not UTF-8
])
def test_a_wrong_config_toml_is_one_error_naming_the_key(isolated, capsys, text, needle):
    isolated.mkdir(parents=True, exist_ok=True)
    (isolated / "config.toml").write_bytes(text if isinstance(text, bytes) else text.encode())
    one_error(*run_cli(capsys, "corpus", "rules")[::2], needle)


def test_config_types_are_checked_for_every_section(isolated):
    isolated.mkdir(parents=True, exist_ok=True)
    (isolated / "config.toml").write_text('[health]\nmin_examples = "50"\n[plan]\nreserve_gb = 2\n')
    with pytest.raises(InputError, match="min_examples"):
        load_section(isolated, "health", HealthConfig)
    assert load_section(isolated, "plan", PlanSettings).reserve_gb == 2.0  # an int is a fine float
