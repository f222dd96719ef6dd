"""The book runner: what it re-runs, how it keeps records and their history, what it fails on, and the pages."""
import json, time

import pytest

import book


def test_dependencies_follow_imports_transitively():
    deps = {str(p.relative_to(book.ROOT)) for p in book.dependencies("peft/lora")}
    assert "nbs/peft/lora.ipynb" in deps
    # the chapter imports recipes.core.zoo, which imports core.setup and (lazily) core.text
    assert {"recipes/core/zoo.py", "recipes/core/setup.py", "recipes/core/text.py"} <= deps
    assert "recipes/unlearning/npo.py" not in deps


@pytest.fixture
def sandbox(monkeypatch, tmp_path):
    "A copy of nbs/ and recipes/ with records and pages under tmp_path."
    import shutil
    for d in ("nbs", "recipes"):
        shutil.copytree(book.ROOT / d, tmp_path / d)
    for name, value in dict(ROOT=tmp_path, NBS=tmp_path / "nbs", PKG=tmp_path / "recipes", RECORDS=tmp_path / "ledger",
                            EXECUTED=tmp_path / "book" / "chapters", BOOK=tmp_path / "book",
                            LEDGER=tmp_path / "ledger.json").items():
        monkeypatch.setattr(book, name, value)
    return tmp_path


def test_fingerprint_changes_with_a_dependency(sandbox):
    before = book.fingerprint("peft/lora", {})
    assert before == book.fingerprint("peft/lora", {})
    assert before != book.fingerprint("peft/lora", {"scale": "paper"})
    untouched = book.fingerprint("regularization/elr", {})
    with open(sandbox / "recipes" / "core" / "zoo.py", "a") as f:
        f.write("\n# edited\n")
    assert book.fingerprint("peft/lora", {}) != before, "editing an imported module must re-run the chapter"
    assert book.fingerprint("regularization/elr", {}) == untouched, "a chapter that doesn't import it must be skipped"


SPEC = dict(paper="LoRA: Low-Rank Adaptation of Large Language Models", statement="A | beats *B*",
            metric="accuracy", method="A", baseline="B", comparator=">", margin=0.0, margin_source="paper: 'beats'",
            mechanism=False, log_ratio=False, confidence=0.95, seeds=[0, 1])


def _claim(id="a-beats-b", verdict="reproduced", mean=0.1, first_edition=None, **spec):
    return {"id": id, "first_edition": first_edition, "spec": {**SPEC, **spec}, "method_values": [0.9, 0.9],
            "baseline_values": [0.8, 0.8], "effects": [0.1, 0.1], "mean": mean, "sd": 0.01,
            "ci_low": mean - 0.01, "ci_high": mean + 0.01, "verdict": verdict}


def _run(*claims, chapter="x/demo", error=None):
    return {"chapter": chapter, "title": "Demo", "seconds": 1.5, "claims": list(claims), "fingerprint": "f" * 16,
            "warnings": [], **({"error": error} if error else {})}


def test_a_record_registers_claims_and_keeps_their_amendments():
    first = book.merge(None, _run(_claim()), today="2026-12-01")
    c = first["claims"][0]
    assert c["registered"] == "2026-12-01" and c["history"] == [{"date": "2026-12-01", "event": "registered"}]
    same = book.merge(first, _run(_claim(mean=0.2)), today="2026-12-02")
    assert same["claims"][0]["history"] == c["history"] and same["claims"][0]["mean"] == 0.2, "new values, same spec"
    loosened = book.merge(same, _run(_claim(margin=-0.05)), today="2026-12-03")
    h = loosened["claims"][0]["history"]
    assert h[-1] == {"date": "2026-12-03", "event": "amended", "changes": {"margin": [0.0, -0.05]}}
    assert loosened["claims"][0]["registered"] == "2026-12-01"
    dropped = book.merge(loosened, _run(_claim(id="other")), today="2026-12-04")
    assert [w["id"] for w in dropped["withdrawn"]] == ["a-beats-b"], "a claim that disappears is kept as withdrawn"
    with pytest.raises(ValueError, match="failed run"):
        book.merge(first, _run(error="boom"))


def test_a_claim_continuing_the_first_edition_starts_from_it():
    first = book._first_edition()[14]
    rec = book.merge(None, _run(_claim(first_edition=14, **{**first["spec"], "margin": -0.02})), today="2026-12-01")
    h = rec["claims"][0]["history"]
    assert h[0]["event"] == "first edition" and h[0]["date"] == first["date"] and h[0]["verdict"] == first["verdict"]
    assert h[1] == {"date": "2026-12-01", "event": "amended", "changes": {"margin": [first["spec"]["margin"], -0.02]}}
    with pytest.raises(ValueError, match="first-edition claim 9999"):
        book.merge(None, _run(_claim(first_edition=9999)))


@pytest.mark.parametrize("recorded, fresh, fails, noted", [
    ("reproduced", "reproduced", False, False), ("reproduced", "refuted", True, False),
    ("refuted", "reproduced", True, False), ("reproduced", "inconclusive", False, True),
    ("inconclusive", "refuted", False, True), ("holds", "fails", True, False)])
def test_regressions_fail_only_on_a_flip(recorded, fresh, fails, noted):
    failures, notes = book.regressions(book.merge(None, _run(_claim(verdict=recorded))), _run(_claim(verdict=fresh)))
    assert bool(failures) == fails and bool(notes) == noted, (failures, notes)


def test_regressions_fail_on_an_error_a_missing_claim_or_a_missing_record():
    rec = book.merge(None, _run(_claim(), _claim(id="second")))
    assert book.regressions(rec, _run(error="cell 3 raised"))[0]
    assert "did not check it" in book.regressions(rec, _run(_claim()))[0][0]
    assert "no committed record" in book.regressions(None, _run(_claim()))[0][0]


def test_stale_records_are_named(sandbox):
    rec = book.merge(None, {**_run(_claim(), chapter="peft/lora"), "fingerprint": book.fingerprint("peft/lora", {})})
    book.record_path("peft/lora").parent.mkdir(parents=True)
    book.record_path("peft/lora").write_text(json.dumps(rec))
    stale = dict(book.stale(["peft/lora", "peft/ssf"]))
    assert stale == {"peft/ssf": "no record"}
    with open(sandbox / "nbs" / "peft" / "lora.ipynb", "a") as f:
        f.write(" ")
    assert "code changed" in dict(book.stale(["peft/lora"]))["peft/lora"]
    assert book.refresh_command(["peft/lora"]).endswith("tools/book.py run peft/lora")


@pytest.mark.parametrize("n_chapters", [47, 250])
def test_selection_fits_the_budget_and_rotates(n_chapters):
    "At today's size and at 250 chapters the sample stays within the chapter-time budget, and each commit draws another."
    import random
    rng = random.Random(0)
    seconds = {f"part/ch{i:03d}": rng.uniform(3, 60) for i in range(n_chapters)}
    start = time.perf_counter()
    a = book.select(900, key="a" * 40, seconds=seconds)
    assert time.perf_counter() - start < 0.5
    b = book.select(900, key="b" * 40, seconds=seconds)
    assert sum(seconds[n] for n in a) <= 900 and sum(seconds[n] for n in b) <= 900
    assert a != b and a == book.select(900, key="a" * 40, seconds=seconds), "same commit, same sample"
    covered = set().union(*(book.select(900, key=str(k), seconds=seconds) for k in range(150)))
    assert covered == set(seconds), "over successive commits every chapter runs"


def test_pages_render_records(sandbox):
    rec = book.merge(None, {**_run(_claim(), _claim(id="loose", verdict="inconclusive", mean=0.0, log_ratio=True),
                                   _claim(id="merge-exact", verdict="holds", mechanism=True,
                                          margin_source="mechanism: exact")), "fingerprint": "0" * 16}, today="2026-12-01")
    rec = book.merge(rec, {**_run(_claim(), _claim(id="loose", verdict="inconclusive", mean=0.0, log_ratio=True,
                                                   margin=0.1), _claim(id="merge-exact", verdict="holds", mechanism=True,
                                                                       margin_source="mechanism: exact")),
                           "fingerprint": "0" * 16}, today="2026-12-02")
    path = book.record_path("peft/lora")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**rec, "chapter": "peft/lora"}))
    (sandbox / "book").mkdir(exist_ok=True)
    book.pages()
    ledger = json.loads((sandbox / "ledger.json").read_text())
    t = ledger["totals"]
    assert (t["claims"], t["reproduced"], t["inconclusive"], t["holds"], t["amended"]) == (3, 1, 1, 1, 1)
    page = (sandbox / "book" / "reproductions.md").read_text()
    assert r"A \| beats \*B\*" in page, "table cells must be escaped"
    assert "forest-peft.png" in page and (sandbox / "book" / "_static" / "forest-peft.png").stat().st_size > 1000
    assert "amended: margin: 0.0 → 0.1" in page and "#history-peft-lora-loose" in page
    assert "> 1.11×" in page, "a log-ratio margin is shown as a ratio"
    assert "✅" not in page and "❌" not in page, "verdicts are text badges, not emoji"
    coverage = (sandbox / "book" / "coverage.md").read_text()
    assert "[Demo](chapters/peft/lora.ipynb): " in coverage and ">reproduced</span>" in coverage
    assert "abstract" not in coverage.lower()


def test_api_page_reads_the_docments():
    page = book.api_page()
    assert "### `LoraConfig`" in page and "rank of the update BA" in page, "parameter notes must reach the API page"
    assert "SpectralConfig" not in page, "abstract bases are not methods"


def test_coverage_comes_from_the_declarations():
    page = book.coverage_page(book.records(), book._claims_module())
    lora = next(line for line in page.splitlines() if line.startswith("| [LoRA: Low-Rank Adaptation"))
    assert "peft/interop" in lora and "peft/lora" in lora, "every chapter that declares a paper is listed beside it"


def test_benchmarks_page_has_the_fused_columns():
    book.benchmarks_page()
    page = (book.BOOK / "benchmarks.md").read_text()
    if "No measurements yet" in page:
        pytest.skip("no bench.json in this checkout")
    assert "| Fused (ms) | Compiled (ms) | Compile (s) | Fused AdamW (ms) |" in page
