"""The training step and the evaluation pass as fixed programs over static tensors: run eagerly, or captured
once into a CUDA graph and replayed.

Everything a training step reads that changes from step to step (which images, their crop offsets and
flips, the learning rate) lives in tensors allocated once per trial and indexed by step counters that live
on the device. So one Python function is the whole step (batch gather, augmentation, forward, loss,
backward, SGD) and the same function either runs op by op (the CPU; a CUDA warm-up; `cuda_graphs=false`)
or is captured into a CUDA graph whose replay is one launch with no host synchronization. The random
draws of an epoch (permutation, crop offsets, flips) are made at its start from the trial's own generator,
outside any graph, so eager and graphed runs of one seed see the same batches.

A graph is captured on the current (non-default) stream in "thread_local" mode into the trial's own
memory pool, without the device-wide synchronization and cache flush of `torch.cuda.graph`: other trials'
work keeps running on their streams meanwhile. Every tensor a replay leaves behind (gradients, momentum,
batch-norm statistics, the loss and error accumulators) is allocated outside the graphs, so the graphs of
one trial can share a pool.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Generator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from anynet_search.training.fences import Fence, Pending
from anynet_search.training.inputs import InputPipeline
from anynet_search.training.placement import PinnedGather
from anynet_search.training.setup_threads import CAPTURE_LOCK, SetupThreads

WARMUP_STEPS = 3  # eager full-size steps before the capture: cuDNN/cuBLAS set-up, momentum buffers exist
CAPTURE_MODE = "thread_local"


def plan_batches(num_samples: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each batch of an epoch; drops a last batch under half a batch (or of 1)."""
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 (BatchNorm), got {batch_size}")
    if num_samples < 2:
        raise ValueError(f"need at least 2 training samples, got {num_samples}")
    full, rest = divmod(num_samples, batch_size)
    bounds = [(i * batch_size, (i + 1) * batch_size) for i in range(full)]
    if rest >= 2 and (rest * 2 >= batch_size or full == 0):
        bounds.append((full * batch_size, num_samples))
    return bounds


def capture_graph(body: Callable[[], None], pool: tuple[int, int] | None) -> torch.cuda.CUDAGraph:
    """`body`'s kernels captured on the current stream into a graph (nothing runs until it is replayed)."""
    graph = torch.cuda.CUDAGraph()
    graph.capture_begin(pool=pool, capture_error_mode=CAPTURE_MODE)
    try:
        body()
    except BaseException:
        with contextlib.suppress(Exception):  # end the capture so the stream works again; the body's error wins
            graph.capture_end()
        raise
    graph.capture_end()
    return graph


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _Captured:
    """One program body, eager until `warmup` runs have happened, then captured once and replayed. A call that is
    not a replay (an eager run or the capture) goes to the set-up threads when `offload` is given: it returns
    their Pending, which the caller waits on before its next call."""

    def __init__(self, body: Callable[[], None], warmup: int, graphs: GraphPolicy | None,
                 offload: SetupThreads | None) -> None:
        self.body, self.warmup, self.graphs, self.offload = body, warmup, graphs, offload
        self.runs = 0
        self.graph: torch.cuda.CUDAGraph | None = None

    def __call__(self) -> Pending | None:
        if self.graph is not None:
            self.graph.replay()
            self.runs += 1
            return None
        if self.offload is not None:
            return self.offload.submit(self._set_up)
        self._set_up()
        return None

    def _set_up(self) -> None:
        """An eager run, or the capture followed by the first replay."""
        if self.graphs is not None and self.graphs.active and self.runs >= self.warmup:
            try:
                with CAPTURE_LOCK:
                    self.graph = capture_graph(self.body, self.graphs.pool)
            except torch.OutOfMemoryError:
                raise
            except RuntimeError as exc:
                self.graphs.fail(exc)
                self.body()
            else:
                self.graph.replay()
        else:
            self.body()
        self.runs += 1


class GraphPolicy:
    """Whether a trial's programs are captured; the first failed capture turns capturing off for the trial."""

    def __init__(self) -> None:
        self.pool = torch.cuda.graph_pool_handle()
        self.active = True
        self.failure: str | None = None

    def fail(self, exc: BaseException) -> None:
        """Record why a capture failed; every program of the trial runs eagerly from now on."""
        self.active = False
        self.failure = first_line(exc)[:200]


@dataclass(frozen=True)
class StepSettings:
    """What a training step needs besides the model, the optimizer, the data and its input pipeline."""

    batch_size: int
    use_amp: bool
    label_smoothing: float
    channels_last: bool


class TrainProgram:
    """One trial's training step over static tensors: `start_epoch` draws the epoch, `full()` and `tail()` run
    one step of the full and the partial batch size. The training images are `train_x` (rows `train_rows` of it
    when given: a store's train split), turned into the model's input by `inputs`. Per-step learning rates come
    from `lrs` (a device tensor read by the fused SGD kernel when `lr_tensor` is given, the param groups' floats
    otherwise)."""

    def __init__(self, net: nn.Module, optimizer: torch.optim.Optimizer, train_x: torch.Tensor,
                 train_y: torch.Tensor, train_rows: torch.Tensor | None, inputs: InputPipeline,
                 settings: StepSettings, lrs: list[float], lr_tensor: torch.Tensor | None,
                 graphs: GraphPolicy | None, offload: SetupThreads | None = None,
                 host_feed: torch.Generator | None = None) -> None:
        self.net, self.optimizer, self.s, self.inputs = net, optimizer, settings, inputs
        self.train_x, self.train_y, self.train_rows = train_x, train_y, train_rows
        dev = lr_tensor.device if lr_tensor is not None else train_x.device
        self.device = dev
        b = settings.batch_size
        self.n_train = int(train_rows.numel() if train_rows is not None else train_x.shape[0])
        sizes = [stop - start for start, stop in plan_batches(self.n_train, b)]
        self.n_full = sizes.count(b)
        self.n_tail = 0 if sizes[-1] == b else sizes[-1]
        self.steps_per_epoch = len(sizes)
        used = self.n_full * b + self.n_tail
        self.order = torch.zeros(used, dtype=torch.long, device=dev)
        self.draws = inputs.allocate(used, dev)
        # streaming (`placement`): the data stays on the host; each step's rows are staged into `staged_*` before
        # the step, in the epoch's order drawn on the host from `host_feed`
        self.host_feed = host_feed
        if host_feed is not None:
            self.host_order = torch.zeros(used, dtype=torch.long)
            self.staged_x = torch.empty((b, *train_x.shape[1:]), dtype=train_x.dtype, device=dev)
            self.staged_y = torch.empty(b, dtype=train_y.dtype, device=dev)
            self.gather_x = PinnedGather(train_x, b, dev)
            self.gather_y = PinnedGather(train_y, b, dev)
            self.fed = 0  # rows of the epoch staged so far
        self.i = torch.zeros(1, dtype=torch.long, device=dev)  # full batches done this epoch
        self.rows = torch.arange(b, device=dev)
        self.g = torch.zeros(1, dtype=torch.long, device=dev)  # steps done in the run
        self.loss_sum = torch.zeros((), dtype=torch.float32, device=dev)
        self.lrs = lrs
        self.lr_tensor = lr_tensor
        self.lr_table = torch.tensor(lrs, dtype=torch.float32, device=dev) if lr_tensor is not None else None
        self.steps = 0  # steps queued so far (the host's copy of g)
        self._full = _Captured(self._full_body, WARMUP_STEPS, graphs, offload)
        self._tail = _Captured(self._tail_body, 1, graphs, offload)

    # ----------------------------------------------------------------------------------------- epoch draws
    def start_epoch(self, generator: torch.Generator) -> None:
        """Draw the epoch's permutation, crop offsets and flips (in that order) and reset the epoch's counters."""
        dev, used = self.device, int(self.order.shape[0])
        if self.host_feed is None:
            order = torch.randperm(self.n_train, generator=generator, device=dev)[:used]
            self.order.copy_(order if self.train_rows is None else self.train_rows.index_select(0, order))
        else:
            order = torch.randperm(self.n_train, generator=self.host_feed)[:used]
            self.host_order.copy_(order if self.train_rows is None else self.train_rows.index_select(0, order))
            self.fed = 0
        self.inputs.draw(self.draws, generator)
        self.i.zero_()
        self.loss_sum.zero_()

    def prefetch(self, rows: int) -> Generator[Fence, None, None]:
        """Stage the next step's `rows` images and labels on the device (streaming only; a task step)."""
        if self.host_feed is None:
            return
        index = self.host_order[self.fed : self.fed + rows]
        self.fed += rows
        yield from self.gather_x.copy(index, self.staged_x)
        yield from self.gather_y.copy(index, self.staged_y)

    # --------------------------------------------------------------------------------------------- a step
    def _step(self, idx: torch.Tensor, first: torch.Tensor | None, mirror: torch.Tensor | None) -> None:
        s = self.s
        if self.host_feed is None:
            xb, yb = self.train_x.index_select(0, idx), self.train_y.index_select(0, idx)
        else:  # staged by `prefetch`; `idx` only fixes how many rows (a static size inside a graph)
            xb, yb = self.staged_x[: idx.shape[0]], self.staged_y[: idx.shape[0]]
        xb = self.inputs.train(xb, first, mirror)
        if s.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=s.use_amp, cache_enabled=False):
            logits = self.net(xb)
        loss = F.cross_entropy(logits.float(), yb, label_smoothing=s.label_smoothing)
        self.optimizer.zero_grad(set_to_none=False)  # gradients keep their storage: a graph reuses it
        loss.backward()
        if self.lr_table is not None:
            self.lr_tensor.copy_(self.lr_table.index_select(0, self.g).view(()))  # type: ignore[union-attr]
        self.optimizer.step()
        self.loss_sum.add_(loss.detach())
        self.g.add_(1)

    def _full_body(self) -> None:
        span = self.i * self.s.batch_size + self.rows  # this step's rows of the epoch's draws
        self._step(self.order.index_select(0, span), *(None if d is None else d.index_select(0, span)
                                                       for d in self.draws))
        self.i.add_(1)

    def _tail_body(self) -> None:
        start = self.n_full * self.s.batch_size
        self._step(self.order[start:], *(None if d is None else d[start:] for d in self.draws))

    def _host_lr(self) -> None:
        if self.lr_table is None:
            lr = self.lrs[self.steps]
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    def full(self) -> Pending | None:
        """Queue one step on the next full batch of the epoch (a Pending when it went to the set-up threads)."""
        self._host_lr()
        self.steps += 1
        return self._full()

    def tail(self) -> Pending | None:
        """Queue the epoch's last, partial batch (only when `n_tail`)."""
        self._host_lr()
        self.steps += 1
        return self._tail()

    @property
    def graphed(self) -> bool:
        """Whether the full-batch step runs as a CUDA graph."""
        return self._full.graph is not None


class EvalProgram:
    """Top-1 errors of the model on one split, accumulated on the device.

    Eagerly it runs the split's exact slices (or rows). Graphed, every batch is copied into a static buffer of
    `batch` rows and the captured forward pass counts only the first `valid` rows, so the last, smaller
    batch replays the same graph. `transform` turns a batch in its stored form into the model's input (a
    prepared store's uint8 rows: center crop, convert, normalize; `InputPipeline.evaluate`); None for data
    that is the input already. `wrong` and `finite` accumulate until `reset()`.
    """

    def __init__(self, net: nn.Module, batch: int, sample_shape: tuple[int, ...], dtype: torch.dtype,
                 device: torch.device, use_amp: bool, channels_last: bool, graphs: GraphPolicy | None,
                 offload: SetupThreads | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.net, self.batch, self.device, self.use_amp = net, batch, device, use_amp
        self.transform = transform
        self.sample_shape, self.dtype = sample_shape, dtype
        self.gathers: tuple[PinnedGather, PinnedGather] | None = None  # streaming from the host (made by `run`)
        self.memory_format = torch.channels_last if channels_last and len(sample_shape) == 3 \
            else torch.contiguous_format
        self.wrong = torch.zeros((), dtype=torch.long, device=device)
        self.finite = torch.ones((), dtype=torch.bool, device=device)
        self.graphs = graphs
        self.x = self.y = self.valid = self.rows = None
        if graphs is not None:
            # the stored form: normalized floats in the model's layout, or a store's rows as they are
            layout = self.memory_format if transform is None else torch.contiguous_format
            self.x = torch.zeros((batch, *sample_shape), dtype=dtype, device=device).contiguous(
                memory_format=layout)
            self.y = torch.zeros(batch, dtype=torch.long, device=device)
            self.valid = torch.zeros((), dtype=torch.long, device=device)
            self.rows = torch.arange(batch, device=device)
        self._captured = _Captured(self._static_body, 1, graphs, offload)

    def reset(self) -> None:
        """Zero the accumulators."""
        self.wrong.zero_()
        self.finite.fill_(True)

    def _count(self, logits: torch.Tensor, y: torch.Tensor, keep: torch.Tensor | None) -> None:
        wrong = logits.argmax(dim=1) != y
        finite = torch.isfinite(logits).all(dim=1)
        if keep is not None:
            wrong &= keep
            finite |= ~keep
        self.wrong.add_(wrong.sum())
        self.finite.logical_and_(finite.all())

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transform is not None:
            x = self.transform(x).contiguous(memory_format=self.memory_format)
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_amp,
                                             cache_enabled=False):
            return self.net(x)

    def _static_body(self) -> None:
        self._count(self._forward(self.x), self.y, self.rows < self.valid)  # type: ignore[operator]

    def run(self, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor | None = None,
            host_feed: bool = False) -> Generator[Pending | Fence, None, None]:
        """Queue the evaluation of (x, y), or of their `rows` when given (model already in eval mode), adding to
        `wrong` and `finite`; a task step that yields the Pending of a batch handed to the set-up threads. With
        `host_feed` (x and y in host memory: streaming) each batch is staged through page-locked buffers."""
        n = int(rows.numel() if rows is not None else x.shape[0])
        graphed = self.graphs is not None and self.graphs.active
        for start in range(0, n, self.batch):
            stop = min(start + self.batch, n)
            if host_feed:
                xs, ys = yield from self._stage(x, y, rows, start, stop, graphed)
            elif rows is None:
                xs, ys = x[start:stop], y[start:stop]
            else:
                pick = rows[start:stop].to(x.device)
                xs, ys = x.index_select(0, pick), y.index_select(0, pick.to(y.device))
            if not graphed:
                xb = xs.to(self.device, non_blocking=True)
                if self.transform is None:
                    xb = xb.contiguous(memory_format=self.memory_format)
                self._count(self._forward(xb), ys.to(self.device, non_blocking=True), None)
                continue
            m = stop - start
            if not host_feed:  # staged straight into the static buffers otherwise
                self.x[:m].copy_(xs, non_blocking=True)  # type: ignore[index]
                self.y[:m].copy_(ys, non_blocking=True)  # type: ignore[index]
            self.valid.fill_(m)  # type: ignore[union-attr]
            pending = self._captured()
            if pending is not None:
                yield pending
                pending.result()

    def _stage(self, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor | None, start: int, stop: int,
               graphed: bool) -> Generator[Fence, None, tuple[torch.Tensor, torch.Tensor]]:
        """Batch [start, stop) of host-resident (x, y) copied to the device: into the static buffers when graphed."""
        if self.gathers is None:
            self.gathers = (PinnedGather(x, self.batch, self.device, 2), PinnedGather(y, self.batch, self.device, 2))
        m = stop - start
        index = rows[start:stop] if rows is not None else torch.arange(start, stop)
        xs = self.x if graphed else torch.empty((m, *self.sample_shape), dtype=self.dtype, device=self.device)
        ys = self.y if graphed else torch.empty(m, dtype=y.dtype, device=self.device)
        yield from self.gathers[0].copy(index, xs)  # type: ignore[arg-type]
        yield from self.gathers[1].copy(index, ys)  # type: ignore[arg-type]
        return xs[:m], ys[:m]  # type: ignore[index]


def balanced_batch(n: int, limit: int) -> int:
    """The batch size <= `limit` that splits `n` items into the fewest, nearly equal batches."""
    return max(1, math.ceil(n / math.ceil(max(n, 1) / limit)))
