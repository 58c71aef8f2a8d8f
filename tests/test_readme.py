"""The README documents every runtime setting, and nothing that does not exist."""
from __future__ import annotations

import re
from pathlib import Path

from mkserve.runtime.settings import SETTINGS

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table():
    table = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", table, re.MULTILINE))
    assert documented == {s.env for s in SETTINGS}


def test_readme_starts_with_the_two_commands():
    commands = re.findall(r"```bash\n(.*?)\n```", README, re.DOTALL)
    first = commands[0]
    assert first.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install")
    assert '"torch==2.13.0+cpu"' in first and "[test]" not in first and "mkserve serve" in first
    assert "bash .ci/run" in commands
    ci = (Path(__file__).parents[1] / ".ci" / "run").read_text()
    assert "README" in ci and "python3 -m pytest" in ci


def test_own_ci_workflow_runs_the_readme_test_command_and_builds_an_example():
    import yaml

    workflow = yaml.safe_load((Path(__file__).parents[1] / ".github/workflows/ci.yml").read_text())
    assert {"push", "pull_request"} <= set(workflow[True])  # YAML reads the key `on` as True
    runs = {name: [step.get("run", "") for step in job["steps"]]
            for name, job in workflow["jobs"].items()}
    assert "bash .ci/run" in runs["test"]
    assert any(r.startswith("ruff check") for r in runs["lint"])
    assert any("mkserve build" in r for r in runs["example-image"])


def test_the_pictures_are_drawn_from_the_repository():
    """The flow diagram is what docs/flow.py draws from the code today; the benchmark chart
    and the table under it come from the run whose JSON the README names."""
    import subprocess
    import sys

    from mkserve.bench.plot import load_report, summary_table

    root = Path(__file__).parents[1]
    assert "](docs/img/flow.svg)" in README and "](docs/img/bench.png)" in README
    check = subprocess.run([sys.executable, str(root / "docs/flow.py"), "--check"],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    command = re.search(r"`mkserve bench (benchmarks/\S+\.json) --plot docs/img/bench\.png`",
                        README)
    assert command, "the README names the command that draws its chart"
    performance = README.split("## Performance", 1)[1].split("\n## ", 1)[0]
    assert summary_table(load_report(root / command.group(1))) in performance
    assert (root / "docs/img/bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
