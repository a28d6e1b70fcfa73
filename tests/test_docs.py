"""The documentation's Python examples run: every ```python block of README.md and docs/**/*.md is a test.

Each block runs on its own (a fresh namespace, the working directory at the repository root), as a user would
paste it into a script; its test id is the file and the line of its opening fence, and a traceback points at
the Markdown line that failed. A block that cannot run here (it needs a training run, a cache built for another
model, or it is a sketch with ``...`` in it) carries a marker on the line just before its fence, with the reason:

    <!-- docs-test: skip: needs a run saved by a baseline with --save-model -->

The marker is an HTML comment, so GitHub and the mkdocs site show neither it nor anything odd about the block.
Markers are few on purpose (MAX_SKIPPED), and the extractor must find at least MIN_BLOCKS blocks, so that a
broken extractor cannot pass by running nothing.
"""

from __future__ import annotations

import re
import textwrap
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PYTHON_LANGUAGES = {"python", "py", "python3"}

# Measured (2026-12-02): 14 blocks, 4 of them marked skip (the README rewrite dropped one, getting_started gained one)
# (three quickstart blocks, one per environment). Raise MIN_BLOCKS when you add examples; raise MAX_SKIPPED only
# for a block that truly cannot run in the test suite.
MIN_BLOCKS = 14
MAX_SKIPPED = 4

OPENING_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>.*)$")
SKIP_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*skip\s*:?\s*(?P<reason>.*?)\s*-->\s*$")
ANY_MARKER = re.compile(r"<!--\s*docs-test:")


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its language, its code and, if marked, why it is skipped."""

    path: str  # relative to the repository root
    line: int  # 1-based line of the opening fence
    language: str
    source: str
    skip_reason: str | None

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"

    def compiled(self):
        # padded with blank lines so that a traceback names the Markdown file and its line
        return compile("\n" * self.line + self.source, self.path, "exec")


def extract_blocks(text: str, path: str) -> list[Block]:
    """Every fenced code block of a Markdown text (CommonMark fences: ``` or ~~~, indented at most 3 spaces)."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = OPENING_FENCE.match(lines[i])
        if opening is None or (opening["fence"][0] == "`" and "`" in opening["info"]):
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        body, j = [], i + 1
        while j < len(lines) and not closing.match(lines[j]):
            body.append(re.sub(rf"^ {{0,{indent}}}", "", lines[j]))
            j += 1
        previous = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        marker = SKIP_MARKER.match(previous)
        info = opening["info"].split()
        blocks.append(
            Block(
                path=path,
                line=i + 1,
                language=info[0].lower() if info else "",
                source="\n".join(body) + "\n",
                skip_reason=None if marker is None else marker["reason"],
            )
        )
        i = j + 1
    return blocks


def python_blocks() -> list[Block]:
    blocks = []
    for file in DOC_FILES:
        relative = file.relative_to(ROOT).as_posix()
        blocks += [
            b for b in extract_blocks(file.read_text(encoding="utf-8"), relative) if b.language in PYTHON_LANGUAGES
        ]
    return blocks


def run_block(block: Block) -> None:
    """Run a block as a script of its own would run."""
    exec(block.compiled(), {"__name__": "__main__", "__file__": str(ROOT / block.path)})


BLOCKS = python_blocks()


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_markdown_python_block(block: Block, monkeypatch: pytest.MonkeyPatch) -> None:
    if block.skip_reason is not None:
        pytest.skip(f"marked in the Markdown: {block.skip_reason}")
    monkeypatch.chdir(ROOT)
    run_block(block)


def test_the_extractor_finds_the_documentation_blocks() -> None:
    files = {block.path for block in BLOCKS}
    assert len(BLOCKS) >= MIN_BLOCKS, f"found {len(BLOCKS)} python blocks, expected at least {MIN_BLOCKS}"
    assert {"README.md", "docs/getting_started.md"} <= files, files
    skipped = [f"{block.id} ({block.skip_reason})" for block in BLOCKS if block.skip_reason is not None]
    assert len(skipped) <= MAX_SKIPPED, f"too many blocks marked skip: {skipped}"
    assert all(block.skip_reason for block in BLOCKS if block.skip_reason is not None), "a skip marker needs a reason"
    assert all(block.source.strip() for block in BLOCKS), "an empty python block"


def test_every_skip_marker_sits_just_before_a_python_block() -> None:
    for file in DOC_FILES:
        relative = file.relative_to(ROOT).as_posix()
        text = file.read_text(encoding="utf-8")
        markers = sum(1 for line in text.splitlines() if ANY_MARKER.search(line))
        marked = [b for b in extract_blocks(text, relative) if b.skip_reason is not None]
        assert all(b.language in PYTHON_LANGUAGES for b in marked), (
            f"{relative}: a skip marker before a non-python block"
        )
        assert markers == len(marked), f"{relative}: {markers} docs-test markers, {len(marked)} of them before a block"


SAMPLE = """\
# Title

```python
x = 1
```

~~~py
y = 2
~~~

- a list item:

  ```python
  z = 3
  ```

````markdown
```python
not a block of its own
```
````

Inline ```python``` is not a fence.

<!-- docs-test: skip: needs a GPU -->

```python
import a_module_that_does_not_exist
```

```bash
echo not python
```
"""


def test_the_extractor_on_a_sample() -> None:
    blocks = extract_blocks(SAMPLE, "sample.md")
    assert [(b.line, b.language) for b in blocks] == [
        (3, "python"),
        (7, "py"),
        (13, "python"),
        (17, "markdown"),
        (27, "python"),
        (31, "bash"),
    ]
    assert [b.source for b in blocks[:3]] == ["x = 1\n", "y = 2\n", "z = 3\n"]
    assert "not a block of its own" in blocks[3].source
    assert [b.skip_reason for b in blocks] == [None, None, None, None, "needs a GPU", None]


def test_a_failing_block_fails_and_names_its_markdown_line() -> None:
    (block,) = extract_blocks("Text.\n\n```python\nvalue = 1\nassert value == 2, 'the docs are wrong'\n```\n", "x.md")
    with pytest.raises(AssertionError, match="the docs are wrong") as excinfo:
        run_block(block)
    frame = traceback.extract_tb(excinfo.value.__traceback__)[-1]
    assert (frame.filename, frame.lineno) == ("x.md", 5)


def test_a_block_in_a_list_item_keeps_its_relative_indentation() -> None:
    text = "- item:\n\n  ```python\n  if True:\n      pass\n  ```\n"
    (block,) = extract_blocks(text, "x.md")
    assert block.source == textwrap.dedent("if True:\n    pass\n")
    run_block(block)
