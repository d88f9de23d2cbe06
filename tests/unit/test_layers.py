"""The layers are a contract, not a hope: imports only go down
(records <- agent <- topology <- exporters <- the commands), checked by
import-linter with the contracts in pyproject.toml."""

import os
import pathlib
import re
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_import_linter_contracts_hold():
    lint = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    result = subprocess.run([lint, "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


def test_topology_and_exporters_never_import_the_agent():
    upward = re.compile(r"^\s*(from|import)\s+(taskscope\.)?agent\b", re.M)
    offenders = [str(path.relative_to(REPO)) for layer in ("topology", "exporters")
                 for path in (REPO / layer).rglob("*.py") if upward.search(path.read_text())]
    assert offenders == []
