"""Every notebook, executed once with papermill at its default (CPU) parameters.

A failing cell fails its test with the cell's traceback; a claim whose outcome differs from
what the chapter expected fails inside the notebook (`verify` asserts it)."""
import csv, re

import pytest

import book

CHAPTERS = book.chapters()


def _known_titles():
    with open(book.CATALOG, newline="") as f:
        titles = {r["title"] for r in csv.DictReader(f)}
    with open(book.FOUNDATIONS, newline="") as f:
        return titles | {r["title"] for r in csv.DictReader(f)}


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_executes(name, tmp_path):
    from papermill.exceptions import PapermillExecutionError
    try:
        rec = book.execute(name, tmp_path / f"{name}.ipynb")
    except PapermillExecutionError as e:
        trace = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(e.traceback))  # plain text for CI logs
        pytest.fail(f"{name}: cell {e.exec_count} raised {e.ename}: {e.evalue}\n\n{trace}", pytrace=False)
    print(f"{name}: {rec['seconds']} s, {len(rec['claims'])} claims")
    assert not rec["warnings"], f"{name} prints raw warnings that would show in the book: {rec['warnings']}"
    if not name.startswith("core/"):
        assert rec["claims"], f"chapter {name} recorded no claim in the ledger"
        unknown = {c["paper"] for c in rec["claims"]} - _known_titles()
        assert not unknown, f"{name} cites papers by titles not in data/catalog.csv or data/foundations.csv: {unknown}"
        for c in rec["claims"]:
            assert c["status"] == c["expected"], c
