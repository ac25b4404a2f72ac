"""The scenario corpus as data: one YAML file per service (`matrix.yaml`, `letta.yaml`), shipped with the
package, checked against `schema.json` and loaded into the `Step`s the runner takes.

A file names its `service`, a list of `steps` run in order, and optional `templates`: a step that says
`uses: login` starts from the template `login` and overrides what it gives itself; its `body`, `params`
and `save` are merged key by key into the template's. Two YAML tags build values too tedious to write
out: `!repeat [x, 300]` (a string of 300 x) and `!nested 300` (an empty list nested 300 deep). A `raw`
body is sent as its UTF-8 bytes. Any unknown key, wrong type, unknown template or duplicate is refused
with a `CorpusError` naming the file and the step."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, ValidationError

from contracts.harness.scenario import Step

SERVICES = ("matrix", "letta")
_MERGED = ("body", "params", "save")  # the mappings a step merges into its template's
_REQUIRED = ("method", "path", "expect")  # what a step must have, from its template or itself


class CorpusError(ValueError):
    """A corpus file that cannot be loaded; the message names the file and every bad step."""


class _Loader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice (PyYAML would keep the last silently) and knows the corpus
    tags."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key in seen:
                raise _tag_error(f"duplicate key {key!r}", key_node)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _tag_error(problem: str, node: yaml.Node) -> yaml.constructor.ConstructorError:
    return yaml.constructor.ConstructorError(None, None, problem, node.start_mark)


def _repeat(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    """`!repeat [text, count]`: `text` `count` times."""
    value = loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode) else None
    if value is None or len(value) != 2 or not isinstance(value[0], str) or not isinstance(value[1], int):
        raise _tag_error("!repeat takes [text, count]", node)
    return value[0] * value[1]


def _nested(loader: yaml.SafeLoader, node: yaml.Node) -> list[Any]:
    """`!nested depth`: an empty list inside lists, `depth` levels in all (`!nested 2` is `[[]]`)."""
    text = loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else ""
    depth = int(text) if text.isdigit() else 0
    if depth < 1:
        raise _tag_error("!nested takes a depth of 1 or more", node)
    nested: list[Any] = []
    for _ in range(depth - 1):
        nested = [nested]
    return nested


_Loader.add_constructor("!repeat", _repeat)
_Loader.add_constructor("!nested", _nested)


@cache
def _validator() -> Draft202012Validator:
    schema = json.loads((files(__name__) / "schema.json").read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


def _where(document: Any, path: list[str | int]) -> str:
    """`step 3 'name'`, `template 'login'` or `the file`, and the place inside it."""
    inner = "/".join(str(part) for part in path[2:])
    if len(path) >= 2 and path[0] == "steps" and isinstance(path[1], int):
        step = document["steps"][path[1]]
        name = step.get("name") if isinstance(step, dict) else None
        what = f"step {path[1] + 1}" + (f" {name!r}" if isinstance(name, str) else "")
    elif len(path) >= 2 and path[0] == "templates":
        what = f"template {path[1]!r}"
    else:
        what, inner = "the file", "/".join(str(part) for part in path)
    return f"{what} at {inner}" if inner else what


def _schema_problems(document: Any) -> Iterator[str]:
    errors = sorted(_validator().iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path])
    for error in errors:
        yield f"{_where(document, list(error.absolute_path))}: {_message(error)}"


def _message(error: ValidationError) -> str:
    if error.validator == "not" and error.absolute_path and error.absolute_path[-1] == "body":
        return "a body of null; leave `body` out to send none"
    return error.message


def _expand(step: Mapping[str, Any], templates: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    template = templates[step["uses"]] if "uses" in step else {}
    merged = {**template, **step}
    for key in _MERGED:
        if isinstance(template.get(key), dict) and isinstance(step.get(key), dict):
            merged[key] = {**template[key], **step[key]}
    merged.pop("uses", None)
    return merged


def _step_problems(step: Mapping[str, Any], templates: Mapping[str, Any]) -> list[str]:
    if "uses" in step and step["uses"] not in templates:
        return [f"uses the unknown template {step['uses']!r} (known: {', '.join(templates) or 'none'})"]
    merged = _expand(step, templates)
    # Only a step with a template can lack these here: the schema asks them of one without.
    problems = [f"has no {key!r}, nor has its template" for key in _REQUIRED if key not in merged]
    if "body" in merged and "raw" in merged:
        problems.append("has both a body and a raw body; a step sends one")
    try:
        json.dumps(merged.get("body"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        problems.append(f"has a body that is not JSON ({exc})")
    return problems


def _corpus_problems(document: dict[str, Any]) -> Iterator[str]:
    """What the schema cannot say: templates known and complete steps, JSON bodies, unique names."""
    templates = document.get("templates", {})
    names: set[str] = set()
    for number, step in enumerate(document["steps"], 1):
        where = f"step {number} {step['name']!r}"
        for problem in _step_problems(step, templates):
            yield f"{where}: {problem}"
        if step["name"] in names:
            yield f"{where}: the name is taken by an earlier step"
        names.add(step["name"])


def parse_corpus(text: str, source: str) -> tuple[Step, ...]:
    """The steps of one corpus file's `text`; `source` names it in errors."""
    stream = io.StringIO(text)
    stream.name = source  # what PyYAML's messages call it
    try:
        document = yaml.load(stream, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise CorpusError(f"{source}: not YAML the corpus can read: {exc}") from exc
    problems = list(_schema_problems(document)) or list(_corpus_problems(document))
    if problems:
        raise CorpusError("\n".join(f"{source}: {problem}" for problem in problems))
    templates = document.get("templates", {})
    return tuple(_step(document["service"], _expand(step, templates)) for step in document["steps"])


def _step(service: str, fields: Mapping[str, Any]) -> Step:
    raw = fields.get("raw")
    return Step(
        name=fields["name"],
        service=service,
        method=fields["method"],
        path=fields["path"],
        body=fields.get("body"),
        raw=None if raw is None else raw.encode(),
        token=fields.get("token"),
        headers=fields.get("headers", {}),
        params=fields.get("params", {}),
        save=fields.get("save", {}),
        expect=fields["expect"],
        follow_redirects=fields.get("follow_redirects", True),
        needs=tuple(fields.get("needs", ())),
        compare=tuple(fields.get("compare", ())),
    )


def read_corpus(path: Traversable | Path) -> tuple[Step, ...]:
    return parse_corpus(path.read_text(encoding="utf-8"), path.name)


@cache
def load_corpus(service: str) -> tuple[Step, ...]:
    """The corpus of `service` shipped with the package."""
    if service not in SERVICES:
        raise ValueError(f"no corpus for {service!r}; there is one for {', '.join(SERVICES)}")
    steps = read_corpus(files(__name__) / f"{service}.yaml")
    if steps[0].service != service:
        raise CorpusError(f"{service}.yaml: the corpus of {steps[0].service!r}, not of {service!r}")
    return steps
