"""Imports the standard library into the interpreter's snapshot.

Only modules imported before the snapshot exist at run time (the standard library's files are
not there), and every function shares this one snapshot: so all of it is imported here, once,
whatever a function will use. What cannot be imported in WASI (ctypes, ssl, multiprocessing's
forks...) is skipped, as it would fail in a function anyway.
"""

import contextlib
import importlib
import io
import pkgutil
import sys

# Modules with side effects on import (a browser, printing), or of no use in a function.
_SKIP = {
    "__hello__", "__phello__", "antigravity", "ensurepip", "idlelib", "lib2to3", "msilib",
    "pydoc_data", "test", "this", "tkinter", "turtle", "turtledemo", "venv",
}

imported, failed = [], []


def _import(name: str) -> bool:
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            importlib.import_module(name)
    except BaseException as e:  # noqa: BLE001 (SystemExit too: a module may exit on import)
        failed.append((name, repr(e)))
        return False
    imported.append(name)
    return True


def _skipped(name: str) -> bool:
    return any(part in _SKIP or part == "__main__" or part.startswith("test") for part in name.split("."))


for _top in sorted(sys.stdlib_module_names):
    if _top.startswith("_") or _skipped(_top) or not _import(_top):
        continue
    _path = getattr(sys.modules[_top], "__path__", None)
    if _path is not None:
        for _info in pkgutil.walk_packages(_path, _top + ".", onerror=lambda _name: None):
            if not _skipped(_info.name):
                _import(_info.name)
