"""Modules loaded on first use.

Every BOSH call is a new process, and one module often serves calls of very
different weight (``has_vm`` and ``create_vm`` share ``actions/vms.py``).  A
lazily loaded module costs nothing until a handler touches one of its names.

Not thread-safe (importlib's LazyLoader in 3.11): a second thread touching a
module while the first is executing it sees it half made.  The CPI runs one
call per process on one thread; code that runs calls on several threads in
one process (tests) must touch the lazy modules first.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_import(name: str) -> ModuleType:
    """``import name``, deferred until an attribute of the module is first read."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
