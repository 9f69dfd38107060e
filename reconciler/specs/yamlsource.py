"""YAML text to documents that remember where each node came from.

PyYAML's composed node tree keeps line marks that the constructed Python data loses; we keep
both, so a pydantic error location like ('spec', 'metadata', 'team') maps back to a line.
Lines are looked up only on the way to a problem: a valid document's nodes are dropped, and a
problem found later (`locate_in`) parses its file's text again. `work` counts files parsed
and look-ups, so a test can tell that a load parsed or placed nothing.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import stat
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from reconciler.common.errors import Problem, ReadProblem

Loc = tuple[int | str, ...]
Parsed = tuple[yaml.Node, object]

_BOOL_TAG = "tag:yaml.org,2002:bool"
_YAML12_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


def _yaml12_resolvers(base: type[yaml.resolver.BaseResolver]) -> dict[Any, Any]:
    """YAML 1.2 booleans: only true/false. PyYAML follows YAML 1.1, where `on`, `yes`, `no` and
    `off` are booleans too, so `retry: {on: [...]}` had a key True, unlike the JSON Schema says."""
    table = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
        for first, resolvers in base.yaml_implicit_resolvers.items()
    }
    for first in "tTfF":
        table.setdefault(first, []).insert(0, (_BOOL_TAG, _YAML12_BOOL))
    return table


class SafeLoader12(yaml.SafeLoader):
    """The pure-Python safe loader with YAML 1.2 booleans."""


SafeLoader12.yaml_implicit_resolvers = _yaml12_resolvers(yaml.SafeLoader)
_FAST_LOADER: Any = None
if hasattr(yaml, "CSafeLoader"):

    class CSafeLoader12(yaml.CSafeLoader):
        """libyaml's parser; the resolver, and so the booleans, are Python's."""

    CSafeLoader12.yaml_implicit_resolvers = _yaml12_resolvers(yaml.CSafeLoader)
    _FAST_LOADER = CSafeLoader12


def load_yaml(text: str) -> Any:
    """One document, as every file the tool reads is read: YAML 1.2 booleans."""
    return yaml.load(text, Loader=_FAST_LOADER or SafeLoader12)


# "parsed": files parsed; "located": nodes placed (a line and a field name looked up)
work: Counter[str] = Counter()


def parse_yaml(path: Path, shown: str) -> tuple[list[Parsed], list[Problem]]:
    """Each document's root node and data; a syntax error ends the file, keeping what came before."""
    parsed, problems, _ = parse_yaml_text(path, shown)
    return parsed, problems


def parse_yaml_text(path: Path, shown: str) -> tuple[list[Parsed], list[Problem], str]:
    """`parse_yaml`, and the text it parsed ('' when the file could not be read as text)."""
    work["parsed"] += 1
    try:
        text = read_regular_file(path).decode("utf-8")
    except OSError as error:
        return [], [ReadProblem(shown, None, "", f"cannot read: {error.strerror or error}")], ""
    except UnicodeDecodeError as error:
        line = error.object[: error.start].count(b"\n") + 1
        return [], [Problem(shown, line, "", "not UTF-8 text; save the file as UTF-8")], ""
    fast = _parse_with_libyaml(text, shown)
    if fast is not None:
        return fast, [], text
    documents, problems = _parse_with_python(text, shown)
    return documents, problems, text


def _parse_with_python(text: str, shown: str) -> tuple[list[Parsed], list[Problem]]:
    """The pure-Python loader: slower, and the one whose errors the messages are worded from."""
    try:
        loader = SafeLoader12(text)  # checks every character up front
    except yaml.reader.ReaderError as error:
        return [], [_control_character(error, shown, text)]
    documents: list[Parsed] = []
    problems: list[Problem] = []
    node: yaml.Node | None = None
    try:
        while loader.check_node():
            document = loader.get_node()
            if document is None:
                break
            node = document
            problems += duplicate_keys(document, shown)
            documents.append((document, loader.construct_document(document)))
    except yaml.MarkedYAMLError as error:
        problems.append(_syntax_problem(error, shown, len(text)))
    except yaml.reader.ReaderError as error:
        problems.append(_control_character(error, shown, text))
    except RecursionError:
        where = loader.get_mark().line + 1  # how far the reader got into the nesting
        problems.append(Problem(shown, where, "", "invalid YAML: nested too deeply"))
    except (ValueError, OverflowError) as error:
        # PyYAML's constructors raise these for values like the date 2024-13-45
        problems.append(Problem(shown, _line(node), "", f"invalid YAML value: {error}"))
    finally:
        loader.dispose()
    return documents, problems


def read_regular_file(path: Path) -> bytes:
    """The bytes of a regular file; OSError for anything else. A FIFO named like a spec would
    block a plain read forever, and a device never end."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(errno.EINVAL, "not a regular file")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # swapped since: no wait
    with open(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return file.read()


def _parse_with_libyaml(text: str, shown: str) -> list[Parsed] | None:
    """The documents, when libyaml (about ten times faster) parses the file cleanly; else None,
    and the pure-Python loader above parses it again to word the problems, exactly as always."""
    if _FAST_LOADER is None or yaml.reader.Reader.NON_PRINTABLE.search(text):
        return None
    loader = _FAST_LOADER(text)
    documents: list[Parsed] = []
    try:
        while loader.check_node():
            document = loader.get_node()
            if document is None:
                break
            if duplicate_keys(document, shown):
                return None
            documents.append((document, loader.construct_document(document)))
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError):
        return None
    finally:
        loader.dispose()
    return documents


def _control_character(error: yaml.reader.ReaderError, shown: str, text: str) -> Problem:
    line = text[: error.position].count("\n") + 1
    return Problem(shown, line, "", f"invalid YAML: control character #x{error.character:04x} is not allowed")


def _syntax_problem(error: yaml.MarkedYAMLError, shown: str, end: int) -> Problem:
    """PyYAML's problem, at the line where it shows; "at the end of the file" points at its start."""
    problem, context = error.problem_mark, error.context_mark
    mark = context if problem is None or (context and problem.index >= end) else problem
    message = f"invalid YAML: {error.problem or error.context}"
    if error.context and context:
        message += f" ({error.context} that starts on line {context.line + 1})"
    return Problem(shown, mark.line + 1 if mark else None, "", message)


def duplicate_keys(root: yaml.Node, shown: str) -> list[Problem]:
    """PyYAML keeps the last of two equal keys silently; a GitOps spec must not."""
    problems: list[Problem] = []
    seen_nodes: set[int] = set()
    pending = [root]
    while pending:  # iterative: a deep document must not exhaust the stack
        node = pending.pop()
        if id(node) in seen_nodes:  # aliases share nodes, and may even form cycles
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first_line: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                    if key.value in first_line:
                        message = f"duplicate key {key.value!r} (first on line {first_line[key.value]})"
                        problems.append(Problem(shown, _line(key), "", message))
                    first_line.setdefault(key.value, _line(key) or 0)
                pending += [key, value]
        elif isinstance(node, yaml.SequenceNode):
            pending += node.value
    return sorted(problems, key=lambda problem: problem.line or 0)


def locate_in(text: str, index: int, loc: Loc) -> tuple[int, str] | None:
    """`locate` in document number `index` of `text`, parsed again; None if it is not there."""
    root = _document_node(text, index)
    return locate(root, loc) if root is not None else None


@functools.lru_cache(maxsize=16)  # one file's problems are usually reported together
def _document_node(text: str, index: int) -> yaml.Node | None:
    """The root node of document number `index`, as `parse_yaml` numbered them (parsing stops
    at a syntax error further on, as it did there)."""
    try:
        loader = SafeLoader12(text)
    except yaml.reader.ReaderError:
        return None
    node: yaml.Node | None = None
    try:
        for _ in range(index + 1):
            node = loader.get_node() if loader.check_node() else None
            if node is None:
                return None
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError):
        return None
    finally:
        loader.dispose()
    return node


def locate(root: yaml.Node, loc: Loc) -> tuple[int, str]:
    """The line and dotted field name of the node at `loc` (keys as written in the file).

    A mapping entry's line is its key's; a missing key's is that of the mapping holding it.
    """
    work["located"] += 1
    line, label = _line(root) or 1, ""
    node: yaml.Node | None = root
    for part in loc:
        if part == "[key]":  # pydantic's marker for "the key itself", after the key
            break
        child = _child(node, part) if node is not None else None
        if child is None:
            node, label = None, _join(label, part)
            continue
        key, node = child
        line = _line(key) or line
        label = _join(label, part if key is node else key.value)
    return line, label


def _join(label: str, part: int | str) -> str:
    if isinstance(part, int):
        return f"{label}[{part}]"
    if not part.isprintable():  # a key holding a line break must not break the one-line message
        part = repr(part)
    return f"{label}.{part}" if label else part


def _child(node: yaml.Node, part: int | str) -> tuple[yaml.Node, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        # the last equal key wins, as in the constructed data (merge keys come first)
        keys = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)]
        matches = [(k, v) for k, v in keys if k.value == part or _constructed(k) == part]
        return matches[-1] if matches else None
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part], node.value[part]
    return None


def _constructed(key: yaml.ScalarNode) -> object:
    """What a plain key like `007` or `true` became; only asked on the way to an error."""
    if key.style:  # quoted: it stayed a string, which `k.value == part` already compared
        return key.value
    try:
        return load_yaml(key.value)
    except yaml.YAMLError:
        return key.value


def _line(node: yaml.Node | None) -> int | None:
    return node.start_mark.line + 1 if node is not None else None
