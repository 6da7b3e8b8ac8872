"""Model files: a NumPy ``.npz`` archive of plain arrays plus a JSON header. No pickle, ever.

Writing. Writes are atomic (a temporary file beside the target, fsync, ``os.replace``, fsync of
the folder), so a crash or a full disk never leaves a half-written file at the target path. The
temporary file is named after its target and its writer (``.<name>.aerec-<host>-<pid>-<random>.tmp``);
a writer killed outright (SIGKILL, power loss) leaves it behind, and the next save to the same
target deletes such leftovers whose writer process on this host is gone, and nothing else.
A symlink as the target is followed (the link stays, its target is replaced); the saved file
keeps the mode of the file it replaces (a new one gets ``0o666 & ~umask``).

Reading. Each file carries a format version, the class it holds, and a SHA-256 digest of its
header and arrays. Every class that can be saved declares a :class:`Schema` (``aerec._schemas``):
its header fields with types and ranges, and its arrays with dtype and a shape written in terms of
header fields. :func:`read_model_file` checks a file against it in this order, and raises
:class:`ModelFileError` naming the file, the field and what was expected at the first problem:

1. the path is a regular file (a symlink to one is fine); the zip directory is well formed: only
   ``<name>.npy`` members, no duplicates, stored (not compressed, not encrypted), sizes adding up
   to no more than the file;
2. the JSON header (at most ``MAX_HEADER_BYTES``): an object, this format, a version this aerec
   reads, a class it knows (and the one asked for), every field present, of its type and range;
3. every array's ``.npy`` header against the schema (dtype, shape, C or Fortran order), and the
   member's size in the zip directory against that shape, all before any array data is read, so
   a file cannot make aerec allocate more memory than its own size;
4. then the arrays are read, the digest is compared, and the values are checked (finite weights,
   ids in range, CSR structure, ...).

:func:`save_arrays` runs the same checks before writing, so aerec never writes a file it would
refuse to load.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import socket
import stat
import tempfile
import zipfile

import numpy as np

FORMAT = "aerec-model"
#: 2: named weight arrays (``encoder.0.weight``, ...; see ``aerec._schemas.weight_names``) and the
#: model card; version 1 files (``param_0``, ...) still load
FORMAT_VERSION = 2
#: the largest JSON header a file may have (training histories included)
MAX_HEADER_BYTES = 16 << 20
_META_KEY = "__aerec_meta__"
_MEMBER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.]{0,127}\.npy")
_MAX_MEMBERS = 4096
_MODEL_CLASSES: dict[str, type] = {}

__all__ = ["ModelFileError", "atomic_write", "clean_stale_temps", "save_arrays", "load_arrays",
           "read_model_file", "register_model", "load", "Schema", "Array"]


class ModelFileError(ValueError):
    """A model file is truncated, altered, of another format or of an unsupported version, or its
    contents do not match what its class declares."""


def register_model(cls):
    """Class decorator: make ``aerec.load`` able to rebuild ``cls`` (by name, no code execution)."""
    _MODEL_CLASSES[cls.__name__] = cls
    return cls


# ----------------------------------------------------------------------------------------------
# schemas: header field validators and array declarations

class Invalid(Exception):
    """Raised by validators: ``where`` (a dotted field name) is not ``expected``."""

    def __init__(self, where: str, expected: str, got=None, has_got: bool = True, got_text: str | None = None):
        self.where, self.expected = where, expected
        text = f"{where}: expected {expected}"
        if got_text is not None:
            text += f", got {got_text}"
        elif has_got:
            text += f", got {_show(got)}"
        super().__init__(text)


def _show(v) -> str:
    r = repr(v)
    if len(r) > 60:
        r = r[:57] + "..."
    return f"{r} ({type(v).__name__})"


class Int:
    """A JSON integer (not a bool, not a float) in ``[lo, hi]`` (``hi`` defaults to int64's max)."""

    def __init__(self, lo=None, hi=2 ** 63 - 1):
        self.lo, self.hi = lo, hi
        rng = [f">= {lo}" if lo is not None else "", f"<= {hi}" if hi is not None else ""]
        self.expected = "an integer" + (" " + " and ".join(r for r in rng if r) if any(rng) else "")

    def __call__(self, v, where):
        if isinstance(v, bool) or not isinstance(v, int) or (self.lo is not None and v < self.lo) \
                or (self.hi is not None and v > self.hi):
            raise Invalid(where, self.expected, v)
        return v


class Float:
    """A JSON number (ints accepted), finite unless ``finite=False``, in the given range."""

    def __init__(self, lo=None, hi=None, *, lo_open=False, hi_open=False, finite=True):
        self.lo, self.hi, self.lo_open, self.hi_open, self.finite = lo, hi, lo_open, hi_open, finite
        parts = []
        if lo is not None:
            parts.append(f"{'>' if lo_open else '>='} {lo}")
        if hi is not None:
            parts.append(f"{'<' if hi_open else '<='} {hi}")
        self.expected = ("a finite number" if finite else "a number") + (" " + " and ".join(parts) if parts else "")

    def __call__(self, v, where):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise Invalid(where, self.expected, v)
        try:
            f = float(v)
        except OverflowError:
            raise Invalid(where, self.expected, v) from None
        bad = (self.finite and not math.isfinite(f)) \
            or (self.lo is not None and (f < self.lo or (self.lo_open and f == self.lo))) \
            or (self.hi is not None and (f > self.hi or (self.hi_open and f == self.hi)))
        if bad:
            raise Invalid(where, self.expected, v)
        return f


class Str:
    """A string, one of ``choices`` when given."""

    def __init__(self, *choices):
        self.choices = choices
        self.expected = f"one of {', '.join(map(repr, choices))}" if choices else "a string"

    def __call__(self, v, where):
        if not isinstance(v, str) or (self.choices and v not in self.choices):
            raise Invalid(where, self.expected, v)
        return v


class Bool:
    expected = "true or false"

    def __call__(self, v, where):
        if not isinstance(v, bool):
            raise Invalid(where, self.expected, v)
        return v


class Opt:
    """``None`` (JSON null) or ``inner``."""

    def __init__(self, inner):
        self.inner = inner
        self.expected = f"null or {inner.expected}"

    def __call__(self, v, where):
        return None if v is None else self.inner(v, where)


class Seq:
    """A JSON list of ``item`` (returned as a tuple), ``min_len <= len <= max_len``."""

    def __init__(self, item, min_len=0, max_len=None):
        self.item, self.min_len, self.max_len = item, min_len, max_len
        n = f"{min_len}" if min_len == max_len else f"{min_len}..{max_len if max_len is not None else ''}"
        self.expected = f"a list of {n} x ({item.expected})"

    def __call__(self, v, where):
        if not isinstance(v, list) or len(v) < self.min_len or (self.max_len is not None and len(v) > self.max_len):
            raise Invalid(where, self.expected, v)
        return tuple(self.item(x, f"{where}[{i}]") for i, x in enumerate(v))


class Either:
    """The first of ``options`` that accepts the value."""

    def __init__(self, *options):
        self.options = options
        self.expected = " or ".join(o.expected for o in options)

    def __call__(self, v, where):
        for o in self.options:
            try:
                return o(v, where)
            except Invalid:
                pass
        raise Invalid(where, self.expected, v)


class Map:
    """A JSON object with string keys and ``value`` values (e.g. a training history)."""

    def __init__(self, value):
        self.value = value
        self.expected = f"an object of ({value.expected})"

    def __call__(self, v, where):
        if not isinstance(v, dict):
            raise Invalid(where, self.expected, v)
        return {k: self.value(x, f"{where}.{k}") for k, x in v.items()}


class Obj:
    """A JSON object with exactly ``fields`` (name -> validator); names in ``optional`` may be
    absent (and are then absent from the result)."""

    def __init__(self, fields: dict, optional=()):
        self.fields, self.optional = dict(fields), frozenset(optional)
        self.expected = "an object with fields " + ", ".join(self.fields)

    def __call__(self, v, where):
        if not isinstance(v, dict):
            raise Invalid(where, self.expected, v)
        prefix = f"{where}." if where else ""
        unexpected = sorted(set(v) - set(self.fields))
        if unexpected:
            raise Invalid(f"{prefix}{unexpected[0]}", f"no such field (valid: {', '.join(self.fields)})",
                          has_got=False)
        out = {}
        for name, check in self.fields.items():
            if name not in v:
                if name in self.optional:
                    continue
                raise Invalid(f"{prefix}{name}", f"{check.expected} (the field is missing)", has_got=False)
            out[name] = check(v[name], prefix + name)
        return out


class Check:
    """``fn(value)`` returns the normalised value or raises ValueError/TypeError (its message
    becomes part of the error), e.g. a network spec rebuilt by ``make_spec``."""

    def __init__(self, fn, expected):
        self.fn, self.expected = fn, expected

    def __call__(self, v, where):
        try:
            return self.fn(v)
        except Invalid as exc:
            raise Invalid(f"{where}.{exc.where}" if exc.where else where, exc.expected, has_got=False) from None
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            raise Invalid(where, f"{self.expected} ({exc})", has_got=False) from None


class Array:
    """A declared array: ``dtype`` (one, or a tuple of accepted ones; or ``kinds``, a string of
    dtype kinds such as ``"iufUS"``, little-endian or byte-order free), ``shape`` (a tuple of ints
    or dimension names, optionally ``"name+1"``; names are bound by the header or by the first
    array that uses them, and must agree everywhere), value checks (``finite``, ``nonneg``)."""

    def __init__(self, dtype, shape, *, kinds=None, finite=False, nonneg=False, required=True):
        self.dtypes = () if dtype is None else \
            tuple(np.dtype(d) for d in (dtype if isinstance(dtype, tuple) else (dtype,)))
        self.kinds = kinds
        self.shape = tuple(shape)
        self.finite, self.nonneg, self.required = finite, nonneg, required

    def accepts(self, dtype) -> bool:
        if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
            return False
        if self.kinds is not None and dtype.kind in self.kinds and dtype.byteorder in "=<|":
            return True
        return dtype in self.dtypes

    def describe(self, dims) -> str:
        def one(e):
            if isinstance(e, int):
                return str(e)
            name, off = _dim(e)
            return str(dims[name] + off) if name in dims else e
        dt = " or ".join([d.name for d in self.dtypes] + ([f"dtype kind in {self.kinds!r}"] if self.kinds else []))
        return f"{dt} of shape ({', '.join(map(one, self.shape))}{',' if len(self.shape) == 1 else ''})"


def _dim(expr: str):
    name, _, off = expr.partition("+")
    return name, int(off or 0)


class Schema:
    """What one saved class's files hold.

    fields : dict name -> validator
        the header's fields beside ``format``, ``format_version``, ``class`` and ``sha256``.
    optional : names of fields that may be absent.
    arrays : callable(header) -> dict name -> Array
        the arrays, in reading order, given the validated header.
    dims : callable(header) -> dict name -> int, optional
        dimensions the header fixes (beside its optional ``dims`` object, which fixes any).
    check : callable(header, arrays, dims) -> None, optional
        value checks across arrays, after reading (raise :class:`Invalid`).
    """

    def __init__(self, fields, arrays, *, optional=(), dims=None, check=None):
        self.header = Obj(fields, optional)
        self.arrays, self.dims, self.check = arrays, dims, check


# ----------------------------------------------------------------------------------------------
# value checks shared by schemas

def all_finite(a: np.ndarray) -> bool:
    """Whether every element is finite, in blocks (no full-size temporary)."""
    if a.dtype.kind not in "fc" or a.size == 0:
        return True
    flat = a.reshape(-1)
    step = 1 << 20
    return all(bool(np.isfinite(flat[s:s + step]).all()) for s in range(0, flat.size, step))


def check_csr(indptr, indices, n_rows: int, n_cols: int, indptr_name: str, indices_name: str) -> None:
    """Canonical CSR: ``indptr`` of length n_rows+1 from 0 to nnz, non-decreasing; ``indices`` in
    ``[0, n_cols)``, strictly increasing within each row. Raises :class:`Invalid`."""
    nnz = len(indices)
    if len(indptr) != n_rows + 1:
        raise Invalid(indptr_name, f"length {n_rows + 1} (rows + 1)", len(indptr))
    if indptr[0] != 0 or indptr[-1] != nnz:
        raise Invalid(indptr_name, f"offsets from 0 to nnz={nnz}", got_text=f"{int(indptr[0])}..{int(indptr[-1])}")
    if n_rows and (np.diff(indptr) < 0).any():
        raise Invalid(indptr_name, "non-decreasing row offsets", has_got=False)
    if nnz:
        lo, hi = int(indices.min()), int(indices.max())
        if lo < 0 or hi >= n_cols:
            raise Invalid(indices_name, f"column ids in [0, {n_cols})", lo if lo < 0 else hi)
        inc = indices[1:] > indices[:-1]
        starts = np.asarray(indptr[1:-1], dtype=np.int64)
        starts = starts[(starts > 0) & (starts < nnz)]
        inc[starts - 1] = True  # a row's first id may be below the previous row's last
        if not inc.all():
            raise Invalid(indices_name, "sorted, distinct column ids within each row", has_got=False)


# ----------------------------------------------------------------------------------------------
# writing

def _digest(meta_without_digest: dict, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(meta_without_digest, sort_keys=True).encode())
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(key.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.reshape(-1).view(np.uint8))  # the bytes, without a copy
    return h.hexdigest()


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.dtype) or (isinstance(o, type) and issubclass(o, np.generic)):
        return np.dtype(o).name  # e.g. EASE(dtype=np.float32)
    raise TypeError(f"cannot store {type(o).__name__} in a model header")


def save_arrays(path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Atomically write ``meta`` (JSON-able) and ``arrays`` to ``path`` (.npz, stored members)."""
    path = os.fsdecode(path)  # str, PathLike or bytes -> str
    out = {}
    for k, a in arrays.items():
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "biufUS":
            raise TypeError(f"array {k!r} must be a numeric or string ndarray (no objects)")
        if not _MEMBER_RE.fullmatch(f"{k}.npy") or k == _META_KEY:
            raise ValueError(f"array name {k!r} is not allowed in a model file")
        out[k] = a if a.flags.c_contiguous else np.ascontiguousarray(a)
    meta = json.loads(json.dumps(dict(meta), default=_json_default))
    meta["format"] = FORMAT
    meta["format_version"] = FORMAT_VERSION
    _check_before_save(path, meta, out)
    meta["sha256"] = _digest(meta, out)
    text = json.dumps(meta, sort_keys=True).encode()
    if len(text) > MAX_HEADER_BYTES:
        raise ValueError(f"the model header is {len(text)} bytes, more than a file may hold "
                         f"({MAX_HEADER_BYTES}); shorten the training history")
    header = np.frombuffer(text, dtype=np.uint8)
    with atomic_write(path) as f:
        np.savez(f, **{_META_KEY: header}, **out)


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:64] or "host"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not ours to judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def _temp_prefix(path: str) -> str:
    return f".{os.path.basename(path)}.aerec-"


def clean_stale_temps(path) -> list[str]:
    """Delete temporary files that an earlier, killed save to ``path`` left beside it: regular
    files named by :func:`atomic_write` for this target, written on this host by a process that no
    longer exists. Returns the names deleted."""
    path = os.fsdecode(path)  # str, PathLike or bytes -> str
    folder = os.path.dirname(os.path.abspath(path))
    prefix = _temp_prefix(path)
    pattern = re.compile(re.escape(prefix) + r"(?P<host>[A-Za-z0-9-]+)-(?P<pid>[0-9]{1,10})-[a-z0-9_]{8}\.(tmp|part)")
    host = _host_tag()
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        m = pattern.fullmatch(entry.name)
        if m is None or m["host"] != host or _pid_alive(int(m["pid"])):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            os.unlink(entry.path)
            removed.append(entry.name)
        except OSError:  # gone already (another cleaner) or not ours to delete
            pass
    return removed


def _current_umask() -> int:
    """The process umask, read without changing it (``/proc/self/status`` on Linux). Where that
    cannot be read, ``os.umask`` is set and put back; for that instant it is 0o077, so a file another
    thread creates meanwhile is at worst more private than asked, never less."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8) & 0o777
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o077)
    os.umask(old)
    return old & 0o777


def _new_file_mode(path: str) -> int:
    """The mode a saved file gets: that of the file it replaces, else ``0o666 & ~umask`` (0644
    under the usual umask 022), as ``open()`` would give a new file; not mkstemp's 0600."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode) & 0o777  # keep the mode of the file being replaced
    except OSError:
        pass
    return 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_write(path, suffix: str = ".tmp"):
    """Open a temporary file beside ``path`` for binary writing; on success fsync it and
    ``os.replace`` it onto ``path``, on any error delete it. ``path`` is never left half-written.

    The temporary file is ``.<basename>.aerec-<host>-<pid>-<random><suffix>``; leftovers of
    earlier writers to ``path`` that were killed are deleted first (:func:`clean_stale_temps`).
    ``suffix`` is ``.tmp`` or ``.part``."""
    if suffix not in (".tmp", ".part"):
        raise ValueError(f"suffix must be '.tmp' or '.part', got {suffix!r}")
    path = os.fsdecode(path)  # str, PathLike or bytes -> str
    if os.path.islink(path):
        path = os.path.realpath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path!r} is a directory; pass a file path such as "
                                f"{os.path.join(path, 'model.npz')!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder {folder!r} does not exist; create it before saving")
    clean_stale_temps(path)
    mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{_temp_prefix(path)}{_host_tag()}-{os.getpid()}-", suffix=suffix,
                               dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


# ----------------------------------------------------------------------------------------------
# reading

def _open_regular(path: str):
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)  # FileNotFoundError / PermissionError pass through as they are
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (a device, pipe or socket)"
            raise ModelFileError(f"{path!r} is {kind}; pass the path of a saved model file")
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


def _npy_header(member, where):
    """(dtype, shape, fortran_order, header length) of an open ``.npy`` member."""
    try:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except zipfile.BadZipFile:
        raise
    except Exception as exc:  # numpy parses the header text with ast/tokenize: any error there is a bad file
        raise Invalid(where, "a readable .npy array header", got_text=f"{type(exc).__name__}: {exc}") from None
    return dtype, shape, fortran, member.tell()


def _read_header(zf, info, path):
    if info.file_size > MAX_HEADER_BYTES + 128:  # + the .npy prefix
        raise ModelFileError(f"{path!r}: the header is {info.file_size} bytes, more than "
                             f"{MAX_HEADER_BYTES}; this is not a file aerec wrote")
    with zf.open(info) as m:
        try:
            dtype, shape, fortran, hlen = _npy_header(m, "header")
        except Invalid as exc:
            raise ModelFileError(f"{path!r}: {exc}") from None
        if dtype != np.uint8 or len(shape) != 1 or hlen + shape[0] != info.file_size:
            raise ModelFileError(f"{path!r}: the header member is not a byte string of its stored size")
        raw = m.read(shape[0])
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise ModelFileError(f"{path!r} has a corrupt header ({type(exc).__name__}: {str(exc)[:100]})") from None
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path!r}: the header is a JSON {type(meta).__name__}, expected an object")
    return meta


def _zip_directory(zf, path, file_size):
    infos = zf.infolist()
    if len(infos) > _MAX_MEMBERS:
        raise ModelFileError(f"{path!r} has {len(infos)} members; an aerec model file has at most {_MAX_MEMBERS}")
    members = {}
    for info in infos:
        name = info.filename
        if not _MEMBER_RE.fullmatch(name):
            raise ModelFileError(f"{path!r}: unexpected member {name[:80]!r} (model files hold only "
                                 "<name>.npy arrays)")
        if name[:-4] in members:
            raise ModelFileError(f"{path!r}: member {name!r} appears twice")
        if info.flag_bits & 0x1:
            raise ModelFileError(f"{path!r}: member {name!r} is encrypted")
        if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
            raise ModelFileError(f"{path!r}: member {name!r} is compressed ({info.file_size} bytes from "
                                 f"{info.compress_size}); aerec writes uncompressed members only")
        members[name[:-4]] = info
    total = sum(i.compress_size for i in infos)
    if total > file_size:
        raise ModelFileError(f"{path!r}: its members claim {total} bytes but the file has {file_size}; "
                             "it is truncated or altered")
    return members


def read_model_file(path, expected_class: str | None = None):
    """Read and fully validate a model file: returns ``(cls, header, arrays)``.

    ``header`` holds the validated, normalised fields (lists of the schema become tuples);
    ``arrays`` are C-contiguous, of the declared dtypes and shapes, with checked values. With
    ``expected_class`` a file holding another class raises before any array is read."""
    path = os.fsdecode(path)  # str, PathLike or bytes -> str
    f, file_size = _open_regular(path)
    with f:
        try:
            zf = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
            raise ModelFileError(f"{path!r} is not an aerec model file, or it is truncated ({exc})") from None
        try:
            with zf:
                return _read(zf, path, file_size, expected_class)
        except (zipfile.BadZipFile, EOFError, OSError, zipfile.LargeZipFile, NotImplementedError) as exc:
            # NotImplementedError: zipfile on a damaged local header's flag bits ("compressed
            # patched data"), a damaged file like any other
            if isinstance(exc, (FileNotFoundError, PermissionError)):
                raise
            raise ModelFileError(f"{path!r} is truncated or altered ({type(exc).__name__}: {exc})") from None


def _read(zf, path, file_size, expected_class):
    members = _zip_directory(zf, path, file_size)
    if _META_KEY not in members:
        if "format" in members and "items" in members:
            raise ModelFileError(f"{path!r} is a TopK index file in the layout of earlier aerec versions, whose "
                                 "checksum did not cover metric and precision, so this aerec does not read it: "
                                 "rebuild the index from its item vectors and save it again")
        raise ModelFileError(f"{path!r} is not an aerec model file (no header)")
    meta = _read_header(zf, members.pop(_META_KEY), path)

    # -- format, version, class --------------------------------------------------------------
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path!r} is not an aerec model file (format {_show(meta.get('format'))})")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{path!r}: format_version: expected an integer >= 1, got {_show(version)}")
    if version > FORMAT_VERSION:
        from . import __version__
        raise ModelFileError(f"{path!r} is format version {version}, written by a newer aerec; this aerec "
                             f"({__version__}) reads format versions up to {FORMAT_VERSION}: upgrade aerec")
    name = meta.get("class")
    if name is None:
        raise ModelFileError(f"{path!r}: the header names no class")
    if not isinstance(name, str) or name not in _MODEL_CLASSES:
        known = ", ".join(sorted(_MODEL_CLASSES))
        raise ModelFileError(f"{path!r} holds a {_show(name)}, which this aerec does not know (known: {known})")
    if expected_class is not None and name != expected_class:
        raise ModelFileError(f"{path!r} holds a {name} model, and {expected_class}.load reads only "
                             f"{expected_class} files; load it with aerec.{name}.load(path) or aerec.load(path)")
    digest = meta.get("sha256")
    if not isinstance(digest, str):
        raise ModelFileError(f"{path!r}: sha256: expected a hex digest, got {_show(digest)}")
    cls = _MODEL_CLASSES[name]
    from . import _schemas
    schema = _schemas.schema_for(name)

    header, dims, specs = _declared(schema, meta, path, name)

    # -- members against the declared arrays, from the zip directory and .npy headers only ----
    unexpected = sorted(set(members) - set(specs))
    if unexpected:
        raise ModelFileError(f"{path!r} ({name}): unexpected array {unexpected[0]!r} "
                             f"(a {name} file holds {', '.join(specs)})")
    missing = [k for k, s in specs.items() if s.required and k not in members]
    if missing:
        raise ModelFileError(f"{path!r} ({name}): array {missing[0]!r} is missing")
    layout = {}
    for key, spec in specs.items():
        if key not in members:
            continue
        info = members[key]
        with zf.open(info) as m:
            try:
                dtype, shape, fortran, hlen = _npy_header(m, f"array {key!r}")
            except Invalid as exc:
                raise ModelFileError(f"{path!r} ({name}): {exc}") from None
        _match(spec, key, dtype, shape, dims, path, name)
        nbytes = math.prod(shape) * dtype.itemsize
        if hlen + nbytes != info.file_size:
            raise ModelFileError(f"{path!r} ({name}): array {key!r} of shape {shape} needs {hlen + nbytes} bytes "
                                 f"but its member has {info.file_size}; the file is truncated or altered")
        layout[key] = (info, dtype, shape, fortran)

    # -- read, verify the digest, check the values --------------------------------------------
    arrays = {}
    for key, (info, dtype, shape, fortran) in layout.items():
        with zf.open(info) as m:
            try:
                a = np.lib.format.read_array(m, allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise ModelFileError(f"{path!r}: array {key!r} is truncated or altered ({exc})") from None
        if a.shape != shape or a.dtype != dtype:  # pragma: no cover - checked above
            raise ModelFileError(f"{path!r}: array {key!r} changed while reading")
        arrays[key] = np.ascontiguousarray(a) if a.ndim else a
    meta_wo = {k: v for k, v in meta.items() if k != "sha256"}
    if digest != _digest(meta_wo, arrays):
        raise ModelFileError(f"{path!r} failed its checksum: the file was altered or damaged")
    _check_values(schema, specs, header, arrays, dims, path, name)
    return cls, header, arrays


def _declared(schema, meta, path, name):
    """The validated header, the dims it fixes and the arrays it declares."""
    fields = {k: v for k, v in meta.items() if k not in ("format", "format_version", "class", "sha256")}
    try:
        header = schema.header(fields, "")
        dims = _bind_header_dims(schema, header)
        specs = schema.arrays(header)
    except Invalid as exc:
        raise ModelFileError(f"{path!r} ({name}): header field {exc}") from None
    return header, dims, specs


def _check_values(schema, specs, header, arrays, dims, path, name):
    try:
        for key, a in arrays.items():
            spec = specs[key]
            if spec.finite and not all_finite(a):
                raise Invalid(f"array {key!r}", "finite values", got_text="NaN or inf")
            if spec.nonneg and a.size and (a < 0).any():
                raise Invalid(f"array {key!r}", "values >= 0", float(a.min()))
        if schema.check is not None:
            schema.check(header, arrays, dims)
    except Invalid as exc:
        raise ModelFileError(f"{path!r} ({name}): {exc}") from None


def _check_before_save(path, meta, arrays):
    """Refuse to write a file that :func:`read_model_file` would refuse (same schema, same checks)."""
    name = meta.get("class")
    if name not in _MODEL_CLASSES:
        return
    from . import _schemas
    schema = _schemas.schema_for(name)
    try:
        header, dims, specs = _declared(schema, meta, path, name)
        unexpected = sorted(set(arrays) - set(specs))
        missing = [k for k, s in specs.items() if s.required and k not in arrays]
        if unexpected or missing:
            raise ModelFileError(f"{path!r} ({name}): arrays {unexpected} are not declared, {missing} are missing")
        for key, spec in specs.items():
            if key in arrays:
                _match(spec, key, arrays[key].dtype, arrays[key].shape, dims, path, name)
        _check_values(schema, specs, header, arrays, dims, path, name)
    except ModelFileError as exc:
        raise ValueError(f"refusing to save: aerec could not load the file again ({exc})") from None


def _bind_header_dims(schema, header):
    dims = {}
    declared = header.get("dims") or {}
    for k, v in declared.items():
        dims[k] = v
    if schema.dims is not None:
        for k, v in schema.dims(header).items():
            if k in dims and dims[k] != v:
                raise Invalid(f"dims.{k}", f"{v} (as the rest of the header says)", dims[k])
            dims[k] = v
    return dims


def _match(spec, key, dtype, shape, dims, path, name):
    ok = spec.accepts(dtype) and len(shape) == len(spec.shape)
    if ok:
        bound = {}
        for e, s in zip(spec.shape, shape):
            if isinstance(e, int):
                ok = ok and s == e
                continue
            dname, off = _dim(e)
            want = dims.get(dname, bound.get(dname))
            if want is None:
                if s - off < 0:
                    ok = False
                else:
                    bound[dname] = s - off
            elif want + off != s:
                ok = False
        if ok:
            dims.update(bound)
    if not ok:
        raise ModelFileError(f"{path!r} ({name}): array {key!r}: expected {spec.describe(dims)}, "
                             f"got {dtype} of shape {shape}")


def load_arrays(path, expected_class: str | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """``(header, arrays)`` of a validated model file (see :func:`read_model_file`)."""
    _, header, arrays = read_model_file(path, expected_class)
    return header, arrays


def rebuild(cls, path, header, arrays, backend):
    """``cls._from_state`` on a validated file; a failure there is still a :class:`ModelFileError`."""
    try:
        model = cls._from_state(header, arrays, backend=backend)
        if hasattr(model, "_restore_card"):
            model._restore_card(header)
        return model
    except (KeyError, IndexError, AttributeError, TypeError) as exc:
        raise ModelFileError(f"{os.fspath(path)!r}: the {cls.__name__} could not be rebuilt from the file "
                             f"({type(exc).__name__}: {exc})") from exc


def load(path, backend: str = "auto"):
    """Load any aerec model (or ``TopK`` index) saved with ``.save(path)``."""
    cls, header, arrays = read_model_file(path)
    return rebuild(cls, path, header, arrays, backend)
