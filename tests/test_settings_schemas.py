"""The JSON schemas are the one declaration of every setting's type, default and range: each stage's settings
dataclass has exactly the schema's keys, declares no default of its own, and builds from the schema alone."""
from __future__ import annotations

import dataclasses

import pytest

from llmrunner.config_checks import STAGE_SETTINGS
from llmrunner.schemas import load_schema
from llmrunner.udatasets.augment import AugmentSettings
from llmrunner.udatasets.settings import UdatasetsSettings, udatasets_schema

SCHEMA_OF = {
    **{cls: load_schema(name) for cls, name in (
        (STAGE_SETTINGS["tokenize_cpt"], "tokenize_cpt"), (STAGE_SETTINGS["tokenize_sft"], "tokenize_sft"),
        (STAGE_SETTINGS["train_cpt"], "train"), (STAGE_SETTINGS["hf2mg"], "convert"),
        (STAGE_SETTINGS["eval"], "eval"))},
    UdatasetsSettings: udatasets_schema(),
    AugmentSettings: load_schema("udatasets")["properties"]["augment"],
}


def test_every_stage_settings_class_is_covered():
    assert set(STAGE_SETTINGS.values()) <= set(SCHEMA_OF)


@pytest.mark.parametrize("cls", list(SCHEMA_OF), ids=lambda c: c.__name__)
def test_settings_fields_are_the_schema_keys_without_defaults(cls):
    fields = dataclasses.fields(cls)
    assert {f.name for f in fields} == set(SCHEMA_OF[cls]["properties"])
    with_default = [f.name for f in fields
                    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING]
    assert with_default == [], f"{cls.__name__} declares defaults; they belong in the schema"


@pytest.mark.parametrize("cls", list(SCHEMA_OF), ids=lambda c: c.__name__)
def test_defaults_come_from_the_schema(cls):
    settings = cls.from_dict({})
    for key, prop in SCHEMA_OF[cls]["properties"].items():
        expected = prop.get("default")
        if isinstance(expected, dict) and "properties" in prop:  # a nested mapping gets its own defaults
            expected = {k: v["default"] for k, v in prop["properties"].items()}
        assert getattr(settings, key) == expected, key
