"""Write every notebook's code cells to a tree of .py files (one per notebook), so that text tools that skip .ipynb,
such as `duplicates`, read the notebooks' code too.

    python tools/notebook_code.py OUT_DIR      then, for example:  duplicates --repo OUT_DIR
"""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def dump(out: Path) -> int:
    n = 0
    for nb_path in sorted((ROOT / "nbs").rglob("*.ipynb")):
        if ".ipynb_checkpoints" in nb_path.parts:
            continue
        cells = json.loads(nb_path.read_text())["cells"]
        code = [f"# cell {i}\n" + "".join(c["source"]) for i, c in enumerate(cells) if c["cell_type"] == "code"]
        target = out / nb_path.relative_to(ROOT / "nbs").with_suffix(".py")
        target.parent.mkdir(parents=True, exist_ok=True)
        # notebook magics and nbdev directives are not Python; comment them out
        target.write_text("\n\n".join(code).replace("\n%", "\n# %").replace("\n!", "\n# !") + "\n")
        n += 1
    return n


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(f"wrote the code of {dump(Path(sys.argv[1]))} notebooks under {sys.argv[1]}")
