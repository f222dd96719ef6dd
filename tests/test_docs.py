"""Every Python block of the README and of the book's introduction runs as written, in a fresh interpreter."""
import re, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "book" / "intro.md"]


def _blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_python_blocks_run(path, tmp_path):
    blocks = _blocks(path)
    assert blocks, f"{path.name} has no python block"
    for i, code in enumerate(blocks):
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=240)
        assert out.returncode == 0, f"{path.name}, python block {i + 1} fails:\n{code}\n{out.stderr[-2000:]}"
