import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from farm import Farm  # noqa: E402


@pytest.fixture
def farm(tmp_path):
    """A running farm with two 2-thread CPU workers; every process stopped afterwards."""
    f = Farm(tmp_path / "farm")
    yield f
    codes = f.stop()
    assert all(c == 0 for c in codes.values()), (codes, f.ventilator.stderr())


@pytest.fixture
def make_farm(tmp_path):
    """Factory for farms with other options; all stopped afterwards."""
    farms = []

    def make(**kwargs):
        f = Farm(tmp_path / f"farm{len(farms)}", **kwargs)
        farms.append(f)
        return f
    yield make
    for f in farms:
        f.stop()
