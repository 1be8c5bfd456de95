"""BREEDS superclasses (Santurkar et al., 2021) built from the three BREEDS hierarchy files.

The algorithm is that of MadryLab/robustness `robustness/tools/breeds_helpers.py` (ClassHierarchy,
BreedsDatasetGenerator.get_superclasses / split_superclass with split="rand", make_living17 /
make_entity30), cut down to what Living-17 and Entity-30 need, so that the same files give the same
superclasses and the same source/target subclass halves as the published data sets.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import AutoFTError, MissingFileError

HIERARCHY_FILES = ("dataset_class_info.json", "class_hierarchy.txt", "node_names.txt")
ROOT_WNID = "n00001740"  # "entity": ClassHierarchy's default root_wnid
SPLIT_SEED = 2  # make_living17 / make_entity30 call get_superclasses(..., random_seed=2)
FORMATS = {"dataset_class_info.json": "a JSON list of [index, wnid, name] rows, one per ImageNet class",
           "class_hierarchy.txt": "lines of two WordNet IDs, 'parent child'",
           "node_names.txt": "lines of 'wnid<TAB>name'"}
WHERE_TO_GET = ("Copy dataset_class_info.json, class_hierarchy.txt and node_names.txt from the "
                "imagenet_class_hierarchy/modified folder of https://github.com/MadryLab/BREEDS-Benchmarks "
                "and point AUTOFT_BREEDS_INFO_DIR at that folder.")


@dataclass(frozen=True)
class BreedsSpec:
    """Which superclasses form a BREEDS data set: depth below the root, optional ancestor, subclasses each."""

    level: int
    ancestor: str | None
    n_subclasses: int  # per superclass, split into equal source and target halves

    def __post_init__(self) -> None:
        if self.n_subclasses < 2 or self.n_subclasses % 2:
            raise ValueError(f"n_subclasses must be even and >= 2, got {self.n_subclasses}")


LIVING17 = BreedsSpec(level=5, ancestor="n00004258", n_subclasses=4)  # n00004258: "living thing"
ENTITY30 = BreedsSpec(level=4, ancestor=None, n_subclasses=8)


@dataclass(frozen=True)
class Superclasses:
    """Superclass i (label i): its WordNet ID, name, and disjoint source / target subclass WordNet IDs."""

    wnids: tuple[str, ...]
    names: tuple[str, ...]
    source: tuple[tuple[str, ...], ...]
    target: tuple[tuple[str, ...], ...]

    def __len__(self) -> int:
        return len(self.wnids)


def missing_files(info_dir: Path | None) -> list[MissingFileError]:
    """One error per hierarchy file that is not on disk (one for the folder when it is not configured)."""
    if info_dir is None:
        return [MissingFileError("BREEDS hierarchy folder", "AUTOFT_BREEDS_INFO_DIR (not set)", WHERE_TO_GET)]
    paths = [Path(info_dir) / name for name in HIERARCHY_FILES]
    return [MissingFileError("BREEDS hierarchy file", p, WHERE_TO_GET) for p in paths if not p.is_file()]


def _malformed(path: Path, problem: str) -> AutoFTError:
    """The one-line error for a hierarchy file that is there but not in its format."""
    return AutoFTError(f"BREEDS hierarchy file {path} is malformed: {problem}; it should hold {FORMATS[path.name]}. "
                       f"{WHERE_TO_GET}")


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise _malformed(path, f"it cannot be read as text ({exc})") from None


def _lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of each non-blank line."""
    return [(n, line) for n, line in enumerate(_text(path).splitlines(), start=1) if line.strip()]


def _class_wnids(path: Path) -> frozenset[str]:
    """The ImageNet classes' WordNet IDs from dataset_class_info.json."""
    try:
        rows = json.loads(_text(path))
    except json.JSONDecodeError as exc:
        raise _malformed(path, f"it is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(rows, list) or not rows or not all(
            isinstance(row, list) and len(row) == 3 and isinstance(row[1], str) for row in rows):
        raise _malformed(path, "its rows are not [index, wnid, name] lists")
    return frozenset(row[1] for row in rows)


def _edges(path: Path) -> list[list[str]]:
    """The (parent, child) pairs of class_hierarchy.txt."""
    edges = []
    for number, line in _lines(path):
        if len(line.split()) != 2:
            raise _malformed(path, f"line {number} holds {len(line.split())} fields, not 2")
        edges.append(line.split())
    return edges


def _ancestry(edges: list[list[str]], leaves: frozenset[str]) -> dict[str, set[str]]:
    """Children of each node, keeping only nodes that are ImageNet classes or have one below them."""
    parents: dict[str, set[str]] = {}
    for parent, child in edges:
        parents.setdefault(child, set()).add(parent)
    children: dict[str, set[str]] = {}
    seen: set[str] = set()
    todo = [leaf for leaf in leaves if leaf in parents]
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        for parent in parents.get(node, ()):
            children.setdefault(parent, set()).add(node)
            todo.append(parent)
    return children


def _longest_depths(children: dict[str, set[str]], root: str) -> dict[str, int]:
    """Each node's level: the length of the longest path from the root (as BREEDS defines it)."""
    depth = {root: 0}
    todo = [root]
    while todo:
        node = todo.pop()
        for child in children.get(node, ()):
            if depth.get(child, -1) < depth[node] + 1:
                depth[child] = depth[node] + 1
                todo.append(child)
    return depth


class Hierarchy:
    """The WordNet hierarchy above ImageNet's 1000 classes, as the BREEDS files give it."""

    def __init__(self, info_dir: Path | None) -> None:
        problems = missing_files(info_dir)
        if problems:
            raise problems[0]
        info_dir = Path(info_dir)
        self.leaves = _class_wnids(info_dir / "dataset_class_info.json")
        rows = [line.split("\t", 1) for _, line in _lines(info_dir / "node_names.txt")]
        self.names = {row[0]: row[1].strip() for row in rows if len(row) == 2}
        self.children = _ancestry(_edges(info_dir / "class_hierarchy.txt"), self.leaves)
        self.level = _longest_depths(self.children, ROOT_WNID)

    def descendants(self, node: str) -> set[str]:
        """The node and every node below it."""
        found, todo = set(), [node]
        while todo:
            current = todo.pop()
            if current not in found:
                found.add(current)
                todo.extend(self.children.get(current, ()))
        return found

    def leaves_under(self, node: str) -> set[str]:
        """ImageNet classes reachable from the node, not descending below a class (robustness' leaves_reachable)."""
        found, todo = set(), [node]
        while todo:
            for child in self.children.get(todo.pop(), ()):
                if child in self.leaves:
                    found.add(child)
                else:
                    todo.append(child)
        if node in self.leaves:
            found.add(node)
        return found

    def nodes_at_level(self, level: int, ancestor: str | None) -> list[str]:
        """The nodes at this level, under `ancestor` when given, sorted by WordNet ID."""
        below = self.descendants(ancestor) if ancestor is not None else None
        return sorted(n for n, d in self.level.items() if d == level and (below is None or n in below))


def _split_rand(hierarchy: Hierarchy, superclass: str, n_subclasses: int,
                rng: np.random.RandomState) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """BREEDS' "rand" split: draw n_subclasses of the superclass's classes, first half source, rest target."""
    kids = sorted(hierarchy.children.get(superclass, ()))
    while len(kids) == 1:  # BREEDS starts from the first descendant with at least two children
        kids = sorted(hierarchy.children.get(kids[0], ()))
    pool = sorted(leaf for kid in kids for leaf in hierarchy.leaves_under(kid))  # duplicates kept, as BREEDS
    chosen = [pool[i] for i in rng.choice(len(pool), n_subclasses, replace=False)]
    if len(set(chosen)) != n_subclasses:
        raise ValueError(f"BREEDS split of {superclass} drew a subclass twice: {chosen}")
    half = n_subclasses // 2
    return tuple(chosen[:half]), tuple(chosen[half:])


def make_superclasses(info_dir: Path | None, spec: BreedsSpec, seed: int = SPLIT_SEED) -> Superclasses:
    """BREEDS' get_superclasses(level, Nsubclasses, split="rand", ancestor, balanced=True, random_seed=seed)."""
    hierarchy = Hierarchy(info_dir)
    rng = np.random.RandomState(seed)
    nodes = [n for n in hierarchy.nodes_at_level(spec.level, spec.ancestor)
             if len(hierarchy.leaves_under(n)) >= spec.n_subclasses]
    try:
        if not nodes:
            raise ValueError(f"no node at level {spec.level} has {spec.n_subclasses} ImageNet classes below it")
        splits = [_split_rand(hierarchy, n, spec.n_subclasses, rng) for n in nodes]
    except ValueError as exc:
        raise AutoFTError(f"the BREEDS hierarchy files in {info_dir} do not give this data set's superclasses "
                          f"({exc}); use the unmodified files. {WHERE_TO_GET}") from None
    return Superclasses(tuple(nodes), tuple(hierarchy.names.get(n, n) for n in nodes),
                        tuple(s for s, _ in splits), tuple(t for _, t in splits))
