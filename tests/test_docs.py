"""The commands README.md and docs/ show work: every script they name exists and answers ``--help``,
and every flag they pass it is one of its flags; every README section links to its guide."""

import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# "python experiments/x.py ...", "python -m pkg.mod ...",
# "sbatch [sbatch flags] slurm/submit.sbatch experiments/x.py ..."
COMMAND = re.compile(r"(?:python3? (?:-m [\w.]+|[\w./-]+\.py)|sbatch )[^`\n]*")
NOT_OURS = {"pytest", "pip", "venv", "tensorboard"}  # other tools' modules a guide may run with python -m


def _logical_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined."""
    return text.replace("\\\n", " ").splitlines()


def commands(path: Path) -> list[tuple[str, str, list[str]]]:
    """(where, target, flags) of each command in ``path``: target is a script path or ``-m module``."""
    found = []
    for number, line in enumerate(_logical_lines(path.read_text()), start=1):
        for match in COMMAND.finditer(line):
            text = match.group(0).split(" # ")[0].split("  #")[0]
            try:
                words = shlex.split(text, comments=True)
            except ValueError:  # an unbalanced quote in prose: not a command
                continue
            if words[0] == "sbatch":
                scripts = [i for i, w in enumerate(words) if w.startswith("experiments/") and w.endswith(".py")]
                if not scripts:
                    continue
                target, rest = words[scripts[0]], words[scripts[0] + 1:]
            elif words[1] == "-m":
                if len(words) < 3 or words[2].split(".")[0] in NOT_OURS:
                    continue
                target, rest = f"-m {words[2]}", words[3:]
            else:
                target, rest = words[1], words[2:]
                if not target.startswith(("experiments/", "slurm/", "tests/")):
                    continue
            flags = [w.split("=")[0] for w in rest if w.startswith("--") and len(w) > 2]
            found.append((f"{path.name}:{number}", target, flags))
    return found


ALL = [c for path in DOCS for c in commands(path)]


@cache
def help_text(target: str) -> tuple[int, str]:
    args = target.split() if target.startswith("-m ") else [str(REPO / target)]
    proc = subprocess.run([sys.executable, *args, "--help"], cwd=REPO, capture_output=True, text=True, timeout=180)
    return proc.returncode, proc.stdout + proc.stderr


def test_the_docs_name_commands_at_all():
    assert len(ALL) > 20 and any(t == "experiments/run_asha.py" for _, t, _ in ALL)


@pytest.mark.parametrize("target", sorted({t for _, t, _ in ALL}))
def test_every_command_in_the_docs_answers_help_and_knows_its_flags(target):
    if not target.startswith("-m "):
        assert (REPO / target).is_file(), f"{target} (named in {[w for w, t, _ in ALL if t == target]}) does not exist"
    code, text = help_text(target)
    assert code == 0, f"{target} --help exited {code}: {text[-600:]}"
    known = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", text))
    unknown = sorted({f"{where}: {flag}" for where, t, flags in ALL if t == target for flag in flags
                      if flag not in known})
    assert not unknown, f"{target} has no such flag(s): {unknown}"


def test_every_readme_section_links_to_its_guide():
    guides = sorted((REPO / "docs").glob("*.md"))
    if not guides:
        pytest.skip("no docs/ yet")
    text = (REPO / "README.md").read_text()
    sections = re.split(r"\n## ", text)[1:]
    assert sections
    for section in sections:
        title = section.splitlines()[0]
        if title.lower().startswith(("quick start", "layout", "i want to")):
            continue
        assert re.search(r"\]\(docs/[\w-]+\.md[#\w-]*\)", section), f"README section '{title}' links to no guide"
    for guide in guides:
        assert f"docs/{guide.name}" in text, f"README does not link to {guide.name}"
