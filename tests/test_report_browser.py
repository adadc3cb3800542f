"""The report read in a real browser: headless Chromium at 1400 and 800 px renders a small real study's report.

Nothing may be wider than the viewport (the page, any element outside a table's own scroll box), every image
must load, the console must stay clean, the verdict table's rows stay one or two lines tall at 1400 px (the
long text is folded into details elements), the summary box opens the page, and at 800 px no table cell is
narrower than a word: no word of any cell breaks across lines and no cell's content spills out of it. Needs a Chromium binary (Debian: `apt-get install
chromium-headless-shell`); skipped without one, except under CI (`.ci/run` installs it), where that fails.
`ANYNET_SCREENSHOT_DIR` keeps the full-page screenshot for a person to look at.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from browser import find_chromium, open_page

WIDTH = 1400
CHECKS = r"""(() => {
  const vw = window.innerWidth;
  const rows = [...document.querySelectorAll('table.verdicts > tbody > tr')]
    .map(r => r.getBoundingClientRect().height).filter(h => h > 0);
  const closed = [...document.querySelectorAll('details')].filter(d => !d.open);
  closed.forEach(d => { d.open = true; });  // the folded text must fit too
  const wide = [];
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    const box = el.parentElement && el.parentElement.closest('.scroll');  // a table scrolls inside its own box
    if (r.width > 0 && r.right > vw + 0.5 && !box)
      wide.push(`${el.tagName}.${el.className} right=${Math.round(r.right)}`);
  }
  // a cell narrower than a word: a word (text between spaces, or after a '-' or '/', where lines may break)
  // laid out on more than one line, or content wider than its cell
  const broken_words = [], spilled = [];
  for (const cell of document.querySelectorAll('td, th')) {
    if (cell.getBoundingClientRect().width === 0) continue;
    if (cell.scrollWidth > cell.clientWidth + 1) spilled.push(cell.textContent.trim().slice(0, 40));
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      let start = 0;
      for (const piece of node.textContent.split(/(?<=[-\/\s])/)) {
        const word = piece.replace(/[-\/\s]$/, '');
        if (word.length > 1) {
          const r = document.createRange();
          r.setStart(node, start); r.setEnd(node, start + word.length);
          const tops = new Set([...r.getClientRects()].map(x => Math.round(x.top)));
          if (tops.size > 1) broken_words.push(word);
        }
        start += piece.length;
      }
    }
  }
  const summary = document.querySelector('section.summary');
  const clipped = [];
  for (const t of document.querySelectorAll('table')) {
    if (t.getBoundingClientRect().width > 0 && t.scrollWidth > t.parentElement.clientWidth + 1)
      clipped.push(`${t.className} ${t.scrollWidth} > ${t.parentElement.clientWidth}`);
  }
  const style = getComputedStyle(document.body);
  const column = document.body.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  const links = [...document.querySelectorAll('a[href^="#"]')].map(a => a.getAttribute('href').slice(1));
  const unresolved = links.filter(id => !document.getElementById(id));
  const narrow = [...document.images].filter(i => {
    const grid = i.closest('.figures'), gap = grid ? parseFloat(getComputedStyle(grid).columnGap) || 0 : 0;
    return i.getBoundingClientRect().width < (column - gap) / 2 - 1;
  }).map(i => `${i.alt} ${Math.round(i.getBoundingClientRect().width)}px`);
  // a study name may wrap only where a line may break between words (at '-', spaces), never inside a word
  const broken_names = [];
  for (const el of document.querySelectorAll('table.studies tbody td:first-child, h2 .name')) {
    const node = el.firstChild;
    if (!node || node.nodeType !== 3) continue;
    let start = 0;
    for (const piece of node.textContent.split(/(?<=[-\s])/)) {
      const r = document.createRange();
      r.setStart(node, start); r.setEnd(node, start + piece.replace(/[-\s]$/, '').length);
      const tops = new Set([...r.getClientRects()].map(x => Math.round(x.top)));
      if (tops.size > 1) broken_names.push(piece);
      start += piece.length;
    }
  }
  return {
    column, links, unresolved, narrow, broken_names, broken_words: broken_words.slice(0, 20),
    spilled: spilled.slice(0, 20), cells: document.querySelectorAll('td, th').length,
    summary_top: summary ? Math.round(summary.getBoundingClientRect().top + window.scrollY) : -1,
    summary_text: summary ? summary.textContent : '',
    training: (document.querySelector('p.training') || {}).textContent || '',
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
            "2",
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
    # the figures the redesign added: validation curves; alt texts say what a figure shows (its caption)
    assert any("validation error by epoch" in a for a in v["alts"]), v["alts"]
    assert all(" " in a and len(a) > 15 for a in v["alts"]), v["alts"]
    # issue 23: contents whose links resolve, figures at the column's width, the training in the header,
    # study names unbroken inside words, validation curves on a log axis, an importance chart
    assert len(v["links"]) >= 5 and v["unresolved"] == [], v["links"]
    assert "#" + "study-1-anynet_xa_tiny-digits-random-e2-s0" in ["#" + x for x in v["links"]]
    assert v["column"] > 1000 and v["narrow"] == [], (v["column"], v["narrow"])
    assert "digits, 2 epochs, batch 64" in v["training"], v["training"]
    assert v["broken_names"] == [], v["broken_names"]
    assert any("fANOVA importance" in a for a in v["alts"]), v["alts"]
    # issue 30: the page opens with what the study found, within the first screen
    assert 0 < v["summary_top"] < 400, v["summary_top"]
    assert "Kept" in v["summary_text"] and "anynet-search run --space" in v["summary_text"], v["summary_text"]
    assert "one validation image is 0.69 points" in v["summary_text"], v["summary_text"]
    assert v["broken_words"] == [] and v["spilled"] == [], (v["broken_words"], v["spilled"])
    html = real_report.read_text()
    assert "validation error by epoch (log scale)" in html
    for caption in re.findall(r"error EDFs of the (\d+) models satisfying \S+ and of the (\d+) others", html):
        assert min(map(int, caption)) >= 10, caption  # no split EDF of fewer models than a verdict needs
    assert v["verdictRows"] > 0 and v["tallestRow"] < 80, v  # one or two lines, the long text folded
    assert v["opened"] > v["verdictRows"] and v["folded"] > 0, v  # details per row, and trivial rows folded
    assert page.screenshot[:8] == b"\x89PNG\r\n\x1a\n"


def test_at_800px_no_table_cell_is_narrower_than_a_word_and_wide_tables_scroll_in_their_box(chromium, real_report,
                                                                                             tmp_path):
    """Half a laptop screen: the constraint table's reason column once collapsed to a character per line."""
    page = open_page(chromium, real_report, CHECKS, tmp_path / "profile", width=800)
    shots = os.environ.get("ANYNET_SCREENSHOT_DIR")
    if shots:
        (Path(shots) / "report_800.png").write_bytes(page.screenshot)
    v = page.value
    assert page.errors == [] and v["viewport"] == 800
    assert v["scrollWidth"] <= 800 and v["wide"] == [], v
    assert v["cells"] > 50 and v["broken_words"] == [] and v["spilled"] == [], (v["broken_words"], v["spilled"])
    assert 0 < v["summary_top"] < 500 and v["broken"] == []


def test_the_word_check_catches_a_cell_narrower_than_a_word(chromium, tmp_path):
    """The check itself: a fixed 3 em column with overflow-wrap: anywhere breaks its words (what the old CSS did)."""
    page = tmp_path / "narrow.html"
    page.write_text('<!DOCTYPE html><html><body><table style="table-layout:fixed;width:300px"><tr>'
                    '<td style="width:3em;overflow-wrap:anywhere">inconclusive worsening</td>'
                    '<td>x</td></tr></table></body></html>')
    v = open_page(chromium, page, CHECKS, tmp_path / "profile", width=800).value
    assert "inconclusive" in v["broken_words"] and "worsening" in v["broken_words"], v["broken_words"]


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
