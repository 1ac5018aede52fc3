"""Paths the user gives — `--home`, `report --out` — and a workspace that cannot be written.

Whatever the path (a symlink, a device, a symlink loop, a name under a file, 5,000 characters, a
read-only disk), the command exits 0/1/2/3 with one `error:` line naming it and no traceback; a
write never replaces a link or a device with a regular file; and commands that only read work on
a read-only workspace (a backup, another user's, a read-only mount).

A folder is made read-only for real: by file modes, and for root (whom modes do not stop) by a
read-only bind mount; where neither works the read-only tests skip, saying why. Never by faking
os.access: SQLite must meet the real refusal.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from gt_finetune.cli import main
from gt_finetune.errors import InputError
from gt_finetune.registry import Registry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_settings import fuzz  # noqa: E402
from kit import time_limit  # noqa: E402

LONG = "x" * 5000
NOT_WRITABLE = ("not writable", "read-only", "permission denied")  # what the one line says, mount or modes
QUICK_FAIL = ("--var", "min_examples=1000000", "--var", "calibrate=false")  # fails at its size gate, fast


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """`gt-finetune argv` in this process, under a generous alarm that turns a hang into a failure."""
    with time_limit(60, f"gt-finetune {' '.join(a[:40] for a in argv)}"):
        code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(code: int, err: str, *, naming: str | None = None) -> str:
    assert code == 1, err
    assert "Traceback" not in err and "bug in gt-finetune" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert len(lines[0]) < 600, lines[0]  # long paths are shortened
    if naming:
        assert naming in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def job(capsys, isolated) -> str:
    """A job whose corpus step failed its size gate: a bead store, a corpus, a job record."""
    code, _, err = cli(capsys, "run", "finetune-lora", *QUICK_FAIL)
    assert code == 1, err
    return next(line for line in err.splitlines() if line.startswith("job ft-")).split()[1].rstrip(":")


@contextlib.contextmanager
def read_only(folder: Path):
    """`folder` really read-only while the block runs: by file modes, or — for root, whom modes do
    not stop — by a read-only bind mount. Skips where this process can do neither."""
    modes = {p: stat.S_IMODE(p.lstat().st_mode) for p in [folder, *folder.rglob("*")] if not p.is_symlink()}
    for p, mode in modes.items():
        p.chmod(mode & ~0o222)
    try:
        if not _writable(folder):
            yield folder
            return
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    mount = shutil.which("mount")
    if mount is None:
        pytest.skip("file modes do not stop this user (root) and there is no `mount`: cannot make a folder read-only")
    bound = subprocess.run([mount, "--bind", str(folder), str(folder)], capture_output=True, text=True)
    if bound.returncode:
        pytest.skip(f"file modes do not stop this user (root) and it cannot bind-mount: {bound.stderr.strip()}")
    try:
        ro = subprocess.run([mount, "-o", "remount,bind,ro", str(folder)], capture_output=True, text=True)
        if ro.returncode:
            pytest.skip(f"file modes do not stop this user (root) and it cannot remount read-only: {ro.stderr.strip()}")
        assert not _writable(folder)
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)  # lazy: the store may still be open


def _writable(folder: Path) -> bool:
    try:
        (folder / ".probe").touch()
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


def special_file(path: Path, kind: str) -> Path:
    """Something at `path` that is not a regular file; what it is must survive a refused write."""
    if kind == "symlink":
        (path.parent / "target.html").write_text("keep me")
        path.symlink_to(path.parent / "target.html")
    elif kind == "dangling":
        path.symlink_to(path.parent / "nowhere.html")
    elif kind == "loop":
        path.symlink_to(path.parent / f"{path.name}.other")
        (path.parent / f"{path.name}.other").symlink_to(path)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
        except PermissionError:
            pytest.skip("this user cannot make a device node (a copy of /dev/full) in a test folder")
    return path


def kind_of(path: Path) -> int:
    return stat.S_IFMT(os.lstat(path).st_mode)


# -- item 10: a write never replaces what is not a regular file ---------------------------------


@pytest.mark.parametrize("kind", ["symlink", "dangling", "loop", "fifo", "device"])
def test_report_out_refuses_to_replace_a_link_or_a_device(capsys, job, tmp_path, kind):
    out = special_file(tmp_path / "page.html", kind)
    before = kind_of(out)
    code, _, err = cli(capsys, "report", job, "--out", str(out))
    line = assert_one_error_line(code, err, naming=str(out))
    assert "not a regular file" in line
    assert kind_of(out) == before  # the link or node is still there, untouched
    if kind == "symlink":
        assert (tmp_path / "target.html").read_text() == "keep me"
    assert not list(tmp_path.glob(".page.html.*"))  # no temp file left behind


def test_report_out_still_replaces_a_regular_file_keeping_its_permissions(capsys, job, tmp_path):
    out = tmp_path / "page.html"
    out.write_text("old")
    out.chmod(0o644)
    code, stdout, err = cli(capsys, "report", job, "--out", str(out))
    assert code == 0, err
    assert stdout.splitlines()[-1] == str(out) and out.read_text().startswith("<!DOCTYPE html>")
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    code, _, err = cli(capsys, "report", job, "--out", str(tmp_path / "new.html"))
    assert code == 0, err
    assert stat.S_IMODE((tmp_path / "new.html").stat().st_mode) == 0o600  # a new file is private


def test_a_long_file_name_that_fits_is_written(capsys, job, tmp_path):
    """The temp file beside it must not be longer than the name limit when the target is not."""
    out = tmp_path / ("p" * 250 + ".html")
    code, _, err = cli(capsys, "report", job, "--out", str(out))
    assert code == 0, err
    assert out.is_file()


# -- item 15: paths that cannot be used are one line, not a traceback ---------------------------


def test_report_out_under_a_file_or_too_long(capsys, job, tmp_path):
    (tmp_path / "a-file").write_text("x")
    for out in (tmp_path / "a-file" / "page.html", tmp_path / "a-file" / "deeper" / "page.html",
                tmp_path / LONG, tmp_path / LONG / "page.html", Path("/dev/null/page.html")):
        code, _, err = cli(capsys, "report", job, "--out", str(out))
        assert_one_error_line(code, err, naming=str(out.parent)[:40])  # the file, or the folder in the way
    assert (tmp_path / "a-file").read_text() == "x"


def test_report_out_on_a_read_only_folder(capsys, job, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    with read_only(folder):
        code, _, err = cli(capsys, "report", job, "--out", str(folder / "page.html"))
        line = assert_one_error_line(code, err, naming=str(folder))
        assert any(why in line for why in NOT_WRITABLE)


@pytest.mark.parametrize("make", ["loop", "under-a-file", "dev-null", "long", "no-such-user"])
def test_home_that_cannot_be_a_workspace(capsys, tmp_path, make):
    if make == "loop":
        home = special_file(tmp_path / "home", "loop")
    elif make == "under-a-file":
        (tmp_path / "a-file").write_text("x")
        home = tmp_path / "a-file" / "home"
    elif make == "dev-null":
        home = Path("/dev/null")
    elif make == "long":
        home = tmp_path / LONG
    else:
        home = Path("~no-such-user-gt-finetune/home")
    for argv in (["list"], ["status"], ["corpus", "list"], ["run", "finetune-lora", *QUICK_FAIL]):
        code, _, err = cli(capsys, *argv, "--home", str(home))
        assert_one_error_line(code, err, naming=str(home)[:40])


def test_home_from_the_environment_is_checked_the_same(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("GT_FINETUNE_HOME", "/dev/null")
    code, _, err = cli(capsys, "list")
    assert_one_error_line(code, err, naming="/dev/null")


@pytest.mark.parametrize("number, code", [(errno.EROFS, 1), (errno.ENAMETOOLONG, 1), (errno.ENOTDIR, 1),
                                          (errno.ELOOP, 1), (errno.EACCES, 1), (errno.ENOSPC, 3)])
def test_an_os_error_about_a_named_path_that_escapes_is_one_line(capsys, monkeypatch, number, code):
    """The last line of defence in main(): the errno is about the path, and the path is named."""
    path = "/somewhere/" + LONG

    def fail(*_, **__):
        raise OSError(number, os.strerror(number), path)
    monkeypatch.setattr("gt_finetune.cli.session_for", fail)
    got, _, err = cli(capsys, "list")
    assert got == code, err
    assert "Traceback" not in err and err.count("error:") == 1 and "/somewhere/xxxx" in err, err
    assert len(err.splitlines()[0]) < 600


@pytest.mark.parametrize("error", [OSError(errno.EIO, "Input/output error", "/x"), OSError(errno.EROFS, "no path"),
                                   FileNotFoundError(errno.ENOENT, "No such file or directory", "/x")])
def test_other_os_errors_still_show_as_bugs(capsys, monkeypatch, error):
    """Not every OSError is the user's path: those main() cannot explain keep their traceback (exit 4)."""
    def fail(*_, **__):
        raise error
    monkeypatch.setattr("gt_finetune.cli.session_for", fail)
    got, _, err = cli(capsys, "list")
    assert got == 4 and "Traceback" in err


# -- item 15: a read-only workspace ---------------------------------------------------------------


READS = [["list"], ["status"], ["corpus", "list"], ["models", "list"], ["dataset", "list"], ["formulas", "list"]]


def test_a_read_only_workspace_can_be_read(capsys, job, isolated, tmp_path):
    Registry(isolated).conn.close()  # a registry too, as after a trained job
    listed = {tuple(argv): cli(capsys, *argv) for argv in [*READS, ["status", job]]}
    with read_only(isolated):
        for argv in [*READS, ["status", job]]:
            code, out, err = cli(capsys, *argv)
            assert code == 0, f"{argv}: {err}"
            assert out == listed[tuple(argv)][1], argv
        code, out, err = cli(capsys, "report", job, "--out", str(tmp_path / "page.html"))
        assert code == 0, err
        assert (tmp_path / "page.html").read_text().startswith("<!DOCTYPE html>")


def test_a_read_only_workspace_with_no_registry_or_store_yet(capsys, isolated):
    isolated.mkdir()
    with read_only(isolated):
        for argv in READS:
            code, _, err = cli(capsys, *argv)
            assert code == 0, f"{argv}: {err}"
    assert not list(isolated.iterdir())


def test_writing_to_a_read_only_workspace_says_which_folder(capsys, job, isolated):
    with read_only(isolated):
        for argv in (["run", "finetune-lora", *QUICK_FAIL], ["report", job], ["corpus", "build"]):
            code, _, err = cli(capsys, *argv)
            line = assert_one_error_line(code, err)
            assert str(isolated) in line, argv
            assert any(why in line for why in NOT_WRITABLE), argv


def test_registry_writes_in_a_read_only_workspace_are_refused_by_name(isolated):
    Registry(isolated).conn.close()
    with read_only(isolated):
        registry = Registry(isolated)
        assert registry.models() == []
        with pytest.raises(InputError, match="not writable") as caught:
            registry.register(model_id="m1", job_id="ft-1", corpus_id="c", dataset_id="d", train_dir="t",
                              base_model="b")
        assert str(isolated) in caught.value.message
        registry.conn.close()


# -- fuzz: any mix of the above for --home and --out ----------------------------------------------


PIECES = ["a", "sub", "..", ".", "a-file", "loop", "dangling", "fifo", "device", "ro", "x" * 300, "é", " ", "-", "~"]


@st.composite
def paths(draw, base: Path) -> str:
    parts = draw(st.lists(st.sampled_from(PIECES) | st.text("ab/.\\-", min_size=1, max_size=4), min_size=1,
                          max_size=4))
    return str(base.joinpath(*parts)) if draw(st.booleans()) else "/".join(parts)


@pytest.fixture
def maze(tmp_path) -> Path:
    """A folder of awkward things to point paths at, one read-only folder among them when possible."""
    base = tmp_path / "maze"
    base.mkdir()
    (base / "a-file").write_text("x")
    (base / "sub").mkdir()
    special_file(base / "loop", "loop")
    special_file(base / "dangling", "dangling")
    special_file(base / "fifo", "fifo")
    with contextlib.suppress(pytest.skip.Exception):  # root only
        special_file(base / "device", "device")
    (base / "ro").mkdir()
    return base


def test_fuzz_home_and_out_paths(capsys, job, maze, monkeypatch):
    def check(home: str, out: str):
        for argv in (["list", "--home", home], ["report", job, "--out", out]):
            kinds = {p: kind_of(p) for p in maze.iterdir()}
            code, _, err = cli(capsys, *argv)
            assert code in (0, 1, 2, 3), f"{argv}: {err}"
            assert "Traceback" not in err, f"{argv}: {err}"
            for p, was in kinds.items():
                assert kind_of(p) == was, f"{argv} replaced {p}"

    monkeypatch.chdir(maze)
    with read_only(maze / "ro"):
        fuzz(100)(given(home=paths(maze), out=paths(maze))(check))()
