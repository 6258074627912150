"""Every command the README shows runs as written.

Why: a README command that does not parse (Snakemake's ``--config``/``--configfile`` swallow the
words after them, so a target after them is read as config) is the first thing a new user hits.
This test reads README.md, extracts every command (lines of ``bash``/``sh`` code blocks, with
backslash continuations joined, comments dropped and ``&&`` chains split; and inline code spans,
in tables and prose, that start with a command), and runs each in a copy of the repository whose
``..`` holds a ``deep_norm/analysis`` folder of constructed published files:

    snakemake ...            with ``-n`` appended (a dry run: the command line and the DAG parse)
    python -m <module> ...   for real where cheap and offline (RUN_FOR_REAL), else ``--help``
                             appended (it needs results or data that are not here)
    bin/..., .ci/...         ``bash -n`` on the script
    pytest ...               ``--collect-only -q`` appended

Not run, each for a stated reason: ``git clone`` (no network: the copy's ``../deep_norm`` stands in
for the clone), fragments with placeholders (``...``, ``<module>``), the SLURM clients (``sbatch``,
``squeue``: not extracted, they need a cluster) and the commands in SKIP. Bare ``snakemake``,
``python`` and ``pytest`` run from the copy's ``.venv/bin`` (put first on PATH, as an activated
venv would).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO

README = REPO / "README.md"
COMMANDS = (".venv/bin/snakemake", "snakemake", ".venv/bin/python", "python", "bin/", ".ci/",
            "git clone", "pytest")
# python modules run for real: cheap, offline, and their inputs are in the copy
RUN_FOR_REAL = ("workflow_scripts.published", "workflow_scripts.config check", "workflow_scripts.models")
# commands not run at all: (a substring of the command, why)
SKIP = (
    ("git clone", "no network: the copy's ../deep_norm/analysis holds constructed files instead"),
    ("--report", "needs a finished run; tests/test_workflow.py builds the report from config/test.yaml"),
    ("-m tests.test_train_reference", "rewrites tests/data/train_reference.json by training; "
                                      "tests/test_train_reference.py runs the same code"),
)


def _strip_comment(line: str) -> str:
    """``line`` without a trailing ``# comment`` (a # outside quotes, after whitespace)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _split_and(line: str) -> list[str]:
    """``a && b`` -> [a, b] (outside quotes)."""
    parts, quote, start, i = [], None, 0, 0
    while i < len(line):
        ch = line[i]
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif line.startswith("&&", i):
            parts.append(line[start:i].strip())
            start = i + 2
            i += 1
        i += 1
    return [p for p in [*parts, line[start:].strip()] if p]


def _is_command(text: str) -> bool:
    """A script path (bin/test) or a program with arguments; a bare program name is prose."""
    return any(text.startswith(c if c.endswith("/") else c + " ") for c in COMMANDS)


def extract(markdown: str) -> list[tuple[int, str]]:
    """(line number, command) of every command shown: shell code blocks and inline code spans."""
    out, fence, pending, start = [], None, "", 0
    for n, line in enumerate(markdown.splitlines(), 1):
        m = re.match(r"^\s*```(\w*)", line)
        if m:
            fence = None if fence is not None else m.group(1)
            continue
        if fence is not None:
            if fence not in ("bash", "sh", "shell", "console"):
                continue
            if not pending:
                start, line = n, line.removeprefix("$ ")
            text = _strip_comment(line)
            if text.endswith("\\"):
                pending += text[:-1] + " "
                continue
            full, pending = re.sub(r"\s+", " ", (pending + text).strip()), ""
            out += [(start, c) for c in _split_and(full) if _is_command(c)]
            continue
        for span in re.findall(r"`([^`]+)`", line):
            for c in _split_and(span.strip()):
                if _is_command(c):
                    out.append((n, c))
    return out


def placeholder(command: str) -> bool:
    return "..." in command or re.search(r"<[^>]*>", command) is not None


def how_to_run(command: str) -> tuple[str | None, str]:
    """(shell line to run, or None; what is done and why)."""
    for key, why in SKIP:
        if key in command:
            return None, f"skipped: {why}"
    if placeholder(command):
        return None, "skipped: a fragment with placeholders"
    first = command.split()[0]
    if first in ("snakemake", ".venv/bin/snakemake"):
        return command + " -n", "dry run"
    if first in ("python", ".venv/bin/python"):
        if any(f"-m {m}" in command for m in RUN_FOR_REAL):
            return command, "run"
        return command + " --help", "--help: needs results or data not made here"
    if first.startswith(("bin/", ".ci/")):
        return f"bash -n {first}", "bash -n: the script parses"
    if first == "pytest":
        return command + " --collect-only -q", "collected"
    raise AssertionError(f"no way to check {command!r}")


SHOWN = extract(README.read_text())


def test_the_extractor_finds_block_inline_continued_and_chained_commands():
    md = "\n".join([
        "| a | `.venv/bin/snakemake fig_main`, `table1`, `python -m x.y --a 1` |",
        "```bash",
        "bin/setup && .venv/bin/snakemake --cores all   # a comment, with `quotes`",
        ".venv/bin/python -m m \\",
        "  --x \"$(.venv/bin/python -m n --y 'a # b')\" \\",
        "  --z 3",
        "```",
        "```",
        "results/ snakemake tree, not a command",
        "```",
        "prose `squeue --me` and `snakemake --config 'a={\"b\": 1}' t` and `snakemake --sdm conda ...`",
    ])
    assert extract(md) == [
        (1, ".venv/bin/snakemake fig_main"), (1, "python -m x.y --a 1"),
        (3, "bin/setup"), (3, ".venv/bin/snakemake --cores all"),
        (4, ".venv/bin/python -m m --x \"$(.venv/bin/python -m n --y 'a # b')\" --z 3"),
        (11, "snakemake --config 'a={\"b\": 1}' t"), (11, "snakemake --sdm conda ...")]
    assert how_to_run("snakemake --sdm conda ...")[0] is None
    assert how_to_run("bin/test -m \"not slurm\"")[0] == "bash -n bin/test"


def test_the_readme_shows_the_commands_this_test_is_about():
    shown = [c for _, c in SHOWN]
    assert len(shown) > 20
    assert any("table1_published" in c for c in shown)
    for key, _ in SKIP:  # no stale skip
        assert any(key in c for c in shown), key


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """The repository's files (tracked and untracked, not ignored) under root/repo, its .venv
    linked, and root/deep_norm/analysis with constructed published files of every layout."""
    from .test_published import write_appendix, write_published

    root = tmp_path_factory.mktemp("readme")
    repo = root / "repo"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\0")
    for f in filter(None, files):
        src = REPO / f
        if src.is_file():
            (repo / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / f)
    (repo / ".venv").symlink_to((REPO / ".venv").resolve())
    shutil.copy(repo / "config" / "config.yaml", repo / "config" / "my.yaml")  # "config/my.yaml"
    folder = root / "deep_norm" / "analysis"
    write_published(folder, "cnn-mnist", drop=("k2",))
    for name in ("cnn-wd", "resnet-norms", "cnn-cifar10-sgd"):
        write_appendix(folder, name)
    return repo


@pytest.mark.slow
@pytest.mark.parametrize("line, command", SHOWN, ids=[f"L{n}:{c[:60]}" for n, c in SHOWN])
def test_readme_command_runs_as_written(copy, line, command):
    shell, what = how_to_run(command)
    if shell is None:
        pytest.skip(f"README line {line}: {what}")
    env = {**os.environ, "PATH": f"{copy / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(copy)}
    res = subprocess.run(["bash", "-c", shell], cwd=copy, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, (f"README line {line}: {command!r} ({what}) exited {res.returncode}:\n"
                                 + (res.stdout + res.stderr)[-3000:])
