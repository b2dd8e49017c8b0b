"""Chapter cells a student can follow (issue 22): no code cell over 40 lines.

A cell's length is its lines without trailing blank ones, in the chapter's .py (percent format).
A cell that draws a figure keeps the lesson short by calling panel functions defined in cells
marked "# Plotting:" (or in vaelib.figures).
"""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.py"))
MAX_LINES = 40

def code_cells(path: Path) -> list[tuple[int, list[str]]]:
    """(line of the `# %%` marker, body lines) for each code cell of a percent-format file."""
    lines = path.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("# %%")] + [len(lines)]
    cells = []
    for a, b in zip(starts, starts[1:]):
        if "[markdown]" in lines[a]:
            continue
        body = lines[a + 1:b]
        while body and not body[-1].strip():
            body.pop()
        cells.append((a + 1, body))
    return cells


def test_code_cells_are_counted_from_marker_to_marker():
    cells = code_cells(ROOT / "chapters" / "10_iwae_training.py")
    assert cells and all(body == [] or body[-1].strip() for _, body in cells)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_no_code_cell_is_over_40_lines(chapter):
    long = [f"line {n}: {len(body)} lines" for n, body in code_cells(chapter)
            if len(body) > MAX_LINES]
    assert not long, (f"{chapter.name}: code cells over {MAX_LINES} lines (split "
                                  f"them, or move plotting into vaelib.figures): {long}")


def test_the_iwae_step_of_chapter_10_stands_alone_in_its_cell():
    cells = code_cells(ROOT / "chapters" / "10_iwae_training.py")
    step = [body for _, body in cells if any(line.startswith("def iwae_step(") for line in body)]
    assert len(step) == 1 and len(step[0]) <= 8


def test_chapters_7_and_10_share_their_monte_carlo_helpers_from_vaelib():
    for name in ("07_reparameterization.py", "10_iwae_training.py"):
        text = (ROOT / "chapters" / name).read_text()
        assert "from vaelib.montecarlo import assert_unbiased, generator" in text, name
        assert "def generator(" not in text and "def assert_unbiased(" not in text, name
