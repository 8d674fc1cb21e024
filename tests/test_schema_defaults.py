"""Defaults live only in the schemas: no library function parameter or dataclass field named for a
schema key carries a default of its own (issue 29). Callers pass the typed section's value instead."""

from __future__ import annotations

import ast
from pathlib import Path

import lidcvae
from lidcvae.config import config_schema

LIBRARY = Path(lidcvae.__file__).parent

# Names that mean something else at almost every place they appear, so a match says nothing: a result's
# or a run's name, a tensor of voxel weights, an upper bound, an on/off word of a sub-section, an item
# cap of one reader, one call's progress bar and thread/process pool, and the patient filter whose None
# means "every patient" (the schema's null, a filter's identity rather than a chosen value).
GENERIC_NAMES = frozenset({"name", "enabled", "kind", "mode", "weight", "max", "limit", "progress", "threads", "workers",
                           "patients"})


_BRANCHING = ("oneOf", "anyOf", "allOf")


def _is_section(schema: dict) -> bool:
    """A mapping of keys (its own or in conditional branches), not a value."""
    return schema.get("type") == "object" or any(k in schema for k in ("properties", "then", "else", *_BRANCHING))


def _schema_leaf_keys() -> dict[str, list[str]]:
    """{key name: [dotted keys]} for every leaf key with a ``default``; a name that is also a section
    elsewhere (``train`` is ``extract.split.train`` and the train section) is left out as ambiguous."""
    leaves: dict[str, list[str]] = {}
    sections: set[str] = set()

    def walk(schema: dict, path: tuple[str, ...]) -> None:
        branches = [schema.get(k) for k in ("then", "else")] + [b for k in _BRANCHING for b in schema.get(k, [])]
        for branch in [b for b in branches if isinstance(b, dict)]:  # e.g. model: keys per model name
            walk(branch, path)
        for key, sub in schema.get("properties", {}).items():
            if _is_section(sub):
                sections.add(key)
                walk(sub, path + (key,))
            elif "default" in sub:
                leaves.setdefault(key, []).append(".".join(path + (key,)))

    walk(config_schema(), ())
    return {k: v for k, v in leaves.items() if k not in sections}


def _defaults_in(tree: ast.AST) -> list[tuple[int, str, str]]:
    """(line, name, default source) of every defaulted parameter and dataclass-style field."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            positional = args.posonlyargs + args.args
            pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
            found += [(a.lineno, a.arg, ast.unparse(d)) for a, d in pairs]
        elif isinstance(node, ast.ClassDef):
            found += [(s.lineno, s.target.id, ast.unparse(s.value)) for s in node.body
                      if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name) and s.value is not None
                      and not ast.unparse(s.annotation).startswith("ClassVar")]
    return found


def test_no_library_default_repeats_a_schema_key():
    keys = {k: v for k, v in _schema_leaf_keys().items() if k not in GENERIC_NAMES}
    files = sorted(LIBRARY.rglob("*.py"))
    assert len(keys) > 50 and len(files) > 50, f"scanned only {len(keys)} schema keys and {len(files)} files"
    offenders = [
        f"{path.relative_to(LIBRARY.parent)}:{line}: {name} = {default} (the schema's {', '.join(keys[name])} holds the default)"
        for path in files for line, name, default in _defaults_in(ast.parse(path.read_text(), str(path)))
        if name in keys
    ]
    assert not offenders, "defaults outside the schemas; pass the typed section's value:\n" + "\n".join(offenders)


def test_the_scan_sees_a_defaulted_parameter_and_field():
    source = "def f(a, batch_size=8, *, seed=0):\n    pass\nclass C:\n    fill_hu: float = -860.0\n    SECTION: ClassVar[str] = 'x'\n"
    assert [(line, name) for line, name, _ in _defaults_in(ast.parse(source))] == [(1, "batch_size"), (1, "seed"), (4, "fill_hu")]
