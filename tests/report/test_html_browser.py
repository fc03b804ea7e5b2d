"""report.html in headless Chromium (Debian's package; .ci/run installs it, the test skips without it):
self-contained, every image decodes, every finding's evidence link lands on a table or figure, and the
screenshot has the page's height and figures that are not blank. Screenshots of a run, a cv and a sweep
report are kept under the test's temporary folder (screenshots/)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ssmseg.report import make_report
from tests.report import shapes

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
]
WIDTH = 1200
PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images).map(i => {
    const r = i.getBoundingClientRect();
    return {complete: i.complete, w: i.naturalWidth, h: i.naturalHeight,
            box: [r.left + scrollX, r.top + scrollY, r.width, r.height]};
  });
  const links = Array.from(document.querySelectorAll("ul.findings li")).map(li =>
    Array.from(li.querySelectorAll("a[href^='#']")).map(a => {
      const t = document.getElementById(a.getAttribute("href").slice(1));
      return t ? t.tagName : null;
    }));
  const fetched = performance.getEntriesByType("resource").map(e => e.name);
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({images, links, fetched, height: document.documentElement.scrollHeight});
  document.body.appendChild(out);
});
</script>"""


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def _probe(tmp_path: Path, html: str) -> dict:
    page = tmp_path / "probe.html"
    page.write_text(html.replace("</body>", PROBE + "</body>"))
    proc = _chromium(tmp_path, f"--window-size={WIDTH},900", "--virtual-time-budget=5000", "--dump-dom", page.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.DOTALL)
    assert found, proc.stderr[-2000:]
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def _screenshot(tmp_path: Path, html_file: Path, height: int, shot: Path) -> np.ndarray:
    from matplotlib.image import imread

    proc = _chromium(tmp_path, f"--window-size={WIDTH},{height}", f"--screenshot={shot}", html_file.as_uri())
    assert shot.is_file(), proc.stderr[-2000:]
    return imread(shot)[..., :3]  # (height, width, 3) floats in [0, 1]


def _example(path: Path) -> None:
    """A stand-in for the examples panel sweep-steps draws."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 2))
    ax.imshow(np.random.default_rng(0).random((16, 32)), cmap="viridis")
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _reports(tmp_path: Path) -> dict[str, Path]:
    run = shapes.write_run(tmp_path / "run", shapes.overfit(), shapes.config(60))
    (run / "eval").mkdir()
    (run / "eval" / "metrics.json").write_text(json.dumps(shapes.seg_metrics()))
    cv = shapes.write_cv(tmp_path / "cv", [0.5, 0.7, 0.9])
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "sweep.json").write_text(json.dumps(shapes.sweep()))
    _example(sweep / "examples.png")
    return {
        kind: make_report([path], out=tmp_path / f"report_{kind}").out
        for kind, path in (("run", run), ("cv", cv), ("sweep", sweep))
    }


@pytest.mark.skipif(
    shutil.which("chromium") is None and not Path(CHROMIUM).is_file(),
    reason="needs Debian's chromium (apt-get install chromium; .ci/run installs it)",
)
def test_reports_render_in_a_real_browser(tmp_path):
    shots = tmp_path / "screenshots"
    shots.mkdir()
    for kind, out in _reports(tmp_path).items():
        html = (out / "report.html").read_text()
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", html, re.IGNORECASE)
        sources = re.findall(r"""src\s*=\s*["']([^"']*)""", html)
        assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
        data = _probe(tmp_path, html)
        assert [u for u in data["fetched"] if not u.startswith("data:")] == []
        images = data["images"]
        assert len(images) == len(sources) >= 2, kind
        assert all(i["complete"] and i["w"] > 100 and i["h"] > 100 for i in images), images  # none broken
        assert data["links"] and all(links and all(t in ("TABLE", "FIGURE") for t in links) for links in data["links"])
        height = data["height"]
        assert 1000 < height < 16000, height
        shot = _screenshot(tmp_path, out / "report.html", height, shots / f"{kind}.png")
        assert shot.shape[:2] == (height, WIDTH)  # the whole page, at its own height
        for i in images:
            x, y, w, h = (round(v) for v in i["box"])
            assert w >= min(i["w"], 1000) * 0.9, (kind, i)  # figures at the page's width, not shrunk
            crop = shot[y : y + h, x : x + w]
            inked = (crop.mean(axis=2) < 0.9).mean()
            assert crop.size and crop.std() > 0.05 and inked > 0.01, (kind, i, float(crop.std()), float(inked))
    assert sorted(p.name for p in shots.iterdir()) == ["cv.png", "run.png", "sweep.png"]
