"""Studies of different spaces draw independent config streams, even under one seed (which also picks the split)."""

from __future__ import annotations

from anynet_search.spaces import load_space
from anynet_search.study.settings import planned_sample, stream_seed

N = 64


def _planned(space_name: str, seed: int = 0) -> list:
    space = load_space(space_name).with_task(10, 3)
    return [planned_sample(space, "random", seed, N, slot, 0) for slot in range(N)]


def test_constrained_spaces_do_not_reuse_the_unconstrained_stream():
    """With one shared stream, XD's configs were XC's draws that happen to have non-decreasing widths."""
    xc, xd, xe = (_planned(f"anynet_{s}_tiny") for s in ("xc", "xd", "xe"))
    key = lambda s: tuple(sorted(s.params.items()))  # noqa: E731
    assert not {key(s) for s in xc} & {key(s) for s in xd}
    assert not {key(s) for s in xd} & {key(s) for s in xe}
    assert len({stream_seed(0, load_space(f"anynet_{s}_tiny").with_task(10, 3)) for s in ("xc", "xd", "xe")}) == 3


def test_stream_is_fixed_by_seed_and_space():
    a, b = _planned("anynet_xd_tiny"), _planned("anynet_xd_tiny")
    assert [s.params for s in a] == [s.params for s in b]
    assert [s.params for s in _planned("anynet_xd_tiny", seed=1)] != [s.params for s in a]
    space = load_space("anynet_xd_tiny").with_task(10, 3)
    assert [s.params for s in space.sample_many(N, seed=stream_seed(0, space))] == [s.params for s in a]
