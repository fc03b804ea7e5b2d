"""Output folders that never lose a user's files, and I/O faults as one line that names the path.

The rules every command follows:

- Every folder a command creates carries a marker, ``.ssmseg.json``: its kind (``run``, ``cv``, ``dataset``,
  ``eval``, ``export``, ``report``, ...), a hash of its inputs, and the files it wrote (names, or patterns
  for folders that grow).
- Run and output folders are created exclusively (``os.mkdir``): on a collision a new name (``name-2``, ...)
  is taken; a folder is never shared by two commands.
- Finished outputs are built in a staging folder beside the target and moved in place when complete.
- A folder is replaced or deleted only when its marker proves that ssmseg wrote it (the kind, and the inputs
  unless replacing is forced) and it holds nothing that ssmseg did not write.
- Anything else is refused with one line that names the folder and what it holds.
- A staging folder's name carries its owner (``.NAME.partial-p<pid>s<start>h<host>-*``: pid, the process's start
  time, a hash of the host), so does a replaced output set aside by ``publish`` (``.NAME.old-p...-*``), and a
  reserved folder's marker the same: after a SIGKILL they stay, and the next command writing the same output
  removes those whose process provably ended on this host (never one without that proof: another host, a live
  process, an older name); a set-aside output whose replacement never arrived is put back.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ssmseg import __version__
from ssmseg.errors import InputError

MARKER = ".ssmseg.json"
KINDS = {
    "run": "a training run",
    "cv": "a cross-validation run",
    "dataset": "a prepared dataset",
    "eval": "evaluation outputs",
    "sweep": "a solver/step sweep",
    "baseline": "classical baselines",
    "export": "an exported model",
    "report": "a report",
}
# What a run folder may hold, as written by train (a run folder grows, so it is described by patterns).
RUN_FILES = (
    "config.yaml", "config.yaml.tmp", "history.json", ".history.json.tmp", "result.json",
    "checkpoints/*.pt", "checkpoints/.*.pt.tmp", "tensorboard/events.out.tfevents.*",
)  # fmt: skip


class OutputError(InputError):
    """A command refuses to write into or replace a folder it cannot prove it wrote (exit 1)."""


# --- markers -------------------------------------------------------------------------------------------------


def inputs_key(inputs: Any) -> str:
    """A stable hash of JSON-able inputs (paths and other objects are written as strings)."""
    if isinstance(inputs, str) and len(inputs) == 64:
        return inputs  # already a sha256 hex digest
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def write_marker(
    folder: Path,
    kind: str,
    inputs: Any = None,
    files: Iterable[str] = (),
    patterns: Iterable[str] = (),
    about: str = "",
) -> None:
    """Write ``folder/.ssmseg.json`` atomically."""
    marker = {"ssmseg": __version__, "kind": kind, "inputs": inputs_key(inputs), "about": about,
              "files": sorted(files), "patterns": list(patterns),
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "owner": owner()}  # fmt: skip
    tmp = Path(folder) / f"{MARKER}.tmp"
    tmp.write_text(json.dumps(marker, indent=1), encoding="utf-8")
    tmp.replace(Path(folder) / MARKER)


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The folder's marker, a synthesised one for a dataset written before markers existed, else None."""
    folder = Path(folder)
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        return marker if isinstance(marker, dict) and marker.get("kind") in KINDS else None
    except (OSError, ValueError):
        return _legacy_dataset(folder)


def _legacy_dataset(folder: Path) -> dict[str, Any] | None:
    """A dataset folder from before markers (segmentation or fields): exactly prep's files, with a manifest that
    has its input hash."""
    segmentation, fields = {"manifest.json", "images.npy", "labels.npy", "valid.npy"}, {"manifest.json", "fields.npy"}
    try:
        names = {p.name for p in folder.iterdir()} - {"manifest.json.tmp"}
        if names not in (segmentation, fields):
            return None
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    digest = manifest.get("input_hash") if isinstance(manifest, dict) else None
    if not isinstance(digest, str):
        return None
    return {"kind": "dataset", "inputs": digest, "files": sorted(names), "patterns": ["manifest.json.tmp"]}


# --- abandoned staging and reserved folders ------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc), or None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2 :].split()[19]
    except (OSError, ValueError, IndexError):
        return None


def owner() -> dict[str, Any]:
    """Who is writing: this process (pid and start time, so a reused pid is told apart) on this host."""
    return {"pid": os.getpid(), "start": _start_time(os.getpid()), "host": socket.gethostname()}


def owner_ended(who: Any) -> bool:
    """True only when ``who`` (an ``owner()`` record) names a process of this host that has provably ended: its
    pid is gone, or now belongs to a process that started at another time."""
    if not isinstance(who, dict) or who.get("host") != socket.gethostname() or not isinstance(who.get("pid"), int):
        return False
    pid = who["pid"]
    if pid == os.getpid() and who.get("start") == _start_time(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):
        return False  # alive (another user's) or unknown: no proof
    start = _start_time(pid)
    return who.get("start") is not None and start is not None and start != who["start"]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:10]


def staging_prefix(dest: Path, role: str = "partial") -> str:
    """``.NAME.partial-p<pid>s<start>h<host>-`` (``role`` "old": a replaced output set aside by ``publish``): the
    owner of a hidden folder beside ``dest``, in its name (so nothing is added inside the folder)."""
    me = owner()
    return f".{Path(dest).name}.{role}-p{me['pid']}s{me['start'] or 'x'}h{_host_tag()}-"


_OWNED = re.compile(r"p(\d+)s(\d+|x)h([0-9a-f]{10})-")


def _abandoned(dest: Path, role: str) -> list[Path]:
    """The ``.DEST.<role>-*`` folders beside ``dest`` whose name names a process of this host that has ended."""
    head = f".{dest.name}.{role}-"
    try:
        candidates = sorted(p for p in dest.parent.iterdir() if p.name.startswith(head))
    except OSError:
        return []
    found = []
    for folder in candidates:
        m = _OWNED.match(folder.name[len(head) :])
        if m is None or folder.is_symlink() or not folder.is_dir():
            continue
        who = {"pid": int(m[1]), "start": None if m[2] == "x" else m[2],
               "host": socket.gethostname() if m[3] == _host_tag() else None}  # fmt: skip
        if owner_ended(who):
            found.append(folder)
    return found


def remove_abandoned_staging(dest: Path) -> list[Path]:
    """Remove ``.DEST.partial-*`` staging folders and ``.DEST.old-*`` replaced outputs set aside beside ``dest``
    that a killed ssmseg process left (their name names a process of this host that has ended); returns what was
    removed. An output set aside whose replacement never arrived (``dest`` is missing) is put back instead."""
    dest, removed = Path(dest), []
    for folder in _abandoned(dest, "partial"):
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    for folder in _abandoned(dest, "old"):
        kept = folder / dest.name
        if not dest.exists() and not dest.is_symlink() and kept.is_dir() and not kept.is_symlink():
            with contextlib.suppress(OSError):
                os.rename(kept, dest)  # killed between the two renames of publish: the old output comes back
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    if removed:
        from ssmseg.progress import info

        info(f"removed {len(removed)} hidden folder(s) that a killed ssmseg process left beside '{dest}'")
    return removed


def _abandoned_reservation(folder: Path, kind: str) -> bool:
    """A folder created (and marked) by an ssmseg process of this host that has ended, holding nothing but its
    marker: an output reserved and never written (an interrupted sweep's ``sweep/``)."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    marker = _read_json(folder / MARKER)
    try:
        only_marker = {p.name for p in folder.iterdir()} == {MARKER}
    except OSError:
        return False
    return isinstance(marker, dict) and marker.get("kind") == kind and only_marker and owner_ended(marker.get("owner"))


def files_below(folder: Path) -> list[str]:
    """Every file (and symbolic link) below ``folder`` as a relative POSIX path; links are never followed."""
    out = []
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        out += [(rel / f).as_posix() for f in files]
        out += [(rel / d).as_posix() for d in dirs if os.path.islink(os.path.join(root, d))]
    return sorted(out)


def foreign_files(folder: Path, marker: dict[str, Any]) -> list[str]:
    """Files below ``folder`` that its marker does not list (what a replace or delete would lose)."""
    listed, patterns = set(marker.get("files", ())), list(marker.get("patterns", ()))
    own = {MARKER, f"{MARKER}.tmp"}
    return [f for f in files_below(folder)
            if f not in own and f not in listed and not any(fnmatch.fnmatchcase(f, p) for p in patterns)]  # fmt: skip


def describe(path: Path) -> str:
    """What ``path`` holds, in a few words, for messages."""
    path = Path(path)
    if not path.exists():
        return "nothing (it does not exist)"
    if not path.is_dir():
        return "a file"
    marker = read_marker(path)
    if marker is not None:
        about = f" ({marker['about']})" if marker.get("about") else ""
        return f"{KINDS[marker['kind']]}{about}"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    if not names:
        return "nothing (an empty folder)"
    if "config.yaml" in names and "checkpoints/" in names:
        return "a training run (config.yaml, checkpoints/)"
    if "manifest.json" in names:
        return "a dataset (manifest.json) not marked as written by ssmseg prep"
    if any((path / n).is_dir() and (path / n / "config.yaml").is_file() for n in names):
        return f"run folders ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
    if any((path / n).is_dir() and read_marker(path / n) is not None for n in names):
        return f"folders ssmseg wrote ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
    shown = ", ".join(names[:3]) + (f", ... ({len(names)} entries)" if len(names) > 3 else "")
    return f"files that ssmseg did not write ({shown})"


# --- may this folder be written? -----------------------------------------------------------------------------


def claim(
    dest: Path, kind: str, inputs: Any = None, force: bool = False, option: str = "--out", mismatch: str = ""
) -> str:
    """Whether ``dest`` may receive a new output of ``kind``: "absent", "empty", "same" (ours, same inputs) or
    "replace" (ours, other inputs, ``force``). Anything else raises ``OutputError`` naming what it holds."""
    dest = Path(dest)
    if not dest.exists() and not dest.is_symlink():
        _check_parent(dest, option)
        return "absent"
    if dest.is_symlink() or not dest.is_dir():
        raise OutputError(f"'{dest}' is a file, not a folder; choose another {option}")
    if not any(dest.iterdir()):
        return "empty"
    marker = read_marker(dest)
    if marker is None or marker["kind"] != kind:
        raise OutputError(f"'{dest}' already holds {describe(dest)}; ssmseg only replaces folders it wrote itself: "
                          f"choose another {option} (or move that folder away yourself)")  # fmt: skip
    foreign = foreign_files(dest, marker)
    if foreign:
        listed = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise OutputError(f"'{dest}' holds {KINDS[kind]} plus files ssmseg did not write ({listed}); move them "
                          f"out or choose another {option}")  # fmt: skip
    if marker["inputs"] == inputs_key(inputs):
        return "same"
    if force:
        return "replace"
    raise OutputError(mismatch or f"'{dest}' holds {describe(dest)} made from other inputs; choose another {option}")


def _check_parent(dest: Path, option: str) -> None:
    """A file on the way to ``dest`` is named before any work is done (permissions and read-only mounts are
    reported by the first folder creation, with the real reason)."""
    for parent in dest.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise OutputError(
                    f"cannot create '{dest}': '{parent}' is a file, not a folder; choose another {option}"
                )
            return


def pick_name(parent: Path, name: str, kind: str, inputs: Any = None, option: str = "--out", limit: int = 1000) -> Path:
    """``parent/name``, or ``name-2``, ``name-3``, ...: the first that does not exist, is empty, or holds this
    same output (ours, same inputs: a rerun replaces it). Used for default output folders."""
    _check_parent(Path(parent) / name, option)
    for k in range(1, limit + 1):
        candidate = Path(parent) / (name if k == 1 else f"{name}-{k}")
        try:
            if claim(candidate, kind, inputs, option=option) != "replace":
                return candidate
        except OutputError:
            continue
    raise OutputError(f"'{parent}' already holds {limit} outputs named {name}-*; choose another {option}")


# --- creating, publishing, removing --------------------------------------------------------------------------


def make_parents(path: Path, option: str = "--out") -> list[Path]:
    """Create ``path``'s missing parent folders and return them (deepest first); a file in the way or a
    permission problem is one line."""
    missing = [p for p in Path(path).parents if not p.exists()]
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise io_error(exc, f"choose another {option}") from None
    return missing


_made_for: dict[Path, list[Path]] = {}  # a folder we created -> the parent folders created for it


def create_folder(
    path: Path, kind: str, inputs: Any = None, *, unique: bool = True, patterns: Iterable[str] = (), about: str = "",
    option: str = "--out",
) -> Path:  # fmt: skip
    """Create ``path`` exclusively and mark it; on a collision take ``path-2``, ``path-3``, ... (``unique``) or
    raise ``OutputError``. Returns the folder created."""
    path = Path(path)
    made = make_parents(path, option)
    for k in range(1, 10_000):
        candidate = path if k == 1 else path.with_name(f"{path.name}-{k}")
        try:
            if _abandoned_reservation(candidate, kind):  # reserved by a killed process: take it back
                shutil.rmtree(candidate, ignore_errors=True)
            os.mkdir(candidate)
        except FileExistsError:
            if not unique:
                raise OutputError(
                    f"'{candidate}' already holds {describe(candidate)}; choose another {option}"
                ) from None
            continue
        except OSError as exc:
            _remove_empty(made)
            raise io_error(exc, f"choose another {option}", path=candidate) from None
        write_marker(candidate, kind, inputs, patterns=patterns, about=about)
        _made_for[candidate] = made
        return candidate
    raise OutputError(f"too many folders named '{path.name}-*' in '{path.parent}'; choose another {option}")


def staging(dest: Path, option: str = "--out") -> Path:
    """A new, exclusively created folder beside ``dest`` (hidden) to build an output in."""
    dest = Path(dest)
    made = make_parents(dest, option)
    remove_abandoned_staging(dest)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=staging_prefix(dest), dir=dest.parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700; the published folder follows the umask
    except OSError as exc:
        _remove_empty(made)
        raise io_error(exc, f"choose another {option}", path=dest) from None
    _made_for[tmp] = made
    return tmp


@contextlib.contextmanager
def staged(dest: Path) -> Iterator[Path]:
    """``with staged(dest) as tmp:`` build ``dest`` in a staging folder (``staging``) and ``publish`` it inside
    the block; on any error the staging folder is removed, and an I/O fault (a full disk, a vanished folder) is one
    line naming ``dest``, not the staging folder (``staged_error``)."""
    tmp = staging(dest)
    try:
        yield tmp
    except OSError as exc:
        discard(tmp)
        raise staged_error(exc, tmp, dest) from None
    except BaseException:
        discard(tmp)
        raise


def _umask() -> int:
    """This process's umask (read without changing it where /proc tells it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed in place: a full disk or any other fault
    leaves no truncated file and raises the ``OSError`` with ``path`` as its file name (``io_error`` turns it
    into one line)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        _write_file(tmp, data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        exc.filename = str(path)
        raise


def staged_error(exc: OSError, tmp: Path, dest: Path) -> InputError:
    """An I/O fault while building ``dest`` in its staging folder ``tmp``, as one line that names ``dest`` (the
    file the user asked for), not the hidden staging path."""
    name = exc.filename
    if name is not None:
        with contextlib.suppress(ValueError):
            name = Path(dest) / Path(name).relative_to(tmp)
    return io_error(exc, path=name or dest)


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first; a folder that is not empty (someone wrote there) stays
        try:
            folder.rmdir()
        except OSError:
            return


def publish(tmp: Path, dest: Path, kind: str, inputs: Any = None, about: str = "", force: bool = False) -> Path:
    """Mark the staging folder ``tmp`` with every file it holds and move it to ``dest``; an existing ``dest`` is
    replaced only when ``claim`` allows it (ours, and the same inputs unless ``force``). On failure ``tmp`` is
    removed."""
    tmp, dest = Path(tmp), Path(dest)
    try:
        write_marker(tmp, kind, inputs, files=files_below(tmp), about=about)
        try:
            os.rename(tmp, dest)  # atomic when dest does not exist or is an empty folder
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            claim(dest, kind, inputs, force=force)  # raises unless dest is provably ours
            aside = Path(tempfile.mkdtemp(prefix=staging_prefix(dest, "old"), dir=dest.parent))
            os.rename(dest, aside / dest.name)
            os.rename(tmp, dest)
            shutil.rmtree(aside, ignore_errors=True)
    except BaseException:
        discard(tmp)
        raise
    _made_for.pop(tmp, None)
    return dest


def discard(tmp: Path | None) -> None:
    """Remove a staging folder this process created (after a failure), and the parents created for it."""
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(_made_for.pop(Path(tmp), []))


def remove_own(folder: Path, kind: str, option: str = "runtime.name") -> None:
    """Delete ``folder`` if its marker proves ssmseg wrote it as ``kind`` and it holds nothing else."""
    folder = Path(folder)
    if not folder.exists():
        return
    marker = read_marker(folder) if folder.is_dir() else None
    if marker is None or marker["kind"] != kind:
        raise OutputError(f"'{folder}' holds {describe(folder)}, not {KINDS[kind]} ssmseg wrote; move it away or "
                          f"choose another {option}")  # fmt: skip
    foreign = foreign_files(folder, marker)
    if foreign:
        raise OutputError(f"'{folder}' holds files ssmseg did not write ({', '.join(foreign[:3])}); move them out "
                          f"or choose another {option}")  # fmt: skip
    shutil.rmtree(folder)
    _remove_empty(_made_for.pop(folder, []))


def remove_if_empty(folder: Path) -> None:
    """Remove a folder ssmseg created that holds nothing but its marker."""
    folder = Path(folder)
    if (
        folder.is_dir()
        and read_marker(folder) is not None
        and not foreign_files(folder, {})
        and not any(p.is_dir() for p in folder.iterdir())
    ):
        shutil.rmtree(folder, ignore_errors=True)
        _remove_empty(_made_for.pop(folder, []))


def broadcast(value: Any, rt: Any) -> Any:
    """``value`` as rank 0 has it, on every rank (a run folder named by rank 0); a no-op in one process."""
    if not getattr(rt, "distributed", False):
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# --- I/O faults as one line ----------------------------------------------------------------------------------

_ADVICE = {
    errno.EACCES: "no permission",
    errno.EPERM: "the operation is not permitted there",
    errno.EROFS: "it is on a read-only file system",
    errno.ENOSPC: "no space is left on that device",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder, not a file",
    errno.ENOENT: "it does not exist",
    errno.EEXIST: "it already exists",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EIO: "the device reported an I/O error",
}


def io_error(exc: OSError, fix: str = "", path: Path | str | None = None) -> InputError:
    """One line for an ``OSError``: the path (``path``, else the one the error names), what is wrong, and what
    to do."""
    path = exc.filename if path is None else path
    why = _ADVICE.get(exc.errno or -1) or (exc.strerror or str(exc) or type(exc).__name__)
    if not fix:
        full = "free some space or write elsewhere"
        fix = {errno.ENOSPC: full, errno.EDQUOT: full, errno.ENOENT: "check the path"}.get(
            exc.errno or -1,
            "choose a folder you can write to, or fix its permissions"
            if _writing(exc)
            else "check the files and folders named in the command",
        )
    if path is None:
        return InputError(f"I/O error: {why}; {fix}")
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = next((p for p in Path(path).parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            why = f"'{blocker}' is a file, not a folder"
    return InputError(f"cannot {'write' if _writing(exc) else 'use'} '{path}': {why}; {fix}")


def _writing(exc: OSError) -> bool:
    return exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR)
