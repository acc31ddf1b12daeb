"""The facts about the code and the machine that a run record keeps: the git state of the
project, the installed packages, torch and its CUDA/cuDNN, the host and its processors, the
thread counts and the determinism flags. Every function here works outside a git checkout
and on a machine without a GPU."""
import hashlib
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# the project's own code, for a fingerprint outside a git checkout
SOURCE_SUFFIXES = (".py",)
NOT_SOURCE = {".git", ".venv", "venv", "saved", "data", "__pycache__", "node_modules"}
# untracked files small enough to go into the patch as new files
UNTRACKED_PATCH_SUFFIXES = (".py", ".json", ".yaml", ".yml", ".toml", ".cfg", ".txt", ".sh")
UNTRACKED_PATCH_MAX_BYTES = 256 * 1024


def _git(root, *args):
    """stdout of `git args` in `root`, or None when git is missing or fails there."""
    try:
        result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.decode("utf-8", "replace") if result.returncode == 0 else None


def git_state(root=None):
    """{"commit", "branch", "dirty", "untracked"} and the uncommitted diff (tracked files against
    HEAD, plus small untracked source files as new files) of the project at `root` (default:
    this project); (None, None) outside a git checkout."""
    root = root or PROJECT_ROOT
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return None, None
    branch = (_git(root, "rev-parse", "--abbrev-ref", "HEAD") or "").strip() or None
    untracked = [name for name in (_git(root, "ls-files", "--others", "--exclude-standard") or "").splitlines()
                 if name]
    patch = (_git(root, "diff", "HEAD", "--binary") or "") + _untracked_patch(root, untracked)
    state = {"commit": commit.strip(), "branch": None if branch == "HEAD" else branch,
             "dirty": bool(patch) or bool(untracked), "untracked": untracked,
             "patch_sha256": hashlib.sha256(patch.encode()).hexdigest()[:16] if patch else None}
    return state, patch


def _untracked_patch(root, untracked):
    """`git diff` of small untracked source files against nothing: new files in the patch."""
    parts = []
    for name in untracked:
        path = Path(root) / name
        if path.suffix in UNTRACKED_PATCH_SUFFIXES and path.is_file() \
                and path.stat().st_size <= UNTRACKED_PATCH_MAX_BYTES:
            try:  # exits 1 when the files differ, which they always do here
                result = subprocess.run(["git", "-C", str(root), "diff", "--no-index", "--binary", "/dev/null", name],
                                        capture_output=True, timeout=30)
            except (OSError, subprocess.SubprocessError):
                continue
            parts.append(result.stdout.decode("utf-8", "replace"))
    return "".join(parts)


def source_fingerprint(root=None):
    """A hash of the project's Python files (paths and contents): tells code apart where there
    is no git checkout."""
    root = root or PROJECT_ROOT
    digest = hashlib.sha256()
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if d not in NOT_SOURCE and not d.startswith("."))
        for name in sorted(files):
            if name.endswith(SOURCE_SUFFIXES):
                path = Path(folder, name)
                digest.update(str(path.relative_to(root)).encode() + b"\0")
                try:
                    digest.update(path.read_bytes())
                except OSError:
                    digest.update(b"unreadable")
    return digest.hexdigest()[:16]


def installed_packages():
    """`name==version` of every installed distribution, sorted: what `pip freeze` lists, read
    from the *.dist-info folder names on sys.path (milliseconds, where reading each package's
    metadata takes about a second)."""
    found = set()
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.endswith(".dist-info") and "-" in name:
                package, _, version = name[: -len(".dist-info")].partition("-")
                found.add(f"{package}=={version}")
    return sorted(found, key=str.lower)


def torch_versions():
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": cudnn,
            "python": platform.python_version()}


def hardware():
    """The host, its CPU and GPUs."""
    gpus = []
    if torch.cuda.is_available():
        gpus = [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
    try:
        usable_cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable_cores = os.cpu_count()
    return {"host": socket.gethostname(), "platform": platform.platform(), "cpu": _cpu_model(),
            "cpu_count": os.cpu_count(), "usable_cores": usable_cores, "gpu_count": len(gpus), "gpus": gpus}


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def threads():
    return {"torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
            **{name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}}


def determinism_flags():
    """The switches that decide whether a run repeats bit for bit."""
    return {"deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}
