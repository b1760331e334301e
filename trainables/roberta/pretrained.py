"""The pretrained checkpoint and its tokenised data: checking the source, loading tokenizer and
classifier, and the training pairs a trial uses."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from trainables.data import DataError
from trainables.data.rte import TokenizedRTE, TokenizedSplit, load_rte, tokenize_rte

# Weight files ``save_pretrained`` writes; a local model folder needs one of them.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def load_tokenizer(model_name_or_path: str) -> Any:
    """The checkpoint's tokenizer (a hub name or a ``save_pretrained`` folder); DataError if unavailable."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_name_or_path)
    except (OSError, ValueError) as error:
        problem = " ".join(str(error).split())[:300]
        raise DataError(f"model {model_name_or_path!r}: cannot load its tokenizer ({problem})") from None


def local_snapshot(model_name_or_path: str, cache_dir: str | Path) -> str:
    """A local folder holding the checkpoint: the folder itself, or a Hub checkpoint's files in the cache.

    Driver side, once (``prepare``): trials load tokenizer and weights from the returned folder, so
    no trial reaches the Hub. A Hub name is downloaded with ``huggingface_hub.snapshot_download`` into
    ``<cache_dir>/models/<name>`` (config, tokenizer files and one weight format, safetensors where
    the repository has them), a byte copy of the checkpoint as published.
    """
    if Path(model_name_or_path).expanduser().is_dir():
        return str(Path(model_name_or_path).expanduser().resolve())
    from huggingface_hub import snapshot_download

    target = Path(cache_dir).expanduser() / "models" / model_name_or_path.replace("/", "--")
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").is_file() and any((target / name).is_file() for name in WEIGHT_FILES):
            return str(target.resolve())
        staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        text_files = ["*.json", "*.txt", "*.model", "*.tiktoken", "vocab*", "merges*", "spiece*"]
        try:
            snapshot_download(model_name_or_path, local_dir=staging,
                              allow_patterns=[*text_files, "*.safetensors"])
            if not any((staging / name).is_file() for name in WEIGHT_FILES):  # an older repository: .bin only
                snapshot_download(model_name_or_path, local_dir=staging, allow_patterns=["pytorch_model*.bin"])
            shutil.rmtree(staging / ".cache", ignore_errors=True)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging, target)
        except Exception as error:  # noqa: BLE001 - any download failure is one line for the user
            shutil.rmtree(staging, ignore_errors=True)
            raise DataError(f"model {model_name_or_path!r}: cannot copy it from the Hub into {target} "
                            f"({type(error).__name__}: {' '.join(str(error).split())[:200]})") from None
    return str(target.resolve())


def trial_log_path(trainable: Any) -> Path | None:
    """``trial.log`` in the trial's folder under the experiment (None outside a Tune experiment).

    Private API, isolated here: Ray 2.60 keeps the trial's storage folder in ``Trainable._storage``
    (``trial_fs_path``); ``Trainable.logdir`` is a staging folder that Tune does not copy back.
    """
    storage = getattr(trainable, "_storage", None)
    try:
        folder = Path(storage.trial_fs_path) if storage is not None else None
    except (AttributeError, RuntimeError):
        return None
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "trial.log"


@contextmanager
def transformers_log_to(path: Path | None) -> Iterator[None]:
    """Within this block transformers' log (its LOAD REPORT table among it) goes to ``path``, not the console.

    Each trial prints one line when it starts; Ray would repeat an 8-line table per actor on the
    driver's console. ``path`` None: transformers logs as usual.
    """
    if path is None:
        yield
        return
    from transformers.utils import logging as hf_logging

    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    root = hf_logging.get_logger()
    hf_logging.disable_default_handler()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        hf_logging.enable_default_handler()


def check_model_source(model_name_or_path: str) -> Any:
    """The checkpoint's config, after checking it is a sequence-classification model with weights."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    local = Path(model_name_or_path).expanduser()
    if local.is_dir() and not any((local / name).is_file() for name in WEIGHT_FILES):
        raise DataError(
            f"model folder {local}: no weights ({', '.join(WEIGHT_FILES)}); save it with save_pretrained"
        )
    try:
        config = AutoConfig.from_pretrained(model_name_or_path)
    except (OSError, ValueError) as error:
        raise DataError(
            f"model {model_name_or_path!r}: neither a save_pretrained folder nor loadable from the "
            "Hugging Face Hub "
            f"({' '.join(str(error).split())[:300]})"
        ) from None
    if config.model_type not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        raise DataError(
            f"model {model_name_or_path!r}: type '{config.model_type}' has no sequence-classification head"
        )
    return config


def load_tokens(options: dict, tokenizer: Any) -> tuple[TokenizedRTE, str]:
    """The RTE pairs of ``options["data"]`` tokenised (from the cache when it holds them) and where they came from."""
    data = load_rte(options.get("data"), options.get("text_fields"), options.get("label_field"))
    return tokenize_rte(data, tokenizer, options["max_seq_length"], options["cache_dir"]), data.source


def train_subset(split: TokenizedSplit, limit: int) -> TokenizedSplit:
    """The first ``limit`` training pairs (all of them for 0): ``max_train_examples`` for smoke tests."""
    if not limit or limit >= len(split):
        return split
    types = split.token_type_ids[:limit] if split.token_type_ids is not None else None
    return TokenizedSplit(split.input_ids[:limit], types, split.labels[:limit])


def load_classifier(
    model_name_or_path: str, label_names: tuple[str, ...] = ("entailment", "not_entailment")
) -> tuple[torch.nn.Module, list[torch.nn.Module]]:
    """The checkpoint as a classifier of ``label_names`` (default RTE's two) in fp32, and the modules it lacked.

    ``num_labels``, ``id2label`` and ``label2id`` follow from ``label_names`` (class id = position).

    Modules whose weights the checkpoint lacked or had in another shape (roberta-base's
    classification head) must be initialised by each trial with its own seed; everything else
    is pretrained.
    """
    from transformers import AutoModelForSequenceClassification

    model, info = AutoModelForSequenceClassification.from_pretrained(
        model_name_or_path,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
        output_loading_info=True,
        # fp32 master weights even from an fp16/bf16 checkpoint (transformers 5 would keep its
        # dtype); autocast provides bf16 compute on GPUs.
        dtype=torch.float32,
        # A head for another label count (e.g. roberta-large-mnli's 3 classes) is replaced.
        ignore_mismatched_sizes=True,
    )
    missing = set(info["missing_keys"])
    missing |= {key[0] if isinstance(key, tuple) else key for key in info.get("mismatched_keys", ())}
    fresh = [
        m
        for prefix, m in model.named_modules()
        if any((f"{prefix}.{n}" if prefix else n) in missing for n, _ in m.named_parameters(recurse=False))
    ]
    return model, fresh


def initialise_fresh_modules(modules: list[torch.nn.Module], initializer_range: float, seed: int) -> None:
    """Re-initialise the modules the checkpoint lacked (the classification head) from ``seed``, in place.

    As BERT and RoBERTa initialise them (torch.nn.init only): weights from a normal distribution
    with standard deviation ``initializer_range`` (the model config's), biases 0, normalisation
    scales (1-d weights) 1. The draws come from a generator of their own, so a trial's head depends
    on its seed alone, not on what else used the global random state.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in modules:
            for name, param in module.named_parameters(recurse=False):
                if name == "bias":
                    torch.nn.init.zeros_(param)
                elif param.ndim == 1:
                    torch.nn.init.ones_(param)
                else:
                    # Drawn on the CPU (the generator's device), then copied to the parameter's.
                    values = torch.empty(param.shape, dtype=param.dtype)
                    param.copy_(torch.nn.init.normal_(values, std=initializer_range, generator=generator))
            padding = getattr(module, "padding_idx", None)
            if isinstance(module, torch.nn.Embedding) and padding is not None:
                module.weight[padding].zero_()
