import os, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
os.environ.setdefault("OMP_NUM_THREADS", "1")
for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(var, "1")


def pytest_sessionstart(session):
    if not hasattr(session.config, "workerinput"):  # the controller, once: forget the last run's notes
        (ROOT / "book" / "chapters" / "test-notes.txt").unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter):
    "Verdicts that moved to or from inconclusive are reported here, not failed."
    import book
    terminalreporter.write_line(f"chapters executed this run: rotating sample of the commit, budget "
                                f"{os.environ.get('RECIPES_TEST_BUDGET', book.TEST_BUDGET_SECONDS)} s, less the training of zoo models "
                                "that were not cached (RECIPES_CHAPTERS=all runs every chapter)")
    notes = ROOT / "book" / "chapters" / "test-notes.txt"
    if notes.exists() and notes.read_text().strip():
        terminalreporter.section("claims that moved to or from inconclusive (reported, not failed)")
        for line in notes.read_text().splitlines():
            terminalreporter.write_line(line)
