"""Human-readable descriptions of a design space: a one-line summary and a multi-line description."""

from __future__ import annotations

from anynet_search.spaces.schema import METRICS, fmt_number
from anynet_search.spaces.view import SpaceView


def summary(space: SpaceView) -> str:
    """One line from the space's real ranges, e.g. `anynet, 4 stages at 16 px: d 1..4, w 8..128, ...`."""
    parts = []
    for p in space.params.values():
        vals = list(p.values)
        parts.append(f"{p.name} {vals[0]:g}" if len(vals) == 1 else
                     f"{p.name} {', '.join(f'{v:g}' for v in vals)}" if len(vals) <= 4 else
                     f"{p.name} {min(vals):g}..{max(vals):g}")
    parts += [f"{label} {', '.join(sorted(names))}" for label, names in
              (("shared", space.shared), ("non-decreasing", space.non_decreasing)) if names]
    parts += [f"{k} in {lo:g}..{hi:g}" for k, (lo, hi) in space.ranges.items()]
    band = ", ".join(f"{k} {fmt_number(lo)}..{fmt_number(hi)}" for k, (lo, hi) in space.band.items())
    band = band or "no band"
    return f"{space.family}, {space.stages} stages at {space.resolution} px: {'; '.join(parts)}; {band}"


def describe(space: SpaceView) -> str:
    """Multi-line description: fixed parts, parameters, constraints, band, complexity range and size."""
    lines = [f"{space.name}: {space.description}", f"  source: {space.source}",
             f"  family: {space.family}, stages: {space.stages}, resolution: {space.resolution} px",
             "  fixed: " + ", ".join(f"{k}={v}" for k, v in space.fixed.items()), "  parameters:"]
    for p in space.params.values():
        span = (f"{p.values}" if p.distribution in ("choice", "power_of_two")
                else f"[{p.low:g}, {p.high:g}] step {p.step:g}")
        lines.append(f"    {p.name}: {p.distribution} {span} ({p.size} values)")
    lines.append(f"  shared: {sorted(space.shared) or '-'}   "
                 f"non_decreasing: {sorted(space.non_decreasing) or '-'}")
    if space.ranges:
        ranges = (f"{k} in [{lo:g}, {hi:g}]" for k, (lo, hi) in space.ranges.items())
        lines.append("  ranges: " + ", ".join(ranges))
    band = ", ".join(f"{k} in [{fmt_number(lo)}, {fmt_number(hi)}]" for k, (lo, hi) in space.band.items())
    band = band or "none"
    lines.append(f"  band: {band}")
    lo, hi = space.complexity_range()
    lines.append("  complexity of its configs (before the band): "
                 + ", ".join(f"{k} {fmt_number(lo[k])}..{fmt_number(hi[k])}" for k in METRICS))
    lines.append(f"  log10 size: {space.log10_size:.2f} (distinct parameter tuples, before the band)")
    return "\n".join(lines)
