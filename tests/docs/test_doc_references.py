"""What the contributor docs name exists: every repository path, every
``extproc.`` dotted name, every relative link (and its anchor), every
``make`` target and every ``extproc`` command in docs/architecture.md and
CONTRIBUTING.md. A rename that
leaves the guide pointing at nothing fails here."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest

from extproc.cli import build_parser
from tests.docs.test_architecture_example import EXAMPLE

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "docs" / "architecture.md", REPO / "CONTRIBUTING.md"]
# The worked example's own files: they exist only in the document.
EXAMPLE_PATHS = {
    f"extproc/capabilities/{EXAMPLE.module_name}.py",
    EXAMPLE.policy_title,
    EXAMPLE.tests_title,
}

FENCED = re.compile(r"^```.*?^```[ \t]*$", re.M | re.S)
INLINE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
PATH = re.compile(r"(?:\.venv/bin/)?(?P<path>(?:extproc|tests|envoy|policies|bench|docs|deploy)/[\w./-]*)")
DOTTED = re.compile(r"\bextproc(?:\.\w+)+")
MAKE = re.compile(r"\bmake (\w+)")


def prose(doc: Path) -> str:
    """The document without its fenced blocks (the example is checked by running it)."""
    return FENCED.sub("", doc.read_text())


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+ (.+)$", FENCED.sub("", doc.read_text()), re.M)}


def resolve(dotted: str) -> object:
    """Import the longest module prefix of ``dotted``, then walk attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            target = getattr(target, name)
        return target
    raise ModuleNotFoundError(dotted)


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_named_paths_exist(doc: Path) -> None:
    checked, missing = [], []
    for span in INLINE.findall(prose(doc)):
        for found in PATH.finditer(span):
            path = found["path"].rstrip(".")
            if "<" in span or path in EXAMPLE_PATHS:
                continue
            checked.append(path)
            if not (REPO / path).exists():
                missing.append(path)
    assert checked, f"{doc.name}: no path found (the pattern is broken)"
    assert not missing, f"{doc.name} names paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_named_modules_and_attributes_exist(doc: Path) -> None:
    example = f"extproc.capabilities.{EXAMPLE.module_name}"
    checked, missing = [], []
    for span in INLINE.findall(prose(doc)):
        for dotted in DOTTED.findall(span):
            if dotted.startswith(example):
                continue
            checked.append(dotted)
            try:
                resolve(dotted)
            except (ImportError, AttributeError) as exc:
                missing.append(f"{dotted} ({exc})")
    assert checked, f"{doc.name}: no extproc name found (the pattern is broken)"
    assert not missing, f"{doc.name} names what does not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_relative_links_resolve(doc: Path) -> None:
    links, broken = LINK.findall(prose(doc)), []
    assert links, f"{doc.name}: no link found (the pattern is broken)"
    for target in links:
        if re.match(r"[a-z]+:", target):
            continue  # an external URL
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists() or (anchor and path.suffix == ".md" and anchor not in anchors(path)):
            broken.append(target)
    assert not broken, f"{doc.name} links to what does not exist: {broken}"


def test_make_targets_exist() -> None:
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    named = {t for doc in DOCS for t in MAKE.findall(prose(doc))}
    assert named, "the docs name no make target"
    assert named <= targets, f"not in the Makefile: {sorted(named - targets)}"


def _extproc_commands(doc: Path) -> tuple[list[str], list[str]]:
    """(commands the doc's ``sh`` blocks run, commands its prose names), as argv."""
    text = doc.read_text()
    run = [
        line.split("  #")[0].strip()
        for block in re.findall(r"^```sh\n(.*?)^```", text, re.M | re.S)
        for line in block.replace("\\\n", " ").splitlines()
    ]
    named = INLINE.findall(prose(doc))

    def argv(lines: list[str]) -> list[str]:
        out = []
        for line in lines:
            found = re.match(r"(?:\.venv/bin/)?extproc (.*)", line.split(" > ")[0].split(" && ")[0].strip())
            if found:
                out.append(found[1])
        return out

    return argv(run), argv(named)


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_extproc_commands_parse_with_the_real_cli(doc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A command the doc runs parses as written; a command its prose names
    is a real subcommand with those options (its ``--help`` works)."""
    run, named = _extproc_commands(doc)
    assert run or named, f"{doc.name}: no extproc command found (the pattern is broken)"
    for command in run:
        args = build_parser().parse_args(shlex.split(command))
        assert callable(args.func), command
    for command in named:
        with pytest.raises(SystemExit) as done:
            build_parser().parse_args([*shlex.split(command), "--help"])
        assert done.value.code == 0, f"{doc.name}: `extproc {command}` is not a command"
    capsys.readouterr()  # the help texts


def test_the_layer_section_names_every_layer_member() -> None:
    """docs/architecture.md's layer map lists what ``extproc.layers`` (the
    table tests/test_imports.py enforces) puts in each layer."""
    from extproc.layers import LAYERS

    text = (REPO / "docs" / "architecture.md").read_text()
    section = text[text.index("## Layers") : text.index("\n## ", text.index("## Layers") + 1)]
    missing = [
        f"{layer.name}: {member}"
        for layer in LAYERS
        for member in layer.members
        if member not in ("extproc", "extproc.layers") and not re.search(rf"{re.escape(member)}\b(?!\.)", section)
    ]
    assert not missing, f"docs/architecture.md's layer section misses {missing}"
