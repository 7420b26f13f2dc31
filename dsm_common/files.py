"""Run directories on disk, for both frameworks: atomic writes and the run's status file.

Every output file of a run is written atomically: into a temporary file beside its final name,
flushed to disk, then renamed over it (``os.replace``), so a reader (or a run killed mid-write)
never sees half a file, only the old one or the new one.

A run directory's ``status.json`` says how far the run got::

    {"status": "running", "phase": "training", "framework": "torch", "command": "fit", "updated": "…"}

``status`` is ``running`` while the run works (``phase``: ``training``, ``saving weights``,
``sampling``, ``writing outputs``), ``complete`` once every file is written, ``diverged``
when it stopped on a non-finite loss or samples, ``interrupted`` after Ctrl-C and ``failed`` after
another error. A folder whose status is not ``complete`` holds
an interrupted run: ``--ckpt_path last`` resumes it from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from dsm_common.validation import DivergedError, DSMInputError, RunInterrupted

__all__ = ["atomic_path", "write_text_atomic", "write_status", "read_status", "RUN_FILES", "STATUS_FILE",
           "check_writable", "clear_run_files", "run_phase"]

STATUS_FILE = "status.json"
# What a run writes into its directory (besides checkpoints/), removed before an asked-for overwrite.
RUN_FILES = ("weights.safetensors", "samples.npy", "metrics.json", "data.png", "samples.png", "trajectory.png",
             "score_field.png", "loss.png", "sampler_comparison.png", "animation.gif", "logs/metrics.csv",
             "logs/hparams.yaml", STATUS_FILE)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without an error, the file
    written there is flushed to disk and renamed over ``path`` (atomic on POSIX and Windows).
    On an error the temporary file is removed and ``path`` is left as it was.

    The temporary name keeps ``path``'s suffix (``.name.XXXX.tmp.png``), so writers that infer the
    format from it (matplotlib) write the right one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)  # readable as any other file the user writes
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _default_mode() -> int:
    """What ``open()`` would give a new file here: 0o666 less the umask (``mkstemp`` gives 0o600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _default_mode()


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_status(run_dir: str | Path, status: str, phase: str | None = None, **extra: Any) -> None:
    """Record how far the run in ``run_dir`` got (module doc): ``status`` is ``running``,
    ``complete`` or ``diverged``; ``phase`` what it is doing; ``extra`` (framework, command, …)
    keeps the entries of the previous status where not given."""
    previous = read_status(run_dir) or {}
    record = {k: v for k, v in previous.items() if k not in ("status", "phase", "updated")}
    record.update(extra)
    record.update(status=status, phase=phase, updated=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    write_text_atomic(Path(run_dir) / STATUS_FILE, json.dumps(record, indent=2) + "\n")


def read_status(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``status.json`` as a dict, or None where there is none (or it cannot be read)."""
    try:
        record = json.loads((Path(run_dir) / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def check_writable(folder: str | Path, option: str) -> Path:
    """Raise DSMInputError (naming ``option`` and the folder) unless ``folder`` can be created and
    written to: a file in its place, or a folder without write permission, is refused before any
    work is done. Nothing is created (the folder is made when the run first writes into it)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DSMInputError(f"{option} {folder} is a file, not a folder")
    existing = folder  # probe the folder, or the nearest folder above it that exists: nothing is created
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise DSMInputError(f"{option} {folder} cannot be created: {existing} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise DSMInputError(f"{option} {folder} cannot be written to ({err.strerror or err})") from None
    return folder


def clear_run_files(run_dir: str | Path, checkpoint_suffixes: tuple[str, ...] = (".ckpt", ".msgpack")) -> list[Path]:
    """Remove a run's own files (``RUN_FILES`` and the checkpoints in ``checkpoints/``) before an
    asked-for overwrite, so nothing of the old run is left beside the new one; other files are
    kept. Returns what was removed."""
    run_dir = Path(run_dir)
    removed = []
    candidates = [run_dir / name for name in RUN_FILES]
    ckpts = run_dir / "checkpoints"
    if ckpts.is_dir():
        candidates += [p for p in ckpts.iterdir() if p.suffix in checkpoint_suffixes]
    for p in candidates:
        if p.is_file():
            p.unlink()
            removed.append(p)
    return removed


@contextmanager
def run_phase(run_dir: str | Path, phase: str, **extra: Any) -> Iterator[None]:
    """Mark ``run_dir`` as ``running`` ``phase`` for the block; a DivergedError leaves it marked
    ``diverged``, a KeyboardInterrupt ``interrupted`` (re-raised as RunInterrupted) and any other
    error ``failed`` (all re-raised).
    A SIGKILL leaves it ``running``: not ``complete`` in every case."""
    write_status(run_dir, "running", phase, **extra)
    try:
        yield
    except DivergedError:
        write_status(run_dir, "diverged", phase)
        raise
    except KeyboardInterrupt:
        write_status(run_dir, "interrupted", phase)
        raise RunInterrupted from None
    except Exception:
        write_status(run_dir, "failed", phase)
        raise
