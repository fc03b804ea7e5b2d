"""report.html in headless Chromium: every image decodes and nothing is fetched (skipped without Chromium)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from ssmseg.report import make_report
from tests.report import shapes

CHROMIUM = Path("/usr/bin/chromium")

PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images).map(i => ({complete: i.complete, w: i.naturalWidth, h: i.naturalHeight}));
  const fetched = performance.getEntriesByType("resource").map(e => e.name);
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({images, fetched});
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium (/usr/bin/chromium)")
def test_html_is_self_contained_and_every_image_loads(tmp_path):
    run = shapes.write_run(tmp_path / "run", shapes.overfit(), shapes.config(60))
    (run / "eval").mkdir()
    (run / "eval" / "metrics.json").write_text(json.dumps(shapes.seg_metrics()))
    result = make_report([run], out=tmp_path / "report")
    html = (result.out / "report.html").read_text()
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", html, re.IGNORECASE)
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", html)
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs)
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", PROBE + "</body>"))
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        probe.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.DOTALL)
    assert found, proc.stderr[-2000:]
    data = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert len(data["images"]) == len(refs) == 2  # the run's curves and the eval's per-class IoU
    assert all(i["complete"] and i["w"] > 100 and i["h"] > 100 for i in data["images"]), data["images"]
    assert [u for u in data["fetched"] if not u.startswith("data:")] == []
