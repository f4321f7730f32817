"""One budget for every replica on every host: the pacer lives in a named Ray actor.

The actor owns a ``budget.Pacer`` (or, with ``persist``, a ``SQLitePacer`` on the actor's host,
so a restarted actor continues from the last decision); replicas hold a ``RayPacer``, which
speaks the pacer's own API (``decide_many``, ``refund``, ``state``, ``state_dict``) over Ray
calls. Every decision is made by the one pacer, in arrival order, so the share and the hard cap
hold over the union of all replicas' traffic exactly as within one process.

If the actor cannot be reached (it died and Ray is restarting it, or the call times out), a
replica routes the request small (reason ``budget_unavailable``): the budget is never spent
without its owner knowing. A decision made before an actor restart that lost its state is not
refunded into the new state (the epoch differs); with ``persist`` the state, and its refunds,
carry over.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import threading
import uuid
from collections.abc import Sequence
from typing import Any

from routelmt.budget.pacer import BudgetSpec, Decision, Pacer, batch_inputs
from routelmt.budget.plan import STAGE2_SUFFIX
from routelmt.errors import ConfigError

log = logging.getLogger(__name__)

NAMESPACE = "routelmt"
_tokens = itertools.count(1 << 40)  # pacer ids of RayPacer decisions (far from Pacer's own)
UNAVAILABLE = "budget_unavailable"


class BudgetActor:
    """The state of record (run as a Ray actor: ``budget_actor``)."""

    def __init__(self, spec: dict[str, Any], options: dict[str, Any], persist: str | None) -> None:
        self.spec = dict(spec)
        if persist:
            from routelmt.serve.shared_pacer import SQLitePacer

            self.pacer: Any = SQLitePacer(BudgetSpec(**spec), persist, **options)
            self.epoch = f"store:{persist}"  # the state (and its seqs) survive a restart
        else:
            self.pacer = Pacer(BudgetSpec(**spec), **options)
            self.epoch = uuid.uuid4().hex
        self.local_id = getattr(self.pacer, "_pacer", self.pacer)._id
        self.stale_refunds = 0

    def hello(self, spec: dict[str, Any]) -> str:
        """Check that a replica asks for this budget; returns the epoch."""
        if dict(spec) != self.spec:
            raise ConfigError(
                f"the budget actor holds budget {self.spec}, but this replica was started with "
                f"{dict(spec)}; use the same budget or another actor name"
            )
        return self.epoch

    def decide_many(
        self,
        scores: Sequence[float | None],
        costs: Sequence[float | None] | None,
        forced: Sequence[bool] | None,
    ) -> tuple[str, list[Decision], dict[str, Any]]:
        decisions = self.pacer.decide_many(list(scores), costs, forced=forced)
        return self.epoch, decisions, self.state()

    def refund(self, epoch: str, decision: Decision) -> bool:
        if epoch != self.epoch:  # made before a restart that lost the state: nothing to undo
            self.stale_refunds += 1
            return False
        return self.pacer.refund(dataclasses.replace(decision, pacer_id=self.local_id))

    def state(self) -> dict[str, Any]:
        return {**self.pacer.state(), "epoch": self.epoch, "stale_refunds": self.stale_refunds}

    def state_dict(self) -> dict[str, Any]:
        inner = getattr(self.pacer, "_pacer", self.pacer)
        if inner is not self.pacer:
            self.pacer.state()  # a shared store: sync first
        return inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if hasattr(self.pacer, "_pacer"):
            raise ConfigError("a persisted budget actor takes its state from its store")
        self.pacer.load_state_dict(state)


def spec_kwargs(spec: BudgetSpec) -> dict[str, Any]:
    """A budget as plain keyword arguments (what the actor is built from and compares)."""
    return {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}


def budget_actor(
    name: str, spec: BudgetSpec, options: dict[str, Any], persist: str | None = None
) -> Any:
    """The named actor, created with this budget if missing. Detached: it outlives the replicas
    (and the command that started them); Ray restarts it if its process dies."""
    import ray

    remote = ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=1)(BudgetActor)
    return remote.options(
        name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote(spec_kwargs(spec), options, persist)


class RayPacer:
    """A replica's handle on the budget actor ``name``: the ``BudgetPacer`` API over Ray."""

    def __init__(
        self,
        spec: BudgetSpec,
        name: str,
        *,
        timeout_s: float = 10.0,
        persist: str | None = None,
        **options: Any,
    ) -> None:
        import ray

        self._ray = ray
        self.spec = spec
        self.name = name
        self.timeout_s = float(timeout_s)
        self._spec = spec_kwargs(spec)
        self._actor = budget_actor(name, spec, options, persist)
        self._lock = threading.Lock()
        # a decision's pacer_id names the actor state (epoch) that charged it, so a refund goes
        # to that state or nowhere, never into a successor that lost it
        self._tokens: dict[int, str] = {}
        self._token_of: dict[str, int] = {}
        self._call(self._actor.hello.remote(self._spec))
        self._last_state: dict[str, Any] | None = None
        self.unavailable = 0

    def _token(self, epoch: str) -> int:
        with self._lock:
            if epoch not in self._token_of:
                token = next(_tokens)
                self._token_of[epoch], self._tokens[token] = token, epoch
            return self._token_of[epoch]

    def _call(self, ref: Any) -> Any:
        try:
            return self._ray.get(ref, timeout=self.timeout_s)
        except self._ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            raise cause if isinstance(cause, ConfigError) else exc from None

    def _unavailable(self, scores, costs, exc: Exception) -> list[Decision]:
        log.warning("budget actor %s unreachable (%s): routing small", self.name, exc)
        with self._lock:
            self.unavailable += len(scores)
        out = []
        for s, c in zip(scores, costs, strict=True):
            score = float("nan") if s is None or not math.isfinite(float(s)) else float(s)
            out.append(Decision(0, False, score, None, 0.0, self.spec.weight(c), UNAVAILABLE, -1))
        return out

    def decide_many(
        self,
        scores: Sequence[float | None],
        costs: Sequence[float | None] | None = None,
        *,
        forced: Sequence[bool] | None = None,
    ) -> list[Decision]:
        costs, forced = batch_inputs(scores, costs, forced)
        try:
            epoch, decisions, state = self._call(
                self._actor.decide_many.remote(list(scores), costs, forced)
            )
        except (ConfigError, ValueError):
            raise
        except Exception as exc:  # actor dead, restarting or slow: spend nothing
            return self._unavailable(scores, costs, exc)
        token = self._token(epoch)
        with self._lock:
            self._last_state = state
        return [dataclasses.replace(d, pacer_id=token) for d in decisions]

    def decide(
        self, score: float | None, cost: float | None = None, *, force: bool = False
    ) -> Decision:
        return self.decide_many([score], [cost], forced=[force])[0]

    def refund(self, decision: Decision) -> bool:
        if not decision.large or decision.charged <= 0:
            return False  # nothing charged (an unavailable budget charges nothing)
        epoch = self._tokens.get(decision.pacer_id)
        if epoch is None:
            raise ValueError("this decision was made by another pacer")
        try:
            return bool(self._call(self._actor.refund.remote(epoch, decision)))
        except Exception as exc:  # the actor is gone: its successor never saw this charge
            log.warning("budget actor %s unreachable for a refund: %s", self.name, exc)
            return False

    def state(self) -> dict[str, Any]:
        """The shared budget now; if the actor cannot answer, the last one seen, marked so."""
        try:
            state = self._call(self._actor.state.remote())
        except Exception as exc:
            if self._last_state is None:
                raise
            return {**self._last_state, "stale": True, "error": f"{type(exc).__name__}: {exc}"}
        state["actor"] = self.name
        state["unavailable_here"] = self.unavailable
        return state

    def state_dict(self) -> dict[str, Any]:
        return self._call(self._actor.state_dict.remote())

    @property
    def threshold(self) -> float | None:
        return self.state()["next_threshold"]

    def close(self) -> None:
        pass  # the actor is shared: it outlives this replica


def parse_store(store: str) -> tuple[str, str | None]:
    """``ray:NAME`` or ``ray:NAME|PATH`` (the actor persists to the SQLite file PATH on its
    host) -> (NAME, PATH). The two-stage router's second pacer appends ``.stage2`` to the whole
    store string (``budget.plan.stage_store``): it gets its own actor and its own file."""
    body = store.removeprefix("ray:")
    name, _, persist = body.partition("|")
    if persist.endswith(STAGE2_SUFFIX) and not name.endswith(STAGE2_SUFFIX):
        name += STAGE2_SUFFIX
    if not name or "/" in name:
        raise ConfigError(f"budget.store: expected ray:NAME or ray:NAME|PATH, got {store!r}")
    return name, persist or None
