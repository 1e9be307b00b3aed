"""Registered eval sets: `config/evalsets/<name>.yaml`, one per set, for every experiment of the datapool.

A set is read into a list of items, each a dict with a stable `id` and the fields its kind needs:

- perplexity: `text`
- multiple_choice: `question`, `choices` (list of strings), `label` (index of the right choice)
- generation: `messages` (the prompt turns, [{role, content}]) and `reference` (the expected answer)

An item's id is the one its data line gives (`keys.id`), else the first 16 hex digits of the sha256 of its
content, so it follows the item wherever it moves in the file. A set's **version** is a hash of its items
(ids and content, in order): appending items makes a new version, and every result names the version it was
computed on. lm_eval sets are read by lm-eval itself; their version is computed from lm-eval's own item
hashes when they are scored.

Eval and udatasets (decontamination) get the sets they use as JSON (`EvalSet.to_dict`) from their rule, and
read the items with `read_items`; the eval step records each version it scored under
`<datapool>/evalsets/<name>/<version>.json` (`write_version_record`), so a report can score a grown set's
earlier versions from per-item files.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from llmrunner.errors import ConfigError, StageError, first_few
from llmrunner.jsonl import file_problem, iter_records
from llmrunner.schemas import load_schema
from llmrunner.settings import settings_from_dict

EVALSETS_DIR = Path("config") / "evalsets"
SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
KINDS = ("perplexity", "multiple_choice", "generation", "lm_eval")
# the item fields each kind reads from a data line (through `keys`); generation's reference may instead be
# the last assistant message
ITEM_FIELDS = {"perplexity": ("text",), "multiple_choice": ("question", "choices", "label"),
               "generation": ("messages",)}
TEXT_SUFFIXES = (".txt",)
# each kind's main metric and whether higher is better (a generation set's is its `metric`, higher is better;
# an lm_eval set's is its task's first metric)
KIND_METRIC = {"perplexity": ("bits_per_byte", False), "multiple_choice": ("acc", True)}


@dataclass(frozen=True)
class EvalSet:
    """One registered set. Every key's type, default and meaning: config/schemas/evalset.schema.json."""

    name: str
    kind: str
    description: str
    data: str | list[str] | None
    keys: dict[str, str]
    num_fewshot: int | None
    metric: str
    max_new_tokens: int
    base_chat_template: bool
    task: str | None
    include_path: str | None

    @classmethod
    def from_dict(cls, name: str, values: dict, source: str | None = None) -> EvalSet:
        """Build and check a set from its YAML mapping (`source` names the file in messages)."""
        source = source or str(EVALSETS_DIR / f"{name}.yaml")
        schema = load_schema("evalset")
        schema["properties"]["name"] = {"type": "string"}
        try:
            evalset = settings_from_dict(cls, {**values, "name": name}, schema, source)
        except ConfigError as err:
            raise ConfigError(str(err).replace(f"{source} settings", source)) from None
        problems = evalset.problems(source)
        if problems:
            raise ConfigError("\n".join(problems))
        return evalset

    def problems(self, source: str) -> list[str]:
        """What the schema cannot say: which keys each kind needs."""
        if self.kind == "lm_eval":
            if not self.task:
                return [f"{source}: kind lm_eval needs `task` (an lm-eval task or group name)"]
            if self.data:
                return [f"{source}: `data` is not used by kind lm_eval (lm-eval reads the task's own data); "
                        f"remove it, or register the data as a perplexity, multiple_choice or generation set"]
            return []
        if not self.data:
            return [f"{source}: kind {self.kind} needs `data` (the items file, .jsonl"
                    f"{' or .txt' if self.kind == 'perplexity' else ''}, or a list of them)"]
        return [f"{source}: data {path} is a text file; kind {self.kind} needs .jsonl items"
                for path in self.data_files() if path.endswith(TEXT_SUFFIXES) and self.kind != "perplexity"]

    def data_files(self) -> list[str]:
        """The items files, in the order their items are read (`data` is one file or a list of them)."""
        if self.data is None:
            return []
        return [self.data] if isinstance(self.data, str) else list(self.data)

    def key(self, field: str) -> str:
        """The data line's field that holds item field `field`."""
        return self.keys.get(field, field)

    def to_dict(self) -> dict:
        return asdict(self)


def evalsets_from_json(text: str) -> dict[str, EvalSet]:
    """The sets a rule passes as `--evalsets` (RunConfig.evalsets_json: a JSON list of EvalSet.to_dict()), by
    name, in the given order."""
    try:
        values = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--evalsets: not valid JSON ({err}); give a list of eval set definitions") from None
    if not isinstance(values, list) or not all(isinstance(v, dict) and isinstance(v.get("name"), str)
                                               for v in values):
        raise ConfigError("--evalsets: expected a JSON list of eval set definitions, each with its name")
    return {v["name"]: EvalSet.from_dict(v["name"], {k: x for k, x in v.items() if k != "name"}) for v in values}


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def content_id(content: dict) -> str:
    """The id of an item that brings none: the first 16 hex digits of the sha256 of its content."""
    return hashlib.sha256(_canonical(content).encode("utf-8")).hexdigest()[:16]


def version_of(items: list[dict]) -> str:
    """A set's version: the first 12 hex digits of the sha256 of its items (ids and content, in order)."""
    return hashlib.sha256(_canonical(items).encode("utf-8")).hexdigest()[:12]


def _text_documents(path: str) -> list[dict]:
    """A .txt perplexity set: one document per paragraph (runs of lines between blank lines)."""
    text = Path(path).read_text(encoding="utf-8")
    paragraphs = [p.strip("\n") for p in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n"))]
    return [{"text": p} for p in paragraphs if p.strip()]


def _item(evalset: EvalSet, record: dict, where: str) -> dict:
    """The item of one data line: its fields checked and renamed; raises ConfigError naming `where`."""
    def need(field: str) -> object:
        key = evalset.key(field)
        if key not in record:
            hint = f" (keys.{field} maps it to '{key}')" if key != field else ""
            raise ConfigError(f"{where}: no key '{key}'{hint}; every line of a {evalset.kind} set needs it — "
                              f"fix the line, or set keys.{field} in the set's YAML to the field that holds it")
        return record[key]

    def fail(what: str) -> ConfigError:
        return ConfigError(f"{where}: {what}")

    content: dict
    if evalset.kind == "perplexity":
        text = need("text")
        if not isinstance(text, str) or not text.strip():
            raise fail(f"'{evalset.key('text')}' must be a non-empty string")
        content = {"text": text}
    elif evalset.kind == "multiple_choice":
        question, choices, label = need("question"), need("choices"), need("label")
        if not isinstance(question, str):
            raise fail(f"'{evalset.key('question')}' must be a string")
        if (not isinstance(choices, list) or len(choices) < 2
                or not all(isinstance(c, str) and c.strip() for c in choices)):
            raise fail(f"'{evalset.key('choices')}' must be a list of at least 2 non-empty strings")
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(choices):
            raise fail(f"'{evalset.key('label')}' must be the 0-based index of the right choice "
                       f"(0 to {len(choices) - 1}), got {label!r}")
        content = {"question": question, "choices": choices, "label": label}
    else:  # generation
        messages = need("messages")
        if (not isinstance(messages, list) or not messages
                or not all(isinstance(m, dict) and isinstance(m.get("role"), str)
                           and isinstance(m.get("content"), str) for m in messages)):
            raise fail(f"'{evalset.key('messages')}' must be a non-empty list of {{role, content}} messages")
        messages = [{"role": m["role"], "content": m["content"]} for m in messages]
        if evalset.key("reference") in record:
            reference = record[evalset.key("reference")]
        elif messages[-1]["role"] == "assistant" and len(messages) > 1:
            reference = messages.pop()["content"]
        else:
            raise fail(f"no reference answer: give it in '{evalset.key('reference')}', or end "
                       f"'{evalset.key('messages')}' with the assistant's answer")
        if not isinstance(reference, str) or not reference.strip():
            raise fail("the reference answer must be a non-empty string")
        content = {"messages": messages, "reference": reference}
    given = record.get(evalset.key("id"))
    if given is not None and not isinstance(given, (str, int)) or isinstance(given, bool):
        raise fail(f"'{evalset.key('id')}' must be a string or an integer, got {given!r}")
    return {"id": str(given) if given is not None else content_id(content), **content}


def _data_records(source: str, path: str) -> tuple[list[tuple[int, dict]], str]:
    """One items file's records, numbered from 1, and what a number counts (line or paragraph)."""
    problem = file_problem(path)
    if problem:
        raise ConfigError(f"{source}: data {problem}; fix `data` or create the file")
    if path.endswith(TEXT_SUFFIXES):
        return list(enumerate(_text_documents(path), start=1)), "paragraph"
    try:
        records = list(iter_records(path, fix="fix the line: one JSON object per line, UTF-8"))
    except StageError as err:
        raise ConfigError(f"{source}: {err}") from None
    return records, "line"


def read_items(evalset: EvalSet, source: str | None = None) -> list[dict]:
    """Every item of a perplexity, multiple_choice or generation set: its files in the order `data` lists them,
    each in file order. A missing or empty file, a bad line, a missing key or an id used twice (within a file
    or across files) is a ConfigError naming the set's file, the data file and the line."""
    source = source or str(EVALSETS_DIR / f"{evalset.name}.yaml")
    if evalset.kind == "lm_eval":
        raise AssertionError("lm_eval sets are read by lm-eval")
    items, first_seen = [], {}
    for path in evalset.data_files():
        records, unit = _data_records(source, path)
        if not records:
            raise ConfigError(f"{source}: data {path} has no items; add some, or remove it from `data`"
                              f"{'' if isinstance(evalset.data, list) else ' or unregister the set'}")
        for number, record in records:
            where = f"{path} {unit} {number}"
            item = _item(evalset, record, f"{source}: {where}")
            if item["id"] in first_seen:
                raise ConfigError(f"{source}: {where}: item id {item['id']!r} is also the id of "
                                  f"{first_seen[item['id']]}; ids must be unique within a set")
            first_seen[item["id"]] = where
            items.append(item)
    return items


def decontamination_texts(item: dict) -> list[str]:
    """The texts of an item that training data must not contain: a document; a question and its right
    answer; a prompt's user and assistant turns and the reference (system prompts are shared boilerplate)."""
    if "text" in item:
        return [item["text"]]
    if "choices" in item:
        return [item["question"], item["choices"][item["label"]]]
    return [m["content"] for m in item["messages"] if m["role"] != "system"] + [item["reference"]]


def plain_prompt(messages: list[dict]) -> str:
    """A generation prompt without a chat template (base models, unless `base_chat_template`): the message
    contents, one per line, then a line break where the answer starts."""
    return "\n".join(m["content"] for m in messages) + "\n"


def aggregate(records: list[dict]) -> float:
    """A set's score from per-item records (`reports/eval/<stage>/items/<set>.jsonl` lines): bits per byte
    over all bytes when the items carry log-likelihoods and byte counts (as lm-eval aggregates perplexity),
    else the mean item score."""
    if not records:
        return math.nan
    if all("bytes" in r["metrics"] and "loglikelihood" in r["metrics"] for r in records):
        total_bytes = sum(r["metrics"]["bytes"] for r in records)
        return -sum(r["metrics"]["loglikelihood"] for r in records) / total_bytes / math.log(2)
    return sum(r["score"] for r in records) / len(records)


# ---------------------------------------------------------------- the registry
def load_registry(folder: Path = EVALSETS_DIR) -> dict[str, EvalSet]:
    """Every `<name>.yaml` (or `.yml`) under `folder`, checked; {} when the folder does not exist. Two files
    with one name, a bad name or a bad set is a ConfigError naming the file and the fix."""
    if not folder.is_dir():
        return {}
    import yaml  # here: a udatasets job imports this module, and without eval sets needs no yaml (start-up time)

    sets: dict[str, EvalSet] = {}
    seen: dict[str, Path] = {}
    problems = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix not in (".yaml", ".yml"):
            continue
        name = path.stem
        if name in seen:
            problems.append(f"{path}: a second eval set named '{name}' (also {seen[name]}); "
                            "rename or remove one of them")
            continue
        seen[name] = path
        if not SET_NAME.match(name):
            problems.append(f"{path}: '{name}' is not a valid set name; use letters, digits, '_' and '-'")
            continue
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            problems.append(f"{path}: not valid YAML ({err})")
            continue
        if not isinstance(values, dict):
            problems.append(f"{path}: expected a mapping with at least `kind`, got {type(values).__name__}")
            continue
        try:
            sets[name] = EvalSet.from_dict(name, values, str(path))
        except ConfigError as err:
            problems.append(str(err))
    if problems:
        raise ConfigError("\n".join(problems))
    return sets


def registry_item_problems(registry: dict[str, EvalSet]) -> list[str]:
    """Every set's items read and checked (a missing or empty file, a bad line, a missing key), so that a bad
    set stops the run when the config loads, before any job."""
    problems = []
    for evalset in registry.values():
        if evalset.kind != "lm_eval":
            try:
                read_items(evalset, str(set_file(evalset.name)))
            except ConfigError as err:
                problems.append(str(err))
    return problems


def set_file(name: str, folder: Path = EVALSETS_DIR) -> Path:
    """The registered set's YAML file: `<name>.yml` where only that exists, else `<name>.yaml`."""
    yml = folder / f"{name}.yml"
    return yml if yml.is_file() and not (folder / f"{name}.yaml").is_file() else folder / f"{name}.yaml"


def set_files(evalset: EvalSet, folder: Path = EVALSETS_DIR) -> list[Path]:
    """What a set is made of: its YAML, its items files, and for lm_eval its include_path's task files."""
    files = [set_file(evalset.name, folder)] + [Path(path) for path in evalset.data_files()]
    if evalset.include_path:
        files += sorted(p for p in Path(evalset.include_path).rglob("*") if p.is_file())
    return files


def unknown_set_problems(names: list[str], registry: dict[str, EvalSet], source: str, key: str) -> list[str]:
    """Sets a step lists (`key` in `source`) that are not registered, each with the closest registered names."""
    def known(name: str) -> str:
        close = difflib.get_close_matches(name, registry, n=3, cutoff=0.5)
        return f"close names: {', '.join(close)}" if close else f"registered: {first_few(sorted(registry)) or 'none'}"

    return [f"{source}: {key} lists '{name}', which is not a registered eval set ({known(name)}); add "
            f"{EVALSETS_DIR}/{name}.yaml or remove it from the list" for name in names if name not in registry]


# ---------------------------------------------------------------- versions seen
def version_record_file(datapool: str, name: str, version: str) -> Path:
    """Where the eval step records a version of a set it scored: `<datapool>/evalsets/<name>/<version>.json`."""
    return Path(datapool) / "evalsets" / name / f"{version}.json"


def write_version_record(datapool: str, evalset: EvalSet, version: str, ids: list[str]) -> Path:
    """Record (once) which items a version of `evalset` holds, so later reports can score them again."""
    path = version_record_file(datapool, evalset.name, version)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"name": evalset.name, "kind": evalset.kind, "version": version, "items": len(ids), "ids": ids}
        partial = path.with_suffix(f".{version}.partial")
        partial.write_text(json.dumps(record) + "\n", encoding="utf-8")
        partial.replace(path)  # two eval jobs may record one version at once: each write is whole
    return path


def recorded_versions(datapool: str, name: str) -> list[dict]:
    """Every recorded version of set `name` ({name, kind, version, items, ids}), fewest items first."""
    folder = Path(datapool) / "evalsets" / name
    records = [json.loads(p.read_text(encoding="utf-8")) for p in folder.glob("*.json")] if folder.is_dir() else []
    return sorted(records, key=lambda r: (r["items"], r["version"]))


