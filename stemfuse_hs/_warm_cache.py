"""A record that umap-learn's numba compilation is cached, so that a command can skip compiling it again.

``stemfuse demo`` and ``stemfuse run`` start a second process that compiles
umap-learn's numba functions (and caches them on disk) while the first one
generates or reads data (:func:`stemfuse_hs.cli` ``_numba_warm_up``). Once
they are cached, that process only costs: about 5 s of a core to import
umap-learn and load the cache, on a machine of two cores the core the main
process's threads want. After a warm-up has compiled and cached them, it
writes a small *warm record* (:func:`write_warm_record`): for every cached
function, numba's index file and the stat of its source file, which is what
numba checks before it uses a cached compilation. A later command that
finds the record still valid (:func:`warm_record_valid`: every index file
there, every source file unchanged) starts no warm-up.

The record lives in the per-user cache folder (:func:`user_cache_dir`),
named after everything that changes the compilation: the Python executable,
the numba and umap-learn versions, this package's version and folder, and
``NUMBA_CACHE_DIR``. Pointing ``NUMBA_CACHE_DIR`` at an empty folder finds
no record; deleting numba's cache invalidates it. Where the folder cannot
be written, or is on a network file system, no record is kept: every
command warms up, as before. Standard library only: the command line reads
the record before it imports anything heavy.
"""

import hashlib
import json
import os
import sys
from pathlib import Path

__all__ = [
    "NETWORK_FILE_SYSTEMS",
    "is_network_path",
    "user_cache_dir",
    "warm_record_path",
    "warm_record_valid",
    "write_warm_record",
]

#: File-system types (Linux ``/proc/self/mounts``) never used for the cache.
NETWORK_FILE_SYSTEMS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "ceph", "glusterfs", "lustre", "gpfs",
        "beegfs", "9p", "davfs", "fuse.sshfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.glusterfs", "fuse.cephfs",
    }
)
_RECORD_FORMAT = 1


def _mount_types():
    """``{mount point: file-system type}`` on Linux, ``{}`` elsewhere."""
    try:
        with open("/proc/self/mounts", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    mounts = {}
    for line in lines:
        parts = line.split()
        if len(parts) >= 3:
            # Mount points escape spaces and the like as octal (\040).
            point = parts[1].encode("latin-1").decode("unicode_escape")
            mounts[point] = parts[2]
    return mounts


def is_network_path(path, mounts=None):
    """Whether ``path`` is on a network file system (Linux; False where unknown).

    Parameters
    ----------
    path : str or pathlib.Path
        Need not exist: its nearest existing parent decides.
    mounts : dict, optional
        ``{mount point: file-system type}``; default: this machine's.

    Returns
    -------
    bool

    Examples
    --------
    >>> is_network_path("/home/me/.cache", {"/": "ext4", "/home": "nfs4"})
    True
    >>> is_network_path("/tmp/x", {"/": "ext4", "/home": "nfs4"})
    False
    """
    mounts = _mount_types() if mounts is None else mounts
    path = os.path.abspath(path)
    best, fs_type = "", None
    for point, kind in mounts.items():
        if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, fs_type = point, kind
    return fs_type in NETWORK_FILE_SYSTEMS


def user_cache_dir():
    """This package's per-user cache folder, or None where there is none to use.

    ``STEMFUSE_CACHE_DIR`` if set (an empty value: no cache); else
    ``%LOCALAPPDATA%\\stemfuse_hs\\Cache`` on Windows,
    ``~/Library/Caches/stemfuse_hs`` on macOS and
    ``$XDG_CACHE_HOME/stemfuse_hs`` (``~/.cache/stemfuse_hs``) elsewhere.
    None when the folder would be on a network file system
    (:func:`is_network_path`). The folder is not created here.

    Returns
    -------
    pathlib.Path or None
    """
    if "STEMFUSE_CACHE_DIR" in os.environ:
        value = os.environ["STEMFUSE_CACHE_DIR"]
        if not value:
            return None
        folder = Path(value)
    elif sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        folder = Path(base) / "stemfuse_hs" / "Cache"
    elif sys.platform == "darwin":
        folder = Path.home() / "Library" / "Caches" / "stemfuse_hs"
    else:
        folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stemfuse_hs"
    if is_network_path(folder):
        return None
    return folder


def _versions():
    from importlib import metadata

    from . import __version__

    versions = {"stemfuse_hs": __version__}
    for name in ("numba", "umap-learn"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def warm_record_path():
    """Where the warm record of this interpreter, these versions and ``NUMBA_CACHE_DIR`` lives, or None.

    Returns
    -------
    pathlib.Path or None
        None when there is no cache folder (:func:`user_cache_dir`).
    """
    folder = user_cache_dir()
    if folder is None:
        return None
    key = {
        "format": _RECORD_FORMAT,
        "python": sys.executable,
        "python_version": list(sys.version_info[:3]),
        "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR", ""),
        "package": str(Path(__file__).resolve().parent),
        **_versions(),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return folder / f"numba-warm-{digest}.json"


def _source_stat(path):
    st = os.stat(path)
    return [st.st_mtime, st.st_size]


def write_warm_record(dispatchers, path=None):
    """Record that ``dispatchers`` (numba functions with ``cache=True``) are compiled and cached.

    Written to a temporary file and renamed, so that two processes writing
    at once leave one whole record. Does nothing (returns None) where a
    dispatcher's cache files cannot be found or the folder cannot be
    written.

    Parameters
    ----------
    dispatchers : iterable of numba dispatchers
        Those compiled in this process (the others are left out) must all
        have their compilations cached.
    path : pathlib.Path, optional
        Default :func:`warm_record_path`.

    Returns
    -------
    pathlib.Path or None
        The record written.
    """
    path = warm_record_path() if path is None else Path(path)
    if path is None:
        return None
    entries = []
    try:
        for dispatcher in dispatchers:
            if not dispatcher.signatures:
                continue  # never called here (e.g. the parallel twin of a seeded layout)
            # numba's FunctionCache and its IndexDataCacheFile: where the index of cached compilations is.
            cache_file = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
            index = getattr(cache_file, "_index_path", None)
            source = dispatcher.py_func.__code__.co_filename
            if not index or not os.path.isfile(index):
                return None
            entries.append({"index": str(index), "source": source, "source_stat": _source_stat(source)})
        if not entries:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps({"format": _RECORD_FORMAT, "functions": entries}), encoding="utf-8")
        os.replace(temporary, path)
    except (OSError, AttributeError, TypeError, ValueError):
        return None
    return path


def warm_record_valid(path=None):
    """Whether a warm record exists and still holds: its index files there, its sources unchanged.

    Parameters
    ----------
    path : pathlib.Path, optional
        Default :func:`warm_record_path`.

    Returns
    -------
    bool
        False for a missing, unreadable or corrupt record.
    """
    try:
        path = warm_record_path() if path is None else Path(path)
        if path is None:
            return False
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("format") != _RECORD_FORMAT or not record["functions"]:
            return False
        for entry in record["functions"]:
            if not os.path.isfile(entry["index"]) or _source_stat(entry["source"]) != list(entry["source_stat"]):
                return False
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return True
