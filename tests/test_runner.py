"""The book runner: what it re-runs, and the pages it writes."""
import json

import book


def test_dependencies_follow_imports_transitively():
    deps = {str(p.relative_to(book.ROOT)) for p in book.dependencies("peft/lora")}
    assert "nbs/peft/lora.ipynb" in deps
    # the chapter imports recipes.core.zoo, which imports core.setup and (lazily) core.text
    assert {"recipes/core/zoo.py", "recipes/core/setup.py", "recipes/core/text.py"} <= deps
    assert "recipes/unlearning/npo.py" not in deps


def test_fingerprint_changes_with_a_dependency(monkeypatch, tmp_path):
    import shutil
    for d in ("nbs", "recipes"):
        shutil.copytree(book.ROOT / d, tmp_path / d)
    monkeypatch.setattr(book, "ROOT", tmp_path)
    monkeypatch.setattr(book, "NBS", tmp_path / "nbs")
    monkeypatch.setattr(book, "PKG", tmp_path / "recipes")
    before = book.fingerprint("peft/lora", {})
    assert before == book.fingerprint("peft/lora", {})
    assert before != book.fingerprint("peft/lora", {"scale": "paper"})
    untouched = book.fingerprint("regularization/elr", {})
    with open(tmp_path / "recipes" / "core" / "zoo.py", "a") as f:
        f.write("\n# edited\n")
    assert book.fingerprint("peft/lora", {}) != before, "editing an imported module must re-run the chapter"
    assert book.fingerprint("regularization/elr", {}) == untouched, "a chapter that doesn't import it must be skipped"


def test_pages_render_records_without_abstracts(monkeypatch, tmp_path):
    chapters = tmp_path / "chapters"
    (chapters / "x").mkdir(parents=True)
    claim = {"paper": "Early-Learning Regularization Prevents Memorization of Noisy Labels", "statement": "A | beats *B*",
             "metric": "acc", "mean": 0.1, "sd": 0.01, "ci_low": 0.09, "ci_high": 0.11, "effects": [0.1, 0.1],
             "comparator": ">", "margin": 0.0, "status": "reproduced", "expected": "reproduced"}
    (chapters / "x" / "demo.record.json").write_text(json.dumps(
        {"chapter": "x/demo", "title": "Demo", "seconds": 1.5, "claims": [claim]}))
    monkeypatch.setattr(book, "EXECUTED", chapters)
    monkeypatch.setattr(book, "BOOK", tmp_path)
    monkeypatch.setattr(book, "LEDGER", tmp_path / "ledger.json")
    book.pages()
    ledger = json.loads((tmp_path / "ledger.json").read_text())
    assert ledger["totals"] == {"chapters": 1, "claims": 1, "reproduced": 1, "not reproduced": 0,
                                "mechanism-only": 0, "seconds": 1.5}
    table = (tmp_path / "reproductions.md").read_text()
    assert r"A \| beats \*B\*" in table, "table cells must be escaped"
    coverage = (tmp_path / "coverage.md").read_text()
    assert "[Demo](chapters/x/demo.ipynb): ✅ reproduced" in coverage
    rows = [l for l in coverage.splitlines() if l.startswith("| ") and not l.startswith("| Paper")]
    assert sum("planned" in l or "reading list:" in l for l in rows) == 370 + 1  # 370 uncovered + the LoRA foundation
    assert "abstract" not in coverage.lower()
