"""Checks of an experiment's resources against the Ray cluster and its search space, before any trial.

The driver never touches a GPU: it learns each node's GPUs and card type from Ray
(``ray.nodes()``: the ``GPU`` and ``accelerator_type:<name>`` resources each node advertises).
"""

from __future__ import annotations

from typing import Any

from experiments.core.config import ConfigError, ExperimentConfig
from search_spaces import SearchSpace
from trainables.accelerators import node_accelerator_types, precision_problem


def alive_node_resources() -> list[dict[str, float]]:
    """The resources of each live node of the connected Ray cluster."""
    import ray

    return [dict(node.get("Resources", {})) for node in ray.nodes() if node.get("Alive")]


def check_cluster(config: ExperimentConfig, nodes: list[dict[str, float]]) -> None:
    """CPUs and GPUs per trial that no node can hold, and a forced precision no GPU node runs: ConfigErrors.

    A trial runs on one node, so its GPUs must fit on one node, not in the cluster's total.
    """
    for resource, per_trial in (("CPU", config.cpus_per_trial), ("GPU", config.gpus_per_trial)):
        largest = max((node.get(resource, 0.0) for node in nodes), default=0.0)
        if per_trial > largest:
            total = sum(node.get(resource, 0.0) for node in nodes)
            where = f"its largest node has {largest:g}" + (f" ({total:g} in all)" if total != largest else "")
            raise ConfigError(f"each trial asks for {per_trial:g} {resource}(s) but {where}; a trial runs on one "
                              f"node: lower --{resource.lower()}s-per-trial")
    precision = config.model_options.get("precision")
    if precision is not None:
        gpu_types = [node_accelerator_types(node) for node in nodes if node.get("GPU", 0) > 0]
        problem = precision_problem(str(precision), config.gpus_per_trial, gpu_types)
        if problem:
            raise ConfigError(problem)


def check_accumulation(config: ExperimentConfig, space: SearchSpace) -> None:
    """``gradient_accumulation_steps`` must divide every batch size the space can propose (ConfigError)."""
    steps = config.model_options.get("gradient_accumulation_steps", 1)
    if steps in (None, 1) or isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        return  # 1, or a bad value the model's own option check reports
    sizes: list[Any]
    if "batch_size" in space.constants:
        sizes, where = [space.constants["batch_size"]], "the constant batch_size"
    elif "batch_size" in space.names:
        param = space["batch_size"]
        if param.kind in ("choice", "discrete"):
            sizes, where = list(param.values), f"batch_size's values {list(param.values)}"
        else:
            sizes = [v for v in range(int(param.low), int(param.high) + 1) if v % steps]
            where = f"batch_size's range {int(param.low)}..{int(param.high)}"
    else:
        from trainables.roberta.settings import HYPERPARAMETERS  # the one model with this option

        default = HYPERPARAMETERS["batch_size"]
        sizes, where = [default], f"the default batch_size {default}"
    bad = [v for v in sizes if int(v) % steps]
    if bad:
        raise ConfigError(f"gradient_accumulation_steps {steps} does not divide every batch size ({where}, e.g. "
                          f"{bad[0]}) in search space '{space.name}'; use batch sizes that are multiples of {steps}")
