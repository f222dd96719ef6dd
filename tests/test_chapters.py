"""Chapters executed with papermill at their default (CPU) parameters, and checked against their committed records.

`make test` executes a rotating sample of chapters chosen from the commit hash within a chapter-time budget
(`RECIPES_TEST_BUDGET`, seconds, default 900, less the training time of zoo models not yet cached);
`RECIPES_CHAPTERS=all` (or `make test-all`) executes every chapter,
and `RECIPES_CHAPTERS="optim/lion peft/lora"` the ones named. Each run is compared with the chapter's record in
`ledger/`: an error, a missing claim, or a claim that moves between reproduced and refuted fails; a move to or from
inconclusive is reported in the summary. The executed copies land in book/chapters, where `make book` reuses them."""
import csv, json, os

import pytest

import book

CHAPTERS = book.chapters()
_wanted = os.environ.get("RECIPES_CHAPTERS", "").split()
BUDGET = float(os.environ.get("RECIPES_TEST_BUDGET", book.TEST_BUDGET_SECONDS))
# On a cold cache the zoo's house models train inside the first chapter that needs them: that is chapter time too.
SELECTED = CHAPTERS if _wanted == ["all"] else sorted(_wanted) if _wanted else book.select(BUDGET - book.zoo_debt())
# The three cheapest chapters of the sample that check claims run again under another CPU kernel set (ATen's
# portable kernels, MKL's compatible code path), so asserts that hold only on this machine's kernels fail here.
PORTABLE = sorted(sorted(SELECTED, key=lambda n: (n.startswith("core/"), (book.load_record(n) or {}).get("seconds") or 1e9))[:3])
NOTES = book.EXECUTED / "test-notes.txt"


def _known_titles():
    with open(book.CATALOG, newline="") as f:
        titles = {r["title"] for r in csv.DictReader(f)}
    with open(book.FOUNDATIONS, newline="") as f:
        return titles | {r["title"] for r in csv.DictReader(f)}


def test_records_are_fresh():
    "Every chapter has a committed record made by today's code."
    old = book.stale()
    assert not old, ("stale records: " + "; ".join(f"{n} ({why})" for n, why in old)
                     + f"\nrefresh exactly those with:\n  {book.refresh_command([n for n, _ in old])}\nand commit ledger/")


def _check(name: str, run: dict):
    failures, notes = book.regressions(book.load_record(name), run)
    if notes:
        NOTES.parent.mkdir(parents=True, exist_ok=True)
        with open(NOTES, "a") as f:
            f.writelines(n + "\n" for n in notes)
    assert not failures, "\n".join(failures)
    assert not run["warnings"], f"{name} prints raw warnings that would show in the book: {run['warnings']}"
    if not name.startswith("core/"):
        assert run["claims"], f"chapter {name} recorded no claim"
        unknown = {c["spec"]["paper"] for c in run["claims"]} - _known_titles()
        assert not unknown, f"{name} cites papers by titles not in data/catalog.csv or data/foundations.csv: {unknown}"


@pytest.mark.parametrize("name", SELECTED)
def test_chapter(name):
    run = book.run_chapter(name, force=True)
    print(f"{name}: {run['seconds']} s, {len(run['claims'])} claims")
    _check(name, run)


@pytest.mark.parametrize("name", PORTABLE)
def test_chapter_on_another_kernel_set(name, tmp_path):
    "The same chapter with ATen's portable kernels and MKL's compatible code path still agrees with its record."
    run = book.run_chapter(name, force=True, env=book.PORTABLE_ENV, out=tmp_path / f"{name}.ipynb")
    print(f"{name} with {book.PORTABLE_ENV}: {run['seconds']} s")
    _check(name, run)
