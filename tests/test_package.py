"""A real wheel: subpackages included, importable without the source tree."""
import os, subprocess, sys, zipfile


def test_wheel_is_importable(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), root],
                   check=True)
    wheel = next(tmp_path.glob("recipes-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for mod in ("recipes/peft/lora.py", "recipes/core/train.py", "recipes/core/zoo.py"):
        assert mod in names, f"{mod} missing from the wheel"
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)], check=True)
    code = ("import recipes, sys; from recipes.peft.lora import apply_lora; "
            f"assert recipes.__file__.startswith({str(site)!r}), recipes.__file__; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)},
                         capture_output=True, text=True)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr
