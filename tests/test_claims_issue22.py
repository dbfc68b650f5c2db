"""Issue 22's corrections of the claim table: the withdrawn probe-correlation row, power, the matched-accuracy
gap, where each study trained, and the injective-bottleneck study's pre-registered rule."""

import re
from pathlib import Path

from manifold_lab.reproduction import claims as C

REPO = Path(__file__).resolve().parents[1]


def test_the_probe_correlation_row_is_withdrawn_in_the_open_with_a_link_to_its_addendum(tmp_path):
    row = C.row_claim(C.ROWS["probe_correlation"], tmp_path)
    assert row.verdict == "withdrawn: the measure rewards dead branches"
    assert "out = x + f(x)" in row.ours and "the rule gave" in row.ours  # the rule's own verdict stays visible
    link = re.search(r"\]\(\.\./(experiments/probe_penalty_correlation\.md)#([a-z-]+)\)", row.ours)
    assert link, row.ours
    # the anchor is a heading of the pre-registration (GitHub's slug of "## Addendum: withdrawn")
    headings = [re.sub(r"[^a-z0-9 -]", "", h[3:].lower()).replace(" ", "-")
                for h in (REPO / link.group(1)).read_text().splitlines() if h.startswith("## ")]
    assert link.group(2) in headings
    committed = (REPO / "results" / "README.md").read_text()
    assert "**withdrawn: the measure rewards dead branches**" in committed
