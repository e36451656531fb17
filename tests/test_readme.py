"""The README tells the truth: its strategy count and names come from the registry, its commands parse, and its
demo time is the committed measurement (reports/demo/README.md, written by reports/demo/make.sh)."""
import re
import shlex
from pathlib import Path

import pytest

from harness.cli import build_parser
from harness.demo import DEFAULT
from harness.samplers import SAMPLERS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                    "fourteen fifteen sixteen seventeen eighteen nineteen twenty".split())}


def test_strategy_count_and_names_match_the_registry():
    m = re.search(r"(\w+) sampling strategies are registered.*?(\w+) are\s+plan-based.*?(\w+) train architecture "
                  r"parameters", README, re.S)
    assert m, "the README's sentence on the registered strategies is missing"
    total, plan, alpha = (WORDS[w.lower()] for w in m.groups())
    names = SAMPLERS.names()
    bilevel = [n for n in names if SAMPLERS.get(n).differentiable]
    assert (total, plan, alpha) == (len(names), len(names) - len(bilevel), len(bilevel))
    paragraph = README[m.start():README.index("\n\n", m.start())]
    assert {n for n in names if f"`{n}`" not in paragraph} == set()


def _commands() -> list[list[str]]:
    """Every `nb201-harness ...` line of the README's code blocks (continuations joined, up to a shell operator)."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in re.split(r"&&|\|\||;", line.split("#")[0]):
                words = shlex.split(part)
                if words and words[0].endswith("nb201-harness"):
                    cut = next((i for i, w in enumerate(words) if w in (">", "|", "2>")), len(words))
                    out.append(words[1:cut])
    return out


def test_readme_commands_parse():
    commands = _commands()
    assert len(commands) >= 10 and ["demo"] in commands
    parser = build_parser()
    for argv in commands:
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"README command does not parse: nb201-harness {' '.join(argv)}")


def test_readme_demo_time_is_the_committed_measurement_and_fits_in_3_minutes():
    report = (ROOT / "reports" / "demo" / "README.md").read_text()
    measured = re.search(r"the default demo \(nb201-harness demo: ([^;]+); [^)]*\) took (\d+) s", report)
    assert measured, "reports/demo/README.md lacks the default demo's time (run bash reports/demo/make.sh)"
    assert [s.strip() for s in measured.group(1).split(",")] == DEFAULT
    said = re.search(r"the default demo took (\d+) s", README)
    assert said and said.group(1) == measured.group(2)
    assert int(measured.group(2)) <= 180


def test_readme_test_times_are_the_committed_measurement():
    """The fast tier's and the full suite's counts and times in the README are reports/test-times/README.md's,
    and the README's test command is the fast tier, which took at most 5 minutes there."""
    report = (ROOT / "reports" / "test-times" / "README.md").read_text()
    found = re.findall(r"- (fast tier|full suite)[^:]*: (\d+ passed.*?) in ([\d.]+)s", report)  # no failure first
    rows, times = {k: v for k, v, _ in found}, {k: float(t) for k, _, t in found}
    assert set(rows) == {"fast tier", "full suite"}, "a tier is missing or did not pass in the recorded run"
    fast = re.search(r"fast test tier\*\*: (\d+) tests passed \((\d+) skipped\) in (\d+) s", README)
    full = re.search(r"passed (\d+) tests \((\d+) skipped\) in (\d+) s on the same machine", README)
    assert fast and full
    for said, key in ((fast, "fast tier"), (full, "full suite")):
        passed, skipped = re.search(r"(\d+) passed, (\d+) skipped", rows[key]).groups()
        assert (said.group(1), said.group(2)) == (passed, skipped) and int(said.group(3)) == round(times[key])
    slow = re.search(r"The (\d+) tests marked `slow`", README)
    assert slow and f"{int(slow.group(1)) + 1} deselected" in rows["fast tier"]  # + this test, left out there
    assert times["fast tier"] <= 300
    assert '-m "not slow"' in README.split("```bash", 3)[2]  # the README's test command is the fast tier
