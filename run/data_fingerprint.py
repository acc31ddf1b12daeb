"""A fingerprint of a run's data: every file under the paths that the data loader's arguments
name (data_dir, csv_file, train_dir, ...), with its size and modification time, hashed. The
same files give the same hash on any machine that keeps their times; a changed, added or
removed file changes it, and `changed_files` says which."""
import hashlib
import os
from pathlib import Path

NOT_DATA_ARGS = ("cache_dir",)  # a cache the loader writes, not its input
MAX_FILES = 200_000  # a larger data set is fingerprinted by its first files (sorted), and says so


def data_roots(data_loader_section):
    """The existing files and folders that the data loader's arguments name, absolute."""
    args = (data_loader_section or {}).get("args", {}) or {}
    roots = []
    for key, value in args.items():
        if key in NOT_DATA_ARGS or not isinstance(value, str) or not value:
            continue
        path = Path(value).expanduser()
        if path.exists():
            roots.append(str(path.resolve()))
    return sorted(set(roots))


def list_data_files(roots):
    """[(path, size, mtime_ns)] of every file under `roots`, sorted; and whether the list
    stopped at MAX_FILES."""
    rows = []
    for root in roots:
        if os.path.isfile(root):
            rows.append(_row(root))
            continue
        for folder, subfolders, files in os.walk(root):
            subfolders.sort()
            for name in sorted(files):
                rows.append(_row(os.path.join(folder, name)))
                if len(rows) >= MAX_FILES:
                    return rows, True
    return rows, False


def _row(path):
    try:
        stat = os.stat(path)
        return path, stat.st_size, stat.st_mtime_ns
    except OSError:
        return path, -1, -1


def fingerprint(data_loader_section):
    """({"roots", "files", "bytes", "sha256", "truncated"}, rows)."""
    roots = data_roots(data_loader_section)
    rows, truncated = list_data_files(roots)
    digest = hashlib.sha256()
    for path, size, mtime in rows:
        digest.update(f"{path}\0{size}\0{mtime}\n".encode())
    summary = {"roots": roots, "files": len(rows), "bytes": sum(max(size, 0) for _, size, _ in rows),
               "sha256": digest.hexdigest()[:16], "truncated": truncated}
    return summary, rows


def rows_to_text(rows):
    return "".join(f"{path}\t{size}\t{mtime}\n" for path, size, mtime in rows)


def rows_from_text(text):
    rows = []
    for line in text.splitlines():
        path, size, mtime = line.rsplit("\t", 2)
        rows.append((path, int(size), int(mtime)))
    return rows


def changed_files(before, after):
    """{"added", "removed", "resized", "touched"} lists of paths between two file lists
    (`touched`: same size, another modification time)."""
    old = {path: (size, mtime) for path, size, mtime in before}
    new = {path: (size, mtime) for path, size, mtime in after}
    common = old.keys() & new.keys()
    return {"added": sorted(new.keys() - old.keys()), "removed": sorted(old.keys() - new.keys()),
            "resized": sorted(p for p in common if old[p][0] != new[p][0]),
            "touched": sorted(p for p in common if old[p][0] == new[p][0] and old[p][1] != new[p][1])}
