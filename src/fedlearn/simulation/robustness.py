"""The robustness grid: defences × attacks × data splits × Byzantine fractions × seeds.

A grid file is a run config (the sections ``fedlearn simulate`` reads) plus a ``[grid]`` section
that names what varies; every cell is that run config with the cell's split, reducer, attack
and seed written in, run as ``fedlearn simulate`` would run it with the in-process executor::

    [grid]
    fractions = [0.0, 0.1, 0.2]         # of the nodes that attack; 0 is the attack-free run
    seeds = [0, 1]
    knowledge = "colluders"             # what the attackers know (see fedlearn.client.byzantine)

    [grid.splits]                       # name = [data] keys
    iid = { partition = "iid" }
    "dirichlet-0.1" = { partition = "dirichlet", alpha = 0.1 }

    [grid.defences]                     # name = a [strategy.reducer] table; {} is the strategy's mean
    fedavg = {}
    median = { name = "coordinate_median" }

    [grid.attacks]                      # name = an [attack] table, without fraction
    sign_flip = { name = "sign_flip" }
    backdoor = { name = "backdoor" }

Each cell gives one :class:`CellResult`: the final central accuracy and, for a backdoor, its
success rate on triggered test rows. :func:`summarise` averages them over seeds and
:func:`markdown` writes the tables, with the two targets of issue 13 checked on each row:
the best defence within ``accuracy_gap`` of attack-free FedAvg, and some defence keeping
backdoor success below ``backdoor_limit``.
"""

from __future__ import annotations

import copy
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fedlearn.config import parse_config
from fedlearn.core.config_files import read_toml, validate
from fedlearn.core.errors import ConfigError
from fedlearn.simulation.attacks import backdoor_success
from fedlearn.simulation.from_config import plan_simulation
from fedlearn.simulation.run import simulate

NO_ATTACK = "none"
"""The attack column of the attack-free cells (fraction 0)."""
MEAN = "fedavg"
"""The defence whose attack-free accuracy the targets compare with, when the grid has it."""


class _Grid(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fractions: list[float] = Field(default_factory=lambda: [0.0, 0.1, 0.2], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    knowledge: Literal["own", "colluders", "omniscient"] = "colluders"
    splits: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"iid": {"partition": "iid"}}, min_length=1)
    defences: dict[str, dict[str, Any]] = Field(min_length=1)
    attacks: dict[str, dict[str, Any]] = Field(min_length=1)
    accuracy_gap: float = Field(0.02, ge=0, le=1)
    backdoor_limit: float = Field(0.05, ge=0, le=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cell:
    """One run of the grid."""

    split: str
    defence: str
    attack: str
    fraction: float
    seed: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CellResult:
    """What one cell measured; ``error`` is set, and the numbers NaN, when the run failed."""

    split: str
    defence: str
    attack: str
    fraction: float
    byzantine: int
    seed: int
    accuracy: float
    backdoor: float | None
    seconds: float
    error: str = ""


@dataclass(frozen=True, slots=True)
class Grid:
    """A grid file: the base run config (raw TOML data) and what varies."""

    base: Mapping[str, Any]
    grid: _Grid
    source: str

    def cells(self) -> list[Cell]:
        """Every cell: the attack-free run per split, defence and seed, then each attack at each fraction above 0."""
        out = []
        for split in self.grid.splits:
            for seed in self.grid.seeds:
                for fraction in sorted(set(self.grid.fractions)):
                    attacks = [NO_ATTACK] if fraction == 0 else list(self.grid.attacks)
                    for attack in attacks:
                        for defence in self.grid.defences:
                            out.append(Cell(split=split, defence=defence, attack=attack, fraction=fraction, seed=seed))
        return out

    def run_config(self, cell: Cell) -> dict[str, Any]:
        """The run config (raw TOML data) of ``cell``."""
        data = copy.deepcopy(dict(self.base))
        data.setdefault("run", {})["seed"] = cell.seed
        split = dict(self.grid.splits[cell.split])
        section = data.setdefault("data", {})
        section["partition"] = split.pop("partition", "iid")
        section["partition_options"] = split
        reducer = self.grid.defences[cell.defence]
        strategy = data.setdefault("strategy", {})
        strategy.pop("reducer", None)
        if reducer:
            strategy["reducer"] = dict(reducer)
        data.pop("attack", None)
        if cell.attack != NO_ATTACK:
            table = dict(self.grid.attacks[cell.attack])
            data["attack"] = {"knowledge": self.grid.knowledge, **table, "fraction": cell.fraction}
        data.setdefault("simulation", {})["executor"] = "inprocess"
        return data


def load_grid(path: str | Path) -> Grid:
    """Read and check a grid file: its ``[grid]`` section, and every cell's run config."""
    raw = read_toml(path, what="grid file")
    source = str(path)
    if "grid" not in raw:
        raise ConfigError(f"{source}: a grid file needs a [grid] section naming its defences and attacks")
    grid_data = raw.pop("grid")
    grid = validate(_Grid, grid_data, source=f"{source} [grid]")
    if any(not 0 <= f < 1 for f in grid.fractions):
        raise ConfigError(f"{source}: [grid] fractions must be in [0, 1); got {grid.fractions}")
    for name, table in grid.attacks.items():
        if "fraction" in table or "nodes" in table:
            raise ConfigError(f"{source}: [grid.attacks] {name}: the grid sets the attackers; drop fraction/nodes")
        if "name" not in table:
            raise ConfigError(f"{source}: [grid.attacks] {name}: needs the attack's `name`")
    parsed = Grid(base=raw, grid=grid, source=source)
    for cell in _one_of_each(parsed):  # fail now on a bad option, not hours into the grid
        try:
            plan_simulation(parse_config(parsed.run_config(cell), source=source))
        except ConfigError as exc:
            raise ConfigError(f"{source}: cell {cell.split}/{cell.defence}/{cell.attack}: {exc}") from None
    return parsed


def _one_of_each(grid: Grid) -> Iterable[Cell]:
    """A cell with each split, defence and attack at least once, at the largest fraction."""
    g = grid.grid
    top, seed = max(g.fractions), g.seeds[0]
    names = [(s, d, a) for s in g.splits for d in g.defences for a in [NO_ATTACK, *g.attacks]]
    seen: set[tuple[int, str]] = set()
    for split, defence, attack in names:
        fresh = {(0, split), (1, defence), (2, attack)} - seen
        if fresh:
            seen |= fresh
            yield Cell(
                split=split, defence=defence, attack=attack, fraction=top if attack != NO_ATTACK else 0, seed=seed
            )


def run_cell(grid: Grid, cell: Cell) -> CellResult:
    """Run one cell to the end; a run that fails gives a result with ``error`` set rather than raising."""
    started = time.perf_counter()
    byzantine = 0
    try:
        config = parse_config(grid.run_config(cell), source=grid.source)
        plan = plan_simulation(config)
        byzantine = len(plan.attack.attackers) if plan.attack is not None else 0
        result = simulate(
            plan.learner,
            plan.partitions,
            plan.strategy,
            plan.engine,
            test_data=plan.test_data,
            evaluation_data=plan.evaluation_data,
            executor="inprocess",
            blas_threads=config.simulation.blas_threads,
            faults=plan.faults,
            attack=plan.attack,
        )
        accuracy = float(result.history[-1].central_metrics.get("accuracy", math.nan))
        attack = plan.attack.attack if plan.attack is not None else None
        backdoor = backdoor_success(plan.learner, result.params, plan.test_data, attack) if attack else None
        error = ""
    except Exception as exc:  # a cell that fails is a result of the grid, not the end of it
        accuracy, backdoor, error = math.nan, None, f"{type(exc).__name__}: {exc}".splitlines()[0]
    return CellResult(
        split=cell.split,
        defence=cell.defence,
        attack=cell.attack,
        fraction=cell.fraction,
        byzantine=byzantine,
        seed=cell.seed,
        accuracy=accuracy,
        backdoor=backdoor,
        seconds=time.perf_counter() - started,
        error=error,
    )


CSV_COLUMNS = tuple(CellResult.__dataclass_fields__)


def csv_rows(results: Iterable[CellResult]) -> list[dict[str, object]]:
    """One dict per result, keyed by :data:`CSV_COLUMNS`; a missing backdoor rate is empty."""
    return [{k: ("" if v is None else v) for k, v in asdict(r).items()} for r in results]


# --- summary ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """Mean accuracy and backdoor success over seeds of one (split, fraction, attack, defence)."""

    accuracy: float
    backdoor: float | None
    runs: int
    failed: int


Key = tuple[str, float, str, str]


def summarise(results: Iterable[CellResult]) -> dict[Key, Summary]:
    """Average each (split, fraction, attack, defence) over its seeds, failed runs left out and counted."""
    groups: dict[Key, list[CellResult]] = defaultdict(list)
    for r in results:
        groups[(r.split, r.fraction, r.attack, r.defence)].append(r)
    out = {}
    for key, rows in groups.items():
        ok = [r for r in rows if not r.error]
        rates = [r.backdoor for r in ok if r.backdoor is not None]
        out[key] = Summary(
            accuracy=sum(r.accuracy for r in ok) / len(ok) if ok else math.nan,
            backdoor=sum(rates) / len(rates) if rates else None,
            runs=len(rows),
            failed=len(rows) - len(ok),
        )
    return out


TRUSTED = ("fltrust",)
"""Reducers that need trusted data at the coordinator; the tables also show the best defence without them."""


def markdown(grid: Grid, results: Sequence[CellResult]) -> str:
    """One table per split and fraction above 0: attacks by defences, with each row's targets checked."""
    summary = summarise(results)
    g = grid.grid
    defences = list(g.defences)
    untrusted = [d for d in defences if g.defences[d].get("name") not in TRUSTED]
    trusted = len(untrusted) < len(defences)
    reference = MEAN if MEAN in defences else defences[0]
    seeds = len(g.seeds)
    byzantine = {(r.split, r.fraction): r.byzantine for r in results if r.attack != NO_ATTACK}
    nodes = grid.base.get("data", {}).get("nodes", "?")
    lines: list[str] = []
    for split in g.splits:
        clean = summary.get((split, 0.0, NO_ATTACK, reference))
        baseline = clean.accuracy if clean is not None else math.nan
        for fraction in sorted(f for f in set(g.fractions) if f > 0):
            count = byzantine.get((split, fraction), "?")
            extra = " | best without trusted data" if trusted else ""
            lines += [
                f"#### {split}: {count} of {nodes} nodes Byzantine ({fraction:.0%}), mean of {seeds} seed(s)",
                "",
                "| attack | " + " | ".join(defences) + f" | best defence{extra} | target |",
                "|---|" + "---:|" * len(defences) + "---|" * (3 if trusted else 2),
            ]
            for attack, at in [(NO_ATTACK, 0.0), *((a, fraction) for a in g.attacks)]:
                cells = dict(zip(defences, (summary.get((split, at, attack, d)) for d in defences), strict=True))
                stopping = _stopping(cells, g.backdoor_limit)  # a backdoor row's contenders stop the backdoor
                best = _best(cells, [d for d in defences if d in stopping], baseline)
                best_untrusted = _best(cells, [d for d in untrusted if d in stopping], baseline)
                shown = [_cell(cells[d]) for d in defences]
                columns = [_named(best, baseline), *([_named(best_untrusted, baseline)] if trusted else [])]
                verdict = "" if attack == NO_ATTACK else _verdict(cells, best, best_untrusted, baseline, g, trusted)
                lines.append(f"| {attack} | " + " | ".join([*shown, *columns, verdict]) + " |")
            lines.append(_worst_case(summary, split, fraction, defences, untrusted, baseline, g, trusted))
            lines.append("")
    return "\n".join(lines)


def _worst_case(
    summary: Mapping[Key, Summary],
    split: str,
    fraction: float,
    defences: Sequence[str],
    untrusted: Sequence[str],
    baseline: float,
    grid: _Grid,
    trusted: bool,
) -> str:
    """The last row: each defence's lowest accuracy over the attacks, and the one defence to pick for all of them.

    A defence that lets a backdoor in (success at ``backdoor_limit`` or above) is marked, and
    cannot be the pick.
    """
    worst: dict[str, Summary | None] = {}
    shown = []
    for defence in defences:
        rows = [summary.get((split, fraction, attack, defence)) for attack in grid.attacks]
        done = [r for r in rows if r is not None and not math.isnan(r.accuracy)]
        if not done:
            worst[defence] = None
            shown.append("–")
            continue
        lowest = min(r.accuracy for r in done)
        backdoored = any(r.backdoor is not None and r.backdoor >= grid.backdoor_limit for r in done)
        worst[defence] = None if backdoored else Summary(accuracy=lowest, backdoor=None, runs=0, failed=0)
        shown.append(f"{lowest * 100:.1f}" + (" (backdoor in)" if backdoored else ""))
    best = _best(worst, defences, baseline)
    best_untrusted = _best(worst, untrusted, baseline)
    columns = [_named(best, baseline), *([_named(best_untrusted, baseline)] if trusted else [])]
    if best is None or math.isnan(baseline):
        verdict = "**no defence stops every attack**"
    else:
        met = baseline - best[1] <= grid.accuracy_gap
        untrusted_met = best_untrusted is not None and baseline - best_untrusted[1] <= grid.accuracy_gap
        verdict = (
            "one defence for every attack: "
            + ("met" if met else "**missed**")
            + (" with trusted data only" if met and trusted and not untrusted_met else "")
        )
    return "| **worst case** | " + " | ".join([*shown, *columns, verdict]) + " |"


def _cell(s: Summary | None) -> str:
    if s is None or math.isnan(s.accuracy):
        return "failed" if s is not None else "–"
    text = f"{s.accuracy * 100:.1f}"
    if s.backdoor is not None:
        text += f" · {s.backdoor * 100:.0f}"
    return text + (f" ({s.failed} failed)" if s.failed else "")


def _stopping(cells: Mapping[str, Summary | None], limit: float) -> set[str]:
    """The defences that count for a row: all of them, or in a backdoor's row those that keep it below ``limit``."""
    rates = {d: c.backdoor for d, c in cells.items() if c is not None and c.backdoor is not None}
    return set(cells) if not rates else {d for d, rate in rates.items() if rate < limit}


def _best(cells: Mapping[str, Summary | None], among: Sequence[str], baseline: float) -> tuple[str, float] | None:
    """The defence of ``among`` with the highest accuracy, and that accuracy."""
    scored = [(c.accuracy, d) for d in among if (c := cells[d]) is not None and not math.isnan(c.accuracy)]
    if not scored:
        return None
    accuracy, name = max(scored)
    return name, accuracy


def _named(best: tuple[str, float] | None, baseline: float) -> str:
    if best is None:
        return "–"
    name, accuracy = best
    gap = "" if math.isnan(baseline) else f" ({(accuracy - baseline) * 100:+.1f})"
    return f"{name} {accuracy * 100:.1f}{gap}"


def _verdict(
    cells: Mapping[str, Summary | None],
    best: tuple[str, float] | None,
    best_untrusted: tuple[str, float] | None,
    baseline: float,
    grid: _Grid,
    trusted: bool,
) -> str:
    """Whether a row meets the accuracy target, and for a backdoor the backdoor target.

    In a backdoor's row only the defences that stop it compete for best, so the accuracy target
    is met only by a defence that also keeps the backdoor out.
    """
    rates = [(c.backdoor, d) for d, c in cells.items() if c is not None and c.backdoor is not None]
    if rates and best is None:
        rate, holder = min(rates)
        return f"**backdoor missed (lowest: {holder} {rate * 100:.0f}%)**"
    if best is None or math.isnan(baseline):
        return "no run finished"
    met = baseline - best[1] <= grid.accuracy_gap
    verdicts = ["accuracy met" if met else "**accuracy missed**"]
    if met and trusted and (best_untrusted is None or baseline - best_untrusted[1] > grid.accuracy_gap):
        verdicts[0] = "accuracy met with trusted data only"
    if rates:
        stopped = sum(rate < grid.backdoor_limit for rate, _ in rates)
        verdicts.append(f"backdoor met ({stopped} of {len(rates)} defences below {grid.backdoor_limit:.0%})")
    return "; ".join(verdicts)
