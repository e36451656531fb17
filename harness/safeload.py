"""Reading pickled files without running code from them.

A pickle names the functions and classes it rebuilds (its *globals*) and calls them while loading: a crafted
file can name ``os.system``. Every pickle the harness reads goes through here, and only the globals the file's
format legitimately needs are allowed:

* **our own checkpoints** (``checkpoint.pt``, ``supernet.pt``, ``init_weights.pt``) and the **official NB201
  .pth files**: ``torch.load(weights_only=True)``, which allows tensors, storages, ``OrderedDict`` and plain
  Python containers, plus the numpy scalar/array globals below (NB201's records were written by numpy-era code);
* **CIFAR and ImageNet16 batches** (Python-2 pickles of numpy arrays): a :class:`pickle.Unpickler` whose
  ``find_class`` allows only numpy's array reconstruction;
* **NATS-Bench's topology files** (``*.pickle.pbz2``, bz2-compressed dicts of numbers): the same, plus
  ``collections.OrderedDict``.

Anything else is refused with one line that names the file and the global (:class:`UnsafeFileError`). Trusting
a file is a deliberate act: ``--trust-pickle`` on the command line or ``[run] trust_pickle = true`` in a config
(:func:`trusting`), which loads the file unrestricted and warns.
"""
from __future__ import annotations

import contextlib
import pickle
import re
import sys
from pathlib import Path

# numpy's array and scalar reconstruction under its 1.x (numpy.core) and 2.x (numpy._core) module names
NUMPY_GLOBALS = {
    (mod, name)
    for core in ("numpy.core.multiarray", "numpy._core.multiarray")
    for mod, name in ((core, "_reconstruct"), (core, "scalar"))
} | {("numpy", "ndarray"), ("numpy", "dtype")}
# protocol-2 pickles written by Python 3 spell bytes as _codecs.encode(str, "latin1"): a pure function
PICKLE_GLOBALS = NUMPY_GLOBALS | {("_codecs", "encode")}

_TRUST = False

TRUST_HINT = "if you trust its origin, rerun with --trust-pickle (or [run] trust_pickle = true)"


class UnsafeFileError(ValueError):
    """A pickled file names a global its format never needs: loading it could run arbitrary code."""


@contextlib.contextmanager
def trusting(flag: bool):
    """Within the block, pickles load unrestricted when ``flag`` is true (``--trust-pickle``)."""
    global _TRUST
    before, _TRUST = _TRUST, bool(flag) or _TRUST
    try:
        yield
    finally:
        _TRUST = before


def trusted() -> bool:
    return _TRUST


def _warn(path: Path) -> None:
    print(f"warning: loading {path} with unrestricted unpickling (--trust-pickle): the file can run any code",
          file=sys.stderr)


class _Restricted(pickle.Unpickler):
    def __init__(self, file, path: Path, kind: str, allowed: set[tuple[str, str]], **kw):
        super().__init__(file, **kw)
        self.path, self.kind, self.allowed = path, kind, allowed

    def find_class(self, module: str, name: str):
        if (module, name) not in self.allowed:
            raise UnsafeFileError(f"{self.path}: refusing to load: it names the global {module}.{name}, which a "
                                  f"{self.kind} never holds (loading it could run code); {TRUST_HINT}")
        return super().find_class(module, name)


def load_pickle(path: str | Path, kind: str, allowed: set[tuple[str, str]] = PICKLE_GLOBALS, bz2: bool = False,
                **kw):
    """``pickle.load`` of ``path`` allowing only the globals ``allowed`` (``kind`` names the format in errors);
    ``bz2``: the pickle is bz2-compressed (NATS-Bench's ``.pickle.pbz2``)."""
    import bz2 as _bz2

    path = Path(path)
    with (_bz2.open(path, "rb") if bz2 else open(path, "rb")) as f:
        if _TRUST:
            _warn(path)
            return pickle.load(f, **kw)
        return _Restricted(f, path, kind, allowed, **kw).load()


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>")


def load_torch(path: str | Path, kind: str, map_location="cpu"):
    """``torch.load`` of ``path`` with ``weights_only=True`` (plus :data:`NUMPY_GLOBALS`); a file that needs
    anything else raises :class:`UnsafeFileError`. Other failures (truncated, not a torch file) propagate."""
    import torch

    path = Path(path)
    if _TRUST:
        _warn(path)
        return torch.load(path, map_location=map_location, weights_only=False)
    safe = _numpy_safe_globals()
    try:
        with torch.serialization.safe_globals(safe):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Weights only load failed" not in text:
            raise
        found = _GLOBAL.search(text)
        what = (f"the global {found.group(1) or found.group(2)}" if found
                else "an object outside tensors and plain containers")
        raise UnsafeFileError(f"{path}: refusing to load: it names {what}, which a {kind} never holds (loading it "
                              f"could run code); {TRUST_HINT}") from None


def _numpy_safe_globals() -> list:
    """:data:`NUMPY_GLOBALS` as torch's ``safe_globals`` wants them: (object, the name a pickle spells)."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    objects = {"_reconstruct": core.multiarray._reconstruct, "scalar": core.multiarray.scalar,
               "ndarray": np.ndarray, "dtype": np.dtype}
    out = [(objects[name], f"{mod}.{name}") for mod, name in sorted(NUMPY_GLOBALS)]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 pickles a dtype's class (numpy.dtypes.Float64DType)
    return out + [getattr(dtypes, n) for n in getattr(dtypes, "__all__", []) if n.endswith("DType")]
