"""The built wheel, installed non-editable into a fresh venv, as a user's web backend installs it.

The project directory it runs from owns the generic names extendq must never take: a cookiecutter-django
style `config/` package, a Celery-tutorial `tasks.py` and a `worker.py`; another installed distribution ships
a top-level `config` package of its own.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import PROFILE
from tests.e2e.test_demo import demo_env
from tests.support.emulator import EmulatorProcess
from tests.support.worker import WorkerProcess

# Building the wheel and a venv with its dependencies is minutes on a loaded machine, all in the first test's setup.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
_NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "tests", "bench"
)
# The user's project: what cookiecutter-django, Celery's tutorial and many others put at the top level.
PROJECT_FILES = {
    "config/__init__.py": "",
    "config/settings.py": "DEBUG = True\n",
    "tasks.py": "from celery import Celery\n\napp = Celery('tasks')\n\n\n@app.task\ndef add(x, y):\n    return x + y\n",
    "worker.py": "raise SystemExit('the project worker.py ran')\n",
}
OTHER_CONFIG = "VALUE = 'owned by other-dist'\n"


@dataclass(frozen=True)
class Installed:
    venv: Path
    project: Path

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    @property
    def extendq(self) -> str:
        return str(self.venv / "bin" / "extendq")

    def site_packages(self) -> Path:
        out = self.run(self.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
        return Path(out.stdout.strip())

    def run(
        self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """`args` run in the user's project directory (or `cwd`)."""
        return subprocess.run(
            args, cwd=cwd or self.project, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )


def _wheel(tmp: Path) -> Path:
    """The extendq wheel, built from a copy of the checkout's sources (no build files left in the checkout)."""
    source = tmp / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=_NOT_SOURCES)
    dist = tmp / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist), str(source)]
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    return next(dist.glob("extendq-*.whl"))


def _other_wheel(tmp: Path) -> Path:
    """A distribution that ships a top-level `config` package, as some installed packages do."""
    path = tmp / "other_dist-1.0-py3-none-any.whl"
    files = {
        "config/__init__.py": OTHER_CONFIG,
        "other_dist-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: other-dist\nVersion: 1.0\n",
        "other_dist-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        writer.writerow([name, f"sha256={digest}", len(text.encode())])
    writer.writerow(["other_dist-1.0.dist-info/RECORD", "", ""])
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in {**files, "other_dist-1.0.dist-info/RECORD": record.getvalue()}.items():
            archive.writestr(name, text)
    return path


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """A fresh venv with the other distribution and then the extendq wheel installed, and the user's project."""
    tmp = tmp_path_factory.mktemp("install")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, str(_other_wheel(tmp))], check=True, capture_output=True, timeout=120)
    done = subprocess.run([*pip, str(_wheel(tmp))], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    project = tmp / "project"
    for name, text in PROJECT_FILES.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    yield Installed(venv=venv, project=project)


def test_the_wheel_installs_exactly_one_top_level_import_name(installed: Installed) -> None:
    # Given the installed distribution's own list of files
    listing = installed.run(
        installed.python,
        "-c",
        "import importlib.metadata as m, json; print(json.dumps([str(f) for f in m.files('extendq')]))",
    )
    files = json.loads(listing.stdout)
    # Then every importable file is under extendq/, and nothing else sits at the top of site-packages
    importable = {Path(name).parts[0] for name in files if not name.startswith("..") and ".dist-info" not in name}
    assert importable == {"extendq"}
    # And outside the project, `import config` finds the other distribution's package, unchanged
    found = installed.run(installed.python, "-c", "import config; print(config.__file__)", cwd=installed.venv)
    assert Path(found.stdout.strip()).read_text() == OTHER_CONFIG


def test_a_producer_in_the_project_directory_gets_its_run_from_an_installed_worker(
    installed: Installed, module_redis_url: str, tmp_path: Path
) -> None:
    # Given the installed emulator and an installed `extendq worker`, both started from the user's project
    with EmulatorProcess(profile=PROFILE, program=[installed.extendq], cwd=installed.project) as emulator:
        env = {"EXTENDQ_REDIS_URL": module_redis_url, "EXTENDQ_BASE_URL": emulator.url, "EXTEND_API_KEY": "sk_any"}
        worker = WorkerProcess(
            env, log_path=tmp_path / "worker.log", concurrency=1, program=[installed.extendq], cwd=installed.project
        )
        with worker:
            # When a producer there imports submit from the package and waits for the result
            producer = (
                "from extendq import submit\n"
                "job = submit(workflow='workflow_processed', file={'text': 'Invoice Number: INV-7 Total: $3.00'})\n"
                "print(job.get(timeout=60)['status'])\n"
            )
            done = installed.run(installed.python, "-c", producer, env={**os.environ, **env})
    # Then the run ended PROCESSED, and neither the project's tasks.py nor its worker.py was imported
    assert done.returncode == 0, done.stderr + worker.log_text()[-3000:]
    assert done.stdout.strip() == "PROCESSED"
    assert "the project worker.py ran" not in worker.log_text()


def test_the_installed_demo_runs_from_the_project_directory(installed: Installed, redis_server_url: str) -> None:
    # When `extendq demo` runs from the user's project, with its samples from the package
    done = installed.run(installed.extendq, "demo", env=demo_env(redis_server_url), timeout=120)
    # Then it exits 0 and shows its table with every sample's outcome
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PROCESSED 18" in done.stdout and "NEEDS_REVIEW 4" in done.stdout
    assert "invoices/northwind-1042.txt" in done.stdout


def test_uninstalling_leaves_the_project_and_other_packages_alone(installed: Installed) -> None:
    # Given what the project and the other distribution own before
    site = installed.site_packages()
    before = {path: path.read_bytes() for path in [*installed.project.rglob("*.py"), site / "config" / "__init__.py"]}
    # When extendq is uninstalled
    done = installed.run(installed.python, "-m", "pip", "uninstall", "--yes", "extendq")
    assert done.returncode == 0, done.stderr
    # Then extendq is gone, and every file of the project and of the other distribution is still there, unchanged
    assert not (site / "extendq").exists()
    assert {path: path.read_bytes() for path in before if path.exists()} == before
