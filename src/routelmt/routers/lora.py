"""RouteLMT, paper-faithful mode: LoRA on the small model trained jointly with the gain head.

The router adapts the small translator S with LoRA (rank 8, alpha 32, every linear layer of the
decoder blocks) and fits a linear head on the last-prompt-token hidden state of one layer, with
MSE on the z-scored gain (docs/method.md section 2). Only the prefill up to that layer runs, in
training as in scoring: no LM head, and the blocks above the layer are not even copied.

The base model is never touched. ``cached_causal_lm`` shares one model per process (the feature
extractor, the probe and the translator all use it), so the router owns a private copy of the
blocks it needs (embedding weights are shared read-only, without gradients) and injects the
adapter there. Consequence for serving: the routing prefill runs on *adapted* weights, so it
cannot be the first step of the small model's translation the way the probe's prefill is; a
request kept on S needs a second, base-weight prefill before decoding. ``bench/probe_vs_lora.py``
measures that cost per segment.

``max_length`` keeps the *end* of over-long prompts (left truncation): the state of the last
prompt token is what the head reads, and the end holds the source and the target-language cue,
whereas the cut part is the header and the few-shot examples.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from routelmt.errors import ConfigError, InputError
from routelmt.records import ScoredExample, Segment, segment_of
from routelmt.routers.artifacts import (
    check_trained_on,
    read_artifact_config,
    write_artifact,
)
from routelmt.routers.base import ROUTERS, Router
from routelmt.routers.provenance import read_training_sources, training_sources
from routelmt.storage import atomic_open, read_safetensors, stable_hash

log = logging.getLogger(__name__)

WEIGHTS_FILE = "lora.safetensors"
FORMAT_VERSION = 1
DEFAULT_MODEL = "gemma3-270m"
TARGETS = ("gain", "q_small")


def subsample_by_group(
    examples: Sequence[ScoredExample], max_n: int | None, seed: int = 0
) -> list[ScoredExample]:
    """``max_n`` examples taken group by group in a seeded random order (only the last group
    drawn may be cut), so a CPU-sized subset still spans many sources; input order is kept."""
    if max_n is None or max_n >= len(examples):
        return list(examples)
    if max_n < 1:
        raise ConfigError(f"max_train must be positive, got {max_n}")
    groups = sorted({ex.segment.group for ex in examples})
    order = np.random.default_rng(seed).permutation(len(groups))
    members: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        members.setdefault(ex.segment.group, []).append(i)
    chosen: list[int] = []
    for g in order:
        if len(chosen) >= max_n:
            break
        chosen.extend(members[groups[g]])
    return [examples[i] for i in sorted(chosen[:max_n])]


def split_by_group(
    examples: Sequence[ScoredExample], share: float, seed: int = 0
) -> tuple[list[ScoredExample], list[ScoredExample]]:
    """(training, held-out) with about ``share`` of the source groups held out, so no source
    text sits on both sides of the early-stopping split."""
    groups = sorted({ex.segment.group for ex in examples})
    n_held = max(1, round(share * len(groups)))
    if len(groups) < 2 or n_held >= len(groups):
        raise InputError(
            f"early stopping needs source groups on both sides: {len(groups)} groups, "
            f"validation share {share}"
        )
    rng = np.random.default_rng(seed + 7)
    held = {groups[i] for i in rng.permutation(len(groups))[:n_held]}
    return (
        [ex for ex in examples if ex.segment.group not in held],
        [ex for ex in examples if ex.segment.group in held],
    )


def _check_early_stopping(validation: float, patience: int, eval_every: int | None) -> None:
    if not 0.0 <= float(validation) < 1.0:
        raise ConfigError(f"validation must be a share in [0, 1), got {validation}")
    if int(patience) < 1:
        raise ConfigError(f"patience must be at least 1, got {patience}")
    if eval_every is not None and int(eval_every) < 1:
        raise ConfigError(f"eval_every must be at least 1, got {eval_every}")


class _EarlyStopper:
    """Validation checks during LoRA training: the curve, the best checkpoint, the stop."""

    def __init__(
        self,
        router: RouteLMTLoRARouter,
        validation: tuple[list[list[int]], np.ndarray, int],
        losses: list[float],
    ) -> None:
        self.router = router
        self.prompts, self.targets, self.every = validation
        self.losses = losses
        self.started = time.perf_counter()
        self.best = math.inf
        self.best_state: tuple[dict[str, Any], dict[str, Any]] | None = None
        self.since_best = 0
        self.done = False
        self.last_step = 0
        router.learning_curve = []

    def due(self, step: int, total: int) -> bool:
        return step % self.every == 0 or step == total

    def check(self) -> None:
        router = self.router
        assert router._adapted is not None
        step = len(self.losses)
        mse = float(np.mean((router._predict_raw(self.prompts) - self.targets) ** 2))
        recent = self.losses[self.last_step : step]
        router.learning_curve.append(
            {
                "step": step,
                "train_loss": float(np.mean(recent)) if recent else None,  # JSON has no NaN
                "val_mse": mse,
                "seconds": round(time.perf_counter() - self.started, 2),
            }
        )
        self.last_step = step
        log.info("%s: step %d, validation MSE %.4f", router.name, step, mse)
        if mse < self.best - 1e-9:
            self.best, self.since_best = mse, 0
            self.best_state = (
                {k: v.detach().clone() for k, v in router._adapted.lora_parameters().items()},
                copy.deepcopy(router._head.state_dict()),
            )
        else:
            self.since_best += 1
            self.done = self.since_best >= router.patience

    def restore_best(self) -> None:
        import torch

        router = self.router
        assert router._adapted is not None
        if self.best_state is None:  # every check was NaN: keep the last weights, say so
            log.warning("%s: no finite validation MSE; keeping the last step", router.name)
            return
        lora, head = self.best_state
        with torch.no_grad():
            for name, param in router._adapted.lora_parameters().items():
                param.copy_(lora[name])
        router._head.load_state_dict(head)


class _AdaptedBody:
    """A private copy of the decoder blocks 1..layer of the base model, with LoRA injected.

    Embedding weights are shared with the base model as gradient-free views of the same storage
    (they are the bulk of a small model's parameters); everything the adapter touches is copied.
    """

    def __init__(
        self, model: Any, layer: int, rank: int, alpha: float, dropout: float, seed: int
    ) -> None:
        import torch
        from peft import LoraConfig, inject_adapter_in_model

        from routelmt.lm import decoder_body

        base_body = decoder_body(model)
        blocks = base_body.layers
        memo: dict[int, Any] = {}
        for index in range(layer, len(blocks)):  # blocks above the layer: not copied, dropped
            memo[id(blocks[index])] = blocks[index]
        embed = (
            base_body.get_input_embeddings() if hasattr(base_body, "get_input_embeddings") else None
        )
        if embed is not None:
            for param in embed.parameters(recurse=True):
                memo[id(param)] = torch.nn.Parameter(param.detach(), requires_grad=False)
        body = copy.deepcopy(base_body, memo)
        body.layers = torch.nn.ModuleList(list(body.layers)[:layer])
        for param in body.parameters():
            param.requires_grad_(False)
        names = sorted(
            {
                name.rsplit(".", 1)[-1]
                for name, module in body.layers.named_modules()
                if isinstance(module, torch.nn.Linear)
            }
        )
        if not names:
            raise ConfigError(f"no linear layers found in the decoder blocks of {type(model)}")
        config = LoraConfig(
            r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=names, bias="none"
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            body = inject_adapter_in_model(config, body)
        self.body = body
        self.layer = layer
        self.num_layers = len(blocks)
        self.target_modules = names

    def lora_parameters(self) -> dict[str, Any]:
        return {n: p for n, p in self.body.named_parameters() if "lora_" in n}

    def forward(self, input_ids: Any, attention_mask: Any, pooling: str) -> Any:
        """Pooled hidden state of ``self.layer`` ([batch, hidden] float32), with autograd."""
        from routelmt.lm import pool

        captured: dict[str, Any] = {}
        handle = None
        if self.layer < self.num_layers:  # intermediate layer: the block output, before the norm

            def hook(_module: Any, _args: Any, output: Any) -> None:
                captured["h"] = output[0] if isinstance(output, tuple | list) else output

            handle = self.body.layers[self.layer - 1].register_forward_hook(hook)
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        try:
            out = self.body(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=False,
            )
        finally:
            if handle is not None:
                handle.remove()
        hidden = captured["h"] if handle is not None else out.last_hidden_state
        return pool(hidden, attention_mask, pooling) if pooling == "mean" else hidden[:, -1, :]


@ROUTERS.register
class RouteLMTLoRARouter(Router):
    """RouteLMT with LoRA (rank 8, alpha 32, all block linears) + linear head, MSE on the gain.

    ``layer``: the hidden state read by the head (1..L, negative from the end; -1 = the last
    layer after the final norm). ``steps`` fixes the number of optimiser steps; otherwise
    ``epochs`` passes over the (``max_train``-subsampled) training set. ``lm`` passes an already
    loaded ``(model, tokenizer)`` instead of loading ``model`` (tests, custom models).
    ``device`` (e.g. ``cuda``) holds the adapted blocks and the head there; the base model is
    only copied from, so it stays where it was loaded.

    Early stopping, as the paper trains it: ``validation`` > 0 holds out that share of the
    training source groups; every ``eval_every`` steps (default: once an epoch) the validation
    MSE is measured, training stops after ``patience`` checks without improvement, and the best
    adapter and head are kept; ``steps``/``epochs`` are then the cap. ``learning_curve`` holds
    each check (step, mean training loss since the last one, validation MSE, seconds).
    """

    name = "routelmt-lora"
    reads_small_model = True
    trainable = True

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        template: str | None = None,
        layer: int | str = -1,
        pooling: str = "last",
        *,
        target: str = "gain",
        rank: int = 8,
        alpha: float = 32.0,
        dropout: float = 0.05,
        lr: float = 1e-4,
        head_lr: float = 1e-3,
        weight_decay: float = 0.01,
        batch_size: int = 8,
        epochs: int = 1,
        steps: int | None = None,
        max_train: int | None = None,
        max_length: int = 512,
        grad_clip: float = 1.0,
        validation: float = 0.0,
        patience: int = 2,
        eval_every: int | None = None,
        seed: int = 0,
        dtype: str = "float32",
        score_batch_size: int = 8,
        progress: bool = True,
        lm: tuple[Any, Any] | None = None,
        device: str = "cpu",
    ) -> None:
        if pooling not in ("last", "mean"):
            raise ConfigError(f"unknown pooling '{pooling}'; expected last or mean")
        if target not in TARGETS:
            raise ConfigError(f"unknown target '{target}'; expected one of {', '.join(TARGETS)}")
        try:
            layer = int(layer)
        except (TypeError, ValueError):
            raise ConfigError(f"layer must be an integer (e.g. -1 = last), got '{layer}'") from None
        for what, value in (
            ("rank", rank),
            ("batch_size", batch_size),
            ("epochs", epochs),
            ("max_length", max_length),
            ("score_batch_size", score_batch_size),
        ):
            if int(value) < 1:
                raise ConfigError(f"{what} must be at least 1, got {value}")
        if steps is not None and int(steps) < 1:
            raise ConfigError(f"steps must be at least 1, got {steps}")
        _check_early_stopping(validation, patience, eval_every)
        self.model_spec = model
        self.template_name = template
        self.layer_setting = layer
        self.pooling = pooling
        self.target = target
        self.rank, self.alpha, self.dropout = int(rank), float(alpha), float(dropout)
        self.lr, self.head_lr, self.weight_decay = float(lr), float(head_lr), float(weight_decay)
        self.batch_size, self.epochs = int(batch_size), int(epochs)
        self.steps = None if steps is None else int(steps)
        self.max_train = None if max_train is None else int(max_train)
        self.max_length, self.grad_clip = int(max_length), float(grad_clip)
        self.validation, self.patience = float(validation), int(patience)
        self.eval_every = None if eval_every is None else int(eval_every)
        self.learning_curve: list[dict[str, float | None]] = []
        self.seed, self.dtype = int(seed), dtype
        self.score_batch_size = int(score_batch_size)
        self.progress, self.device = progress, str(device)
        self._lm = lm
        self._loaded: tuple[Any, Any, str, Any] | None = None
        self._adapted: _AdaptedBody | None = None
        self._head: Any = None
        self.layer: int | None = None
        self.feature_mean: np.ndarray | None = None
        self.feature_std: np.ndarray | None = None
        self.target_mean = 0.0
        self.target_std = 1.0
        self.metric: str | None = None
        self.train_hash: str | None = None
        self.train_sources: dict[str, Any] | None = None
        self.train_info: dict[str, Any] = {}

    # --- model, template, identity -------------------------------------------------------------

    def _load(self) -> tuple[Any, Any, str, Any]:
        if self._loaded is None:
            from routelmt.prompts import resolve_template

            if self._lm is not None:
                model, tokenizer = self._lm
                identity = getattr(model, "routelmt_identity", None) or type(model).__name__
            else:
                from routelmt.backends.hf import cached_causal_lm

                model, tokenizer, info = cached_causal_lm(self.model_spec, self.dtype)
                identity = info.identity
            self._loaded = (
                model,
                tokenizer,
                identity,
                resolve_template(self.template_name, tokenizer),
            )
        return self._loaded

    def describe(self) -> dict[str, Any]:
        """What a saved artifact must match to be valid with the loaded model and prompt."""
        _model, _tok, identity, template = self._load()
        return {
            "model": identity,
            "model_spec": self.model_spec,
            "template": template.name,
            "template_fingerprint": template.fingerprint(),
            "pooling": self.pooling,
            "dtype": self.dtype,
        }

    def _resolve_layer(self) -> int:
        from routelmt.lm import num_layers_of

        n = num_layers_of(self._load()[0])
        layer = self.layer_setting if self.layer_setting >= 0 else n + 1 + self.layer_setting
        if not 1 <= layer <= n:
            raise ConfigError(
                f"layer {self.layer_setting} out of range for LoRA routing: expected 1..{n} or "
                f"-{n}..-1 (layer 0, the embedding output, has no adapted block before it)"
            )
        return layer

    def _build(self, layer: int) -> None:
        import torch

        model = self._load()[0]
        self.layer = layer
        self._adapted = _AdaptedBody(model, layer, self.rank, self.alpha, self.dropout, self.seed)
        hidden = int(model.config.get_text_config().hidden_size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)
            self._head = torch.nn.Linear(hidden, 1)
        torch.nn.init.zeros_(self._head.weight)
        torch.nn.init.zeros_(self._head.bias)
        if self.device != "cpu":  # the adapted copy and the head only; the base model stays
            try:
                self._adapted.body.to(self.device)
                self._head.to(self.device)
            except (RuntimeError, AssertionError, ValueError) as exc:
                raise ConfigError(f"cannot use device '{self.device}': {exc}") from None

    def _encode(self, items: Sequence[Segment | ScoredExample]) -> list[list[int]]:
        from routelmt.prompts import encode_prompts

        _model, tokenizer, _identity, template = self._load()
        encoded = encode_prompts(template, [segment_of(i) for i in items], tokenizer)
        return [ids[-self.max_length :] for ids in encoded]  # keep the end: see module docstring

    def _features(self, batch_ids: Sequence[Sequence[int]]) -> Any:
        """Standardised pooled states of the adapted prefill for one batch (with autograd)."""
        import torch

        from routelmt.lm import pad_left

        assert self._adapted is not None and self.feature_mean is not None
        tokenizer = self._load()[1]
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        input_ids, mask = pad_left(batch_ids, pad_id)
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        pooled = self._adapted.forward(input_ids, mask, self.pooling).float()
        mean = torch.as_tensor(self.feature_mean, dtype=torch.float32, device=self.device)
        std = torch.as_tensor(self.feature_std, dtype=torch.float32, device=self.device)
        return (pooled - mean) / std

    # --- training ------------------------------------------------------------------------------

    def _batches(self, lengths: Sequence[int], rng: np.random.Generator) -> list[np.ndarray]:
        """Shuffled batches of similar lengths (less padding): sort within chunks of 16 batches."""
        order = rng.permutation(len(lengths))
        chunk = self.batch_size * 16
        batches: list[np.ndarray] = []
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            part = part[np.argsort([-lengths[i] for i in part], kind="stable")]
            batches.extend(
                part[i : i + self.batch_size] for i in range(0, len(part), self.batch_size)
            )
        return [batches[i] for i in rng.permutation(len(batches))]

    def fit(self, train: Sequence[ScoredExample]) -> RouteLMTLoRARouter:
        import torch

        if not train:
            raise InputError(f"{self.name}: no training examples")
        started = time.perf_counter()
        self.learning_curve = []
        chosen = subsample_by_group(train, self.max_train, self.seed)
        held: list[ScoredExample] = []
        if self.validation > 0:
            chosen, held = split_by_group(chosen, self.validation, self.seed)
        y = self._targets(chosen)
        self.target_mean = float(y.mean())
        self.target_std = float(y.std()) if y.std() > 1e-12 else 1.0
        self._build(self._resolve_layer())  # first: an unusable device is refused by name
        z = torch.as_tensor(
            (y - self.target_mean) / self.target_std, dtype=torch.float32, device=self.device
        )
        assert self._adapted is not None
        encoded = self._encode(chosen)
        lengths = [len(ids) for ids in encoded]
        rng = np.random.default_rng(self.seed)
        self._set_feature_stats(encoded, rng)

        per_epoch = math.ceil(len(chosen) / self.batch_size)
        total = self.steps if self.steps is not None else per_epoch * self.epochs
        validation = None
        if held:
            z_held = (self._targets(held) - self.target_mean) / self.target_std
            validation = (self._encode(held), z_held, self.eval_every or per_epoch)
        losses = self._train(encoded, lengths, z, total, rng, validation)
        self.metric = chosen[0].metric
        self.train_hash = stable_hash([(ex.id, round(float(v), 6)) for ex, v in zip(chosen, y)])
        self.train_sources = training_sources(train)  # all it was given, not only the subsample
        self.train_info = {
            "n_train": len(chosen),
            "n_given": len(train),
            "steps": len(losses),
            "seconds": round(time.perf_counter() - started, 2),
            "loss_first": losses[0] if losses else None,
            "loss_last20": float(np.mean(losses[-20:])) if losses else None,
        }
        if held:
            best = min(self.learning_curve, key=lambda point: point["val_mse"])
            self.train_info |= {
                "n_validation": len(held),
                "best_step": int(best["step"]),
                "best_val_mse": best["val_mse"],
                "stopped_early": len(losses) < total,
                "learning_curve": self.learning_curve,
            }
        self.losses = losses
        log.info(
            "%s: layer %d, %d steps on %d examples in %.1fs (loss %.3f -> %.3f)",
            self.name,
            self.layer,
            len(losses),
            len(chosen),
            self.train_info["seconds"],
            losses[0] if losses else math.nan,
            self.train_info["loss_last20"] or math.nan,
        )
        return self

    def _train(
        self,
        encoded: Sequence[Sequence[int]],
        lengths: list[int],
        z: Any,
        total: int,
        rng: np.random.Generator,
        validation: tuple[list[list[int]], np.ndarray, int] | None = None,
    ) -> list[float]:
        """``total`` AdamW steps on the adapter and the head (MSE to the standardised targets
        ``z``); returns the loss of each step. The adapter is frozen again afterwards. With
        ``validation`` (prompts, standardised targets, steps between checks) it stops early
        and keeps the best checkpoint."""
        import torch

        assert self._adapted is not None
        lora_params = list(self._adapted.lora_parameters().values())
        for param in lora_params:
            param.requires_grad_(True)
        optimiser = torch.optim.AdamW(
            [
                {"params": lora_params, "lr": self.lr},
                {"params": list(self._head.parameters()), "lr": self.head_lr},
            ],
            weight_decay=self.weight_decay,
        )
        trainable = lora_params + list(self._head.parameters())
        losses: list[float] = []
        stopper = _EarlyStopper(self, validation, losses) if validation else None
        bar = self._bar(total)
        try:
            if stopper is not None:
                stopper.check()  # step 0: the zero head, which predicts the training mean
            self._adapted.body.train()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed + 2)  # LoRA dropout
                while len(losses) < total and not (stopper and stopper.done):
                    for rows in self._batches(lengths, rng):
                        if len(losses) >= total or (stopper and stopper.done):
                            break
                        feats = self._features([encoded[i] for i in rows])
                        pred = self._head(feats).squeeze(-1)
                        loss = torch.nn.functional.mse_loss(pred, z[rows])
                        optimiser.zero_grad(set_to_none=True)
                        loss.backward()
                        if self.grad_clip > 0:
                            torch.nn.utils.clip_grad_norm_(trainable, self.grad_clip)
                        optimiser.step()
                        losses.append(float(loss.detach()))
                        if bar is not None:
                            bar.update(1)
                            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
                        if stopper is not None and stopper.due(len(losses), total):
                            stopper.check()
                            self._adapted.body.train()
            if stopper is not None:
                stopper.restore_best()
        finally:
            self._adapted.body.eval()
            for param in lora_params:
                param.requires_grad_(False)
            if bar is not None:
                bar.close()
        return losses

    def _targets(self, examples: Sequence[ScoredExample]) -> np.ndarray:
        y = np.asarray(
            [ex.gain if self.target == "gain" else ex.q_small for ex in examples],
            dtype=np.float64,
        )
        if not np.all(np.isfinite(y)):
            raise InputError(f"{self.name}: training targets contain NaN or infinite values")
        return y

    def _set_feature_stats(
        self, encoded: Sequence[Sequence[int]], rng: np.random.Generator
    ) -> None:
        """Feature mean/std from up to 64 training prompts under the initial (identity) adapter,
        so the head sees standardised inputs and one learning rate suits every model."""
        sample = rng.permutation(len(encoded))[:64]
        self.feature_mean = np.zeros(1, dtype=np.float32)
        self.feature_std = np.ones(1, dtype=np.float32)
        pooled = self._predict_raw([encoded[i] for i in sample], standardise=False)
        self.feature_mean = pooled.mean(0).astype(np.float32)
        std = pooled.std(0)
        std[std < 1e-6] = 1.0
        self.feature_std = std.astype(np.float32)

    # --- scoring -------------------------------------------------------------------------------

    def _predict_raw(
        self, encoded: Sequence[Sequence[int]], *, standardise: bool = True
    ) -> np.ndarray:
        """Head outputs (z units), or the pooled features themselves when ``standardise=False``."""
        import torch

        assert self._adapted is not None
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        out: np.ndarray | None = None
        self._adapted.body.eval()
        with torch.inference_mode():
            for start in range(0, len(order), self.score_batch_size):
                rows = order[start : start + self.score_batch_size]
                feats = self._features([encoded[i] for i in rows])
                values = (self._head(feats).squeeze(-1) if standardise else feats).cpu().numpy()
                if out is None:
                    out = np.zeros((len(encoded),) + values.shape[1:], dtype=np.float64)
                out[np.asarray(rows)] = values
        return out if out is not None else np.zeros(0)

    def predict(self, batch: Sequence[Segment | ScoredExample]) -> np.ndarray:
        """Predicted gain (or q_small for ``target='q_small'``) in the target's own units."""
        if self._adapted is None or self._head is None:
            raise ConfigError(f"router '{self.name}' is not trained; call fit() or load() first")
        if not batch:
            return np.zeros(0)
        z = self._predict_raw(self._encode(batch))
        return z * self.target_std + self.target_mean

    def score(self, batch: Sequence[Segment | ScoredExample]) -> np.ndarray:
        predicted = self.predict(batch)
        return predicted if self.target == "gain" else -predicted

    def _bar(self, total: int) -> Any:
        if not self.progress:
            return None
        from routelmt.progress import bar

        return bar(desc=f"{self.name} training", total=total, unit="step")

    # --- artifacts -----------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        assert self._adapted is not None
        return {
            "router": self.name,
            "format_version": FORMAT_VERSION,
            "mode": "lora",
            "target": self.target,
            "layer": self.layer,
            "layer_setting": self.layer_setting,
            "lora": {
                "rank": self.rank,
                "alpha": self.alpha,
                "dropout": self.dropout,
                "target_modules": self._adapted.target_modules,
            },
            "training": {
                "lr": self.lr,
                "head_lr": self.head_lr,
                "weight_decay": self.weight_decay,
                "batch_size": self.batch_size,
                "epochs": self.epochs,
                "steps": self.steps,
                "max_train": self.max_train,
                "grad_clip": self.grad_clip,
                "validation": self.validation,
                "patience": self.patience,
                "eval_every": self.eval_every,
                "seed": self.seed,
                **self.train_info,
            },
            "max_length": self.max_length,
            "target_mean": self.target_mean,
            "target_std": self.target_std,
            "metric": self.metric,
            "training_data_hash": self.train_hash,
            **self.describe(),
        }

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """``lora.safetensors`` (adapter, head, feature statistics) + ``router.json``."""
        import torch
        from safetensors.torch import save

        def write_weights(directory: Path) -> None:
            assert self._adapted is not None and self._head is not None
            directory.mkdir(parents=True, exist_ok=True)
            tensors = {
                f"lora.{name}": p.detach().cpu().contiguous().clone()
                for name, p in self._adapted.lora_parameters().items()
            }
            tensors["head.weight"] = self._head.weight.detach().cpu().clone()
            tensors["head.bias"] = self._head.bias.detach().cpu().clone()
            tensors["feature_mean"] = torch.as_tensor(self.feature_mean)
            tensors["feature_std"] = torch.as_tensor(self.feature_std)
            with atomic_open(directory / WEIGHTS_FILE, "wb") as handle:
                handle.write(save(tensors))

        trained = self._adapted is not None and self._head is not None
        return write_artifact(self, directory, trained=trained, write_state=write_weights)

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        *,
        model: str | None = None,
        template: str | None = None,
        lm: tuple[Any, Any] | None = None,
        progress: bool = True,
        device: str = "cpu",
    ) -> RouteLMTLoRARouter:
        """Load an artifact; refuses a model or prompt template other than the trained one."""
        directory, config, where = read_artifact_config(
            directory,
            valid=lambda c: c.get("mode") == "lora",
            what="RouteLMT LoRA router (expected mode 'lora')",
        )
        if config.get("format_version") != FORMAT_VERSION:
            raise InputError(
                f"unsupported format_version {config.get('format_version')!r}; this routelmt "
                f"reads version {FORMAT_VERSION}",
                path=where,
            )
        lora, training = config["lora"], config["training"]
        router = cls(
            model=model or config["model_spec"],
            template=template or config["template"],
            layer=config["layer"],
            pooling=config["pooling"],
            target=config["target"],
            rank=lora["rank"],
            alpha=lora["alpha"],
            dropout=lora["dropout"],
            max_length=config["max_length"],
            seed=training.get("seed", 0),
            dtype=config.get("dtype", "float32"),
            progress=progress,
            lm=lm,
            device=device,
        )
        check_trained_on(directory, config, router.describe())
        weights = directory / WEIGHTS_FILE
        tensors = read_safetensors(weights, framework="torch")
        router._build(int(config["layer"]))
        assert router._adapted is not None
        params = router._adapted.lora_parameters()
        missing = [n for n in params if f"lora.{n}" not in tensors]
        missing += [
            n
            for n in ("head.weight", "head.bias", "feature_mean", "feature_std")
            if n not in tensors
        ]
        if missing:
            raise InputError(
                f"missing tensors {missing[:5]} ({len(missing)} in all)", path=str(weights)
            )
        try:
            for name, param in params.items():
                param.data.copy_(tensors[f"lora.{name}"])
            router._head.weight.data.copy_(tensors["head.weight"])
            router._head.bias.data.copy_(tensors["head.bias"])
        except RuntimeError as exc:
            raise InputError(
                f"tensor shapes do not fit the model ({exc})", path=str(weights)
            ) from None
        router.feature_mean = tensors["feature_mean"].numpy()
        router.feature_std = tensors["feature_std"].numpy()
        router.target_mean = float(config["target_mean"])
        router.target_std = float(config["target_std"])
        router.metric = config.get("metric")
        router.train_hash = config.get("training_data_hash")
        router.train_sources = read_training_sources(directory)
        router.train_info = {
            k: training[k]
            for k in ("n_train", "n_given", "steps", "seconds", "loss_first", "loss_last20")
            if k in training
        }
        return router
