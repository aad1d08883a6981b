"""The interpreter's entry module, which componentize-py wraps once for every Python function.

At the first request of an instance (or the build's check, `Function.load`), it imports the
function's module from its files, `/kubeless/function.zip` (on `sys.path`, read by Python's
zipimport), by the handler the host names in `FUNC_HANDLER` (Kubeless's variable), and keeps it
for the instance's later requests.
"""

import gc
import importlib
import os
import random
import sys
import traceback

import wasmless_stdlib  # noqa: F401 (imported for its effect: the standard library, snapshotted)
from componentize_py_types import Err
from wasmless_glue import make_incoming_handler, send_text
from wit_world import exports

FILES = "/kubeless/function.zip"

_handler = None


def _load():
    global _handler
    if _handler is None:
        # The snapshot holds one seed for every instance of every function: each gets its own.
        random.seed()
        name = os.environ.get("FUNC_HANDLER", "")
        module, _, func = name.rpartition(".")
        if not module or not func:
            raise ImportError("handler %r: expected <module>.<function>" % name)
        if FILES not in sys.path:
            sys.path.insert(0, FILES)
        user_module = importlib.import_module(module)
        try:
            f = getattr(user_module, func)
        except AttributeError:
            raise ImportError("handler '%s': module '%s' has no function '%s'" % (name, module, func)) from None
        if not callable(f):
            raise TypeError("handler '%s' is not callable" % name)
        _handler = make_incoming_handler(f, name)()
    return _handler


class Function(exports.Function):
    def load(self) -> None:
        try:
            _load()
        except BaseException as e:  # noqa: BLE001 (SystemExit at import is the source's too)
            raise Err("".join(traceback.format_exception(e)).strip())


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request, response_out) -> None:
        try:
            handler = _load()
        except BaseException as e:  # noqa: BLE001
            traceback.print_exc(file=sys.stderr)  # the function's log
            send_text(response_out, 500, "cannot load the handler: %s" % e)
            return
        handler.handle(request, response_out)


# What every instance starts from: collected once, and out of the collector's way for good.
gc.collect()
gc.freeze()
