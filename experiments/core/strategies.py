"""Strategies: which scheduler each ``run_<strategy>.py`` runs, and how its search algorithm and
scheduler are built from the one search-space spec.

This is where a strategy is composed: :data:`STRATEGIES` names each run script's scheduler, the
search algorithms it accepts and what ``--smoke-test`` shrinks; :func:`build_search` and
:func:`build_scheduler` turn an :class:`~experiments.core.config.ExperimentConfig` and a
:class:`~search_spaces.SearchSpace` into Ray Tune objects. The runner hands them to the Tuner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from experiments.core.config import ConfigError, ExperimentConfig
from search_spaces import SearchSpace
from search_spaces.compile import OptunaSpace, to_grid, to_hyperopt, to_pbt_mutations, to_ray


@dataclass(frozen=True)
class Strategy:
    """A run script's fixed choices: its scheduler and the settings ``--smoke-test`` shrinks."""

    scheduler: str  # "fifo", "asha", "ahb", "pbt" or "bohb" (HyperBandForBOHB)
    searchers: tuple[str, ...]  # the first is the default
    smoke: dict[str, Any]


_BO_AND_RANDOM = ("random", "quasirandom", "hyperopt", "dragonfly", "optuna")
STRATEGIES: dict[str, Strategy] = {
    "random": Strategy("fifo", _BO_AND_RANDOM, {"num_samples": 3, "max_epochs": 2}),
    "grid": Strategy("fifo", ("grid",), {"num_samples": 1, "max_epochs": 1}),
    "asha": Strategy("asha", _BO_AND_RANDOM,
                     {"num_samples": 4, "max_epochs": 3, "grace_period": 1, "reduction_factor": 2}),
    "ahb": Strategy("ahb", _BO_AND_RANDOM,
                    {"num_samples": 6, "max_epochs": 4, "grace_period": 1, "reduction_factor": 2, "brackets": 2}),
    "pbt": Strategy("pbt", ("random",), {"num_samples": 4, "max_epochs": 4, "perturbation_interval": 1,
                                          "burn_in_period": 0}),
    # BOHB's budgets: max_epochs / reduction_factor^k; 4 and 2 give rungs at 1, 2 and 4 epochs, and
    # 4 trials fill HyperBand's largest bracket (4 at 1 epoch, 2 promoted to 2 epochs, 1 to 4).
    "bohb": Strategy("bohb", ("bohb",), {"num_samples": 4, "max_epochs": 4, "reduction_factor": 2}),
}


def build_search(config: ExperimentConfig, space: SearchSpace) -> tuple[Any, dict[str, Any]]:
    """The search algorithm and the ``param_space`` it samples, both from the one spec.

    Ray's own generator samples (random) or enumerates (grid) a ``param_space`` of Tune domains.
    The other searchers hold their space themselves (compiled from the same spec), so their
    ``param_space`` carries only the constants every trial gets. The model-based ones (HyperOpt,
    Dragonfly) run behind a concurrency limiter: a BO proposal made while many trials are still
    unfinished learns from little, so ``max_concurrent_search`` bounds how far ahead they propose.
    It is :class:`~experiments.searchers.ResumableConcurrencyLimiter`, Ray's ``ConcurrencyLimiter``
    that also saves the trials live at an interruption, so a resumed searcher learns their results.
    Beneath it, :class:`~experiments.searchers.final_results.FinalResultSearcher` tells them only
    what a trial's end means: its full-budget value (not a value ASHA stopped it at), and an
    out-of-memory or diverged trial as the worst value seen (Optuna also hears of stopped trials
    as pruned, which its TPE ranks below completed ones; BOHB learns every rung by design).
    """
    from ray.tune.search import BasicVariantGenerator

    from experiments.searchers import ResumableConcurrencyLimiter
    from experiments.searchers.final_results import FinalResultSearcher

    def final_results(searcher: Any, intermediate: bool = False) -> FinalResultSearcher:
        return FinalResultSearcher(searcher, config.model_spec.time_attr, config.max_epochs, intermediate)

    constants = {**space.constants, "seed": config.seed}
    # Ray's generator takes the trial cap itself: Tune ignores TuneConfig.max_concurrent_trials for it.
    cap = config.max_concurrent_trials
    if config.search == "grid":  # its size limit is checked with the config (experiments/core/config.py)
        return BasicVariantGenerator(random_state=config.seed, max_concurrent=cap), {**constants, **to_grid(space)}
    if config.search == "random":
        return BasicVariantGenerator(random_state=config.seed, max_concurrent=cap), {**constants, **to_ray(space)}
    if config.search == "quasirandom":
        from experiments.searchers.quasirandom import QuasiRandomSearch

        searcher = QuasiRandomSearch(space, config.metric, config.mode, sampler=config.quasirandom_sampler,
                                     seed=config.seed)
        return searcher, constants
    if config.search == "hyperopt":
        from ray.tune.search.hyperopt import HyperOptSearch

        searcher = HyperOptSearch(space=to_hyperopt(space), metric=config.metric, mode=config.mode,
                                  n_initial_points=config.n_initial_points, random_state_seed=config.seed)
        return ResumableConcurrencyLimiter(final_results(searcher), max_concurrent=config.max_concurrent_search), \
            constants
    if config.search == "dragonfly":
        from experiments.searchers.dragonfly import DragonflySearch

        searcher = DragonflySearch(space, config.metric, config.mode, seed=config.seed)
        return ResumableConcurrencyLimiter(final_results(searcher), max_concurrent=config.max_concurrent_search), \
            constants
    if config.search == "optuna":
        searcher = make_optuna_search(config, space)
        return ResumableConcurrencyLimiter(final_results(searcher, intermediate=True),
                                           max_concurrent=config.max_concurrent_search), constants
    if config.search == "bohb":
        from experiments.searchers.bohb import SpecBOHB

        # No Ray limiter: TuneBOHB counts paused trials apart from running ones and limits itself.
        searcher = SpecBOHB(space, config.metric, config.mode, max_concurrent=config.max_concurrent_search,
                            seed=config.seed)
        return final_results(searcher, intermediate=True), constants
    raise ConfigError(f"unknown search algorithm '{config.search}'")


def make_optuna_search(config: ExperimentConfig, space: SearchSpace) -> Any:
    """Ray's ``OptunaSearch`` with Optuna's multivariate TPE and the constant liar.

    Multivariate TPE models the parameters jointly (Falkner et al.'s BOHB kernel, Optuna's
    recommended setting) instead of one independent density per parameter; the constant liar
    gives each running trial the worst value so far while TPE proposes, so parallel proposals
    spread out instead of piling on the same optimum. The first ``n_initial_points`` are random,
    as for HyperOpt. The space is :class:`search_spaces.compile.OptunaSpace` (define-by-run).
    """
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial otherwise
    sampler = optuna.samplers.TPESampler(multivariate=True, constant_liar=True,
                                         n_startup_trials=config.n_initial_points, seed=config.seed)
    return OptunaSearch(space=OptunaSpace(space), metric=config.metric, mode=config.mode, sampler=sampler)


def fair_pbt_class() -> type:
    """Ray's ``PopulationBasedTraining``, except which paused member runs next when several tie.

    Ray runs the paused member with the least ``last_train_time`` first, and an exploit copies the
    donor's ``last_train_time`` into the member. With fewer slots than members, a member that clones a
    paused donor and again lands in the bottom quantile ties with that donor and, listed first, is
    chosen again, for ever (seen with every member of a population collapsed to one class). Among
    members tied at the same point of training this one runs the member that has reported the fewest
    results first, so the donors move on and the run ends. Nothing else of PBT changes.
    """
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import PopulationBasedTraining

    def train_time(scheduler: PopulationBasedTraining, trial: Trial) -> float:
        # Private API, isolated here (Ray 2.60: PBT keeps each member's state in _trial_state).
        return scheduler._trial_state[trial].last_train_time

    class FairPopulationBasedTraining(PopulationBasedTraining):
        def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
            chosen = super().choose_trial_to_run(tune_controller)
            if chosen is None:
                return None
            tied = [t for t in tune_controller.get_trials() if t.status in (Trial.PENDING, Trial.PAUSED)
                    and t in self._trial_state and train_time(self, t) == train_time(self, chosen)]
            return min(tied or [chosen], key=lambda t: (t.last_result or {}).get("training_iteration", 0))

    return FairPopulationBasedTraining


def build_scheduler(config: ExperimentConfig, space: SearchSpace) -> Any:
    """The trial scheduler of the strategy: FIFO (none), ASHA, async HyperBand, PBT or BOHB's HyperBand."""
    from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler

    kind = STRATEGIES[config.strategy].scheduler
    if kind == "fifo":
        return FIFOScheduler()
    if kind == "bohb":
        from experiments.searchers.bohb import HyperBandForBOHBStopsSaved

        # Ray's HyperBandForBOHB: synchronous HyperBand whose brackets pause trials at each rung (budgets
        # max_epochs / eta^k) and tell TuneBOHB each rung's result with its budget; TuneBOHB fits its
        # densities per budget. Plus a fix: Ray does not save the stop of a paused trial.
        return HyperBandForBOHBStopsSaved(time_attr=config.model_spec.time_attr, max_t=config.max_epochs,
                                          reduction_factor=config.reduction_factor)
    if kind in ("asha", "ahb"):
        # ASHA is async HyperBand with one bracket; AHB runs several (config.brackets).
        return AsyncHyperBandScheduler(
            time_attr=config.model_spec.time_attr,  # the result field counting epochs
            max_t=config.max_epochs,
            grace_period=config.grace_period,
            reduction_factor=config.reduction_factor,
            brackets=1 if kind == "asha" else config.brackets,
        )
    if kind == "pbt":
        if config.num_samples < 2:
            raise ConfigError(f"PBT needs a population of at least 2 trials, got num-samples {config.num_samples}")
        mutations, explore = to_pbt_mutations(space, seed=config.seed)
        if not any(p.mutable for p in space.params):
            raise ConfigError(f"search space '{space.name}' has no mutable parameter for PBT to perturb")
        # Perturb once per perturbation_interval epochs (per-batch perturbation destabilised
        # training in the write-ups). Exploitation happens in the same actor: Ray calls the
        # trainable's reset_config with the mutated config, then load_checkpoint with the donor's.
        return fair_pbt_class()(
            time_attr=config.model_spec.time_attr,  # the result field counting epochs
            perturbation_interval=config.perturbation_interval,
            burn_in_period=config.burn_in_period,
            synch=config.synch,
            hyperparam_mutations=mutations,
            custom_explore_fn=explore,
            log_config=True,
        )
    raise ConfigError(f"scheduler '{kind}' is not available in this version of the suite")
