"""An experiment as a dask task graph: each shared artefact (real split, simulation + sections, plain
and microscope images, one pix2pix per fraction, the supplement) is a task that waits for the
artefacts it reads, and each row waits only for the artefacts its setting trains on, so rows on
real data start while pix2pix models still train. A last task runs :func:`prepare_artefacts`, which
finds every step done and builds whatever artefact the graph does not know; rows of settings not in
:data:`SETTING_NEEDS` wait for it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from grainforge.experiment import artefacts
from grainforge.experiment.config import BUILTIN_DEMO, ExperimentConfig
from grainforge.experiment.layout import FULL, RunLayout, format_fraction
from grainforge.experiment.runner import (RowFunction, RowSpec, dask_client, new_run_token, run_row_tasks, run_task,
                                          task_key)

#: Artefacts each setting's rows read besides ``real`` (grainforge.experiment.rows.training_sources);
#: ``synthetic`` is the pix2pix images of the row's own fraction.
SETTING_NEEDS = {
    "real": (), "forest": (), "simulated-plain": ("plain",), "real+simulated-plain": ("plain",),
    "simulated-ids": ("simulated-ids",), "real+simulated-ids": ("simulated-ids",),
    "real+synthetic": ("synthetic",), "real+microscope": ("microscope",),
    "real+synthetic+microscope": ("synthetic", "microscope"), "synthetic-split": ("supplement",),
    "simulated-split": ("supplement",),
}
#: The step that runs prepare_artefacts after all others.
REST = "all-artefacts"


@dataclass(frozen=True)
class Step:
    """One artefact task: ``build()`` fills ``outputs`` (folders) once the steps ``needs`` are done."""

    name: str
    build: Callable[[], None]
    outputs: tuple[Path, ...]
    needs: tuple[str, ...] = ()


def style_step(fraction: float) -> str:
    """Name of the pix2pix step of a real fraction."""
    return f"style-f{format_fraction(fraction)}"


def row_steps(spec: RowSpec) -> list[str]:
    """Names of the steps a row reads (:data:`REST` for a setting the graph does not know)."""
    if spec.setting not in SETTING_NEEDS:
        return [REST]
    return ["real", *(style_step(spec.real_fraction) if need == "synthetic" else need for need in SETTING_NEEDS[spec.setting])]


def artefact_steps(config: ExperimentConfig, layout: RunLayout, specs: list[RowSpec]) -> dict[str, Step]:
    """The steps the rows of ``specs`` read, with the steps those need, in an order that respects ``needs``;
    then :data:`REST`, which needs them all."""
    known = {
        "real": Step("real", functools.partial(artefacts.prepare_real, config, layout, progress=False), (layout.real,)),
        "sections": Step("sections", functools.partial(artefacts.prepare_sections, config, layout, progress=False),
                         (layout.simulation, layout.sections), ("real",)),
        "plain": Step("plain", functools.partial(artefacts.prepare_plain, layout, progress=False), (layout.plain,),
                      ("sections",)),
        "simulated-ids": Step("simulated-ids", functools.partial(artefacts.prepare_simulated_ids, layout, progress=False),
                              (layout.simulated_ids,), ("sections",)),
        "microscope": Step("microscope", functools.partial(artefacts.prepare_microscope, config, layout, progress=False),
                           (layout.microscope,), ("sections",)),
        "supplement": Step("supplement", functools.partial(artefacts.prepare_supplement, config, layout),
                           tuple(layout.supplement(kind) for kind in artefacts.supplement_sources(layout)),
                           ("simulated-ids", style_step(FULL))),
    }
    fractions = {spec.real_fraction for spec in specs if "synthetic" in SETTING_NEEDS.get(spec.setting, ())}
    for fraction in sorted(fractions | {FULL}):
        known[style_step(fraction)] = Step(style_step(fraction), functools.partial(
            artefacts.prepare_style, config, layout, fraction, progress=False),
            (layout.synthetic(fraction).parent,), ("real", "sections"))
    chosen: dict[str, Step] = {}

    def add(name: str) -> None:
        if name in chosen or name == REST:
            return
        for need in known[name].needs:
            add(need)
        chosen[name] = known[name]

    add("sections")
    for spec in specs:
        for name in row_steps(spec):
            add(name)
    chosen[REST] = Step(REST, functools.partial(artefacts.prepare_artefacts, config, layout, progress=False), (),
                        tuple(chosen))
    return chosen


def portable(config: ExperimentConfig) -> ExperimentConfig:
    """The config with an absolute real-data path, so that workers started elsewhere find it."""
    if config.real.source == BUILTIN_DEMO:
        return config
    return replace(config, real=replace(config.real, source=str(Path(config.real.source).resolve())))


def run_experiment_tasks(config: ExperimentConfig, layout: RunLayout, specs: list[RowSpec], row_fn: RowFunction,
                         jobs: int = 1, cluster: str | None = None, progress: bool = True) -> list[dict]:
    """Build the artefacts and run the rows of ``specs`` as tasks on a dask cluster (see
    :func:`grainforge.experiment.runner.dask_client`); returns all result rows of results.csv."""
    token = new_run_token()
    steps = artefact_steps(config, layout, specs)
    with dask_client(jobs, cluster, config.cluster, log_dir=layout.root / "dask-logs") as (client, threads):
        futures: dict = {}
        for step in steps.values():
            futures[step.name] = client.submit(run_task, step.build, threads, *(futures[n] for n in step.needs),
                                               key=task_key("artefact", step.name, token), pure=False)
        return run_row_tasks(client, specs, row_fn, layout.results, threads=threads, artefacts=futures,
                             needs=lambda spec: [futures[name] for name in row_steps(spec)], run_token=token,
                             progress=progress)
