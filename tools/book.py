"""The book's runner: execute chapters with papermill, keep each chapter's record, check runs against it, write the pages.

    python tools/book.py run [--jobs N] [--force] [NAME ...]   execute chapters, merge each run into ledger/<theme>/<name>.json
    python tools/book.py stale                                  chapters whose committed record no longer matches their code
    python tools/book.py pages                                  ledger.json + book/{reproductions,coverage,timing}.md
    python tools/book.py summary                                one screen: chapters, verdicts, runtime
    python tools/book.py select [--budget S] [--key K]          the chapters a `make test` run executes
    python tools/book.py toc                                    write _toc.yml from the chapters' declarations
    python tools/book.py exports                                _toc.yml and the packages' __init__.py re-exports
    python tools/book.py catalog PATH                           refresh data/catalog.csv from the paper catalog

A chapter's record (`ledger/<theme>/<name>.json`, committed) holds the fingerprint of the code that
produced it, its runtime, and per claim: a stable id, its spec (statement, metric, method, baseline,
comparator, margin and the margin's source, seeds, confidence), the per-seed values, the three-way
verdict, the date it was registered, and the history of every amendment to its spec.
"""
from __future__ import annotations

import argparse, csv, datetime, hashlib, json, math, os, random, re, subprocess, sys, time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS, BOOK, PKG = ROOT / "nbs", ROOT / "book", ROOT / "recipes"
EXECUTED = BOOK / "chapters"  # papermill's executed copies and their run files (not committed)
RECORDS = ROOT / "ledger"  # one committed record per chapter
LEDGER = ROOT / "ledger.json"  # the generated aggregate (not committed)
CATALOG = ROOT / "data" / "catalog.csv"
FOUNDATIONS = ROOT / "data" / "foundations.csv"
FIRST_EDITION = ROOT / "data" / "first_edition.json"
BUDGET_SECONDS = 60  # one chapter's default run on 2 cores
TEST_BUDGET_SECONDS = 900  # chapter time a `make test` run spends (15 minutes on 2 cores)
VERDICTS = ("reproduced", "refuted", "inconclusive", "holds", "fails")
OPPOSITE = {"reproduced": "refuted", "refuted": "reproduced", "holds": "fails", "fails": "holds"}
# Another CPU kernel set than this machine's, so that fragile asserts show up on one machine.
PORTABLE_ENV = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}


def chapters() -> list[str]:
    "Every executable notebook, as 'theme/name' (the template and checkpoints excluded)."
    return sorted(str(p.relative_to(NBS).with_suffix("")) for p in NBS.rglob("*.ipynb")
                  if not p.name.startswith("_") and ".ipynb_checkpoints" not in p.parts)


def _code(nb_path: Path) -> str:
    nb = json.loads(nb_path.read_text())
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


_IMPORT = re.compile(r"^\s*(?:from\s+(\.+|recipes\.?)([\w.]*)\s+import|import\s+recipes\.([\w.]+))", re.M)


def _module_file(dotted: str) -> Path | None:
    base = PKG.joinpath(*dotted.split(".")) if dotted else PKG
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.exists():
            return cand
    return None


def dependencies(name: str) -> list[Path]:
    "The notebook and every `recipes` module it imports, transitively."
    nb = NBS / f"{name}.ipynb"
    seen: dict[Path, None] = {nb: None}
    todo = [(_code(nb), None)]
    while todo:
        text, pkg = todo.pop()
        for dots, mod, plain in _IMPORT.findall(text):
            if plain:
                dotted = plain
            elif dots.startswith("recipes"):
                dotted = mod
            else:  # nbdev writes relative imports between modules
                parts = (pkg or "").split(".")
                parts = parts[: len(parts) - (len(dots) - 1)] if len(dots) > 1 else parts
                dotted = ".".join(p for p in [*parts, mod] if p)
            f = _module_file(dotted)
            if f and f not in seen:
                seen[f] = None
                rel = f.relative_to(PKG).with_suffix("")
                todo.append((f.read_text(), ".".join(rel.parts[:-1])))
    return list(seen)


def fingerprint(name: str, parameters: dict) -> str:
    h = hashlib.sha256(json.dumps(parameters, sort_keys=True).encode())
    for f in sorted(dependencies(name)):
        h.update(str(f.relative_to(ROOT)).encode() + f.read_bytes())
    return h.hexdigest()[:16]


def _tidy(out: Path):
    "Hide cells a reader should not see in the book: nbdev's export target and papermill's injected parameters."
    import nbformat
    nb = nbformat.read(out, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if cell.cell_type == "code" and ("injected-parameters" in tags or cell.source.lstrip().startswith("#| default_exp")):
            if "remove-cell" not in tags:
                tags.append("remove-cell")
    nbformat.write(nb, out)


@contextmanager
def _environ(overrides: dict | None):
    "Set environment variables for the kernels started inside the block (they inherit this process's environment)."
    saved = {k: os.environ.get(k) for k in (overrides or {})}
    os.environ.update(overrides or {})
    try:
        yield
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def execute(name: str, out: Path, parameters: dict | None = None, env: dict | None = None) -> dict:
    """Execute chapter `name` with papermill into `out`; return the run (claims, seconds, warnings).
    `env` sets extra environment variables for the kernel (e.g. another CPU kernel set).
    Raises papermill's PapermillExecutionError (with the failing cell's traceback) if a cell fails."""
    import papermill as pm
    out.parent.mkdir(parents=True, exist_ok=True)
    claims_file = out.with_suffix(".claims.json")
    claims_file.unlink(missing_ok=True)
    # tqdm.auto warns in any kernel without ipywidgets (transformers and datasets import it); the book shows no such noise
    kernel_env = dict(RECIPES_RECORDS=str(claims_file), OMP_NUM_THREADS="1", PYDEVD_DISABLE_FILE_VALIDATION="1",
                      PYTHONWARNINGS="ignore:IProgress not found", **(env or {}))
    start = time.perf_counter()
    try:
        with _environ(kernel_env):
            pm.execute_notebook(str(NBS / f"{name}.ipynb"), str(out), parameters=parameters or {},
                                kernel_name="python3", cwd=str(ROOT), progress_bar=False)
    finally:
        seconds = round(time.perf_counter() - start, 1)
        if out.exists():
            _tidy(out)
    claims = json.loads(claims_file.read_text())["claims"] if claims_file.exists() else []
    claims_file.unlink(missing_ok=True)
    return {"chapter": name, "title": chapter_title(name), "seconds": seconds, "claims": claims,
            "warnings": raw_warnings(out)}


def raw_warnings(executed: Path) -> list[str]:
    "Warnings an executed notebook printed to stderr: they would show raw in the book."
    nb = json.loads(executed.read_text())
    texts = ["".join(o["text"]) if isinstance(o.get("text"), list) else o.get("text", "")
             for c in nb["cells"] for o in c.get("outputs", []) if o.get("name") == "stderr"]
    return [t[:300] for t in texts if "Warning" in t]


def chapter_title(name: str) -> str:
    nb = json.loads((NBS / f"{name}.ipynb").read_text())
    for c in nb["cells"]:
        if c["cell_type"] == "markdown":
            for line in "".join(c["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return name


@contextmanager
def _stderr_to(path: Path):
    "Send this process's stderr, and so the kernel's log chatter, to `path` instead of the console."
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, saved = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), os.dup(2)
    sys.stderr.flush()
    os.dup2(fd, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(fd)
        os.close(saved)


# ---------------------------------------------------------------------------------------------
# Runs and records

def record_path(name: str) -> Path:
    "The committed record of chapter `name`."
    return RECORDS / f"{name}.json"


def load_record(name: str) -> dict | None:
    p = record_path(name)
    return json.loads(p.read_text()) if p.exists() else None


def run_chapter(name: str, force: bool = False, env: dict | None = None, out: Path | None = None) -> dict:
    """Execute chapter `name` at its default parameters into `out` (default: its executed copy under book/chapters)
    and write the run next to it. Without `force`, a run of the same code that already succeeded is reused.
    Never raises for a failing chapter: the run carries the error."""
    out = out or EXECUTED / f"{name}.ipynb"
    path = out.with_suffix(".run.json")
    fp = fingerprint(name, {})
    if not force and out.exists() and path.exists():
        old = json.loads(path.read_text())
        if old.get("fingerprint") == fp and not old.get("error") and not env:
            return {**old, "reused": True}
    from papermill.exceptions import PapermillExecutionError
    try:
        with _stderr_to(out.with_suffix(".kernel.log")):
            run = execute(name, out, env=env)
    except PapermillExecutionError as e:
        trace = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(e.traceback))  # plain text for logs
        run = {"chapter": name, "title": chapter_title(name), "seconds": None, "claims": [], "warnings": [],
               "error": f"cell {e.exec_count} raised {e.ename}: {e.evalue}\n\n{trace}"[-4000:]}
    except Exception as e:  # the kernel died, or papermill could not start it
        run = {"chapter": name, "title": chapter_title(name), "seconds": None, "claims": [], "warnings": [],
               "error": f"{type(e).__name__}: {e}"[-4000:]}
    run.update(fingerprint=fp, env=env or {})
    path.write_text(json.dumps(run, indent=1, ensure_ascii=False))
    return run


def _first_edition() -> dict[int, dict]:
    return {c["number"]: c for c in json.loads(FIRST_EDITION.read_text())["claims"]}


# Spec fields whose change is an amendment (fields the first edition did not have are not compared).
def _changes(old: dict, new: dict) -> dict:
    return {k: [old[k], new[k]] for k in new if k in old and old[k] != new[k]}


def _registration(claim: dict, today: str) -> list[dict]:
    "The start of a new claim's history: registered today, or continued from the first edition's claim."
    number = claim.get("first_edition")
    if number is None:
        return [{"date": today, "event": "registered"}]
    first = _first_edition().get(number)
    if first is None:
        raise ValueError(f"claim {claim['id']!r} continues first-edition claim {number}, which "
                         f"{FIRST_EDITION.relative_to(ROOT)} does not hold")
    history = [{"date": first["date"], "event": "first edition", "claim": number, "spec": first["spec"],
                "verdict": first["verdict"], "mean": first["mean"], "ci": [first["ci_low"], first["ci_high"]]}]
    changes = _changes(first["spec"], claim["spec"])
    if changes:
        history.append({"date": today, "event": "amended", "changes": changes})
    return history


def merge(old: dict | None, run: dict, today: str | None = None) -> dict:
    """The chapter's new record: `run`'s values and verdicts, with each claim's registration and the history
    of its spec carried over from `old` (and a dated amendment wherever the spec changed)."""
    if run.get("error"):
        raise ValueError(f"{run['chapter']}: a failed run is not a record")
    today = today or datetime.date.today().isoformat()
    previous = {c["id"]: c for c in (old or {}).get("claims", [])}
    claims = []
    for c in run["claims"]:
        prev = previous.pop(c["id"], None)
        if prev is None:
            history = _registration(c, today)
        else:
            history = list(prev["history"])
            changes = _changes(prev["spec"], c["spec"])
            if changes:
                history.append({"date": today, "event": "amended", "changes": changes})
        claims.append({"id": c["id"], "registered": history[0]["date"], "history": history,
                       **{k: v for k, v in c.items() if k != "id"}})
    withdrawn = list((old or {}).get("withdrawn", [])) + [
        {"id": cid, "date": today, "spec": p["spec"], "last_verdict": p["verdict"]} for cid, p in previous.items()]
    return {"chapter": run["chapter"], "title": run["title"], "fingerprint": run["fingerprint"],
            "seconds": run["seconds"], "claims": claims, "withdrawn": withdrawn}


def regressions(committed: dict | None, run: dict) -> tuple[list[str], list[str]]:
    """Compare a fresh run with the chapter's committed record: (failures, notes).
    A failure is an error, a missing claim, or a claim that moved between reproduced and refuted (or holds and
    fails); a move to or from inconclusive is a note."""
    name = run["chapter"]
    if run.get("error"):
        return [f"{name} failed: {run['error']}"], []
    if committed is None:
        return [f"{name} has no committed record; run `python tools/book.py run {name}` and commit "
                f"{record_path(name).relative_to(ROOT)}"], []
    fresh = {c["id"]: c for c in run["claims"]}
    failures, notes = [], []
    for c in committed["claims"]:
        f = fresh.get(c["id"])
        if f is None:
            failures.append(f"{name}: claim {c['id']!r} is in the record but the run did not check it")
        elif f["verdict"] == OPPOSITE.get(c["verdict"]):
            failures.append(f"{name}: claim {c['id']!r} moved from {c['verdict']} (mean {c['mean']:+.4g}) to "
                            f"{f['verdict']} (mean {f['mean']:+.4g}, CI [{f['ci_low']:+.4g}, {f['ci_high']:+.4g}])")
        elif f["verdict"] != c["verdict"]:
            notes.append(f"{name}: claim {c['id']!r} moved from {c['verdict']} to {f['verdict']} "
                         f"(mean {c['mean']:+.4g} -> {f['mean']:+.4g})")
    known = {c["id"] for c in committed["claims"]}
    notes += [f"{name}: claim {cid!r} is not in the committed record yet" for cid in fresh if cid not in known]
    return failures, notes


def stale(names: list[str] | None = None) -> list[tuple[str, str]]:
    "Chapters whose committed record is missing or was made by other code than today's: (chapter, reason)."
    out = []
    for name in names or chapters():
        rec = load_record(name)
        if rec is None:
            out.append((name, "no record"))
        elif rec.get("fingerprint") != fingerprint(name, {}):
            out.append((name, "its code changed since the record was written"))
    return out


def refresh_command(names: list[str]) -> str:
    return ".venv/bin/python tools/book.py run " + " ".join(names)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "no-commit"


def select(budget: float = TEST_BUDGET_SECONDS, key: str | None = None, seconds: dict[str, float] | None = None) -> list[str]:
    """The chapters one `make test` run executes: a rotating sample drawn from `key` (default: the commit hash),
    taken in that order while their recorded seconds fit `budget`. Over successive commits every chapter runs."""
    if seconds is None:
        seconds = {n: (load_record(n) or {}).get("seconds") or BUDGET_SECONDS for n in chapters()}
    order = sorted(seconds)
    random.Random(key or _commit()).shuffle(order)
    chosen, used = [], 0.0
    for name in order:
        if used + seconds[name] <= budget:
            chosen.append(name)
            used += seconds[name]
    return sorted(chosen)


def zoo_debt() -> float:
    "Seconds of training the zoo's uncached models will cost: a cold `make test` pays them from its chapter budget."
    from recipes.core.zoo import ZOO, weights_path
    return float(sum(e.train_seconds for name, e in ZOO.items() if not weights_path(name).exists()))


def _run_one(name: str, force: bool) -> tuple[str, str, list[str], list[str]]:
    run = run_chapter(name, force=force)
    if run.get("error"):
        return name, "FAILED", [run["error"]], []
    old = load_record(name)
    failures, notes = regressions(old, run) if old else ([], [])
    record_path(name).parent.mkdir(parents=True, exist_ok=True)
    record_path(name).write_text(json.dumps(merge(old, run), indent=1, ensure_ascii=False) + "\n")
    how = "reused the executed copy" if run.get("reused") else f"ok in {run['seconds']} s"
    return name, how, failures, notes


def run(names: list[str], jobs: int, force: bool) -> int:
    names = names or chapters()
    unknown = sorted(set(names) - set(chapters()))
    if unknown:
        sys.exit(f"unknown chapters {unknown}; known: {chapters()}")
    failed, moves = [], []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for name, status, failures, notes in pool.map(_run_one, names, [force] * len(names)):
            print(f"  {name:<32} {status}", flush=True)
            if status == "FAILED":
                failed.append((name, failures[0]))
            moves += failures + notes
    (EXECUTED / "moves.json").write_text(json.dumps(moves, indent=1, ensure_ascii=False))
    for line in moves:
        print(f"  moved: {line}")
    for name, error in failed:
        print(f"\n--- {name} failed ---\n{error}")
    return 1 if failed else 0


def fresh_seeds(name: str, offset: int = 1000) -> list[int]:
    "The chapter's default seeds, each moved by `offset`: seeds nobody tuned on."
    import papermill as pm
    default = pm.inspect_notebook(str(NBS / f"{name}.ipynb"))["seeds"]["default"]
    seeds = eval(default, {"__builtins__": {}}, {"list": list, "range": range})  # our own notebooks: a list or list(range(n))
    return [int(s) + offset for s in seeds]


def _fresh_one(name: str) -> dict:
    out = ROOT / ".fresh" / f"{name}.ipynb"
    seeds = []
    try:
        seeds = fresh_seeds(name)
        with _stderr_to(out.with_suffix(".kernel.log")):
            run = execute(name, out, parameters={"seeds": seeds})
    except Exception as e:
        run = {"chapter": name, "claims": [], "error": f"{type(e).__name__}: {str(e)[-500:]}"}
    return {**run, "seeds": seeds}


def fresh(names: list[str], jobs: int) -> None:
    "Re-run chapters on fresh seeds and compare each claim's verdict with the committed record (nothing is written to it)."
    names = names or [n for n in chapters() if not n.startswith("core/")]
    rows = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for run in pool.map(_fresh_one, names):
            rec = load_record(run["chapter"]) or {"claims": []}
            now = {c["id"]: c["verdict"] for c in run["claims"]}
            for c in rec["claims"]:
                rows.append({"chapter": run["chapter"], "id": c["id"], "recorded": c["verdict"],
                             "fresh": now.get(c["id"], "error" if run.get("error") else "missing")})
            print(f"  {run['chapter']:<32} {'FAILED ' + run['error'][:200] if run.get('error') else 'ok'}", flush=True)
    (ROOT / ".fresh" / "verdicts.json").write_text(json.dumps(rows, indent=1))
    kept = sum(r["recorded"] == r["fresh"] == "reproduced" for r in rows)
    total = sum(r["recorded"] == "reproduced" for r in rows)
    print(f"\nreproduced claims still reproduced on fresh seeds: {kept} of {total}")
    for r in rows:
        if r["recorded"] != r["fresh"]:
            print(f"  {r['chapter']} {r['id']}: {r['recorded']} -> {r['fresh']}")


# ---------------------------------------------------------------------------------------------
# Pages

def records() -> list[dict]:
    "Every committed chapter record, in chapter order."
    return [r for r in (load_record(n) for n in chapters()) if r is not None]


def _catalog() -> list[dict]:
    with open(CATALOG, newline="") as f:
        return list(csv.DictReader(f))


def _md(text: str) -> str:
    "Escape the characters that would turn a title into emphasis or break a table cell."
    return re.sub(r"([*_|\[\]])", r"\\\1", text)


def _link(chapter: str) -> str:
    return f"chapters/{chapter}.ipynb"


def _claims_module():
    from recipes.core import claims
    return claims


def totals(recs: list[dict]) -> dict:
    claims = [c for r in recs for c in r["claims"]]
    return {"chapters": len(recs), "claims": len(claims), **{v: sum(c["verdict"] == v for c in claims) for v in VERDICTS},
            "amended": sum(any(h["event"] == "amended" for h in c["history"]) for c in claims),
            "seconds": round(sum(r["seconds"] or 0 for r in recs), 1)}


def _counts(t: dict, badge) -> str:
    return ", ".join(f"{t[v]} {badge(v)}" for v in VERDICTS if t[v])




def _parts() -> dict[str, str]:
    from recipes.core.chapter import PARTS
    return PARTS


def _part(chapter: str) -> str:
    return chapter.split("/")[0]


FOREST_CLIP = 6.0  # distances beyond this many half-widths are drawn at the edge, with an arrow


def forest_plot(rows: list[tuple[dict, dict]], path: Path, title: str) -> None:
    """One row per claim: how far its mean lies from its own margin, in units of its 95% interval's half-width, with
    the claimed direction to the right. Every interval is then a bar of length 2: a bar clear of the dashed margin line
    on the right is reproduced, on the left refuted, across it inconclusive, and the farther from the line, the
    stronger. The labels give the numbers in the claim's own units."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cl = _claims_module()
    n, clip = len(rows), FOREST_CLIP
    fig, ax = plt.subplots(figsize=(11, 0.32 * n + 1.2))
    for i, (rec, c) in enumerate(rows):
        s = c["spec"]
        sign = 1 if s["comparator"] == ">" else -1
        half = (c["ci_high"] - c["ci_low"]) / 2
        gap = sign * (c["mean"] - s["margin"])
        z = gap / half if half > 0 else math.copysign(math.inf, gap)  # an exact measurement is infinitely far
        y = n - 1 - i
        colour = cl.BADGE_COLOURS[c["verdict"]]
        lo, hi = max(z - 1, -clip), min(z + 1, clip)
        if lo < hi:
            ax.plot([lo, hi], [y, y], color=colour, lw=3, solid_capstyle="butt")
        ax.plot([min(max(z, -clip), clip)], [y], ">" if z > clip else "<" if z < -clip else "o", color=colour, ms=6)
        ax.text(-clip - 0.3, y, f"{rec['chapter'].split('/')[1]}: {c['id']}"[:52], ha="right", va="center", fontsize=8)
        ax.text(clip + 0.3, y, f"{cl.format_effect(c['mean'], c['ci_low'], c['ci_high'], s['log_ratio'])}  "
                               f"needs {cl.format_margin(s['comparator'], s['margin'], s['log_ratio'])}",
                ha="left", va="center", fontsize=8, color=colour)
    ax.axvline(0, color="0.3", lw=1, ls="--")
    ax.set(xlim=(-clip - 0.2, clip + 0.2), ylim=(-0.7, n - 0.3), yticks=[], title=title,
           xlabel="distance of the mean from the margin, in half-widths of the 95% interval (claimed direction →)")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    labels: dict[str, list[str]] = {}
    for v in VERDICTS:
        if any(c["verdict"] == v for _, c in rows):
            labels.setdefault(cl.BADGE_COLOURS[v], []).append(v)
    ax.legend(handles=[plt.Line2D([], [], color=col, lw=3, label=" / ".join(vs)) for col, vs in labels.items()],
              loc="lower center", bbox_to_anchor=(0.5, 1.0 + 0.25 / (0.32 * n + 1.2)), ncol=len(labels), frameon=False,
              fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _history_lines(c: dict, cl) -> list[str]:
    out = []
    for h in c["history"]:
        if h["event"] == "first edition":
            s = h["spec"]
            out.append(f"- {h['date']}, first edition (claim {h['claim']}): *{_md(s['statement'])}*, needs "
                       f"{s['comparator']} {s['margin']:.3g}; re-read three-way: {cl.badge(h['verdict'])} "
                       f"(mean {h['mean']:+.3g}, CI [{h['ci'][0]:+.3g}, {h['ci'][1]:+.3g}])")
        elif h["event"] == "registered":
            out.append(f"- {h['date']}, registered")
        else:
            changes = "; ".join(f"{k}: {_md(str(a))} → {_md(str(b))}" for k, (a, b) in h["changes"].items())
            out.append(f"- {h['date']}, amended: {changes}")
    return out


def reproductions_page(recs: list[dict]) -> str:
    cl = _claims_module()
    t = totals(recs)
    lines = ["# Reproductions", "",
             "Every claim the book checks, from each chapter's committed record (`ledger/`). The effect is method minus "
             "baseline per seed, over paired seeds. A claim is "
             f"{cl.badge('reproduced')} when its whole 95% interval clears the margin in the claimed direction, "
             f"{cl.badge('refuted')} when the whole interval lies on the other side, and {cl.badge('inconclusive')} when it "
             f"straddles the margin (the toy lacked the power to decide). Mechanism checks {cl.badge('holds')} or "
             f"{cl.badge('fails')}. Margins come from the paper or the catalog's toy claim, and each claim says which. "
             "Red rows are honest results, not bugs: each chapter says why.", "",
             f"**{t['claims']} claims in {t['chapters']} chapters:** {_counts(t, cl.badge)}. "
             f"**{t['amended']}** claims have an amended spec (marked *amended*; their history is at the end of the page).", ""]
    history = []
    for part in dict.fromkeys(_part(r["chapter"]) for r in recs):
        rows = [(r, c) for r in recs if _part(r["chapter"]) == part for c in r["claims"]]
        if not rows:
            continue
        img = BOOK / "_static" / f"forest-{part}.png"
        forest_plot(rows, img, f"{_parts().get(part, part)}: each claim's 95% interval against its margin")
        pt = totals([r for r in recs if _part(r["chapter"]) == part])
        lines += [f"## {_parts().get(part, part)}", "", f"{pt['claims']} claims: {_counts(pt, cl.badge)}.", "",
                  f"![Forest plot of the {_parts().get(part, part)} claims](_static/forest-{part}.png)", "",
                  "::::{div} full-width",
                  "| Chapter | Claim | Effect, mean [95% CI], seeds | Needs | Verdict | Margin from |", "|---|---|---|---|---|---|"]
        for r, c in rows:
            s = c["spec"]
            amended = any(h["event"] == "amended" for h in c["history"])
            mark = f" *[amended](#history-{r['chapter'].replace('/', '-')}-{c['id']})*" if amended else ""
            if amended or any(h["event"] == "first edition" for h in c["history"]):
                history.append((r, c))
            lines.append(f"| [{_md(r['title'])}]({_link(r['chapter'])}) | {_md(s['statement'])} (`{c['id']}`{', mechanism' if s['mechanism'] else ''}; "
                         f"{_md(s['metric'])}){mark} | {cl.format_effect(c['mean'], c['ci_low'], c['ci_high'], s['log_ratio'])}, "
                         f"n={len(s['seeds'])} | {cl.format_margin(s['comparator'], s['margin'], s['log_ratio'])} | "
                         f"{cl.badge(c['verdict'])} | {_md(s['margin_source'])} |")
        lines += ["::::", ""]
    if history:
        lines += ["## History of the claims", "",
                  "Each claim registers its spec (statement, metric, arms, direction, margin, seeds) the first time it "
                  "runs; a later change is an amendment with its date. Claims that continue one of the first edition's "
                  "claims start from it, with the first edition's verdict re-read three-way.", ""]
        for r, c in history:
            lines += [f"({'history-' + r['chapter'].replace('/', '-') + '-' + c['id']})=",
                      f"### {r['chapter']}: `{c['id']}`", "", *_history_lines(c, cl), ""]
    return "\n".join(lines) + "\n"


def pages() -> None:
    recs = records()
    if not recs:
        sys.exit("no chapter records under ledger/; run `python tools/book.py run` first")
    cl = _claims_module()
    t = totals(recs)
    LEDGER.write_text(json.dumps({"chapters": recs, "totals": t}, indent=1, ensure_ascii=False) + "\n")
    (BOOK / "reproductions.md").write_text(reproductions_page(recs))

    trows = ["| Chapter | Seconds | Within 60 s |", "|---|---|---|"]
    for r in sorted(recs, key=lambda r: -(r["seconds"] or 0)):
        ok = "yes" if r["seconds"] is not None and r["seconds"] <= BUDGET_SECONDS else "**no**"
        trows.append(f"| [{_md(r['title'])}]({_link(r['chapter'])}) | {r['seconds']} | {ok} |")
    zoo = ""
    try:
        from recipes.core.zoo import ZOO, pretrained_info
        zoo = "\n## Model zoo\n\n| Model | Training seconds (once, then cached) | Held-out loss |\n|---|---|---|\n" + "\n".join(
            f"| `{n}` | {pretrained_info(n).get('train_seconds')} | {pretrained_info(n).get('val_loss', float('nan')):.3f} |"
            for n in sorted(ZOO)) + "\n"
    except (FileNotFoundError, RuntimeError):
        pass
    (BOOK / "timing.md").write_text(
        "# Timing\n\nWall-clock seconds per executed notebook (kernel start and imports included) when its record was "
        "written, one torch thread each, two notebooks at a time on a 2-core machine. Budget: 60 s per chapter at its "
        f"default parameters. Total: {t['seconds']} s.\n\n" + "\n".join(trows) + "\n" + zoo)
    (BOOK / "coverage.md").write_text(coverage_page(recs, cl))
    (BOOK / "api.md").write_text(api_page())
    benchmarks_page()


def _cell(text) -> str:
    return _md(" ".join(str(text).split())).replace("|", "\\|")


def api_page() -> str:
    "Every declared method with its signature's parameters and their docments (the comments beside them)."
    import inspect
    from fastcore.docments import docments
    from recipes.core.chapter import PARTS, methods
    lines = ["# API reference", "", "Every optimizer, adapter, loss and callback the chapters declare "
             "(`recipes.methods()`), with the notes beside each parameter in its source. Generated by "
             "`python tools/book.py pages`.", ""]
    rows = methods()
    for part, caption in PARTS.items():
        mine = [m for m in rows if m.chapter.split("/")[0] == part]
        if not mine:
            continue
        lines += [f"## {caption}", ""]
        for m in mine:
            obj = m.load()
            doc = (inspect.getdoc(obj) or "").split("\n")[0] if (obj.__doc__ or "").strip() else ""
            lines += [f"### `{m.name}`", "", f"{m.kind} · `{m.target.replace(':', '.')}` · chapter "
                      f"[{m.chapter}]({_link(m.chapter)})", ""]
            if doc:
                lines += [_md(doc), ""]
            params = {k: v for k, v in docments(obj, full=True).items() if k not in ("self", "return")}
            if params:
                lines += ["| Parameter | Default | Meaning |", "|---|---|---|"]
                for k, v in params.items():
                    default = "" if v["default"] is inspect.Parameter.empty else f"`{v['default']!r}`"
                    lines.append(f"| `{k}` | {_cell(default)} | {_cell(v['docment'] or '')} |")
                lines.append("")
    return "\n".join(lines) + "\n"


def coverage_page(recs: list[dict], cl) -> str:
    "Every catalog paper with the chapters that declare it (`papers=` in their `__chapter__`) and their claims' verdicts."
    from recipes.core.chapter import declared
    by_key = {}  # catalog id (int) or foundations key (str) -> chapters that declare the paper
    for d in declared():
        for key in d.chapter.papers:
            by_key.setdefault(key, []).append(d.name)
    recs_by_name = {r["chapter"]: r for r in recs}

    def status(key, title: str) -> str:
        parts = []
        for name in by_key[key]:
            r = recs_by_name.get(name, {"title": name, "claims": []})
            badges = " ".join(cl.badge(c["verdict"]) for c in r["claims"] if c["spec"]["paper"] == title)
            parts.append(f"[{_md(r['title'])}]({_link(name)})" + (f": {badges}" if badges else ""))
        return "; ".join(parts)

    papers = _catalog()
    lines = ["# Coverage", "",
             f"Every paper the book must cover ({len(papers)}), by theme. A paper links to the chapters that declare it "
             "and the verdicts of its claims there, or is *planned*, or is on the *reading list* with the reason.", ""]
    done = sum(int(p["id"]) in by_key for p in papers)
    lines.append(f"**{done} of {len(papers)} covered so far.**\n")
    for theme in sorted({p["theme"] for p in papers}):
        lines += [f"## {theme}", "", "| Paper | Tier | Status |", "|---|---|---|"]
        for p in sorted((p for p in papers if p["theme"] == theme), key=lambda p: p["title"].lower()):
            if int(p["id"]) in by_key:
                s = status(int(p["id"]), p["title"])
            elif p["tier"] == "D":
                s = f"reading list: {p['reading_list_reason']}"
            else:
                s = "planned"
            lines.append(f"| {_md(p['title'])} | {p['tier']} | {s} |")
        lines.append("")
    with open(FOUNDATIONS, newline="") as f:
        foundations = list(csv.DictReader(f))
    lines += ["## Foundations", "", "Classic papers that later chapters build on; they are not in the catalog.", "",
              "| Paper | Year | Status |", "|---|---|---|"]
    for p in foundations:
        s = status(p["id"], p["title"]) if p["id"] in by_key else "planned"
        lines.append(f"| [{_md(p['title'])}]({p['link']}) | {p['year']} | {s} |")
    return "\n".join(lines) + "\n"


BENCH = ROOT / "bench.json"


def _bytes(n) -> str:
    return "" if n is None else f"{n / 2**20:.1f} MiB"


def benchmarks_page() -> None:
    "book/benchmarks.md from bench.json (written by `make bench`)."
    head = ("# Benchmarks\n\nOne optimizer step of each of the book's optimizers against a well-kept reference "
            "implementation of the same rule, on the same parameters and gradients, timed in interleaved rounds "
            "(median). `make bench` refreshes it; it is a measurement, not a test.\n\n")
    if not BENCH.exists():
        (BOOK / "benchmarks.md").write_text(head + "*No measurements yet: run `make bench`.*\n")
        return
    b = json.loads(BENCH.read_text())
    tgt = b["targets"]
    fused_target = tgt.get("best_ratio_vs_fused_adamw_equal_state")

    def ratio_mark(v, target):
        return "" if v is None else (f"{v:.2f}" if target is None or v <= target else f"**{v:.2f}**")

    def ms(v):
        return "" if v is None else f"{v:.2f}"
    rows = ["| Parameters | Optimizer | Ours (ms) | Fused (ms) | Compiled (ms) | Compile (s) | Fused AdamW (ms) | "
            "Best vs fused AdamW, equal state | Reference | Reference (ms) | Ratio | vs AdamW foreach | State, ours | "
            "State, reference |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in b["rows"]:
        ratio = r.get("ratio")
        compile_s = r.get("compile_s")
        rows.append(f"| {r['params']} ({r['numel'] / 1e6:.1f}M) | {r['optimizer']} | {r['ours_ms']:.2f} | "
                    f"{ms(r.get('ours_fused_ms'))} | {ms(r.get('ours_compiled_ms'))} | "
                    f"{'' if compile_s is None else f'{compile_s:.1f}'} | {ms(r.get('fused_adamw_ms'))} | "
                    f"{ratio_mark(r.get('best_ratio_vs_fused_adamw_equal_state'), fused_target)} | "
                    f"`{r.get('reference') or '-'}` | {'' if ratio is None else ms(r.get('reference_ms'))} | "
                    f"{ratio_mark(ratio, tgt['ratio'])} | {ratio_mark(r.get('ratio_vs_adamw'), tgt['ratio_vs_adamw'])} | "
                    f"{_bytes(r['ours_state_bytes'])} | {_bytes(r.get('reference_state_bytes'))} |")
    from optimizer_cases import CASES
    measured = {r["optimizer"] for r in b["rows"]}
    missing = [c.name for c in CASES if c.name not in measured and c.name not in b.get("skipped", {})]
    if missing:  # e.g. Shampoo: its inverse roots of the tiny LM's 4096-row embedding statistic take seconds per step
        head += f"Not measured in this run: {', '.join(missing)}.\n\n"
    (BOOK / "benchmarks.md").write_text(
        head + f"Measured {b['created']} with torch {b['torch']} on {b['threads']} thread(s), {b['machine']}, "
        f"{b['repeats']} timed steps each"
        + (f", load average {b['load_average_at_start'][0]:.1f} at the start and {b['load_average_at_end'][0]:.1f} at the end "
           "(above 2 on 2 cores, other work shared the machine and the times are inflated)"
           if "load_average_at_start" in b else "")
        + f". Targets: ratio at most {tgt['ratio']} against the reference, at most {tgt['ratio_vs_adamw']} against "
        "`torch.optim.AdamW(foreach=True)` for the Adam family"
        + (f", and the best of our eager, fused and compiled steps at most {fused_target}× torch's fused AdamW at equal "
           "state size for the elementwise optimizers" if fused_target else "")
        + "; a bold ratio misses its target. *Fused*: `fused=True` (torch's fused Adam kernels, where the math is "
        "Adam's); *compiled*: `torch.compile` of the step, timed after compiling (the compile time is its own "
        "column).\n\n" + "".join(f"- {name} is not timed by default: {why}.\n" for name, why in b.get("skipped", {}).items())
        + "\n::::{div} full-width\n" + "\n".join(rows) + "\n::::\n"
        + _adapter_table(b))


def _adapter_table(b: dict) -> str:
    if not b.get("adapters"):
        return ""
    target = b["targets"]["lora_ratio"]
    rows = ["| Model | Ours, forward + backward (ms) | `peft` (ms) | Ratio | Merged inference (ms) | Base inference (ms) | Merged / base |",
            "|---|---|---|---|---|---|---|"]
    for r in b["adapters"]:
        ratio = f"{r['ratio']:.2f}" if r["ratio"] <= target else f"**{r['ratio']:.2f}**"
        rows.append(f"| {r['model']} | {r['ours_ms']:.1f} | {r['peft_ms']:.1f} | {ratio} | {r['merged_ms']:.1f} | "
                    f"{r['base_ms']:.1f} | {r['merged_ratio']:.2f} |")
    return ("\n## LoRA against `peft`\n\nOne training step's forward and backward pass of a rank-8 LoRA on the same "
            f"model and batch, ours against `peft` {b['adapters'][0]['peft_version']} (target: ratio at most {target}); "
            "and inference of the merged model against the base model it came from, which should cost the same "
            "within noise.\n\n" + "\n".join(rows) + "\n")




def summary() -> None:
    recs = records()
    t = totals(recs)
    print(f"\nBook: {ROOT / 'book/_build/html/index.html'}")
    print(f"Ledger: {t['chapters']} chapters, {t['claims']} claims: "
          + ", ".join(f"{t[v]} {v}" for v in VERDICTS) + f"; {t['amended']} amended; total runtime {t['seconds']} s")
    for r in recs:
        flag = "" if r["seconds"] is not None and r["seconds"] <= BUDGET_SECONDS else "  (over budget!)"
        print(f"  {r['chapter']:<28} {r['seconds'] or '-':>6} s{flag}")
        for c in r["claims"]:
            print(f"      {c['verdict']:<13} {c['mean']:+.3g} [{c['ci_low']:+.3g}, {c['ci_high']:+.3g}]  {c['id']}")
    moves = EXECUTED / "moves.json"
    if moves.exists() and json.loads(moves.read_text()):
        print("\nVerdicts that moved against the previous record in the last run:")
        for line in json.loads(moves.read_text()):
            print(f"  {line}")
    old = stale()
    if old:
        print(f"\nStale records (their chapter's code changed): {', '.join(n for n, _ in old)}")


REASONS = {"survey": "a survey: no single method to reproduce", "position": "a position paper: an argument, not a method",
           "benchmark": "a benchmark whose data or models cannot be built offline at CPU scale",
           "system": "a systems paper whose gains need hardware we do not have"}


def catalog(path: str) -> None:
    "Refresh data/catalog.csv (titles, themes, tiers; never abstracts) from the shared catalog."
    rows = [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip()]
    CATALOG.parent.mkdir(exist_ok=True)
    with open(CATALOG, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "theme", "kind", "tier", "reading_list_reason"])
        for p in rows:
            reason = REASONS.get(p["kind"], "tier D: beyond what a CPU-scale toy can test") if p["tier"] == "D" else ""
            w.writerow([p["id"], p["title"], p["theme"], p["kind"], p["tier"], reason])
    print(f"wrote {len(rows)} papers to {CATALOG}")




TOC = ROOT / "_toc.yml"
ABOUT = ["how-to-write-a-chapter", "reproductions", "coverage", "api", "timing", "benchmarks"]  # the book's own pages


def toc_text() -> str:
    "The table of contents, generated from the chapters' declarations (part, then order)."
    from recipes.core.chapter import PARTS, declared
    found = declared()
    missing = sorted(set(chapters()) - {d.name for d in found})
    if missing:
        raise SystemExit(f"chapters without a __chapter__ declaration in their first export cell: {missing}")
    seen: dict[tuple, str] = {}
    for d in found:
        key = (d.chapter.part, d.chapter.order)
        if key in seen:
            raise SystemExit(f"{d.name} and {seen[key]} both declare part={key[0]!r}, order={key[1]}")
        if d.name.split("/")[0] != d.chapter.part:
            raise SystemExit(f"{d.name} declares part={d.chapter.part!r}; a chapter's part is its first folder")
        seen[key] = d.name
    lines = ["# The book's table of contents, generated by `python tools/book.py toc` from each chapter's __chapter__",
             "# declaration (never edit by hand; a test checks it is current). Chapters point at papermill's executed",
             "# copies under book/chapters/ (same layout as nbs/).",
             "format: jb-book", "root: intro", "parts:", "  - caption: About the book", "    chapters:"]
    lines += [f"      - file: {page}" for page in ABOUT]
    for part, caption in PARTS.items():
        names = [d.name for d in found if d.chapter.part == part]
        if names:
            lines += [f"  - caption: {caption}", "    chapters:"] + [f"      - file: chapters/{n}" for n in names]
    return "\n".join(lines) + "\n"


def exports_text(part: str | None) -> str:
    "A package's __init__.py: the top level offers `methods()`, each part re-exports the methods its chapters declare."
    from recipes.core.chapter import declared, methods
    if part is None:
        import recipes
        return ('"""Recipes: a literate reproduction book of training, fine-tuning and unlearning papers.\n\n'
                '`recipes.methods()` lists every optimizer, adapter, loss and callback with the chapter that explains it;\n'
                '`recipes.optim`, `recipes.peft`, ... re-export them. Generated by `python tools/book.py exports`."""\n'
                f'__version__ = "{recipes.__version__}"\n\nfrom .core.chapter import methods\n')
    names: dict[str, str] = {}
    for m in methods():
        module, _, attr = m.target.partition(":")
        if module.split(".")[1] != part:
            continue
        if attr in names and names[attr] != module:
            raise SystemExit(f"{attr} is declared by both {names[attr]} and {module}; rename one")
        names[attr] = module
    lines = [f'"""The {part} part\'s methods, re-exported from their chapters. Generated by `python tools/book.py exports`."""']
    for module in dict.fromkeys(names.values()):
        attrs = sorted(a for a, mod in names.items() if mod == module)
        lines.append(f"from .{module.split('.')[-1]} import {', '.join(attrs)}")
    lines += ["", "from ..core.chapter import document as _document", "",
              "for _method in (" + ", ".join(names) + ("," if len(names) == 1 else "") + "):",
              "    _document(_method)  # the parameter notes beside the code reach help()", "del _method", "",
              "__all__ = [" + ", ".join(f'"{a}"' for a in names) + "]"]
    return "\n".join(lines) + "\n"


def export_files() -> dict[Path, str]:
    "Every generated file outside nbdev's reach: the table of contents and the packages' __init__.py."
    from recipes.core.chapter import PARTS, declared
    parts = {d.chapter.part for d in declared()} - {"core"}
    files = {TOC: toc_text(), PKG / "__init__.py": exports_text(None)}
    files |= {PKG / part / "__init__.py": exports_text(part) for part in PARTS if part in parts}
    return files


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run"); r.add_argument("names", nargs="*"); r.add_argument("--jobs", type=int, default=2)
    r.add_argument("--force", action="store_true")
    f = sub.add_parser("fresh"); f.add_argument("names", nargs="*"); f.add_argument("--jobs", type=int, default=2)
    s = sub.add_parser("select"); s.add_argument("--budget", type=float, default=TEST_BUDGET_SECONDS)
    s.add_argument("--key", default=None)
    sub.add_parser("pages"); sub.add_parser("summary"); sub.add_parser("stale"); sub.add_parser("toc"); sub.add_parser("exports")
    c = sub.add_parser("catalog"); c.add_argument("path")
    a = ap.parse_args(argv)
    if a.cmd == "run":
        sys.exit(run(a.names, a.jobs, a.force))
    if a.cmd == "fresh":
        return fresh(a.names, a.jobs)
    if a.cmd == "select":
        return print("\n".join(select(a.budget, a.key)))
    if a.cmd == "stale":
        old = stale()
        for name, why in old:
            print(f"{name}: {why}")
        sys.exit(f"refresh with: {refresh_command([n for n, _ in old])}" if old else 0)
    if a.cmd == "toc":
        return TOC.write_text(toc_text())
    if a.cmd == "exports":
        for path, text in export_files().items():
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
                print(f"wrote {path.relative_to(ROOT)}")
        return None
    {"pages": pages, "summary": summary}.get(a.cmd, lambda: catalog(a.path))()


if __name__ == "__main__":
    main()
