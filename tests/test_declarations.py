"""Each chapter declares itself (`__chapter__`, see recipes.core.chapter); the shared lists are generated from that.

These tests fail when a declaration is missing or wrong, when the generated table of contents is not current, and
when a method in the package is declared by no chapter (a forgotten matrix row).
"""
import csv, inspect, json

import pytest
import torch

import book
from recipes.core.adapters import AdapterConfig
from recipes.core.chapter import Chapter, declared
from recipes.core.train import Callback

DECLARED = declared()
BY_NAME = {d.name: d for d in DECLARED}


def _first_export_cell(name: str) -> str:
    cells = json.loads((book.NBS / f"{name}.ipynb").read_text())["cells"]
    return next("".join(c["source"]) for c in cells
                if c["cell_type"] == "code" and "".join(c["source"]).startswith("#| export"))


@pytest.mark.parametrize("name", book.chapters())
def test_chapter_declares_itself(name):
    assert name in BY_NAME, (f"{name} has no __chapter__ = Chapter(...) in its module; declare one in the notebook's "
                             "first export cell (see nbs/_template.ipynb)")
    if name != "core/chapter":  # the module that defines Chapter declares itself after defining it
        assert "__chapter__ = Chapter(" in _first_export_cell(name), f"{name}: declare __chapter__ in the first export cell"
    assert BY_NAME[name].chapter.part == name.split("/")[0], f"{name}: a chapter's part is its first folder"


def test_generated_files_are_current():
    "_toc.yml and the packages' __init__.py re-exports equal a fresh generation from the declarations."
    stale = [str(p.relative_to(book.ROOT)) for p, text in book.export_files().items()
             if not p.exists() or p.read_text() != text]
    assert not stale, f"generated files are not current: {stale}; run `python tools/book.py exports` and commit them"


def test_part_packages_offer_their_methods():
    import recipes, recipes.peft
    assert callable(recipes.methods) and recipes.peft.LoraConfig.__module__ == "recipes.peft.lora"
    listed = {m.name for m in recipes.methods()}
    assert {"LoraConfig", "ELRLoss"} <= listed and "SpectralConfig" not in listed, "bases are not methods"


def _papers() -> tuple[dict, dict]:
    with open(book.CATALOG, newline="") as f:
        catalog = {int(r["id"]): r["title"] for r in csv.DictReader(f)}
    with open(book.FOUNDATIONS, newline="") as f:
        foundations = {r["id"]: r["title"] for r in csv.DictReader(f)}
    return catalog, foundations


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_declared_papers_and_dependencies_exist(name):
    ch: Chapter = BY_NAME[name].chapter
    catalog, foundations = _papers()
    unknown = [p for p in ch.papers if (catalog if isinstance(p, int) else foundations).get(p) is None]
    assert not unknown, f"{name} declares papers that are neither catalog ids nor data/foundations.csv keys: {unknown}"
    assert len(set(ch.papers)) == len(ch.papers), f"{name} declares a paper twice: {ch.papers}"
    missing = [b for b in ch.builds_on if b not in BY_NAME]
    assert not missing, f"{name} builds on chapters that do not exist: {missing}"
    record = book.load_record(name) or {"claims": []}
    titles = {(catalog if isinstance(p, int) else foundations)[p] for p in ch.papers}
    cited = {c["spec"]["paper"] for c in record["claims"]} - titles
    assert not cited, f"{name}'s claims cite papers its __chapter__ does not declare: {cited}"


KIND_CHECKS = {  # declaration field -> (what each name must be, a predicate)
    "optimizers": ("a torch.optim.Optimizer subclass", lambda o: inspect.isclass(o) and issubclass(o, torch.optim.Optimizer)),
    "adapters": ("an AdapterConfig subclass", lambda o: inspect.isclass(o) and issubclass(o, AdapterConfig)),
    "callbacks": ("a fit Callback subclass", lambda o: inspect.isclass(o) and issubclass(o, Callback)),
    "losses": ("a loss function or module", callable),
    "comparison": ("a function", inspect.isfunction),
    "bases": ("a class", inspect.isclass),
}


def _declared_names(ch: Chapter, field: str) -> list[str]:
    values = getattr(ch, field)
    return [v.cls for v in values] if field == "optimizers" else [v.config for v in values] if field == "adapters" else list(values)


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_declared_names_resolve_to_the_right_kind(name):
    d = BY_NAME[name]
    for field, (what, ok) in KIND_CHECKS.items():
        for attr in _declared_names(d.chapter, field):
            obj = d.resolve(attr)
            assert ok(obj), f"{name} declares {attr!r} under {field}, but it is not {what}"
    cases = [c.name for dd in DECLARED for c in (*dd.chapter.optimizers, *dd.chapter.adapters)]
    assert len(cases) == len(set(cases)), f"test-matrix names must be unique: {sorted(n for n in cases if cases.count(n) > 1)}"


def _methods_in(module) -> list[tuple[str, str]]:
    "The (name, kind) of every optimizer, adapter config, callback and loss a module defines."
    found = []
    for attr, obj in vars(module).items():
        if getattr(obj, "__module__", None) != module.__name__ or attr.startswith("_"):
            continue
        if inspect.isclass(obj):
            kind = ("optimizers" if issubclass(obj, torch.optim.Optimizer) else "adapters" if issubclass(obj, AdapterConfig)
                    else "callbacks" if issubclass(obj, Callback)
                    else "losses" if issubclass(obj, torch.nn.Module) and attr.endswith("Loss") else None)
        else:
            kind = "losses" if inspect.isfunction(obj) and attr.endswith("_loss") else None
        if kind:
            found.append((attr, kind))
    return found


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_every_method_is_declared(name):
    "A concrete optimizer, adapter config, callback or loss that no chapter declares would miss its test matrix."
    d = BY_NAME[name]
    undeclared = [(attr, kind) for attr, kind in _methods_in(d.module)
                  if attr not in _declared_names(d.chapter, kind) and attr not in d.chapter.bases]
    assert not undeclared, (f"{name} defines methods its __chapter__ does not declare (add each under the field shown, "
                            f"or under bases= if it is an abstract base): {undeclared}")


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_module_has_a_docstring(name):
    "help(module) and the API pages start from it: the `>` line under the chapter's title."
    doc = (BY_NAME[name].module.__doc__ or "").strip()
    assert doc, f"recipes.{name.replace('/', '.')} has no docstring: put a one-line summary after the title, as `> ...`"


@pytest.mark.parametrize("name", sorted(n for n, d in BY_NAME.items() if d.chapter.adapters))
def test_adapter_chapters_join_the_comparison(name):
    "A PEFT method that declares no comparison row would silently miss the equal-budget comparison."
    assert BY_NAME[name].chapter.comparison, (f"{name} declares adapters but no comparison rows: add a "
                                              "comparison_rows(setup) function and comparison=('comparison_rows',)")
