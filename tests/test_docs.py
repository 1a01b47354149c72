"""The documentation runs: every ```python block of every docs/*.md file (and of README.md) is executed, the blocks
of one file in order in one namespace, in a temporary working directory; every line of a ```bash block that is a
``dmm ...`` command runs through `dmm.cli.main` there too and must succeed. Relative links must point at files that
exist, and docs/api.md must be what docs/gen_api.py generates from the docstrings."""

import re
import runpy
import shlex
from pathlib import Path

import jax
import matplotlib
import pytest

from dmm import cli


ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.S | re.M)


def blocks(path: Path) -> list[tuple[str, int, str]]:
    """(language, first line number, code) of every fenced block, in order."""
    text = path.read_text()
    return [(m.group(1), text.count("\n", 0, m.start(2)) + 1, m.group(2)) for m in FENCE.finditer(text)]


def dmm_commands(code: str) -> list[str]:
    """The ``dmm ...`` commands of a shell block (lines that start with ``dmm`` or ``$ dmm``)."""
    out = []
    for line in code.splitlines():
        line = line.strip().removeprefix("$ ")
        if line.startswith("dmm "):
            out.append(line.split(" #")[0])
    return out


@pytest.mark.parametrize("path", [*DOCS, ROOT / "README.md"], ids=lambda p: p.name)
def test_code_blocks_run(path, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "120")
    matplotlib.use("Agg")
    namespace: dict = {"__name__": f"docs_{path.stem}"}
    ran = 0
    for lang, line, code in blocks(path):
        where = f"{path.name}, block at line {line}"
        if lang == "python":
            try:
                with jax.numpy_dtype_promotion("standard"):  # the examples run as a user runs them
                    exec(compile(code, where, "exec"), namespace)
            except Exception as e:
                raise AssertionError(f"{where} failed: {type(e).__name__}: {e}") from e
            ran += 1
        elif lang in ("bash", "sh", "console", "shell"):
            for command in dmm_commands(code):
                rc = cli.main(shlex.split(command)[1:])
                err = capsys.readouterr().err
                assert rc == 0, f"{where}: `{command}` exited with {rc}: {err}"
                ran += 1
    if path.name in ("tutorial.md", "conventions.md", "scaling.md"):
        assert ran, f"{path.name} has no runnable block"


LINK = re.compile(r"\[[^\]]*\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("path", [*DOCS, ROOT / "README.md"], ids=lambda p: p.name)
def test_relative_links_resolve(path):
    for target in LINK.findall(path.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (path.parent / target).exists(), f"{path.name} links to {target}, which does not exist"


def test_index_links_every_doc():
    index = (ROOT / "docs" / "index.md").read_text()
    for doc in DOCS:
        if doc.name != "index.md":
            assert f"({doc.name})" in index, f"docs/index.md does not link {doc.name}"
    assert "(docs/index.md)" in (ROOT / "README.md").read_text()


def test_api_reference_is_current():
    gen = runpy.run_path(str(ROOT / "docs" / "gen_api.py"))
    assert (ROOT / "docs" / "api.md").read_text() == gen["render"](), (
        "docs/api.md is out of date with the docstrings: run `python docs/gen_api.py`")
