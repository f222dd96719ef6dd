"""The book's runner: execute chapters with papermill, aggregate the ledger, write the generated pages.

    python tools/book.py run [--jobs N] [--force] [NAME ...]   execute chapters (skips unchanged ones)
    python tools/book.py pages                                  ledger.json + book/{reproductions,coverage,timing}.md
    python tools/book.py summary                                one screen: chapters, claims, runtime
    python tools/book.py catalog PATH                           refresh data/catalog.csv from the paper catalog
"""
from __future__ import annotations

import argparse, csv, hashlib, json, os, re, sys, time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS, BOOK, PKG = ROOT / "nbs", ROOT / "book", ROOT / "recipes"
EXECUTED = BOOK / "chapters"
LEDGER = ROOT / "ledger.json"
CATALOG = ROOT / "data" / "catalog.csv"
FOUNDATIONS = ROOT / "data" / "foundations.csv"
BUDGET_SECONDS = 60


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


def execute(name: str, out: Path, parameters: dict | None = None) -> dict:
    """Execute chapter `name` with papermill into `out`; return its record (claims, seconds, error).
    Raises papermill's PapermillExecutionError (with the failing cell's traceback) if a cell fails."""
    import papermill as pm
    out.parent.mkdir(parents=True, exist_ok=True)
    record_file = out.with_suffix(".claims.json")
    record_file.unlink(missing_ok=True)
    # tqdm.auto warns in any kernel without ipywidgets (transformers and datasets import it); the book shows no such noise
    os.environ.update(RECIPES_RECORDS=str(record_file), OMP_NUM_THREADS="1", PYDEVD_DISABLE_FILE_VALIDATION="1",
                      PYTHONWARNINGS="ignore:IProgress not found")
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(NBS / f"{name}.ipynb"), str(out), parameters=parameters or {},
                            kernel_name="python3", cwd=str(ROOT), progress_bar=False)
    finally:
        seconds = round(time.perf_counter() - start, 1)
        if out.exists():
            _tidy(out)
    claims = json.loads(record_file.read_text())["claims"] if record_file.exists() else []
    return {"chapter": name, "title": chapter_title(name), "seconds": seconds, "claims": claims,
            "warnings": raw_warnings(out)}


def raw_warnings(executed: Path) -> list[str]:
    "Warnings an executed notebook printed to stderr: they would show raw in the book."
    nb = json.loads(executed.read_text())
    return [o.get("text", "")[:300] if isinstance(o.get("text"), str) else "".join(o.get("text", []))[:300]
            for c in nb["cells"] for o in c.get("outputs", [])
            if o.get("name") == "stderr" and "Warning" in (o["text"] if isinstance(o.get("text"), str) else "".join(o.get("text", [])))]


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


def _run_one(name: str, force: bool) -> tuple[str, str]:
    out = EXECUTED / f"{name}.ipynb"
    record_path = EXECUTED / f"{name}.record.json"
    fp = fingerprint(name, {})
    if not force and out.exists() and record_path.exists():
        old = json.loads(record_path.read_text())
        if old.get("fingerprint") == fp and not old.get("error"):
            return name, "unchanged, skipped"
    try:
        with _stderr_to(EXECUTED / f"{name}.kernel.log"):
            rec = execute(name, out)
        rec["fingerprint"] = fp
        status = f"ok in {rec['seconds']} s"
    except Exception as e:  # record the failure; `run` exits non-zero
        rec = {"chapter": name, "title": chapter_title(name), "seconds": None, "claims": [], "error": str(e)[-2000:]}
        status = "FAILED"
    record_path.write_text(json.dumps(rec, indent=1))
    return name, status


def run(names: list[str], jobs: int, force: bool) -> int:
    names = names or chapters()
    unknown = sorted(set(names) - set(chapters()))
    if unknown:
        sys.exit(f"unknown chapters {unknown}; known: {chapters()}")
    failed = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for name, status in pool.map(_run_one, names, [force] * len(names)):
            print(f"  {name:<32} {status}", flush=True)
            if status == "FAILED":
                failed.append(name)
    for name in failed:
        print(f"\n--- {name} failed ---\n" + json.loads((EXECUTED / f"{name}.record.json").read_text())["error"])
    return 1 if failed else 0


def _records() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(EXECUTED.rglob("*.record.json"))]


def _catalog() -> list[dict]:
    with open(CATALOG, newline="") as f:
        return list(csv.DictReader(f))


def _status_mark(s: str) -> str:
    return {"reproduced": "✅ reproduced", "not reproduced": "❌ not reproduced", "mechanism-only": "⚙️ mechanism-only"}.get(s, s)


def _md(text: str) -> str:
    "Escape the characters that would turn a title into emphasis or break a table cell."
    return re.sub(r"([*_|\[\]])", r"\\\1", text)


def _link(chapter: str) -> str:
    return f"chapters/{chapter}.ipynb"


def pages() -> None:
    recs = _records()
    if not recs:
        sys.exit("no executed chapters under book/chapters; run `python tools/book.py run` first")
    ledger = {"chapters": [{k: r.get(k) for k in ("chapter", "title", "seconds", "claims", "error")} for r in recs]}
    claims = [c for r in recs for c in r["claims"]]
    ledger["totals"] = {"chapters": len(recs), "claims": len(claims),
                        **{s: sum(c["status"] == s for c in claims) for s in ("reproduced", "not reproduced", "mechanism-only")},
                        "seconds": round(sum(r["seconds"] or 0 for r in recs), 1)}
    LEDGER.write_text(json.dumps(ledger, indent=1, ensure_ascii=False) + "\n")

    rows = ["| Chapter | Paper | Claim | Effect (mean ± sd, 95% CI) | Needs | Status | Seconds |",
            "|---|---|---|---|---|---|---|"]
    for r in recs:
        for c in r["claims"]:
            effect = f"{c['mean']:+.3g} ± {c['sd']:.2g} [{c['ci_low']:+.3g}, {c['ci_high']:+.3g}], n={len(c['effects'])}"
            rows.append(f"| [{r['title']}]({_link(r['chapter'])}) | *{_md(c['paper'])}* | {_md(c['statement'])} ({_md(c['metric'])}) | "
                        f"{effect} | {c['comparator']} {c['margin']:g} | {_status_mark(c['status'])} | {r['seconds']} |")
    t = ledger["totals"]
    (BOOK / "reproductions.md").write_text(
        "# Reproductions\n\nEvery claim the book checks, measured over paired seeds when `make book` last ran. "
        "The effect is method minus baseline per seed; a claim is *reproduced* when its whole 95% interval "
        "clears the margin fixed before the run. Red rows are honest results, not bugs: each chapter says why.\n\n"
        f"**{t['claims']} claims in {t['chapters']} chapters: {t['reproduced']} reproduced, "
        f"{t['not reproduced']} not reproduced, {t['mechanism-only']} mechanism-only.**\n\n"
        + "::::{div} full-width\n" + "\n".join(rows) + "\n::::\n")

    trows = ["| Chapter | Seconds | Within 60 s |", "|---|---|---|"]
    for r in sorted(recs, key=lambda r: -(r["seconds"] or 0)):
        ok = "yes" if r["seconds"] is not None and r["seconds"] <= BUDGET_SECONDS else "**no**"
        trows.append(f"| [{r['title']}]({_link(r['chapter'])}) | {r['seconds']} | {ok} |")
    zoo = ""
    try:
        from recipes.core.zoo import ZOO, pretrained_info
        zoo = "\n## Model zoo\n\n| Model | Training seconds (once, then cached) | Held-out loss |\n|---|---|---|\n" + "\n".join(
            f"| `{n}` | {pretrained_info(n).get('train_seconds')} | {pretrained_info(n).get('val_loss', float('nan')):.3f} |"
            for n in sorted(ZOO)) + "\n"
    except FileNotFoundError:
        pass
    (BOOK / "timing.md").write_text(
        "# Timing\n\nWall-clock seconds per executed notebook (kernel start and imports included), one torch "
        "thread each, two notebooks at a time on a 2-core machine. Budget: 60 s per chapter at its default "
        f"parameters. Total: {t['seconds']} s.\n\n" + "\n".join(trows) + "\n" + zoo)

    by_paper: dict[str, list] = {}
    for r in recs:
        for c in r["claims"]:
            by_paper.setdefault(c["paper"], []).append((r, c))
    papers = _catalog()
    lines = ["# Coverage", "",
             f"Every paper the book must cover ({len(papers)}), by theme. A paper links to its chapter and the status "
             "of its claims, or is *planned*, or is on the *reading list* with the reason.", ""]
    done = sum(p["title"] in by_paper for p in papers)
    lines.append(f"**{done} of {len(papers)} covered so far.**\n")
    for theme in sorted({p["theme"] for p in papers}):
        lines += [f"## {theme}", "", "| Paper | Tier | Status |", "|---|---|---|"]
        for p in sorted((p for p in papers if p["theme"] == theme), key=lambda p: p["title"].lower()):
            if p["title"] in by_paper:
                hits = by_paper[p["title"]]
                status = f"[{hits[0][0]['title']}]({_link(hits[0][0]['chapter'])}): " + ", ".join(
                    _status_mark(c["status"]) for _, c in hits)
            elif p["tier"] == "D":
                status = f"reading list: {p['reading_list_reason']}"
            else:
                status = "planned"
            lines.append(f"| {_md(p['title'])} | {p['tier']} | {status} |")
        lines.append("")
    with open(FOUNDATIONS, newline="") as f:
        foundations = list(csv.DictReader(f))
    lines += ["## Foundations", "", "Classic papers that later chapters build on; they are not in the catalog.", "",
              "| Paper | Year | Status |", "|---|---|---|"]
    for p in foundations:
        hits = by_paper.get(p["title"], [])
        status = (f"[{hits[0][0]['title']}]({_link(hits[0][0]['chapter'])}): " + ", ".join(_status_mark(c["status"]) for _, c in hits)
                  if hits else "planned")
        lines.append(f"| [{_md(p['title'])}]({p['link']}) | {p['year']} | {status} |")
    (BOOK / "coverage.md").write_text("\n".join(lines) + "\n")
    benchmarks_page()


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
    rows = ["| Parameters | Optimizer | Ours (ms) | Reference | Reference (ms) | Ratio | vs AdamW foreach | "
            "State, ours | State, reference |", "|---|---|---|---|---|---|---|---|---|"]
    for r in b["rows"]:
        ratio = r.get("ratio")
        mark = "" if ratio is None else (f"{ratio:.2f}" if ratio <= tgt["ratio"] else f"**{ratio:.2f}**")
        vs = r.get("ratio_vs_adamw")
        vs_mark = "" if vs is None else (f"{vs:.2f}" if vs <= tgt["ratio_vs_adamw"] else f"**{vs:.2f}**")
        ref_ms = "" if ratio is None else f"{r['reference_ms']:.2f}"
        rows.append(f"| {r['params']} ({r['numel'] / 1e6:.1f}M) | {r['optimizer']} | {r['ours_ms']:.2f} | "
                    f"`{r.get('reference') or '-'}` | {ref_ms} | {mark} | {vs_mark} | "
                    f"{_bytes(r['ours_state_bytes'])} | {_bytes(r.get('reference_state_bytes'))} |")
    from optimizer_cases import CASES
    measured = {r["optimizer"] for r in b["rows"]}
    missing = [c.name for c in CASES if c.name not in measured]
    if missing:  # e.g. Shampoo: its inverse roots of the tiny LM's 4096-row embedding statistic take seconds per step
        head += f"Not measured in this run: {', '.join(missing)}.\n\n"
    (BOOK / "benchmarks.md").write_text(
        head + f"Measured {b['created']} with torch {b['torch']} on {b['threads']} thread(s), {b['machine']}, "
        f"{b['repeats']} timed steps each. Targets: ratio at most {tgt['ratio']} against the reference, and at most "
        f"{tgt['ratio_vs_adamw']} against `torch.optim.AdamW(foreach=True)` for the Adam family; a bold ratio "
        "misses its target, and the optimizer's chapter says why.\n\n::::{div} full-width\n" + "\n".join(rows) + "\n::::\n"
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
    ledger = json.loads(LEDGER.read_text())
    t = ledger["totals"]
    print(f"\nBook: {ROOT / 'book/_build/html/index.html'}")
    print(f"Ledger: {t['chapters']} chapters, {t['claims']} claims: {t['reproduced']} reproduced, "
          f"{t['not reproduced']} not reproduced, {t['mechanism-only']} mechanism-only; total runtime {t['seconds']} s")
    for ch in ledger["chapters"]:
        flag = "" if ch["seconds"] is not None and ch["seconds"] <= BUDGET_SECONDS else "  (over budget!)" if ch["seconds"] else "  FAILED"
        print(f"  {ch['chapter']:<28} {ch['seconds'] or '-':>6} s{flag}")
        for c in ch["claims"]:
            print(f"      {c['status']:<15} {c['mean']:+.3g} ± {c['sd']:.2g}  {c['statement'][:70]}")


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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run"); r.add_argument("names", nargs="*"); r.add_argument("--jobs", type=int, default=2)
    r.add_argument("--force", action="store_true")
    sub.add_parser("pages"); sub.add_parser("summary")
    c = sub.add_parser("catalog"); c.add_argument("path")
    a = ap.parse_args(argv)
    if a.cmd == "run":
        sys.exit(run(a.names, a.jobs, a.force))
    {"pages": pages, "summary": summary}.get(a.cmd, lambda: catalog(a.path))()


if __name__ == "__main__":
    main()
