"""The benchmark run: generate the data, measure every stage (platform and reference, best of N), report ratios.

Two kinds of stage:
- throughput: the platform's rows/s over the reference's rows/s for the same data (higher is better);
- time: the platform's seconds over the reference's seconds for the same graph (lower is better).

Each stage names the demo source packages it runs (`STAGE_SOURCES`): a stage whose source a fork deleted is
skipped and recorded as such, and a source's modules are imported only by the stages that need it, so the
benchmark runs whatever stages the remaining sources allow.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import automation_stage, diff_stage, stages
from benchmarks.generate import PRODUCTS, Scale, add_order_increment, fill_shop, generate_files, remove_order_increment
from benchmarks.measure import Run, run_in_child

MEMORY_LIMIT_MIB = 1024


@dataclass(frozen=True)
class Target:
    op: str  # ">=" or "<="
    value: float

    def met(self, ratio: float) -> bool:
        return ratio >= self.value if self.op == ">=" else ratio <= self.value

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}x"


@dataclass
class Stage:
    name: str
    kind: str  # "throughput" | "time"
    platform: str  # what the platform side runs
    reference: str  # what it is compared with
    target: Target | None
    rows: int = 0
    platform_runs: list[Run] = field(default_factory=list)
    reference_runs: list[Run] = field(default_factory=list)

    @staticmethod
    def _best(runs: list[Run]) -> Run:
        return min(runs, key=lambda run: run.seconds)

    @property
    def ratio(self) -> float:
        platform, reference = self._best(self.platform_runs), self._best(self.reference_runs)
        if self.kind == "throughput":
            return reference.seconds / platform.seconds  # = platform rows/s over reference rows/s
        return platform.seconds / reference.seconds

    @property
    def met(self) -> bool | None:
        return self.target.met(self.ratio) if self.target else None

    def rate(self, runs: list[Run]) -> float:
        return self.rows / self._best(runs).seconds

    @property
    def platform_peak_mib(self) -> float:
        return max(run.peak_mib for run in self.platform_runs)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "platform": self.platform,
            "reference": self.reference,
            "rows": self.rows,
            "platform_rows_per_s": round(self.rate(self.platform_runs), 1),
            "reference_rows_per_s": round(self.rate(self.reference_runs), 1),
            "ratio": round(self.ratio, 4),
            "target": str(self.target) if self.target else None,
            "met": self.met,
            "platform_peak_mib": round(self.platform_peak_mib, 1),
            "reference_peak_mib": round(max(run.peak_mib for run in self.reference_runs), 1),
            "platform_seconds": [round(run.seconds, 4) for run in self.platform_runs],
            "reference_seconds": [round(run.seconds, 4) for run in self.reference_runs],
            "notes": sorted({run.note for run in [*self.platform_runs, *self.reference_runs] if run.note}),
        }


STAGE_NAMES = ("csv", "postgres", "nasa", "orchestration", "incremental", "noop")
OPTIONAL_STAGES = ("diff", "automation")  # run only when named with --stage
GRAPH = ("files", "nasa", "shop")  # the whole graph: every source a graph script and its row checks name
STAGE_SOURCES: dict[str, tuple[str, ...]] = {  # the packages under extract/ each stage runs
    "csv": ("files",),
    "postgres": ("shop",),
    "nasa": ("nasa",),
    "orchestration": GRAPH,
    "incremental": GRAPH,
    "noop": GRAPH,
    "diff": (),
    "automation": GRAPH,
}


def source_present(source: str) -> bool:
    return importlib.util.find_spec(f"extract.{source}") is not None


def skip_reason(stage: str) -> str | None:
    """Why the stage cannot run here (`source shop not present`), or None when every source it needs is."""
    missing = [source for source in STAGE_SOURCES[stage] if not source_present(source)]
    if not missing:
        return None
    return f"source {missing[0]} not present" if len(missing) == 1 else f"sources {', '.join(missing)} not present"


def stage_plan(only: Iterable[str] = STAGE_NAMES) -> dict[str, str | None]:
    """The named stages in the order they run, each with the reason it will be skipped (None: it runs)."""
    wanted = set(only)
    return {stage: skip_reason(stage) for stage in (*STAGE_NAMES, *OPTIONAL_STAGES) if stage in wanted}


@dataclass
class Bench:
    """One benchmark run over one scale in `work_dir` (generated data is reused there when the scale matches)."""

    scale: Scale
    work_dir: Path
    repeat: int = 3
    only: tuple[str, ...] = STAGE_NAMES
    progress: Callable[[str], None] = print
    stages: list[Stage] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # stage (as named by --stage) -> why it did not run

    def _measure(self, label: str, work: Callable[..., tuple[float, int]], *args: Any) -> Run:
        run = run_in_child(work, *args)
        self.progress(f"{label}: {run.seconds:.3f} s, {run.rows:,} rows, peak {run.peak_mib:,.0f} MiB {run.note}")
        return run

    def _pair(self, stage: Stage, platform: Callable, reference: Callable, *args: Any) -> Stage:
        """Reference and platform runs interleaved, so drift on a noisy machine hits both sides alike."""
        for number in range(1, self.repeat + 1):
            stage.reference_runs.append(self._measure(f"{stage.name} reference {number}", reference, *args))
            stage.platform_runs.append(self._measure(f"{stage.name} platform {number}", platform, *args))
        stage.rows = stage.platform_runs[0].rows
        self.stages.append(stage)
        return stage

    def run(self) -> list[Stage]:
        scale, work = self.scale, self.work_dir
        plan = stage_plan(self.only)
        for name, reason in plan.items():
            if reason is not None:
                self.skipped[name] = reason
                self.progress(f"{name}: skipped, {reason}")
        runnable = [name for name, reason in plan.items() if reason is None]
        if "diff" in runnable:
            self._pair(
                Stage("branch_diff", "throughput", "elt branch diff (keyed)", "DuckDB EXCEPT", Target(">=", 0.8)),
                diff_stage.diff_platform,
                diff_stage.diff_reference,
                work / "runs" / "diff",
                work / "data" / scale.name / "diff",
                scale.orders,
            )
        sources = {source for name in runnable for source in STAGE_SOURCES[name]}
        if not sources:  # nothing left but the diff, which needs no generated data
            return self.stages
        self.progress(f"generating scale {scale.name} in {work}")
        dataset = generate_files(work / "data" / scale.name, scale, drops="files" in sources, neows="nasa" in sources)
        with ExitStack() as stack:
            url = stack.enter_context(self._shop()) if "shop" in sources else ""
            shop_rows = {"customers": scale.customers, "products": PRODUCTS, "orders": scale.orders}
            runs = work / "runs"
            if "csv" in runnable:
                self._pair(
                    Stage(
                        "csv_to_raw", "throughput", "dlt share_price_files source", "DuckDB read_csv", Target(">=", 0.5)
                    ),
                    stages.csv_platform,
                    stages.csv_reference,
                    runs / "csv",
                    dataset.drop_dir,
                    scale.csv_rows,
                )
            if "postgres" in runnable:
                self._pair(
                    Stage(
                        "postgres_to_raw",
                        "throughput",
                        "replicate_shop (snapshot on a first load, then Sling)",
                        "DuckDB postgres extension CTAS",
                        Target(">=", 0.3),
                    ),
                    stages.postgres_platform,
                    stages.postgres_reference,
                    runs / "postgres",
                    url,
                    shop_rows,
                )
            if "nasa" in runnable:
                self._pair(
                    Stage(
                        "nasa_to_raw", "throughput", "dlt neows source via replay HTTP", "DuckDB read_text + JSON", None
                    ),
                    stages.nasa_platform,
                    stages.nasa_reference,
                    runs / "nasa",
                    dataset.recorded_dir,
                    scale.neo_rows,
                )
            if {"orchestration", "incremental", "noop"} & set(runnable):
                self._graph_stages(runnable, url, dataset.drop_dir, dataset.recorded_dir)
            if "automation" in runnable:
                self._automation_stages(url, dataset.drop_dir, dataset.recorded_dir)
        return self.stages

    @contextmanager
    def _shop(self) -> Iterator[str]:
        """The shop's demo PostgreSQL, filled at this scale (kept across runs in the same work dir) with no
        increment left behind; yields its URL."""
        from extract.shop.demo_postgres import DemoPostgres

        with DemoPostgres(self.work_dir / "postgres") as postgres:
            url = postgres.url
            marker = self.work_dir / "postgres" / "filled.json"
            wanted = json.dumps(asdict(self.scale), sort_keys=True)
            if not marker.is_file() or marker.read_text() != wanted:
                self.progress(f"filling PostgreSQL: {self.scale.customers:,} customers, {self.scale.orders:,} orders")
                fill_shop(url, self.scale)
                marker.write_text(wanted)
            remove_order_increment(url)
            try:
                yield url
            finally:
                remove_order_increment(url)

    def _graph_stages(self, runnable: list[str], url: str, drop_dir: Path, recorded_dir: Path) -> None:
        """The whole graph bare (the reference of three stages), then Dagster, +1% orders, and a no-op re-run."""
        scale, graph = self.scale, self.work_dir / "graph"
        extra = {"ELT_FILES_DROP_DIR": str(drop_dir), "ELT_SHOP_POSTGRES_URL": url}
        dbt_target = self.work_dir / "dbt_target"  # kept across runs: dbt's partial parse, as on a real machine
        full = stages.graph_script(
            self.work_dir / "graph_full.sh", recorded_dir, dbt_target, ("files", "nasa", "shop", "dbt")
        )
        update = stages.graph_script(self.work_dir / "graph_shop.sh", recorded_dir, dbt_target, ("shop", "dbt"))
        snapshot = self.work_dir / "graph_full.duckdb"
        graph_rows = scale.csv_rows + scale.shop_rows + scale.neo_rows

        def expected(orders: int) -> dict[str, int]:
            return {"raw_shop.orders": orders, "marts.fct_orders": orders, "raw_files.share_prices": scale.csv_rows}

        full_runs = []
        for number in range(1, self.repeat + 1):
            run = self._measure(
                f"graph bare full run {number}", stages.run_script, full, graph, extra, expected(scale.orders), True
            )
            full_runs.append(run)
        shutil.copyfile(graph / "warehouse.duckdb", snapshot)

        def stage(name: str, platform: str, reference: str, target: Target, runs: list[Run]) -> None:
            self.stages.append(Stage(name, "time", platform, reference, target, graph_rows, runs, full_runs))

        if "orchestration" in runnable:
            runs = [
                self._measure(
                    f"graph Dagster run {number}",
                    stages.dagster_platform,
                    self.work_dir / "dagster",
                    extra,
                    recorded_dir,
                    expected(scale.orders),
                )
                for number in range(1, self.repeat + 1)
            ]
            stage(
                "orchestration_overhead",
                "elt run (run_pipeline) of every asset",
                "the same work from a shell script",
                Target("<=", 1.3),
                runs,
            )
        if "incremental" in runnable:
            runs = []
            for number in range(1, self.repeat + 1):
                shutil.copyfile(snapshot, graph / "warehouse.duckdb")
                added = add_order_increment(url, self.scale)
                try:
                    run = self._measure(
                        f"graph +1% orders {number}",
                        stages.run_script,
                        update,
                        graph,
                        extra,
                        expected(scale.orders + added),
                        False,
                    )
                finally:
                    remove_order_increment(url)
                runs.append(run)
            stage(
                "incremental_orders",
                "+1% orders: shop extract + dbt build",
                "full run of the graph",
                Target("<=", 0.1),
                runs,
            )
        if "noop" in runnable:
            runs = []
            for number in range(1, self.repeat + 1):
                shutil.copyfile(snapshot, graph / "warehouse.duckdb")
                run = self._measure(
                    f"graph no-op re-run {number}",
                    stages.run_script,
                    update,
                    graph,
                    extra,
                    expected(scale.orders),
                    False,
                )
                runs.append(run)
            stage(
                "noop_rerun", "nothing new: shop extract + dbt build", "full run of the graph", Target("<=", 0.2), runs
            )

    def _automation_stages(self, url: str, drop_dir: Path, recorded_dir: Path) -> None:
        """Declarative automation (benchmarks/automation_stage.py): a full Dagster run, then from its snapshot a
        cycle (orders load, one tick, the run it requests) with nothing new and one with +1% orders."""
        scale, work = self.scale, self.work_dir / "automation"
        extra = {"ELT_FILES_DROP_DIR": str(drop_dir), "ELT_SHOP_POSTGRES_URL": url}
        graph_rows = scale.csv_rows + scale.shop_rows + scale.neo_rows
        snapshot = work / "snapshot"

        def expected(orders: int) -> dict[str, int]:
            return {"raw_shop.orders": orders, "marts.fct_orders": orders, "raw_files.share_prices": scale.csv_rows}

        full_runs = [
            self._measure(
                f"automation full Dagster run {number}",
                automation_stage.full_run,
                work / "full",
                snapshot,
                extra,
                recorded_dir,
                expected(scale.orders),
            )
            for number in range(1, self.repeat + 1)
        ]
        noop = [
            self._measure(
                f"automation no-op cycle {number}",
                automation_stage.cycle,
                work / "cycle",
                snapshot,
                extra,
                expected(scale.orders),
            )
            for number in range(1, self.repeat + 1)
        ]
        orders, publishes = [], []
        for number in range(1, self.repeat + 1):
            added = add_order_increment(url, scale)
            try:
                run = self._measure(
                    f"automation +1% orders cycle {number}",
                    automation_stage.cycle,
                    work / "cycle",
                    snapshot,
                    extra,
                    expected(scale.orders + added),
                )
            finally:
                remove_order_increment(url)
            orders.append(run)
            seconds = automation_stage.publish_seconds(work / "cycle")
            if seconds is not None:
                publishes.append(Run(seconds, run.rows, run.peak_mib, "publish step of the +1% orders run"))
        reference = "full Dagster run of the graph (run_pipeline)"
        for name, side, target, runs in [
            ("automation_noop", "nothing new: orders load + tick, nothing launched", Target("<=", 0.05), noop),
            ("automation_orders", "+1% orders: orders load + tick + the models it requests", Target("<=", 0.1), orders),
        ]:
            self.stages.append(Stage(name, "time", side, reference, target, graph_rows, runs, full_runs))
        if publishes:
            self.stages.append(
                Stage(
                    "wap_publish",
                    "time",
                    "publish step (+1% orders)",
                    reference,
                    None,
                    graph_rows,
                    publishes,
                    full_runs,
                )
            )
        else:
            self.progress(f"wap_publish: {automation_stage.NO_PUBLISH}")


def results_json(bench: Bench) -> dict[str, Any]:
    """The results file; `skipped` names each stage that did not run and why (a source deleted in this fork), and
    `peak_memory` holds nulls when no stage ran."""
    peak_stage = max(bench.stages, key=lambda stage: stage.platform_peak_mib, default=None)
    peak_mib = peak_stage.platform_peak_mib if peak_stage else None
    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
        "scale": asdict(bench.scale) | {"csv_rows": bench.scale.csv_rows, "shop_rows": bench.scale.shop_rows},
        "repeat": bench.repeat,
        "stages": {stage.name: stage.to_json() for stage in bench.stages},
        "skipped": dict(bench.skipped),
        "peak_memory": {
            "platform_peak_mib": round(peak_mib, 1) if peak_mib is not None else None,
            "stage": peak_stage.name if peak_stage else None,
            "target_mib": MEMORY_LIMIT_MIB,
            "met": peak_mib < MEMORY_LIMIT_MIB if peak_mib is not None else None,
        },
    }
