"""The report read in a real browser: headless Chromium at 1400 px renders a small real study's report.

Nothing may be wider than the viewport (the page, any element, any table inside its box), every image
must load, the console must stay clean, and the verdict table's rows stay one or two lines tall (the
long text is folded into details elements). Needs a Chromium binary (Debian: `apt-get install
chromium-headless-shell`); skipped without one, except under CI (`.ci/run` installs it), where that fails.
`ANYNET_SCREENSHOT_DIR` keeps the full-page screenshot for a person to look at.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from browser import find_chromium, open_page

WIDTH = 1400
CHECKS = """(() => {
  const vw = window.innerWidth;
  const rows = [...document.querySelectorAll('table.verdicts > tbody > tr')]
    .map(r => r.getBoundingClientRect().height).filter(h => h > 0);
  const closed = [...document.querySelectorAll('details')].filter(d => !d.open);
  closed.forEach(d => { d.open = true; });  // the folded text must fit too
  const wide = [];
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > vw + 0.5)
      wide.push(`${el.tagName}.${el.className} right=${Math.round(r.right)}`);
  }
  const clipped = [];
  for (const t of document.querySelectorAll('table')) {
    if (t.getBoundingClientRect().width > 0 && t.scrollWidth > t.parentElement.clientWidth + 1)
      clipped.push(`${t.className} ${t.scrollWidth} > ${t.parentElement.clientWidth}`);
  }
  return {
    viewport: vw, scrollWidth: document.documentElement.scrollWidth, wide: wide.slice(0, 20), clipped,
    images: document.images.length,
    broken: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
    alts: [...document.images].map(i => i.alt),
    verdictRows: rows.length, tallestRow: Math.max(0, ...rows),
    opened: closed.length,
    folded: document.querySelectorAll('details.folded table.verdicts tbody tr').length,
  };
})()"""


@pytest.fixture(scope="module")
def chromium():
    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("no Chromium binary on PATH; .ci/run installs Debian's chromium-headless-shell")
        pytest.skip(
            "no Chromium binary on PATH (apt-get install chromium-headless-shell to run the browser test)"
        )
    return binary


@pytest.fixture(scope="module")
def real_report(tmp_path_factory):
    """A real digits study (trained 2 epochs: each model has a validation curve) and its end-of-run report."""
    cwd = tmp_path_factory.mktemp("browser")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "anynet_search",
            "run",
            "--space",
            "anynet_xa_tiny",
            "--dataset",
            "digits",
            "--trials",
            "12",
            "--epochs",
            "2",
            "--workers",
            "1",
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = cwd / "runs" / "anynet_xa_tiny-digits-random-e2-s0" / "report" / "report.html"
    assert report.is_file()
    return report


def test_report_fits_1400px_loads_every_image_and_logs_no_error(chromium, real_report, tmp_path):
    page = open_page(chromium, real_report, CHECKS, tmp_path / "profile", width=WIDTH)
    shots = os.environ.get("ANYNET_SCREENSHOT_DIR")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        (Path(shots) / "report_1400.png").write_bytes(page.screenshot)
    v = page.value
    assert page.errors == []
    assert v["viewport"] == WIDTH
    assert v["scrollWidth"] <= v["viewport"], v
    assert v["wide"] == [] and v["clipped"] == [], v
    assert v["images"] == len(list((real_report.parent / "figures").glob("*.png"))) > 0
    assert v["broken"] == []
    # the figures the redesign added: validation curves, and the structural constraints' EDF splits
    assert any(a.endswith("_validation_curves") for a in v["alts"]), v["alts"]
    assert any("_split_" in a for a in v["alts"]), v["alts"]
    assert v["verdictRows"] > 0 and v["tallestRow"] < 80, v  # one or two lines, the long text folded
    assert v["opened"] > v["verdictRows"] and v["folded"] > 0, v  # details per row, and trivial rows folded
    assert page.screenshot[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_page_wider_than_the_viewport_is_caught(chromium, tmp_path):
    """The check itself: a 2000 px table and a broken image fail it (so a pass means something)."""
    page = tmp_path / "wide.html"
    page.write_text(
        '<!DOCTYPE html><html><body><table class="verdicts">'
        '<tr><td><div style="width:2000px">x</div></td></tr>'
        '</table><img alt="missing" src="missing.png"><script>console.error("boom")</script></body></html>'
    )
    result = open_page(chromium, page, CHECKS, tmp_path / "profile", width=WIDTH)
    assert result.value["scrollWidth"] > WIDTH and result.value["wide"]
    assert result.value["broken"] == ["missing"]
    assert any("boom" in e for e in result.errors) and any(
        "missing.png" in e or "load" in e for e in result.errors
    )
