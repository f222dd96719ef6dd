"""The project's invariants: layout, clean notebooks, an export in sync, the toc, the data files."""
import csv, filecmp, json, re, shutil, subprocess, sys, tomllib
from pathlib import Path

import pytest
import yaml

import book

ROOT = book.ROOT
SECTIONS = ["## Paper", "## The idea", "## Implementation", "## Tests", "## Experiment", "## Figure",
            "## Claim check", "## What differs from the paper", "## Run it at paper scale"]
NOTEBOOKS = sorted(p for p in (ROOT / "nbs").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def _cells(path):
    return json.loads(path.read_text())["cells"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_is_clean(path):
    dirty = [i for i, c in enumerate(_cells(path)) if c["cell_type"] == "code" and (c["outputs"] or c["execution_count"])]
    assert not dirty, f"{path} holds outputs in cells {dirty}; run nbdev-clean"
    meta = [i for i, c in enumerate(_cells(path)) if set(c.get("metadata", {})) - {"tags"}]
    assert not meta, f"{path} has cell metadata beyond tags in cells {meta}; run nbdev-clean"


CHAPTER_NBS = [p for p in NOTEBOOKS if "core" not in p.relative_to(ROOT / "nbs").parts]


@pytest.mark.parametrize("path", CHAPTER_NBS, ids=lambda p: str(p.relative_to(ROOT)))
def test_chapter_structure(path):
    cells = _cells(path)
    headings = [line.strip() for c in cells if c["cell_type"] == "markdown"
                for line in "".join(c["source"]).splitlines() if line.startswith("## ")]
    found = [h for h in headings if h in SECTIONS]
    assert found == SECTIONS, f"{path}: sections must be, in order, {SECTIONS}; found {found}"
    params = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, f"{path} needs exactly one cell tagged 'parameters'"
    src = "".join(params[0]["source"])
    assert "scale" in src and "seeds" in src, f"{path}: the parameters cell must define `scale` and `seeds`"
    code = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    if path.name != "_template.ipynb":
        assert "seeds = as_seeds(seeds)" in code, (f"{path}: read the seeds with recipes.core.setup.as_seeds, so that "
                                                   "`papermill -p seeds \"[...]\"` (which passes text) works")
    first = "".join(cells[0]["source"])
    if path.name != "_template.ipynb":
        rel = path.relative_to(ROOT / "nbs").with_suffix("")
        assert first.strip() == f"#| default_exp {'.'.join(rel.parts)}", f"{path}: module name must mirror the notebook path"


def test_toc_lists_every_chapter():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    listed = {f.removeprefix("chapters/") for f in files if f.startswith("chapters/")}
    assert listed == set(book.chapters()), f"_toc.yml and nbs/ disagree: {listed ^ set(book.chapters())}"
    for f in files:
        if not f.startswith("chapters/"):
            assert (ROOT / "book" / f"{f}.md").exists() or f in ("reproductions", "coverage", "timing", "benchmarks"), f


def test_export_is_in_sync(tmp_path):
    "recipes/ must equal a fresh nbdev-export of nbs/."
    for name in ("pyproject.toml", "nbs"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    (tmp_path / "recipes").mkdir()
    shutil.copy(ROOT / "recipes" / "__init__.py", tmp_path / "recipes" / "__init__.py")
    exe = Path(sys.executable).parent / "nbdev-export"
    subprocess.run([str(exe)], cwd=tmp_path, check=True, capture_output=True)
    fresh = sorted(p.relative_to(tmp_path / "recipes") for p in (tmp_path / "recipes").rglob("*.py"))
    committed = sorted(p.relative_to(ROOT / "recipes") for p in (ROOT / "recipes").rglob("*.py"))
    assert fresh == committed, f"modules differ: {set(fresh) ^ set(committed)}"
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / "recipes" / p, ROOT / "recipes" / p, shallow=False)]
    assert not stale, f"recipes/ is out of date with nbs/ for {stale}; run nbdev-export and commit"


def test_no_settings_ini():
    assert not (ROOT / "settings.ini").exists(), "nbdev 3 keeps its config in pyproject.toml [tool.nbdev]"


def test_environment_yml_matches_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    extras = {e for line in pip if line.startswith("-e .[") for e in line[len("-e .["):-1].split(",")}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert extras and extras <= set(project["optional-dependencies"]), (extras, project["optional-dependencies"].keys())
    assert "torch==2.13.0" in project["dependencies"]


def test_catalog_data_has_no_abstracts():
    with open(book.CATALOG, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 371 and "abstract" not in rows[0]
    assert {r["tier"] for r in rows} <= {"A", "B", "C", "D"}
    assert all(r["reading_list_reason"] for r in rows if r["tier"] == "D")


def test_records_are_well_formed():
    "Every committed record has a fingerprint, and every claim an id, a spec with a margin source, and a three-way verdict."
    recs = book.records()
    assert recs, "no chapter records under ledger/"
    for r in recs:
        assert r["fingerprint"] and r["chapter"] in book.chapters(), r["chapter"]
        ids = [c["id"] for c in r["claims"]]
        assert len(ids) == len(set(ids)), f"{r['chapter']}: duplicate claim ids {ids}"
        for c in r["claims"]:
            s = c["spec"]
            assert c["verdict"] in (("holds", "fails") if s["mechanism"] else ("reproduced", "refuted", "inconclusive")), c
            assert c["ci_low"] <= c["mean"] <= c["ci_high"] and len(s["seeds"]) == len(c["effects"])
            assert s["margin_source"].split(":")[0] in ("paper", "catalog", "mechanism"), (r["chapter"], c["id"])
            assert c["registered"] == c["history"][0]["date"]


def test_no_chapter_declares_its_expected_outcome():
    for path in NOTEBOOKS:
        code = "".join("".join(c["source"]) for c in _cells(path) if c["cell_type"] == "code")
        assert not re.search(r"[(,]\s*expected\s*=", code), f"{path}: a chapter declares the claim, never the outcome it expects"
