"""Every example of the documentation runs, and the built site has no broken link.

The convention (docs/index.md, "Examples are tested"):

- every fenced ``python`` block of ``README.md`` and ``docs/**/*.md`` is executed: a
  page's blocks in order, in one namespace, in one fresh Python subprocess (like a
  notebook), with the repository root as cwd and on ``sys.path`` (``examples.*``
  imports work), and the environment pointing sqsq and boto3 at the embedded moto
  endpoint (reset before each page);
- a block directly preceded by ``<!-- docs-test: no-run (reason) -->`` is compiled and
  its top-level imports resolved only (it needs an AWS account, a deployed stack, a
  browser, or starts a long-running process);
- ``<!-- docs-test: hidden`` followed by a python block and ``-->`` is setup the reader
  does not see (it does only what the prose tells the reader to do), run in sequence;
- ``json`` / ``yaml`` / ``toml`` blocks are parsed; ``bash``, ``console``, ``sh`` and
  untyped blocks are not run;
- a failing block fails its page's item with the page path, the block's line and the
  traceback.

``test_site_links`` builds the site (``mkdocs build --strict``) into a temporary
directory and checks that every internal ``href`` / ``src`` resolves to a file, and
its ``#anchor`` to an ``id`` in that file.
"""

from __future__ import annotations

import html.parser
import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

NO_RUN = re.compile(r"^<!-- docs-test: no-run \((.+)\) -->$")
HIDDEN = "<!-- docs-test: hidden"
FENCE = re.compile(r"^(\s*)(```+)\s*([\w+-]*)")


@dataclass
class Block:
    """One fenced block of a page: its language, first code line (1-based) and code."""

    language: str
    line: int
    code: str
    mode: str = "run"  # run | hidden | no-run


def blocks(text: str) -> list[Block]:
    """The fenced blocks of a markdown text, with their mode."""
    lines = text.splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, language = match.groups()
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        body = [
            line[len(indent) :] if line.startswith(indent) else line for line in lines[i + 1 : end]
        ]
        before = lines[i - 1].strip() if i else ""
        mode = "run"
        if NO_RUN.match(before):
            mode = "no-run"
        elif before == HIDDEN:
            mode = "hidden"
        found.append(Block(language.lower(), i + 2, textwrap.dedent("\n".join(body)) + "\n", mode))
        i = end + 1
    return found


#: Runs in the page's subprocess: the blocks (JSON on stdin) in one namespace.
RUNNER = r"""
import ast, json, sys, traceback
page, blocks = json.load(sys.stdin)
namespace = {"__name__": "__main__"}
for block in blocks:
    source = "\n" * (block["line"] - 1) + block["code"]
    try:
        tree = compile(source, page, "exec", ast.PyCF_ONLY_AST)
        if block["mode"] == "no-run":
            tree.body = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        exec(compile(tree, page, "exec"), namespace)
    except BaseException:
        print(f"{page}:{block['line']}: the {block['mode']} python block failed", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
"""


def check_page(path: Path, environ: dict[str, str], timeout: float = 150) -> None:
    """Run a page's python blocks and parse its data blocks; fail naming page and line."""
    page = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    python = []
    for block in blocks(path.read_text(encoding="utf-8")):
        where = f"{page}:{block.line}"
        try:
            if block.language == "json":
                json.loads(block.code)
            elif block.language in ("yaml", "yml"):
                yaml.load(block.code, Loader=_CloudFormationLoader)
            elif block.language == "toml":
                tomllib.loads(block.code)
        except Exception as exc:
            pytest.fail(f"{where}: the {block.language} block does not parse: {exc}")
        if block.language in ("python", "py"):
            python.append({"line": block.line, "code": block.code, "mode": block.mode})
    if not python:
        return
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps([page, python]),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environ,
        timeout=timeout,
    )
    if proc.returncode != 0:
        pytest.fail(f"{page}: a python block failed\n{proc.stderr[-6000:]}", pytrace=False)


class _CloudFormationLoader(yaml.SafeLoader):
    """Safe YAML that accepts CloudFormation's short tags (``!Ref``, ``!Sub``, …)."""


_CloudFormationLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


@pytest.fixture
def page_environ(local_aws: Any, tmp_path: Path) -> dict[str, str]:
    """The environment of a page's subprocess: the endpoint (reset), the repository."""
    environ = {**os.environ, **local_aws.environ()}
    environ["AWS_DEFAULT_REGION"] = "us-east-1"
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    environ.pop("SQSQ_QUEUE_PREFIX", None)
    environ.pop("SQSQ_TABLE_NAME", None)
    return environ


@pytest.mark.timeout(180)
@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_examples(path: Path, page_environ: dict[str, str]) -> None:
    check_page(path, page_environ)


def test_a_failing_block_names_its_page_and_line(
    tmp_path: Path, page_environ: dict[str, str]
) -> None:
    page = tmp_path / "broken.md"
    page.write_text(
        "# Broken\n\n```python\nx = 1\n```\n\ntext\n\n```python\nassert x == 2, 'x is 1'\n```\n"
        "\n<!-- docs-test: no-run (never runs) -->\n```python\nraise SystemExit(3)\n```\n"
    )
    with pytest.raises(pytest.fail.Exception) as failed:
        check_page(page, page_environ)
    message = str(failed.value)
    assert f"{page}:10: the run python block failed" in message
    assert "AssertionError: x is 1" in message
    assert 'File "' + str(page) + '", line 10' in message


def test_no_run_blocks_are_compiled_and_their_imports_resolved(
    tmp_path: Path, page_environ: dict[str, str]
) -> None:
    page = tmp_path / "imports.md"
    page.write_text(
        "<!-- docs-test: no-run (a deployed stack) -->\n```python\nimport sqsq.no_such_module\n```\n"
    )
    with pytest.raises(pytest.fail.Exception, match="ModuleNotFoundError"):
        check_page(page, page_environ)
    page.write_text("<!-- docs-test: no-run (a browser) -->\n```python\ndef (:\n```\n")
    with pytest.raises(pytest.fail.Exception, match="SyntaxError"):
        check_page(page, page_environ)


# --- the built site's internal links ------------------------------------------------


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)
            if (
                name in ("href", "src")
                and value
                and not (tag == "link" and "rel" not in dict(attrs))
            ):
                self.links.append(value)


def broken_links(site: Path) -> list[str]:
    """Internal ``href``/``src`` of the built site whose file or anchor does not exist."""
    parsed: dict[Path, _Links] = {}

    def parse(page: Path) -> _Links:
        if page not in parsed:
            parser = _Links()
            parser.feed(page.read_text(encoding="utf-8", errors="replace"))
            parsed[page] = parser
        return parsed[page]

    broken = []
    # 404.html is served at any depth: its links are absolute to the site's root
    for page in sorted(p for p in site.rglob("*.html") if p.name != "404.html"):
        for link in parse(page).links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "javascript:", "data:")):
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            where = f"{page.relative_to(site)}: {link}"
            if not target.is_relative_to(site.resolve()) and not target.is_relative_to(site):
                broken.append(f"{where} (outside the site)")
            elif not target.exists():
                broken.append(f"{where} (no such file)")
            elif (
                parts.fragment
                and target.suffix == ".html"
                and unquote(parts.fragment) not in parse(target).ids
            ):
                broken.append(f"{where} (no such anchor)")
    return broken


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=170,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    return out


@pytest.mark.timeout(180)
def test_site_links(site: Path) -> None:
    assert (site / "tutorial.html").exists()
    assert broken_links(site) == []


def test_the_link_checker_finds_a_broken_link(tmp_path: Path) -> None:
    (tmp_path / "a.html").write_text(
        '<a href="b.html#here">b</a><a href="c.html">c</a><p id="x"></p>'
    )
    (tmp_path / "b.html").write_text('<h1 id="there"></h1><a href="a.html#x">a</a>')
    assert broken_links(tmp_path) == [
        "a.html: b.html#here (no such anchor)",
        "a.html: c.html (no such file)",
    ]
