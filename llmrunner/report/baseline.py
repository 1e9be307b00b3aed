"""An experiment against its baseline (pipeline.yaml `baseline`): what differs between their resolved configs,
and the record of their paired differences that `snakemake archive` decides on.

Each experiment's report job records its resolved config as `reports/config.json` ({experiment, root, pipeline,
steps}); the comparison reads both experiments' records. Paths that differ only by the experiment's own folder
(DATAPOOL_ROOT) are not differences.
"""
from __future__ import annotations

import json
from pathlib import Path

CONFIG_RECORD = Path("reports") / "config.json"
# written beside compare.md: every experiment's comparison with its baseline, for the archive stage
BASELINES_FILE = "baselines.json"
# pipeline.yaml keys that are not part of what an experiment does to its model
NOT_COMPARED = ("description", "baseline")
ROOT_MARK = "${DATAPOOL_ROOT}"


def config_record(root: Path) -> Path:
    """Where the experiment at `root` (its DATAPOOL_ROOT) records its resolved config."""
    return root / CONFIG_RECORD


def _normalized(tree: object, root: str) -> object:
    """`tree` with the experiment's folder written as ${DATAPOOL_ROOT} in every string."""
    if isinstance(tree, dict):
        return {k: _normalized(v, root) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_normalized(v, root) for v in tree]
    return tree.replace(root, ROOT_MARK) if isinstance(tree, str) and root else tree


def _flat(tree: dict, prefix: str = "") -> dict[str, object]:
    """{dotted key: value} of the nested mappings of `tree` (lists and scalars are values)."""
    found: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            found.update(_flat(value, f"{prefix}{key}."))
        else:
            found[f"{prefix}{key}"] = value
    return found


_UNSET = object()


def _value(value: object) -> str:
    return "(not set)" if value is _UNSET else f"`{json.dumps(value, ensure_ascii=False)}`"


def _changes(mine: dict[str, object], theirs: dict[str, object]) -> list[tuple[str, object, object]]:
    """(key, baseline's value, experiment's value) for each key whose values differ, in sorted key order."""
    return [(k, theirs.get(k, _UNSET), mine.get(k, _UNSET)) for k in sorted(set(mine) | set(theirs))
            if mine.get(k, _UNSET) != theirs.get(k, _UNSET)]


def config_diff(mine: dict, theirs: dict) -> list[str]:
    """What the experiment (`mine`) changes against its baseline (`theirs`), both config records, one line each:
    datasets added or removed, a dataset's keys changed, the base model, steps switched, step keys changed."""
    mine_p, theirs_p = (_normalized(c.get("pipeline") or {}, c.get("root", "")) for c in (mine, theirs))
    mine_s, theirs_s = (_normalized(c.get("steps") or {}, c.get("root", "")) for c in (mine, theirs))
    lines = []
    for kind in ("cpt", "sft"):
        have, had = ((p.get("data") or {}).get(kind) or {} for p in (mine_p, theirs_p))
        lines += [f"dataset added: {kind} `{d}` (sources {_value(have[d]['sources'])})" for d in have if d not in had]
        lines += [f"dataset removed: {kind} `{d}`" for d in had if d not in have]
        for d in (d for d in have if d in had):
            lines += [f"dataset {kind} `{d}`: `{k}` {a} → {b}" for k, a, b in _fmt(_changes(have[d], had[d]))]
    for key, a, b in _fmt(_changes(_flat(mine_p.get("base_model") or {}), _flat(theirs_p.get("base_model") or {}))):
        lines.append(f"base model: `{key}` {a} → {b}")
    for key, a, b in _changes(mine_p.get("steps") or {}, theirs_p.get("steps") or {}):
        lines.append(f"step {key} switched {'on' if b is True else 'off'}" if isinstance(b, bool)
                     else f"step {key}: {_value(a)} → {_value(b)}")
    rest = [{k: v for k, v in p.items() if k not in (*NOT_COMPARED, "data", "base_model", "steps")}
            for p in (mine_p, theirs_p)]
    lines += [f"`{k}` {a} → {b}" for k, a, b in _fmt(_changes(*rest))]
    lines += [f"`{k}` {a} → {b}" for k, a, b in _fmt(_changes(_flat(mine_s), _flat(theirs_s)))]
    return lines


def _fmt(changes: list[tuple[str, object, object]]) -> list[tuple[str, str, str]]:
    return [(k, _value(a), _value(b)) for k, a, b in changes]


def read_config(root: Path) -> dict | None:
    """The experiment's config record, or None when its report job has not written one."""
    try:
        value = json.loads(config_record(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def baseline_of(config: dict | None) -> str | None:
    """The experiment's baseline, from its config record (None: none set, or no record)."""
    value = ((config or {}).get("pipeline") or {}).get("baseline")
    return value if isinstance(value, str) else None
