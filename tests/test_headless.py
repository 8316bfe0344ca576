"""The headless packages (engine, config, demo) never import textual or rich: proven in a
fresh interpreter, and by import-linter, whose contracts also forbid import cycles between
findtui's modules and keep the CLI and the engine out of each other's way."""

import pkgutil
import shutil
import subprocess
import sys

import findtui.config
import findtui.demo
import findtui.engine

ENGINE_MODULES = sorted(
    f"{pkg.__name__}.{m.name}" for pkg in (findtui.engine, findtui.config, findtui.demo)
    for m in pkgutil.iter_modules(pkg.__path__) if m.name != "__main__"  # that one runs
)


def test_engine_modules_found():
    assert {"findtui.engine.query", "findtui.engine.keys", "findtui.engine.output",
            "findtui.engine.run", "findtui.engine.network", "findtui.config.store",
            "findtui.config.history", "findtui.demo.scp"} <= set(ENGINE_MODULES)


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


def test_no_import_cycles_between_findtui_modules():
    """Screens that import each other in a circle (history -> profiles -> query -> history)
    are how private attributes start being shared; grimp (import-linter's graph) finds any."""
    import grimp

    graph = grimp.build_graph("findtui", exclude_type_checking_imports=True)
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if module != imported and graph.chain_exists(imported, module):
                cycles.append(f"{module} <-> {imported}")
    assert cycles == []


def test_help_and_option_parsing_import_neither_pydicom_nor_pynetdicom():
    """Start-up: what a run needs is imported when it needs it; `findtui --help` and parsing
    the options of a batch run load no DICOM library (they cost ~0.2 s to import)."""
    code = (
        "import sys, contextlib, io\n"
        "from findtui.cli.options import build_parser\n"
        "build_parser().parse_args(['--batch', '-S', 'h', '104', '-k', 'PatientID='])\n"
        "from findtui.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(','.join(sorted(m for m in sys.modules\n"
        "                      if m.split('.')[0] in ('pydicom', 'pynetdicom'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
