"""Rule baselines for ListOps: what accuracy needs no learning of the nested structure.

A ListOps claim ("above the 37% of non-SSM baselines") is only meaningful against what shallow
rules get on the same split. Two families:

* **prior**: always the most frequent training label;
* **outer operator**: the most frequent training label of rows with the same outermost operator
  (MAX rows are mostly 9, MIN rows mostly 0, …) — what a model that has read only the first token
  and the label statistics predicts;
* **depth d**: evaluate the expression exactly, but drop every sub-list nested deeper than ``d``
  below the root (depth 1 applies the outermost operator to its direct digits only). Where that
  leaves an operator with no argument, the outer-operator rule answers.

``python scripts/listops_rules.py DATA`` prints the table for the split that ``--data.root DATA`` reads;
with ``--run RUN_DIR`` also a trained model's accuracy and how often it answers as each rule does, which
tells which rule it has learned.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import no_type_check

from ssm.data.lra_gen.listops import END, OPERATORS, _apply

Tree = int | tuple[str, list]


@no_type_check
def parse(source: str) -> Tree:
    """A release ``Source`` string (parentheses optional) as ``digit`` or ``(op, [children])``."""
    stack: list[tuple[str, list]] = []
    root: Tree | None = None
    for tok in source.replace("(", " ").replace(")", " ").split():
        if tok in OPERATORS:
            stack.append((tok, []))
            continue
        if tok == END:
            if not stack:
                raise ValueError(f"unbalanced ']' in ListOps source {source[:60]!r}…")
            node = stack.pop()
        else:
            if not tok.isdigit() or len(tok) != 1:
                raise ValueError(f"unknown ListOps token {tok!r} in {source[:60]!r}…")
            node = int(tok)
        if stack:
            stack[-1][1].append(node)
        elif root is None:
            root = node
        else:
            raise ValueError(f"more than one expression in ListOps source {source[:60]!r}…")
    if stack or root is None:
        raise ValueError(f"incomplete ListOps source {source[:60]!r}…")
    return root


@no_type_check
def evaluate(tree: Tree, depth: int | None = None) -> int | None:
    """The value of ``tree`` keeping sub-lists at most ``depth`` levels below the root (``None``:
    all of them; ``depth=0`` keeps only a bare digit). ``None`` where an operator is left without
    arguments."""
    if isinstance(tree, int):
        return tree
    if depth is not None and depth <= 0:
        return None
    op, children = tree
    below = None if depth is None else depth - 1
    args = [v for v in (evaluate(c, below) for c in children) if v is not None]
    return _apply(op, args) if args else None


def outer_operator(tree: Tree) -> str:
    return "digit" if isinstance(tree, int) else tree[0]


def rule_predictions(
    train: Iterable[tuple[str, int]], sources: Sequence[str], depths: Sequence[int] = (1, 2, 3)
) -> dict[str, list[int]]:
    """Each rule's answer on ``sources``: the prior and the outer-operator rule (both fitted on
    ``train``) and the depth-``d`` evaluations (falling back to the outer-operator rule)."""
    labels: Counter[int] = Counter()
    by_op: defaultdict[str, Counter[int]] = defaultdict(Counter)
    for source, label in train:
        labels[int(label)] += 1
        by_op[outer_operator(parse(source))][int(label)] += 1
    if not labels:
        raise ValueError("rule_predictions needs at least one training row")
    prior = labels.most_common(1)[0][0]
    op_rule = {op: c.most_common(1)[0][0] for op, c in by_op.items()}
    if not sources:
        raise ValueError("rule_predictions needs at least one row to answer")
    trees = [parse(source) for source in sources]
    by_rule = [op_rule.get(outer_operator(t), prior) for t in trees]
    out = {"prior": [prior] * len(trees), "outer operator": by_rule}
    for d in depths:
        values = [evaluate(t, d) for t in trees]
        out[f"depth {d}"] = [r if v is None else v for v, r in zip(values, by_rule)]
    return out


def agreement(a: Sequence[int], b: Sequence[int]) -> float:
    """The fraction of rows where two answer lists agree (accuracy when ``b`` holds the labels)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"agreement needs two non-empty lists of one length, got {len(a)} and {len(b)}")
    return sum(int(x) == int(y) for x, y in zip(a, b)) / len(a)


def rule_accuracies(
    train: Iterable[tuple[str, int]], rows: Sequence[tuple[str, int]], depths: Sequence[int] = (1, 2, 3)
) -> dict[str, float]:
    """Accuracy on ``rows`` of every rule of :func:`rule_predictions`."""
    if not rows:
        raise ValueError("rule_accuracies needs at least one row to score")
    targets = [int(label) for _, label in rows]
    answers = rule_predictions(train, [source for source, _ in rows], depths)
    return {rule: agreement(pred, targets) for rule, pred in answers.items()}
