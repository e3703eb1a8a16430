"""docs/robustness.md lists every attack with exactly its builder's options and defaults."""

from __future__ import annotations

import ast
import inspect
import re
import tomllib
from pathlib import Path

from fedlearn.client.attacks import ATTACKS, CONTEXT

DOC = Path(__file__).resolve().parents[2] / "docs" / "robustness.md"


def attack_rows() -> dict[str, str]:
    """Attack name -> its options cell, from the table under "## The attacks"."""
    section = DOC.read_text().split("## The attacks", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells[3]
    return rows


def test_every_attack_has_a_row() -> None:
    assert sorted(attack_rows()) == sorted(ATTACKS)


def test_each_row_names_the_builders_options_and_states_its_defaults() -> None:
    for name, cell in attack_rows().items():
        parameters = {
            p.name: p.default for p in inspect.signature(ATTACKS[name]).parameters.values() if p.name not in CONTEXT
        }
        named = set(re.findall(r"`(\w+)(?:=[^`]+)?`", cell)) & set(parameters)
        defaults = {k: ast.literal_eval(v) for k, v in re.findall(r"`(\w+)=([^`]+)`", cell)}

        assert named == set(parameters), name
        assert {k: parameters[k] for k in defaults} == defaults, name


def toml_block(heading: str) -> str:
    section = DOC.read_text().split(f"### {heading}\n", 1)[1].split("\n#", 1)[0]
    return section.split("```toml\n", 1)[1].split("```", 1)[0]


def test_the_documented_simulation_section_plans_an_attack() -> None:
    from fedlearn.config import parse_config
    from fedlearn.simulation import plan_simulation

    attack = tomllib.loads(toml_block("In a simulation"))["attack"]

    plan = plan_simulation(parse_config({"data": {"dataset": "iris", "nodes": 10}, "attack": attack}))

    assert plan.attack is not None and len(plan.attack.attackers) == 2


def test_the_documented_node_section_makes_a_byzantine_node(tmp_path: Path) -> None:
    from fedlearn.runtime.node_config import load_node_config

    node = (
        "[node]\nlearner = 'numpy.softmax'\n[datasets.iris]\nsource = 'builtin'\nname = 'iris'\nnodes = 2\nindex = 0\n"
    )
    path = tmp_path / "node.toml"
    path.write_text(node + toml_block("In a real node: red-team exercises"))

    config = load_node_config(path)

    assert config.attack is not None and config.attack.build().options == {"z": 1.0}
