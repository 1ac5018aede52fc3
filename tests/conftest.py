"""Every test gets its own workspace and no town: nothing here touches a real home or town."""
import os
from pathlib import Path

import pytest

FAKES = Path(__file__).resolve().parent / "fakes"
SHARED = Path(os.environ.get("GT_FINETUNE_SHARED") or Path(__file__).resolve().parents[2] / "shared")
TOWN_VARS = ("BEADS_DIR", "GT_TOWN_ROOT", "GT_ROOT", "GT_DOLT_PORT", "GT_DOLT_HOST", "GT_DOLT_USER",
             "GT_DOLT_PASSWORD", "BD_ACTOR", "BEADS_ACTOR", "FAKE_BD_FAIL", "FAKE_GT_FAIL", "FAKE_GT_LOG")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("GT_FINETUNE_HOME", str(home))
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    for var in TOWN_VARS:
        monkeypatch.delenv(var, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return home


@pytest.fixture
def fake_bin(monkeypatch):
    """Put the fake `bd` and `gt` first on PATH."""
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    return FAKES


@pytest.fixture
def hold_trainer(tmp_path, monkeypatch):
    """`hold_trainer(3)`: every trainer the test starts waits before step 3 until a pause or cancel
    request exists, so the request lands at that step on a fast machine and a slow one alike."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent / "hardening"))
    from kill_harness import hook_env

    def hold(step: int) -> None:
        for name, value in hook_env(tmp_path, f"hold:train:{step}").items():
            monkeypatch.setenv(name, value)
    return hold


@pytest.fixture(scope="session")
def shared() -> Path:
    """`../shared`, else a skip: a bare clone has none. CI has it and sets GT_FINETUNE_REQUIRE_SHARED,
    so fixtures that went missing there fail instead of quietly skipping."""
    if not (SHARED / "fixtures" / "real").is_dir():
        reason = f"shared fixtures not found at {SHARED} (set GT_FINETUNE_SHARED)"
        if os.environ.get("GT_FINETUNE_REQUIRE_SHARED"):
            pytest.fail(reason)
        pytest.skip(reason)
    return SHARED


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """`tiny_model("llama3")` → the folder of a tiny random Llama with that chat template (built once)."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from tiny_models import build_tiny

    built: dict[str, Path] = {}

    def get(template: str = "chatml") -> Path:
        if template not in built:
            built[template] = build_tiny(tmp_path_factory.mktemp(f"tiny-{template}"), template)
        return built[template]
    return get


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory) -> Path:
    """The packaged SmolLM2-135M-Instruct converted once per test session (about a minute)."""
    from gt_finetune.models import resolve_model

    return resolve_model("smollm2-135m-instruct", home=tmp_path_factory.mktemp("smollm2-home"))
