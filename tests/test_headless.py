"""The engine never imports textual or rich: proven in a fresh interpreter, and by import-linter."""

import pkgutil
import shutil
import subprocess
import sys

import findtui.engine

ENGINE_MODULES = sorted(
    f"findtui.engine.{m.name}" for m in pkgutil.iter_modules(findtui.engine.__path__)
)


def test_engine_modules_found():
    assert {"findtui.engine.query", "findtui.engine.keys", "findtui.engine.output"} <= set(
        ENGINE_MODULES
    )


def test_engine_does_not_load_textual_or_rich():
    code = (
        "import sys\n"
        f"for name in {ENGINE_MODULES!r}:\n"
        "    __import__(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"engine pulled in: {out.stdout.strip()}"


def test_import_linter_contract():
    lint = shutil.which("lint-imports", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert lint, "import-linter is part of the [test] extra"
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    out = subprocess.run([lint], capture_output=True, text=True, cwd=root)
    assert out.returncode == 0, out.stdout + out.stderr
