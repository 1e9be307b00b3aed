"""Archive the experiments whose primary metrics clearly beat their baseline's.

The decision reads the compare report's `baselines.json` (each experiment's paired Δ against the same stage of
its baseline, per set version): an experiment is archived when, on its final stage (sft when evaluated, else
cpt, else base), every `primary` '<set>:<metric>' is better than the baseline's with a 95% interval that
excludes zero, on one set version both were scored on.

An entry is `<datapool>/archive/<exp>/<entry>/`, `<entry>` the first 12 hex digits of the sha256 of what it
holds (each file's path and sha256, and the decision): the same content is never archived twice, and different
content goes beside the older entries. Nothing is ever removed. An entry is built in a hidden `.<entry>.partial`
folder and renamed when whole. Data files are hard links where the file system allows (no second copy; the
pipeline replaces its outputs with new files, so an archived link keeps the old content), copies otherwise.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from llmrunner.errors import StageError

log = logging.getLogger(__name__)

FINAL_STAGES = ("sft", "cpt", "base")  # the first one evaluated is the experiment's final stage
MANIFEST = "manifest.json"
INDEX = "index.md"
# why an experiment was not archived, worst first: several primary metrics give the worst of their outcomes
OUTCOMES = ("worse", "not compared", "not significant")


@dataclass
class Decision:
    """Whether an experiment is archived, and why: `reason` a short label, `detail` the sentence, `why` the
    Δ and interval of each primary metric that was compared."""

    experiment: str
    baseline: str | None
    archived: bool
    reason: str
    detail: str
    why: list[dict] = field(default_factory=list)
    entry: str | None = None  # the entry folder, relative to the archive folder, once archived


def _primary_outcome(primary: str, stage: str, deltas: list[dict]) -> tuple[str, str, dict | None]:
    """(outcome, sentence, Δ row) of one '<set>:<metric>' on the final stage: better, worse, not significant or
    not compared. The row is the first of the set's rows for the stage: the version the experiment was scored
    on, else the largest earlier version both hold."""
    name, _, metric = primary.partition(":")
    rows = [d for d in deltas if d["set"] == name and d["stage"] == stage]
    if not rows:
        return "not compared", f"{primary}: no {stage} scores of both on one version of {name}", None
    row = rows[0]
    if row["metric"] != metric:
        return "not compared", (f"{primary}: {name}'s per-item scores are {row['metric']}, so {metric} cannot be "
                                "compared item by item"), None
    where = f"{primary} on {stage}, version {row['version']} ({row['items']} items)"
    if row["low"] is None:
        return "not compared", f"{where}: no per-item scores, so no interval", row
    span = f"Δ {row['delta']:+.4g} [{row['low']:+.4g}, {row['high']:+.4g}]"
    if not row["excludes_zero"]:
        return "not significant", f"{where}: {span} includes 0", row
    outcome = row["result"] if row["result"] in ("better", "worse") else "not compared"
    return outcome, f"{where}: {span}, {row['result']}", row


def decide(name: str, plan: dict, comparison: dict | None) -> Decision:
    """Whether experiment `name` beats its baseline on every primary metric (`plan`: its archive plan;
    `comparison`: its baselines.json entry, None when the compare report has none)."""
    baseline = plan["baseline"]
    if baseline is None:
        return Decision(name, None, False, "no baseline",
                        "pipeline.yaml sets no `baseline`, so there is nothing to beat")
    if comparison is None or comparison.get("status") != "compared":
        return Decision(name, baseline, False, "baseline not run yet",
                        f"no eval results of the baseline {baseline} under the datapool: run it first")
    if not plan["primary"]:
        return Decision(name, baseline, False, "no primary metrics",
                        "pipeline.yaml lists no `primary` metrics (e.g. primary: [heldout_text:bits_per_byte])")
    stage = next((s for s in FINAL_STAGES if s in comparison["stages"]), None)
    if stage is None:
        return Decision(name, baseline, False, "not compared", "the experiment has no eval results")
    outcomes = [_primary_outcome(p, stage, comparison["deltas"]) for p in plan["primary"]]
    why = [{"primary": p, **{k: row[k] for k in ("stage", "version", "earlier", "items", "score", "baseline_score",
                                                   "delta", "low", "high", "higher_is_better", "result")}}
           for p, (_, _, row) in zip(plan["primary"], outcomes) if row is not None]
    detail = "; ".join(sentence for _, sentence, _ in outcomes)
    if all(outcome == "better" for outcome, _, _ in outcomes):
        return Decision(name, baseline, True, "clear gain", detail, why)
    reason = next(o for o in OUTCOMES if any(outcome == o for outcome, _, _ in outcomes))
    return Decision(name, baseline, False, reason, detail, why)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _files_of(plan: dict) -> list[tuple[str, Path]]:
    """(path inside the entry, source) of everything an entry keeps, sources that do not exist left out."""
    files: list[tuple[str, Path]] = []

    def add(dest: str, source: Path) -> None:
        if source.is_dir():
            files.extend((f"{dest}/{p.relative_to(source).as_posix()}", p)
                         for p in sorted(source.rglob("*")) if p.is_file())
        elif source.is_file():
            files.append((dest, source))

    for kind, dataset, path in plan["data"]:
        add(f"data/{kind}/{Path(path).name if Path(path).is_file() else dataset}", Path(path))
    for path in plan["stats"]:
        add(f"data/{Path(path).parent.name}/{Path(path).name}", Path(path))
    for path in plan["adapters"]:
        add(f"adapters/{Path(path).name}", Path(path))
    add("config", Path(plan["config_dir"]))
    add("config.json", Path(plan["config_record"]))
    return files


def _store(source: Path, dest: Path) -> str:
    """A hard link to `source` at `dest`, or a copy where the file system refuses one; says which."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, dest)
        return "hard link"
    except OSError:
        shutil.copy2(source, dest)
        return "copy"


def archive_experiment(folder: Path, decision: Decision, plan: dict, comparison: dict) -> tuple[str, bool]:
    """Write the experiment's entry under `folder`/<exp>/ (the archive folder); returns (entry, whether it is
    new). An entry with the same content is kept as it is."""
    deltas = json.dumps(comparison, indent=1, sort_keys=True).encode("utf-8") + b"\n"
    files = [(dest, source, sha256_of(source)) for dest, source in _files_of(plan)]
    listing = [[dest, digest] for dest, _, digest in files] + [["deltas.json", hashlib.sha256(deltas).hexdigest()]]
    content = json.dumps({"files": sorted(listing), "why": decision.why}, sort_keys=True)
    entry = f"{decision.experiment}/{hashlib.sha256(content.encode('utf-8')).hexdigest()[:12]}"
    final = folder / entry
    if (final / MANIFEST).is_file():
        return entry, False
    partial = final.with_name(f".{final.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)  # left by an archive job killed while writing it
    manifest_files = []
    for dest, source, digest in files:
        stored = _store(source, partial / dest)
        manifest_files.append({"path": dest, "sha256": digest, "bytes": source.stat().st_size,
                               "source": str(source), "stored": stored})
    (partial / "deltas.json").write_bytes(deltas)
    manifest_files.append({"path": "deltas.json", "sha256": listing[-1][1], "bytes": len(deltas),
                           "source": "reports/baselines.json (this experiment's entry)", "stored": "written"})
    manifest = {"experiment": decision.experiment, "baseline": decision.baseline, "entry": entry,
                "archived_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "why": decision.why, "detail": decision.detail,
                "versions": {w["primary"].partition(":")[0]: w["version"] for w in decision.why},
                "files": manifest_files}
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    if final.exists():  # a folder without a manifest: an entry whose writing never finished; keep it aside
        final.rename(final.with_name(f".{final.name}.incomplete-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"))
    partial.rename(final)
    return entry, True


def _read_manifests(folder: Path) -> list[dict]:
    """Every entry's manifest under the archive folder, newest first."""
    found = []
    for path in folder.glob(f"*/*/{MANIFEST}"):
        try:
            found.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as err:
            log.warning("skipping %s: %s", path, err)
    return sorted(found, key=lambda m: str(m.get("archived_at")), reverse=True)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def write_index(folder: Path, decisions: list[Decision]) -> str:
    """index.md: every entry of the archive (all runs), then the experiments this run considered and why each
    was or was not archived."""
    lines = ["# Archive", "",
             "Experiments whose primary metrics clearly beat their baseline's (docs/reports.md). Each entry is "
             "`<exp>/<entry>/` with its `manifest.json`; entries are only ever added.", "", "## Entries", ""]
    manifests = _read_manifests(folder)
    if manifests:
        lines += ["| experiment | entry | archived at | baseline | why |", "|---|---|---|---|---|"]
        lines += [f"| {m.get('experiment')} | [`{m.get('entry')}`]({m.get('entry')}/{MANIFEST}) | "
                  f"{m.get('archived_at')} | {m.get('baseline')} | {_cell(m.get('detail', ''))} |" for m in manifests]
    else:
        lines.append("None yet.")
    lines += ["", f"## Considered in the latest run ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)", "",
              "| experiment | baseline | archived | reason | detail |", "|---|---|---|---|---|"]
    for d in decisions:
        archived = f"yes: `{d.entry}`" if d.archived else "no"
        lines.append(f"| {d.experiment} | {d.baseline or '—'} | {archived} | {d.reason} | {_cell(d.detail)} |")
    text = "\n".join(lines) + "\n"
    (folder / INDEX).write_text(text, encoding="utf-8")
    return text


def archive_all(comparison_file: Path, plan: dict[str, dict], out: Path) -> list[Decision]:
    """Decide for each experiment of `plan`, archive those that beat their baseline under `out`'s folder, and
    write `out` (index.md)."""
    try:
        comparison = json.loads(comparison_file.read_text(encoding="utf-8"))["experiments"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise StageError(f"archive: cannot read {comparison_file} ({err}); it is written by the compare report: "
                         "run `snakemake report` first") from None
    folder = out.parent
    folder.mkdir(parents=True, exist_ok=True)
    decisions = []
    for name, entry in plan.items():
        decision = decide(name, entry, comparison.get(name))
        if decision.archived:
            decision.entry, new = archive_experiment(folder, decision, entry, comparison[name])
            log.info("%s: archived as %s (%s)", name, decision.entry, "new entry" if new else
                     "the same content is already archived there; kept")
        log.info("%s: %s — %s", name, decision.reason, decision.detail)
        decisions.append(decision)
    write_index(folder, decisions)
    return decisions
