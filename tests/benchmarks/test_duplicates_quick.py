"""The Reviewer's duplicate-threshold calibration runs on a small sample and prints its table (shape only)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CORPUS

ROOT = Path(__file__).resolve().parents[2]


def test_duplicates_calibration_prints_a_row_per_threshold() -> None:
    if not CORPUS.exists():
        pytest.skip("no shared corpus")
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "duplicates.py"), "--sample", "12"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = re.findall(r"^\| (0\.\d\d) \| (\d\.\d\d) \| (\d\.\d{3}) \|$", result.stdout, re.MULTILINE)
    assert [r[0] for r in rows] == ["0.90", "0.92", "0.93", "0.94", "0.95"]
    assert all(0.0 <= float(caught) <= 1.0 and 0.0 <= float(flagged) <= 1.0 for _, caught, flagged in rows)
    assert result.stdout.startswith("12 runbooks;")
