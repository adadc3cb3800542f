"""Tests for anynet_search.training.augment: random zero-padded crops and flips, against a slow reference."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from anynet_search.training.augment import augment_batch


def reference_crop(img: torch.Tensor, pad: int, dy: int, dx: int, mirror: bool) -> torch.Tensor:
    """Slow per-sample reference: zero-pad, (optionally) mirror the image, crop at shift (dy, dx)."""
    c, h, w = img.shape
    src = img.flip(-1) if mirror else img
    padded = torch.zeros(c, h + 2 * pad, w + 2 * pad, dtype=img.dtype)
    padded[:, pad : pad + h, pad : pad + w] = src
    # Output pixel (i, j) shows input pixel (i + dy, j + dx) (zero outside): a shift by (-dy, -dx).
    return padded[:, pad + dy : pad + dy + h, pad + dx : pad + dx + w]


def find_transform(
    img: torch.Tensor, out: torch.Tensor, pad: int, flips: bool
) -> list[tuple[int, int, bool]]:
    """Every (dy, dx, mirror) under which the reference reproduces `out` exactly."""
    return [
        (dy, dx, mirror)
        for dy in range(-pad, pad + 1)
        for dx in range(-pad, pad + 1)
        for mirror in ((False, True) if flips else (False,))
        if torch.equal(reference_crop(img, pad, dy, dx, mirror), out)
    ]


def distinct_batch(n: int, c: int, h: int, w: int) -> torch.Tensor:
    # Strictly positive, all-distinct values: no two (shift, flip) choices can give the same crop.
    return (
        torch.randperm(n * c * h * w, generator=torch.Generator().manual_seed(1))
        .float()
        .add(1)
        .view(n, c, h, w)
    )


def test_shape_and_dtype_preserved() -> None:
    x = torch.randn(7, 3, 12, 10)
    out = augment_batch(x, pad=3, flip=True, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert out.dtype == x.dtype
    assert out.device == x.device


def test_integer_dtype_preserved() -> None:
    x = torch.randint(0, 255, (4, 3, 8, 8), dtype=torch.uint8)
    out = augment_batch(x, pad=2, flip=True, generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and out.shape == x.shape


def test_identity_without_pad_or_flip() -> None:
    x = torch.randn(5, 3, 8, 8)
    out = augment_batch(x, pad=0, flip=False, generator=torch.Generator().manual_seed(0))
    assert out is x


def test_input_not_modified() -> None:
    x = torch.randn(6, 3, 8, 8)
    before = x.clone()
    augment_batch(x, pad=2, flip=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, before)


@pytest.mark.parametrize(("pad", "flip"), [(1, False), (2, True), (4, True), (0, True), (3, False)])
def test_every_image_is_a_shifted_crop_of_the_padded_input(pad: int, flip: bool) -> None:
    x = distinct_batch(24, 2, 6, 7)
    out = augment_batch(x, pad=pad, flip=flip, generator=torch.Generator().manual_seed(pad))
    for i in range(len(x)):
        matches = find_transform(x[i], out[i], pad, flip)
        assert len(matches) == 1, f"sample {i}: {matches}"


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 6),
    c=st.integers(1, 3),
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    pad=st.integers(0, 4),
    flip=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_crop_property(n: int, c: int, h: int, w: int, pad: int, flip: bool, seed: int) -> None:
    x = distinct_batch(n, c, h, w)
    out = augment_batch(x, pad=pad, flip=flip, generator=torch.Generator().manual_seed(seed))
    assert out.shape == x.shape
    for i in range(n):
        # Tiny or fully shifted-out images can match several transforms; at least one must match.
        assert find_transform(x[i], out[i], pad, flip), f"sample {i} is not a crop of the padded input"


def test_offsets_cover_the_full_range_and_flip_is_fair() -> None:
    pad = 2
    x = distinct_batch(400, 1, 5, 5)
    out = augment_batch(x, pad=pad, flip=True, generator=torch.Generator().manual_seed(3))
    seen = [find_transform(x[i], out[i], pad, True) for i in range(len(x))]
    assert all(len(m) == 1 for m in seen)
    shifts = {(dy, dx) for ((dy, dx, _),) in seen}
    assert shifts == {(dy, dx) for dy in range(-pad, pad + 1) for dx in range(-pad, pad + 1)}
    mirrored = sum(m for ((_, _, m),) in seen) / len(seen)
    assert 0.4 < mirrored < 0.6


def test_deterministic_given_generator_seed() -> None:
    x = torch.randn(32, 3, 16, 16)
    a = augment_batch(x, pad=4, flip=True, generator=torch.Generator().manual_seed(123))
    b = augment_batch(x, pad=4, flip=True, generator=torch.Generator().manual_seed(123))
    c = augment_batch(x, pad=4, flip=True, generator=torch.Generator().manual_seed(124))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_generator_advances_between_calls() -> None:
    x = torch.randn(32, 3, 16, 16)
    g = torch.Generator().manual_seed(0)
    assert not torch.equal(augment_batch(x, 4, True, g), augment_batch(x, 4, True, g))


def test_never_flips_when_flip_false() -> None:
    # Pad 0 and no flip would be the identity shortcut, so use pad 1 and check no sample is mirrored.
    x = distinct_batch(200, 1, 4, 6)
    out = augment_batch(x, pad=1, flip=False, generator=torch.Generator().manual_seed(0))
    for i in range(len(x)):
        assert find_transform(x[i], out[i], 1, flips=True) == find_transform(x[i], out[i], 1, flips=False)
        assert len(find_transform(x[i], out[i], 1, flips=False)) == 1


def test_flip_only_mirrors_or_keeps() -> None:
    x = torch.randn(64, 3, 8, 8)
    out = augment_batch(x, pad=0, flip=True, generator=torch.Generator().manual_seed(0))
    same = torch.tensor([torch.equal(o, i) for o, i in zip(out, x, strict=True)])
    mirrored = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x, strict=True)])
    assert bool((same ^ mirrored).all())
    assert 0 < int(mirrored.sum()) < len(x)


def test_default_generator_works() -> None:
    torch.manual_seed(0)
    a = augment_batch(torch.ones(4, 1, 5, 5), pad=1, flip=True)
    assert a.shape == (4, 1, 5, 5)


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_rejects_bad_pad(bad: object) -> None:
    with pytest.raises(ValueError, match="pad"):
        augment_batch(torch.zeros(1, 1, 4, 4), pad=bad, flip=False)  # type: ignore[arg-type]


def test_rejects_non_4d_input() -> None:
    with pytest.raises(ValueError, match="N, C, H, W"):
        augment_batch(torch.zeros(3, 4, 4), pad=1, flip=False)


def test_non_contiguous_input() -> None:
    x = torch.randn(8, 8, 3, 6).permute(0, 2, 1, 3)  # (8, 3, 8, 6), non-contiguous
    out = augment_batch(x, pad=2, flip=True, generator=torch.Generator().manual_seed(0))
    ref = augment_batch(x.contiguous(), pad=2, flip=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, ref)
