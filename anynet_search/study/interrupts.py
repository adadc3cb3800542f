"""Ctrl-C in a worker without tearing a storage write in half.

A KeyboardInterrupt raised at an arbitrary point can land inside the journal file's lock or a database
write and leave the storage inconsistent. Workers therefore install `request_stop`: it only records the
request, and raises KeyboardInterrupt immediately only while the main thread is in pure training code
(`interruptible()`); storage writes made from inside training run `shielded()`, and the interrupt is
delivered as soon as they finish.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from anynet_search.errors import Stopped, leave_hung_up_terminal

REQUEUED = "config re-enqueued"  # ends the `failure` of a trial stopped mid-training whose config was put back


def is_requeued(trial: FrozenTrial) -> bool:
    """Whether a trial was stopped mid-training (an interrupt, its worker killed) and its config put back."""
    return trial.state == TrialState.FAIL and str(trial.user_attrs.get("failure", "")).endswith(REQUEUED)


class _State:
    stop_requested = False
    interruptible = False
    signum = signal.SIGINT  # the signal that asked to stop


def stop() -> KeyboardInterrupt:
    """The interrupt to raise for the stop asked: `errors.Stopped` for SIGTERM or SIGHUP (exit 143, 129)."""
    return KeyboardInterrupt() if STATE.signum == signal.SIGINT else Stopped(STATE.signum)


STATE = _State()


def request_stop(signum: int, _frame: Any) -> None:
    """SIGINT / SIGTERM / SIGHUP / SIGUSR2 handler of worker processes."""
    leave_hung_up_terminal(signum)
    STATE.stop_requested, STATE.signum = True, signum
    if STATE.interruptible:
        STATE.interruptible = False
        raise stop()


def install() -> None:
    """Route SIGINT, SIGTERM, SIGHUP and SIGUSR2 of this process through `request_stop` (SLURM sends SIGUSR2 to
    every process of a job shortly before its time limit, a closed terminal SIGHUP to every process it started;
    their default action would kill the worker mid-trial and leave its trials marked running). A SIGHUP ignored
    by `nohup` stays ignored."""
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, request_stop)
    signal.signal(signal.SIGUSR2, request_stop)


@contextmanager
def interruptible() -> Iterator[None]:
    """A region (training) where a stop request raises KeyboardInterrupt at once."""
    if STATE.stop_requested:
        raise stop()
    STATE.interruptible = True
    try:
        yield
    finally:
        STATE.interruptible = False


@contextmanager
def shielded() -> Iterator[None]:
    """A storage write inside an interruptible region: the interrupt waits until it is done."""
    previous, STATE.interruptible = STATE.interruptible, False
    try:
        yield
    finally:
        STATE.interruptible = previous
        if previous and STATE.stop_requested:
            STATE.interruptible = False
            raise stop()
