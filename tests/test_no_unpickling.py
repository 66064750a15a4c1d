"""A scan of the whole repository (issue 8): no code path can unpickle a file.

Text rules catch the forbidden spellings in every code file (Python, shell, build and CI
configuration; prose that names them, such as docs/RELIABILITY.md, is not code); the syntax rules
catch what text cannot: every torch.load call names weights_only=True itself. This file,
which spells the patterns, is the one file the text scan skips.
"""
import ast
import re
import subprocess
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
FORBIDDEN = [
    r"weights_only\s*=\s*False",
    r"\b(c?[pP]ickle|dill|cloudpickle|joblib|marshal|shelve)\s*\.\s*(load|loads|Unpickler|open)\b",
    r"allow_pickle\s*=\s*True",
]


def tracked_files(*suffixes: str) -> list[Path]:
    """The files git knows (tracked or new and not ignored): the repository's own code, no venv."""
    names = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPOSITORY,
                           capture_output=True, text=True, check=True).stdout.split("\n")
    return [REPOSITORY / name for name in names if name.endswith(suffixes) and (REPOSITORY / name).is_file()]


def test_the_scan_sees_the_code():
    files = {path.relative_to(REPOSITORY).as_posix() for path in tracked_files(".py")}
    assert {"metaviz/checkpoints.py", "metaviz/user_checkpoints.py", "app.py", "tests/test_checkpoints.py"} <= files


@pytest.mark.parametrize("pattern", FORBIDDEN)
def test_no_forbidden_spelling_anywhere(pattern):
    hits = []
    for path in tracked_files(".py", ".sh", ".toml", ".cfg", ".ini", ".yml", ".yaml", "Makefile", "/run"):
        if path == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if re.search(pattern, line):
                hits.append(f"{path.relative_to(REPOSITORY)}:{number}: {line.strip()}")
    assert not hits, "\n".join(hits)


def torch_load_calls(tree: ast.AST) -> list[ast.Call]:
    """Calls of torch.load / torch.serialization.load, and of `load` imported from torch."""
    imported = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith("torch") for alias in node.names if alias.name == "load"}
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        function = ast.unparse(node.func)
        if function in ("torch.load", "torch.serialization.load") or function in imported:
            calls.append(node)
    return calls


def test_every_torch_load_says_weights_only_true():
    found, unsafe = 0, []
    for path in tracked_files(".py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for call in torch_load_calls(tree):
            found += 1
            explicit = [keyword for keyword in call.keywords if keyword.arg == "weights_only"]
            if not (len(explicit) == 1 and isinstance(explicit[0].value, ast.Constant)
                    and explicit[0].value.value is True):
                unsafe.append(f"{path.relative_to(REPOSITORY)}:{call.lineno}: {ast.unparse(call)}")
    assert found >= 1, "the scan found no torch.load at all: it no longer sees metaviz.checkpoints"
    assert not unsafe, "torch.load without an explicit weights_only=True:\n" + "\n".join(unsafe)


def test_the_scan_would_catch_an_unsafe_load():
    """The rules above, applied to code that breaks them."""
    bad = "import torch\nfrom torch import load as read\ntorch.load(f)\nread(f, weights_only=None)\n"
    assert len(torch_load_calls(ast.parse(bad))) == 2
    line = "state = torch.load(path, weights_only=" + "False)"
    assert re.search(FORBIDDEN[0], line)
    assert re.search(FORBIDDEN[1], "data = pickle" + ".loads(blob)")
