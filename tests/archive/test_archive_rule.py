"""The `archive` target on the demo's config (real Snakemake, dry run): it plans the archive job after the
comparison, and the default target never does."""
from __future__ import annotations

from pathlib import Path

import yaml

from tests.demo import planned_jobs, short_demo, snakemake
from tests.paths import write_yaml


def test_archive_is_its_own_target(tmp_path: Path) -> None:
    short_demo(tmp_path)
    pipeline_file = tmp_path / "config/experiments/cpt_off/pipeline.yaml"
    pipeline = yaml.safe_load(pipeline_file.read_text())
    write_yaml(pipeline_file, {**pipeline, "baseline": "demo", "primary": ["heldout_text:bits_per_byte"]})
    jobs = planned_jobs(snakemake(tmp_path, "-n", "archive"))
    assert jobs["archive_index"] == 1 and jobs["report_compare"] == 1
    assert "archive_index" not in planned_jobs(snakemake(tmp_path, "-n"))
