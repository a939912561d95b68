"""Load skills from the common `job_description.json` + examples format.

A skill folder holds `job_description.json` and, optionally, `train.jsonl` or `train.csv` with
`question` and `answer` columns. The job description's keys decide the kind:

- `classes_description` (label -> description): a classification skill (`LabelSet`);
- `tools` (OpenAI function schemas): a tool-calling skill over a schema-only `ToolRegistry`;
  questions are JSON chat histories, answers JSON `{"name", "parameters"}` objects;
- `output_schema` (a JSON schema): an extraction skill (`JSONContract`);
- otherwise a task that talks about SQL: a text-to-SQL skill (`SQLContract`), whose dialect is
  read from the description (SQLite unless another is named).

`task_description` (plus `input_description`, when present) becomes the instructions.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from brickwork.errors import ConfigError, SkillError
from brickwork.skills.skill import (
    Contract,
    Example,
    JSONContract,
    LabelSet,
    Skill,
    SQLContract,
    ToolContract,
)
from brickwork.tools.registry import ToolRegistry

__all__ = ["EXAMPLE_FILES", "JOB_DESCRIPTION", "load_examples", "load_skill"]

JOB_DESCRIPTION = "job_description.json"
EXAMPLE_FILES = ("train.jsonl", "train.csv")
"""Example files looked for next to a job description, in this order."""

_DIALECTS = (
    ("postgres", r"postgres(?:ql)?"),
    ("duckdb", r"duckdb"),
    ("mysql", r"mysql"),
    ("sqlite", r"sqlite"),
)


def load_skill(path: str | Path, *, name: str | None = None) -> Skill:
    """Load a skill from a folder, or from the path of its `job_description.json`.

    Args:
        path: The skill folder or its job description file.
        name: The skill name; defaults to the folder name.

    Returns:
        The skill, with the folder's examples (none if it has no example file).

    Raises:
        SkillError: The job description is missing, not JSON, or of no known kind, or an
            example file or example is malformed. The message names the file.
    """
    path = Path(path)
    job_path = path / JOB_DESCRIPTION if path.is_dir() else path
    if not job_path.is_file():
        raise SkillError(f"no job description at {str(job_path)!r}; expected {JOB_DESCRIPTION}")
    try:
        job = json.loads(job_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SkillError(f"{str(job_path)!r} is not valid JSON: {exc}") from exc
    if not isinstance(job, dict):
        raise SkillError(f"{str(job_path)!r} must hold a JSON object, not {type(job).__name__}")
    instructions = job.get("task_description")
    if not isinstance(instructions, str) or not instructions.strip():
        raise SkillError(f"{str(job_path)!r} has no 'task_description' string; add the task prompt")
    if isinstance(job.get("input_description"), str):
        instructions = f"{instructions}\n\n{job['input_description']}"
    contract = _contract(job, job_path)
    folder = job_path.parent
    found = [folder / file for file in EXAMPLE_FILES if (folder / file).is_file()]
    examples = load_examples(found[0]) if found else []
    try:
        return Skill(
            name=name or _skill_name(folder.resolve().name),
            instructions=instructions,
            contract=contract,
            examples=examples,
        )
    except SkillError as exc:
        source = str(found[0]) if found else str(job_path)
        raise SkillError(f"{source}: {exc}") from exc


def load_examples(path: str | Path) -> list[Example]:
    """Read examples from a JSONL or CSV file with `question` and `answer` fields.

    A question that is a JSON list of chat messages becomes that list; an answer that is a
    JSON object (a tool call or an extraction) becomes a dict. Everything else stays text.

    Args:
        path: A `.jsonl` or `.csv` file.

    Returns:
        The examples, in file order.

    Raises:
        SkillError: The file is missing, has an unknown extension, or a row is malformed;
            the message gives the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise SkillError(f"example file {str(path)!r} does not exist")
    if path.suffix == ".jsonl":
        rows = _jsonl_rows(path)
    elif path.suffix == ".csv":
        rows = _csv_rows(path)
    else:
        raise SkillError(f"example file {str(path)!r} must end in .jsonl or .csv")
    examples = []
    for line, row in rows:
        missing = [key for key in ("question", "answer") if key not in row]
        if missing:
            raise SkillError(f"{path}:{line}: row has no {missing} field; found {sorted(row)}")
        try:
            examples.append(Example(_input(row["question"]), _output(row["answer"])))
        except SkillError as exc:
            raise SkillError(f"{path}:{line}: {exc}") from exc
    return examples


def _contract(job: dict[str, Any], job_path: Path) -> Contract:
    where = repr(str(job_path))
    if "classes_description" in job:
        classes = job["classes_description"]
        if not isinstance(classes, dict) or not all(isinstance(v, str) for v in classes.values()):
            raise SkillError(f"{where}: 'classes_description' must map labels to descriptions")
        return LabelSet(classes)
    if "tools" in job:
        if not isinstance(job["tools"], list) or not job["tools"]:
            raise SkillError(f"{where}: 'tools' must be a non-empty list of function schemas")
        try:
            return ToolContract(ToolRegistry.from_openai_schemas(job["tools"]))
        except (ConfigError, AttributeError, TypeError) as exc:
            raise SkillError(f"{where}: bad tool definition: {exc}") from exc
    if "output_schema" in job:
        if not isinstance(job["output_schema"], dict):
            raise SkillError(f"{where}: 'output_schema' must be a JSON schema object")
        return JSONContract(job["output_schema"])
    text = " ".join(str(job.get(key, "")) for key in ("task_description", "input_description"))
    if re.search(r"sql", text, re.IGNORECASE):
        return SQLContract(dialect=_dialect(text))
    raise SkillError(
        f"{where}: cannot tell what kind of skill this is; give 'classes_description', "
        "'tools' or 'output_schema', or describe a SQL task"
    )


def _dialect(text: str) -> str:
    for dialect, pattern in _DIALECTS:
        if re.search(pattern, text, re.IGNORECASE):
            return dialect
    return "sqlite"


def _skill_name(folder: str) -> str:
    cleaned = re.sub(r"\W+", "_", folder).strip("_")
    return cleaned if cleaned.isidentifier() else f"skill_{cleaned}"


def _jsonl_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SkillError(f"{path}:{line_number}: not valid JSON: {exc.msg}") from exc
            if not isinstance(row, dict):
                raise SkillError(f"{path}:{line_number}: expected a JSON object, got {row!r:.60}")
            rows.append((line_number, row))
    return rows


def _csv_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None:
            raise SkillError(f"{path}: empty CSV file; expected a 'question,answer' header")
        missing = {"question", "answer"} - set(reader.fieldnames)
        if missing:
            raise SkillError(
                f"{path}:1: CSV header {reader.fieldnames!r} lacks {sorted(missing)}; "
                "name the columns 'question' and 'answer'"
            )
        try:
            return [(reader.line_num, dict(row)) for row in reader]
        except csv.Error as exc:
            raise SkillError(f"{path}:{reader.line_num}: malformed CSV: {exc}") from exc


def _input(question: Any) -> str | list[dict[str, Any]]:
    if isinstance(question, list) and _is_chat(question):
        return question
    if isinstance(question, str) and question.lstrip().startswith("["):
        try:
            decoded = json.loads(question)
        except json.JSONDecodeError:
            return question
        if isinstance(decoded, list) and _is_chat(decoded):
            return decoded
    if not isinstance(question, str):
        raise SkillError(f"question {question!r:.60} is neither text nor a chat message list")
    return question


def _output(answer: Any) -> Any:
    if isinstance(answer, str) and answer.lstrip().startswith("{"):
        try:
            decoded = json.loads(answer)
        except json.JSONDecodeError:
            return answer
        return decoded if isinstance(decoded, dict) else answer
    return answer


def _is_chat(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(m, dict) and "role" in m for m in items)
