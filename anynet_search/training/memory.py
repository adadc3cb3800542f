"""Memory that training a config needs, estimated from its analytic complexity, and what a device has free.

Training holds, per parameter, the fp32 weight, its gradient and the SGD momentum buffer, and per image of
a batch the activations autograd saves for the backward pass plus the gradients flowing back through them.
That part is proportional to the config's counted `acts` (the output elements of every conv and FC):
autograd saves 6.7-9.0 bytes per act per image (fp32, channels-last, every config measured by
`benchmarks/bench_train_memory.py`); SAVED_BYTES_PER_ACT doubles the largest for the backward pass's own
buffers. Evaluation runs `eval_batch_size` images without saving anything and holds about EVAL_BUFFERS
copies of the largest single activation. The three parts are added: the measured peak resident memory
of two training steps then one evaluation batch was 0.76-0.99x this estimate (benchmarks/RESULTS.md,
section 6). On CUDA with bf16 autocast activations are smaller than this fp32 figure, so the estimate
errs on the large side there (not measured).

A config whose estimate exceeds the memory its device has free is refused before it is built (a recorded
trial failure, `ModelTooLarge`); a space whose smallest config cannot fit is refused when a study is made.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

from anynet_search.errors import InputError
from anynet_search.models.complexity import Complexity, complexity, largest_activation
from anynet_search.models.config import AnyNetConfig
from anynet_search.spaces import DesignSpace
from anynet_search.training.fences import Delay
from anynet_search.training.interface import TrainConfig, TrialFailure

FP32_BYTES = 4
PARAM_COPIES = 3  # weight, gradient, momentum buffer
SAVED_BYTES_PER_ACT = 18.0  # saved tensors and their gradients per counted act per image (see the docstring)
EVAL_BUFFERS = 3  # input, output and one temporary of the largest layer


class ModelTooLarge(TrialFailure):
    """The config's estimated training memory exceeds what its device has free; it was not built."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated bytes to train one config: parameters (with gradients and momentum) plus activations."""

    params_bytes: int
    train_acts_bytes: int
    eval_bytes: int

    @property
    def total(self) -> int:
        """Peak bytes: parameters, training and evaluation activations added (freed memory is not always reused)."""
        return self.params_bytes + self.train_acts_bytes + self.eval_bytes


def human_bytes(n: float) -> str:
    """Bytes as a short human string (KiB .. TiB)."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def estimate_memory(cx: Complexity, batch_size: int, eval_batch_size: int = 0, largest_act: int = 0) -> MemoryEstimate:
    """Training memory of a network with complexity `cx` at `batch_size` (evaluation at `eval_batch_size`)."""
    return MemoryEstimate(
        params_bytes=int(cx.params * PARAM_COPIES * FP32_BYTES),
        train_acts_bytes=int(cx.acts * batch_size * SAVED_BYTES_PER_ACT),
        eval_bytes=int(largest_act * eval_batch_size * EVAL_BUFFERS * FP32_BYTES),
    )


def config_memory(cfg: AnyNetConfig, resolution: int, train: TrainConfig) -> MemoryEstimate:
    """Estimated memory to train `cfg` at `resolution` with the trainer settings `train`."""
    return estimate_memory(complexity(cfg, resolution), train.batch_size, train.eval_batch_size,
                           largest_activation(cfg, resolution))


#: cgroup v1 writes "no limit" as LONG_MAX rounded to pages (9223372036854771712): this much or more is none.
NO_LIMIT = 2**60
CGROUP_ROOT = Path("/sys/fs/cgroup")
FREE = "free"  # what MemAvailable measures


def _first_int(path: Path, key: str | None = None) -> int | None:
    """The integer in a one-number file (None for 'max' or a missing file), or the value of `key` in a keyed
    file like memory.stat or /proc/self/status ('VmSize: 123 kB' is read in bytes)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    if key is None:
        word = text.strip()
        return int(word) if word.isdigit() else None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].rstrip(":") == key and parts[1].isdigit():
            return int(parts[1]) * (1024 if parts[2:3] == ["kB"] else 1)
    return None


def _cgroup_dirs(root: Path, proc_cgroup: Path) -> list[tuple[Path, str, str, str]]:
    """(folder, limit file, usage file, reclaimable key in memory.stat) of this process's memory cgroup and of
    each cgroup above it (a limit may be set on any of them), cgroup v2 and v1."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, rel = rest.partition(":")
        if hierarchy == "0" and not controllers:  # cgroup v2 (on a hybrid system its tree lacks memory files)
            base, files = root, ("memory.max", "memory.current", "inactive_file")
        elif "memory" in controllers.split(","):  # cgroup v1
            base = root / "memory"
            files = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
        else:
            continue
        here = base / rel.lstrip("/")
        if not here.is_dir():  # a cgroup namespace: this process sees its own cgroup as the root
            here = base
        for folder in (here, *here.parents):
            found.append((folder, *files))
            if folder == base:
                break
    return found


def cgroup_memory_left(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> int | None:
    """Bytes this process's cgroups still allow (the tightest limit minus its usage, reclaimable page cache
    not counted as used); None if no cgroup limits memory."""
    left = None
    for folder, limit_file, usage_file, inactive_key in _cgroup_dirs(root, proc_cgroup):
        limit, usage = _first_int(folder / limit_file), _first_int(folder / usage_file)
        if limit is None or usage is None or limit >= NO_LIMIT:
            continue
        usage -= min(usage, _first_int(folder / "memory.stat", inactive_key) or 0)
        room = max(0, limit - usage)
        left = room if left is None else min(left, room)
    return left


def address_space_left() -> int | None:
    """Address space this process may still map under its RLIMIT_AS (`ulimit -v`); None if unlimited."""
    try:
        import resource
    except ImportError:  # not Unix
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    used = _first_int(Path("/proc/self/status"), "VmSize") or 0
    return max(0, soft - used)


def memory_limits() -> list[tuple[int, str]]:
    """(bytes, what) of every bound on what this process may still allocate on the CPU: MemAvailable, its
    address-space limit (RLIMIT_AS) and its cgroup's memory limit; the tightest one is what it has free."""
    limits = []
    available = _first_int(Path("/proc/meminfo"), "MemAvailable")
    if available is not None:
        limits.append((available, FREE))
    room = address_space_left()
    if room is not None:
        limits.append((room, "left under this process's address-space limit, RLIMIT_AS"))
    room = cgroup_memory_left()
    if room is not None:
        limits.append((room, "left under its cgroup's memory limit"))
    return limits


def free_memory(device: str) -> int | None:
    """Bytes the device can still give: on the CPU the tightest of MemAvailable, the process's address-space
    limit and its cgroup's limit (`memory_limits`), on a CUDA device its free memory; None if unknown."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            return None
        dev = torch.device(device)
        # what this process's allocator caches but does not use is free for its next trial too
        cached = torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
        return int(torch.cuda.mem_get_info(dev)[0]) + cached
    limits = memory_limits()
    return min(limits)[0] if limits else None


def _binding_limit(device: str) -> str:
    """' (left under ...)' when a process limit, not the machine's free memory, bounds what `device` gives."""
    if device.startswith("cuda"):
        return ""
    limits = memory_limits()
    what = min(limits)[1] if limits else FREE
    return "" if what == FREE else f" ({what})"


def too_large_reason(estimate: MemoryEstimate, cx: Complexity, batch_size: int, device: str,
                     free: int | None = None) -> str | None:
    """Why a network with this estimate cannot be trained on `device` (with `free` bytes, measured now when not
    given), or None if it fits (or the free memory is unknown)."""
    free = free_memory(device) if free is None else free
    if free is None or estimate.total <= free:
        return None
    return (f"needs about {human_bytes(estimate.total)} to train at batch {batch_size} ({cx.params:,} params, "
            f"{cx.acts:,} acts per image) but {device} has {human_bytes(free)} free{_binding_limit(device)}")


def space_memory_range(space: DesignSpace, train: TrainConfig) -> tuple[int, int]:
    """Estimated training bytes (parameters and training activations) of the space's smallest and largest configs."""
    lo, hi = space.complexity_range()
    return tuple(estimate_memory(Complexity(int(m["flops"]), int(m["params"]), int(m["acts"])), train.batch_size).total
                 for m in (lo, hi))  # type: ignore[return-value]


def check_space_fits(space: DesignSpace, train: TrainConfig, device: str) -> None:
    """InputError if even the space's smallest config cannot be trained on `device` (checked when a study is made)."""
    lo, _ = space.complexity_range()
    cx = Complexity(int(lo["flops"]), int(lo["params"]), int(lo["acts"]))
    reason = too_large_reason(estimate_memory(cx, train.batch_size), cx, train.batch_size, device)
    if reason is not None:
        raise InputError(f"space {space.source}: its smallest network {reason}; every trial would fail")


def check_fits(cfg: AnyNetConfig, resolution: int, train: TrainConfig, device: str) -> None:
    """ModelTooLarge (a recorded trial failure) if `cfg` cannot be trained on `device`; call before building it."""
    reason = too_large_reason(config_memory(cfg, resolution, train), complexity(cfg, resolution), train.batch_size,
                              device)
    if reason is not None:
        raise ModelTooLarge(f"model too large: {reason}; refused before building it")


HEADROOM = 0.9  # of the memory free when a device's trials were admitted: what several in flight may plan to use


class DeviceLedger:
    """The memory of one device shared by the trials a process keeps in flight on it.

    A trial is admitted when its estimate fits beside the estimates of the trials already in flight (within
    HEADROOM of the memory measured free when the device had none in flight), so k trials that fit together
    are trained together and a larger one waits for room. One that would not fit even alone is a recorded
    failure (`ModelTooLarge`), measured as `check_fits` measures it.
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.free: int | None = None
        self.committed = 0
        self.active = 0

    def fits_now(self, estimate: int) -> bool:
        """Whether `estimate` bytes may start beside the trials in flight."""
        return self.active == 0 or self.free is None or self.committed + estimate <= HEADROOM * self.free

    def admit(self, cfg: AnyNetConfig, resolution: int, train: TrainConfig) -> Generator[Delay, None, int]:
        """A task step: wait (yield delays) until `cfg` fits beside the trials in flight, then count it in; returns
        its estimate in bytes, to be given back to `release`. ModelTooLarge if it would not fit even alone."""
        estimate = config_memory(cfg, resolution, train)
        if self.active == 0:
            self.free = free_memory(self.device)
            reason = too_large_reason(estimate, complexity(cfg, resolution), train.batch_size, self.device, self.free)
            if reason is not None:
                raise ModelTooLarge(f"model too large: {reason}; refused before building it")
        elif self.free is not None and estimate.total > self.free:
            reason = too_large_reason(estimate, complexity(cfg, resolution), train.batch_size, self.device, self.free)
            raise ModelTooLarge(f"model too large: {reason}; refused before building it")
        while not self.fits_now(estimate.total):
            yield Delay(ADMIT_POLL_SECONDS)
        self.committed += estimate.total
        self.active += 1
        return estimate.total

    def release(self, estimate: int) -> None:
        """A trial admitted with `estimate` bytes has ended."""
        self.committed -= estimate
        self.active -= 1


ADMIT_POLL_SECONDS = 0.05
_LEDGERS: dict[str, DeviceLedger] = {}


def ledger_for(device: str) -> DeviceLedger:
    """This process's ledger of `device`."""
    if device not in _LEDGERS:
        _LEDGERS[device] = DeviceLedger(device)
    return _LEDGERS[device]
