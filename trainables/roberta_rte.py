"""Ray Tune trainable fine-tuning RoBERTa (or any Hugging Face sequence-classification checkpoint) on RTE.

One ``step`` trains one epoch, or ``eval_every_steps`` optimiser steps when that option is set
(and never past the end of an epoch), then evaluates on the two halves of the labelled
validation set (``eval`` is tuned on, ``test`` is reported). The trial ends itself after its
own ``epochs``, on a non-finite loss (``diverged``) or when the model predicts a single class on
``eval`` in two evaluations at least one epoch apart, with none between them predicting both,
after its first epoch (``collapsed``, the failure the RoBERTa-large write-up saw at lr 5e-5).
Under PBT (the runner's option ``scheduler: pbt``) a collapsed trial reports ``collapsed`` but
goes on: PBT exploits it (a better member's weights replace its own) instead of losing a member.

Hyperparameters (the trial config; unknown names are an error):

- ``lr`` (required), ``batch_size`` (per device, default 32: a fixed setting unless the space
  tunes it, as the Tuning Playbook advises), ``epochs`` (the trial's length and that of its
  linear decay schedule; default: the experiment's ``max_epochs``, which the runner passes in
  ``options``, so under ASHA/HyperBand, whose spaces do not search ``epochs``, every trial follows
  one schedule and a rung compares trials at the same point of it; 3 without one),
  ``weight_decay`` (0), ``warmup_steps`` or ``warmup_ratio`` (a share of the schedule; one of the
  two, default none), ``seed`` (0; also the seed of the fresh head), ``max_grad_norm`` (1.0; 0
  turns clipping off), ``adam_beta1`` (0.9), ``adam_beta2`` (0.999), ``adam_epsilon`` (1e-8);
- layer-wise learning rates (``trainables/roberta/layerwise.py``): ``layer_groups`` (1) splits the
  encoder layers into that many groups, bottom to top; either the top group trains with ``lr``,
  each group below with ``layer_lr_decay`` (1.0) times the lr of the group above, the embeddings
  one step below the bottom group, or each group has its own ``layer_<start>-<end>`` lr (the
  embeddings then train at ``lr``); ``classifier_lr`` (default ``lr``) is the lr of the
  classification head, and ``params_<name>`` that of one parameter.

This module is the trainable and the driver-side :func:`prepare`; its parts are in
``trainables/roberta/``: ``settings.py`` (hyperparameters and options), ``layerwise.py`` (layer
groups and their parameter groups), ``optimization.py`` (AdamW and its schedule) and
``pretrained.py`` (checkpoint, tokenizer and tokenised data).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from ray import tune

from trainables import checkpoint_origin
from trainables.data.rte import TokenizedSplit, majority_accuracy, read_token_cache, split_validation
from trainables.device import cap_gpu_memory, choose_precision, describe, free_gpu_memory, trial_device
from trainables.errors import ModelConfigError
from trainables.oom import oom_guarded, setup_completed
from trainables.roberta.optimization import build_optimizer, build_schedule, linear_schedule, resume_schedule
from trainables.roberta.pretrained import (
    check_model_source,
    initialise_fresh_modules,
    load_classifier,
    load_tokenizer,
    load_tokens,
    local_snapshot,
    train_subset,
    transformers_log_to,
    trial_log_path,
)
from trainables.roberta.settings import DEFAULT_EPOCHS, check_options, parse_settings

CHECKPOINT_FILE = "roberta_rte.pt"
EVAL_BATCH_SIZE = 64
# On GPUs batches are padded to a multiple of this (bf16 tensor cores want dimensions that are
# multiples of 8); on CPU to their longest pair exactly.
GPU_PAD_MULTIPLE = 8
# The options that decide the snapshot and the token cache prepare() makes for the trials.
PREPARED_FOR = ("model_name_or_path", "data", "text_fields", "label_field", "max_seq_length", "cache_dir")
PRECISION_NAMES = {"bf16": "bf16 autocast", "fp16": "fp16 autocast + gradient scaler", "fp32": "fp32"}


def prepare(options: dict) -> dict[str, Any]:
    """Driver side, before any trial: check options, model source and data, tokenise into the cache.

    Returns the reference numbers for the summary: ``baseline_eval_acc`` (always predicting the
    most frequent training label) and the split sizes. Local paths in ``options`` (data folder,
    model folder) are made absolute in place: trials run in their own working directories; and
    ``options["prepared"]`` records what trials read instead of the Hub and the raw data:
    ``model_snapshot`` (a local copy of the checkpoint) and ``token_cache`` (the tokenised pairs),
    both in the cache folder, with the options they were made for.
    """
    check_options(options)
    if options.get("data") is not None:
        options["data"] = str(Path(options["data"]).expanduser().resolve())
    if Path(options["model_name_or_path"]).expanduser().is_dir():
        options["model_name_or_path"] = str(Path(options["model_name_or_path"]).expanduser().resolve())
    model_config = check_model_source(options["model_name_or_path"])
    # Trials load the checkpoint from this local copy (the model folder itself, or a snapshot of a Hub
    # checkpoint in the shared cache), never from the Hub: 64 nodes must not all reach it at once.
    snapshot = local_snapshot(options["model_name_or_path"], options["cache_dir"])
    tokenizer = load_tokenizer(snapshot)
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and limit < 1_000_000 and options["max_seq_length"] > limit:
        raise ModelConfigError(
            f"max_seq_length {options['max_seq_length']} exceeds the tokenizer's limit of {limit}"
        )
    tokens, source = load_tokens(options, tokenizer)
    # Trials read these instead of loading and tokenising the data themselves (_prepared_inputs).
    options["prepared"] = {**{key: options.get(key) for key in PREPARED_FOR}, "model_snapshot": snapshot,
                           "token_cache": str(tokens.path), "dataset_source": source}
    train = train_subset(tokens.train, options["max_train_examples"])
    halves = split_validation(len(tokens.validation), options["data_seed"])
    return {
        "baseline_eval_acc": majority_accuracy(train.labels, tokens.validation.labels[halves["eval"]]),
        "baseline_test_acc": majority_accuracy(train.labels, tokens.validation.labels[halves["test"]]),
        "dataset": source,
        "dataset_sizes": {"train": len(train), "eval": len(halves["eval"]), "test": len(halves["test"])},
        "label_names": list(tokens.label_names),
        "model_name_or_path": options["model_name_or_path"],
        "encoder_layers": getattr(model_config, "num_hidden_layers", None),
        "token_cache": str(tokens.path),
    }


def _prepared_inputs(options: dict) -> dict[str, Any] | None:
    """What ``prepare`` made for these options (checkpoint snapshot, token cache), or None if it made
    nothing for them (a trainable built without the runner, or options changed since)."""
    prepared = options.get("prepared")
    if not isinstance(prepared, dict) or any(prepared.get(key) != options.get(key) for key in PREPARED_FOR):
        return None
    return prepared


def check_space(names: set[str], constants: dict[str, Any], prepared: dict[str, Any]) -> None:
    """Driver side, after ``prepare``: independent per-group lrs (``layer_<start>-<end>``) of the search
    space must tile the checkpoint's encoder layers in ``layer_groups`` groups (ModelConfigError
    before any trial, instead of every trial failing at its build)."""
    from trainables.roberta.layerwise import check_layer_groups
    from trainables.roberta.settings import LAYER_GROUP_LR

    depth = prepared.get("encoder_layers")
    groups = sorted((int(m[1]), int(m[2]), m[0]) for n in names | set(constants) if (m := LAYER_GROUP_LR.fullmatch(n)))
    if not groups or not isinstance(depth, int):
        return
    check_layer_groups([name for _, _, name in groups], depth, int(constants.get("layer_groups", len(groups))))


def _process_age_s() -> float:
    """Seconds since this process started (NaN where psutil, which Ray installs, is missing)."""
    try:
        import psutil
    except ImportError:
        return float("nan")
    return time.time() - psutil.Process().create_time()


class RobertaRTETrainable(tune.Trainable):
    """Fine-tunes a sequence-classification checkpoint on RTE; reports ``eval_acc``, ``test_acc``, ...

    Data, tokenizer and pretrained weights are loaded once per actor in ``setup``; ``reset_config``
    copies the pretrained weights back from host memory and rebuilds optimiser and schedule,
    without touching the disk or the tokenizer.
    """

    @oom_guarded
    def setup(self, config: dict, options: dict | None = None) -> None:
        started = time.perf_counter()
        self.time_actor_start_s = _process_age_s()
        self.options = dict(options or {})
        torch.set_num_threads(max(1, int(self.options.get("cpus_per_trial", 1))))
        # The device Ray assigned (or, outside Ray, the one the caller names), capped at its share.
        placed = trial_device(self.options.get("device"), self.options.get("gpu_share"))
        self.device = placed.device
        memory = cap_gpu_memory(placed)
        # bf16 autocast where the card runs it natively, fp16 autocast + gradient scaler on older
        # cards, fp32 on the CPU (trainables/device.py); the option can force one.
        self.precision = choose_precision(str(self.options.get("precision", "auto")), self.device)
        self.grad_scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        self.accumulation = int(self.options.get("gradient_accumulation_steps", 1))
        # Fused AdamW (one kernel for the whole update) on GPUs; torch's default elsewhere.
        self.fused_adamw = self.device.type == "cuda"
        self.pad_multiple = GPU_PAD_MULTIPLE if self.device.type == "cuda" else 1
        # What the driver's prepare made: a local snapshot of the checkpoint and the token cache, so a
        # trial never reaches the Hub nor reads the raw data (trials built without prepare load them).
        prepared = _prepared_inputs(self.options)
        name = prepared["model_snapshot"] if prepared else self.options["model_name_or_path"]
        self.tokenizer = load_tokenizer(name)
        if prepared:
            tokens, source = read_token_cache(prepared["token_cache"]), prepared["dataset_source"]
        else:
            tokens, source = load_tokens(self.options, self.tokenizer)
        self.tokens_from_cache = tokens.from_cache
        self.train_split = train_subset(tokens.train, int(self.options.get("max_train_examples", 0)))
        halves = split_validation(len(tokens.validation), int(self.options.get("data_seed", 0)))
        self.baseline_eval_acc = majority_accuracy(
            self.train_split.labels, tokens.validation.labels[halves["eval"]]
        )
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

        # The fresh modules (roberta-base's classification head) are re-initialised with each
        # trial's seed; everything else comes from the pretrained copy kept here in host memory,
        # so later trials never re-read the checkpoint.
        # transformers' load report (the head it initialised) goes to the trial's own log, not the console.
        with transformers_log_to(trial_log_path(self)):
            self.model, self.fresh_modules = load_classifier(name, tokens.label_names)
        self.pretrained_state = {
            k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()
        }
        self.model.to(self.device)
        # torch.compile once per actor: the compiled module shares the model's parameters, which
        # reset_config overwrites in place, so later trials reuse the compiled code. Dynamic
        # padding gives varying widths: torch marks the length dynamic after the first recompile.
        compiled = bool(self.options.get("torch_compile", False))
        self.forward_model = torch.compile(self.model) if compiled else self.model
        self.eval_batches = {
            split: self._eval_batches(tokens.validation, idx) for split, idx in halves.items()
        }
        self.node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
        precision = PRECISION_NAMES[self.precision] + (", fused AdamW" if self.fused_adamw else "")
        precision += ", torch.compile" if compiled else ""
        precision += f", {self.accumulation} micro-batches per step" if self.accumulation > 1 else ""
        sizes = f"{len(self.train_split)} train / {len(halves['eval'])} eval / {len(halves['test'])} test"
        cache = f"tokens {'read from' if tokens.from_cache else 'written to'} {tokens.path}"
        print(
            f"RobertaRTETrainable: device {describe(self.device)} ({placed.source}{'; ' + memory if memory else ''}), "
            f"{precision}, model {name}, "
            f"{sizes} pairs from {source}, {cache}",
            flush=True,
        )
        self.optimizer = self.scheduler = None
        self._build(config)
        self.time_setup_s = time.perf_counter() - started

    # -- building and resetting ------------------------------------------------------------------

    def _build(self, config: dict) -> None:
        """Pretrained weights, fresh head, optimiser, schedule and counters for ``config``."""
        self.restored_from = checkpoint_origin.NONE  # (trial, epoch) this model continues from
        settings = parse_settings(config, default_epochs=int(self.options.get("max_epochs") or DEFAULT_EPOCHS))
        if settings.batch_size % self.accumulation:
            raise ModelConfigError(f"gradient_accumulation_steps {self.accumulation} does not divide batch_size "
                                   f"{settings.batch_size}")
        self.release_training_state()
        torch.manual_seed(settings.seed)  # dropout's masks
        with torch.no_grad():
            self.model.load_state_dict(self.pretrained_state)  # copies in place: no new GPU memory
        initialise_fresh_modules(
            self.fresh_modules, getattr(self.model.config, "initializer_range", 0.02), settings.seed
        )
        self.settings = settings
        self.optimizer = build_optimizer(self.model, settings, fused=self.fused_adamw)
        self.grad_scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        # Counted in optimiser steps of the searched batch size, however many micro-batches make one.
        self.steps_per_epoch = math.ceil(len(self.train_split) / settings.batch_size)
        self.schedule = linear_schedule(settings, self.steps_per_epoch)
        self.scheduler = build_schedule(self.optimizer, self.schedule)
        self.epoch = 0  # completed epochs
        self.batch_index = 0  # batches done in the current epoch
        self.single_class_evals = 0
        self.single_class_since = 0.0  # epoch of the first single-class evaluation counted
        self._order_epoch, self._order = -1, np.arange(0)

    def release_training_state(self) -> None:
        """Drop optimiser state and gradients before a new trial (ray issue 32698: GPU memory grew) or
        after an out-of-memory error, and return cached GPU memory."""
        self.optimizer = self.scheduler = None
        self.model.zero_grad(set_to_none=True)
        free_gpu_memory(self.device)

    def oom_result(self) -> dict[str, Any]:
        """The result of a trial ending on an out-of-memory error (trainables/oom.py): no metric to rank."""
        nan = float("nan")
        return {"eval_acc": nan, "test_acc": nan, "eval_loss": nan, "train_loss": nan,
                "epoch": round(self.epoch_progress, 6) if hasattr(self, "batch_index") else 0.0,
                "baseline_eval_acc": getattr(self, "baseline_eval_acc", nan), "node_id": getattr(self, "node_id", None)}

    def reset_config(self, new_config: dict) -> bool:
        if not setup_completed(self):  # setup ran out of memory: Ray starts a fresh actor instead
            return False
        started = time.perf_counter()
        self._build(new_config)
        self.time_actor_start_s, self.time_setup_s = 0.0, time.perf_counter() - started
        return True

    def cleanup(self) -> None:
        if hasattr(self, "model"):
            self.release_training_state()
            del self.model
        self.forward_model = None
        free_gpu_memory(getattr(self, "device", torch.device("cpu")))

    # -- batches ---------------------------------------------------------------------------------

    def _batch(self, split: TokenizedSplit, indices: np.ndarray) -> dict[str, torch.Tensor]:
        """Pairs ``indices`` padded to the longest of them (dynamic padding), on the device."""
        rows = [split.input_ids[i] for i in indices]
        longest = max(len(row) for row in rows)
        width = -(-longest // self.pad_multiple) * self.pad_multiple
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for r, row in enumerate(rows):
            ids[r, : len(row)] = row
            mask[r, : len(row)] = 1
        batch = {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(mask),
            "labels": torch.from_numpy(split.labels[indices]),
        }
        if split.token_type_ids is not None:
            types = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(indices):
                types[r, : len(split.token_type_ids[i])] = split.token_type_ids[i]
            batch["token_type_ids"] = torch.from_numpy(types)
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def _eval_batches(self, split: TokenizedSplit, indices: np.ndarray) -> list[dict[str, torch.Tensor]]:
        # Sorted by length so padding is minimal; accuracy does not depend on the order.
        ordered = sorted(indices, key=lambda i: len(split.input_ids[i]))
        return [
            self._batch(split, np.asarray(ordered[i : i + EVAL_BATCH_SIZE]))
            for i in range(0, len(ordered), EVAL_BATCH_SIZE)
        ]

    def _epoch_order(self) -> np.ndarray:
        # Seeded by (trial seed, epoch): a checkpoint restored mid-epoch continues the same order.
        if self._order_epoch != self.epoch:
            rng = np.random.default_rng([self.settings.seed, self.epoch])
            self._order, self._order_epoch = rng.permutation(len(self.train_split)), self.epoch
        return self._order

    # -- training --------------------------------------------------------------------------------

    @property
    def epoch_progress(self) -> float:
        """Epochs trained so far, fractional within an epoch."""
        return self.epoch + self.batch_index / self.steps_per_epoch

    def _autocast(self) -> Any:
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype, enabled=self.precision != "fp32")

    @oom_guarded
    def step(self) -> dict[str, Any]:
        """Train ``eval_every_steps`` steps or to the end of the epoch, then evaluate.

        ``time_train_s`` and ``time_eval_s`` are this step's own seconds, ``time_setup_s`` and
        ``time_actor_start_s`` (first result of a trial only) those of setup or reset_config and of
        the actor's start-up: experiments/benchmarks/trial_overhead.py reads them as for CGCNN.
        """
        started, started_at = time.perf_counter(), time.time()
        every = int(self.options.get("eval_every_steps", 0))
        settings = self.settings
        self.model.train()
        losses: list[float] = []
        pairs, diverged = 0, False
        while self.epoch < settings.epochs:
            start = self.batch_index * settings.batch_size
            indices = self._epoch_order()[start : start + settings.batch_size]
            loss = self.train_batch(indices)
            if loss is None:
                diverged = True  # stopped before the bad step so the weights evaluated stay finite
                break
            losses.append(loss)
            pairs += len(indices)
            self.batch_index += 1
            end_of_epoch = self.batch_index >= self.steps_per_epoch
            if end_of_epoch:
                self.epoch, self.batch_index = self.epoch + 1, 0
            # A result at every epoch end too: ASHA rungs, PBT perturbations and the runner's
            # max_epochs stop then fall on whole epochs.
            if end_of_epoch or (every and len(losses) >= every):
                break
        trained = time.perf_counter()
        eval_acc, eval_loss, single_class = self._evaluate("eval")
        test_acc, _, _ = self._evaluate("test")
        if self.epoch_progress >= 1:
            # Only after a full epoch: early on a model may legitimately predict one class.
            # Counted at most once per epoch: with eval_every_steps, evaluations a few steps apart
            # would otherwise count as two.
            if not single_class:
                self.single_class_evals = 0
            elif self.single_class_evals == 0:
                self.single_class_evals, self.single_class_since = 1, self.epoch_progress
            elif self.epoch_progress - self.single_class_since >= 1 - 1e-9:
                self.single_class_evals = 2
        collapsed = self.single_class_evals >= 2
        # Under PBT a collapsed member is exploited at its next perturbation rather than ended.
        ends_on_collapse = collapsed and self.options.get("scheduler") != "pbt"
        result = {
            "train_loss": float(np.mean(losses)) if losses else float("nan"),
            "eval_acc": eval_acc,
            "test_acc": test_acc,
            "eval_loss": eval_loss,
            "baseline_eval_acc": self.baseline_eval_acc,
            "epoch": round(self.epoch_progress, 6),
            "lr": settings.lr * self.schedule(self.steps_done),
            "collapsed": collapsed,
            "diverged": diverged,
            "node_id": self.node_id,
            "pairs_trained": pairs,
            # The trial (and epoch) whose checkpoint this model last came from (PBT: the donor; "" if none).
            "restored_from_trial": self.restored_from[0],
            "restored_from_epoch": self.restored_from[1],
            "time_train_s": trained - started,
            "time_eval_s": time.perf_counter() - trained,
            "step_started_at": started_at,
            "time_setup_s": self.time_setup_s,
            "time_actor_start_s": self.time_actor_start_s,
            tune.result.DONE: diverged or ends_on_collapse or self.epoch >= settings.epochs,
        }
        self.time_setup_s = self.time_actor_start_s = 0.0
        return result

    def train_batch(self, indices: np.ndarray) -> float | None:
        """One optimiser (and schedule) step on the training pairs ``indices``; returns the loss.

        With ``gradient_accumulation_steps`` k the pairs go through in k micro-batches (equal when k
        divides the batch; the epoch's smaller last batch splits as evenly as it can), each loss
        weighted by its share of the pairs, so the step's gradient is that of the whole batch's mean
        loss: the batch size a searcher chose trains on a card that fits only a k-th of it. fp16
        scales the loss (GradScaler) and unscales the gradients before clipping. A non-finite loss
        returns None before any update. Public so that ``experiments/probe_batch_size.py`` times
        exactly the step training runs.
        """
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for part in np.array_split(np.asarray(indices), min(self.accumulation, len(indices))):
            with self._autocast():
                loss = self.forward_model(**self._batch(self.train_split, part)).loss
            if not torch.isfinite(loss):
                self.optimizer.zero_grad(set_to_none=True)
                return None
            weighted = loss.float() * (len(part) / len(indices))
            (self.grad_scaler.scale(weighted) if self.grad_scaler else weighted).backward()
            total += weighted.detach()
        if self.grad_scaler:
            self.grad_scaler.unscale_(self.optimizer)
        if self.settings.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.max_grad_norm)
        if self.grad_scaler:
            self.grad_scaler.step(self.optimizer)  # skipped where fp16 gradients overflowed
            self.grad_scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        return float(total)

    @property
    def steps_done(self) -> int:
        """Optimiser steps of this trial so far (in its own batch size), the schedule's position."""
        return self.epoch * self.steps_per_epoch + self.batch_index

    @torch.no_grad()
    def _evaluate(self, split: str) -> tuple[float, float, bool]:
        """Accuracy, mean loss and whether every prediction was the same class on ``split``."""
        self.model.eval()
        correct, total, loss_sum, predicted = 0, 0, 0.0, set()
        for batch in self.eval_batches[split]:
            with self._autocast():
                out = self.forward_model(**batch)
            logits = out.logits.float()
            loss_sum += float(torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="sum"))
            predictions = logits.argmax(dim=-1)
            predicted.update(predictions.unique().tolist())
            correct += int((predictions == batch["labels"]).sum())
            total += len(predictions)
        return correct / total, loss_sum / total, len(predicted) == 1

    # -- checkpoints -----------------------------------------------------------------------------

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        torch.save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "epoch": self.epoch,
                "examples_in_epoch": self.batch_index * self.settings.batch_size,
                "single_class_evals": self.single_class_evals,
                "single_class_since": self.single_class_since,
                "saved_by": self.trial_id,
                "restored_from": list(self.restored_from),
            },
            os.path.join(checkpoint_dir, CHECKPOINT_FILE),
        )

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        state = torch.load(
            os.path.join(checkpoint_dir, CHECKPOINT_FILE), map_location=self.device, weights_only=True
        )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])
        self.batch_index = int(state["examples_in_epoch"]) // self.settings.batch_size
        self.single_class_evals = int(state["single_class_evals"])
        self.single_class_since = float(state.get("single_class_since", 0.0))  # older checkpoints lack it
        self.restored_from = checkpoint_origin.origin_after_load(state, self.trial_id, round(self.epoch_progress, 6))
        # PBT may have mutated this trial's config since the donor saved: continue with this
        # trial's hyperparameters and schedule at the donor's point in training (counted in this
        # trial's batches, in case the batch size was mutated too); the schedule is rebuilt there.
        self.scheduler = resume_schedule(self.model, self.optimizer, self.settings, self.schedule, self.steps_done)

    # -- the model folder ------------------------------------------------------------------------

    def export_model(self, directory: str, state_dict: dict[str, torch.Tensor] | None = None,
                     config: dict | None = None) -> None:
        """``save_pretrained`` folder of the classifier (``state_dict``'s weights, default the current ones)
        and its tokenizer, with ``id2label``/``label2id`` (trainables/roberta/export.py). ``config`` is
        accepted for symmetry with CGCNN: no hyperparameter changes the classifier's architecture."""
        from trainables.roberta.export import save_classifier

        save_classifier(directory, self.model, self.tokenizer, state_dict)
