"""What a batch prediction job reads and writes: sources expanded to files, each file's output name,
and the checks that keep a job from writing over its inputs or out of its folder.

Nothing the run did not create is written over: an ``--out`` where an annotated image would
replace an input (compared by file identity, so hard links count) is refused; output names never
leave ``--out`` (a symbolic link among the inputs is named by where it is, not where it points)
and a link inside ``--out`` is never written through.
"""
from __future__ import annotations

import glob
import os
import stat
from pathlib import Path

from ..data.check import bounded_file
from ..errors import DatasetError
from ..images import IMAGE_EXTENSIONS

MAX_LIST_BYTES = 1 << 30  # a --list file larger than this is not a list of paths


def read_list(path: str) -> list[str]:
    """The image paths listed in ``path``, one per line; blank lines and ``#`` comments skipped.
    A file that is not a regular file (a device, a FIFO), is too large or lists nothing is refused."""
    p = Path(path)
    try:
        bounded_file(p, MAX_LIST_BYTES, "list file")
    except DatasetError as err:
        raise ValueError(f"--list: {err}") from None
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"--list: cannot read {path} ({err})") from None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ValueError(f"--list: {path} lists no image paths")
    return lines


def _glob_root(pattern: str) -> Path:
    """The folder part of a glob pattern before its first wildcard (names are taken from it)."""
    fixed = []
    for part in Path(pattern).parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _images_under(folder: Path) -> list[Path]:
    """Image files under ``folder``, recursively, sorted; links to folders are not followed (a
    loop of links cannot make the search endless)."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        found += [Path(root) / f for f in files if Path(f).suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(found)


def _kind(path: Path) -> str | None:
    """Why ``path`` cannot be read as an image file (None: it can)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return "no such file or directory"
    if not stat.S_ISREG(mode):
        return "not a regular file (a device, pipe or socket)"
    return None


def expand_sources(sources: list[str]) -> tuple[list[tuple[Path, Path]], list[tuple[str, str]]]:
    """``(file, root)`` for every file to read (``root``: the folder its output name is taken
    relative to), and ``(source, reason)`` for sources that name nothing."""
    files: list[tuple[Path, Path]] = []
    missing: list[tuple[str, str]] = []
    for source in sources:
        if not source.strip():
            raise ValueError("SOURCE: an empty path (an unset variable?); give files, folders or globs")
        path = Path(source)
        if path.is_dir():
            found = _images_under(path)
            if not found:
                missing.append((source, "directory holds no image files"))
            files.extend((f, path) for f in found)
        elif path.exists() or path.is_symlink():
            reason = _kind(path)
            if reason:
                missing.append((source, reason))
            else:
                files.append((path, path.parent))  # named explicitly: tried whatever its extension
        elif glob.has_magic(source):
            root = _glob_root(source)
            rest = os.path.relpath(source, root) if str(root) != "." else source
            found = sorted(f for f in root.glob(rest) if f.is_file()) if root.is_dir() else []
            if not found:
                missing.append((source, "no files match this pattern"))
            files.extend((f, root) for f in found)
        else:
            missing.append((source, "no such file or directory"))
    unique: dict[Path, tuple[Path, Path]] = {}
    for f, root in files:  # a file reached twice is predicted once
        unique.setdefault(f.resolve(), (f, root))
    return list(unique.values()), missing


# Formats PIL writes in RGB; annotated copies of other inputs (GIF, PGM, ...) are written as PNG.
_WRITABLE = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def output_names(files: list[tuple[Path, Path]]) -> list[str]:
    """Annotated-image name of each file: its path relative to its source root, extension kept
    (``photos/a.jpg`` from ``photos/`` -> ``a.jpg``; ``b.gif`` -> ``b.gif.png``), taken from
    where the file is listed, not where a link points, so a name never climbs out of ``--out``.
    Where two sources give the same name, every file is named relative to the folder that holds
    them all."""
    def name(rel: str) -> str:
        rel = Path(rel).as_posix()
        return rel if Path(rel).suffix.lower() in _WRITABLE else rel + ".png"

    absolute = [Path(os.path.abspath(f)) for f, _ in files]
    names = [name(os.path.relpath(a, os.path.abspath(root))) for a, (_, root) in zip(absolute, files)]
    if len(set(names)) < len(names) or any(n.startswith("../") for n in names):
        common = os.path.commonpath([str(a.parent) for a in absolute])
        names = [name(os.path.relpath(a, common)) for a in absolute]
    return names


def _identity(path: Path):
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


def check_outputs(out: Path, files: list[tuple[Path, Path]], names: list[str], write_images: bool) -> None:
    """Refuse, before anything is written, an ``--out`` where an output would be an input: the
    same file by identity (device and inode), so a hard link or a link to an input counts."""
    inputs = {_identity(f) for f, _ in files} - {None}
    targets = [out / "predictions.json"] + ([out / n for n in names] if write_images else [])
    for target in targets:
        if _identity(target) in inputs:
            raise ValueError(f"--out: writing {target} would overwrite an input image (the same file); "
                             f"choose another --out folder (or --no-images)")


def inside(out: Path, name: str) -> Path:
    """``out / name`` with its folders made, refusing a name or a folder on the way that would
    take the write out of ``out`` (``..``, or a symbolic link placed inside ``out``)."""
    target = out / name
    if ".." in Path(name).parts or Path(name).is_absolute():
        raise ValueError(f"--out: output name {name!r} leaves {out}")
    folder = out
    for part in Path(name).parts[:-1]:
        folder = folder / part
        if folder.is_symlink():
            raise ValueError(f"--out: {folder} is a symbolic link; refusing to write through it")
        folder.mkdir(exist_ok=True)
    if target.is_symlink():
        raise ValueError(f"--out: {target} is a symbolic link; refusing to write through it")
    return target


__all__ = ["read_list", "expand_sources", "output_names", "check_outputs", "inside"]
