"""Cost models: predict which schedule candidates run fastest, learned from measurements.

Every model has the same small interface -- ``update`` with measured candidates, ``predict``
scores (higher = predicted faster), ``save`` / ``load`` and ``is_trained`` -- so the search can
use :class:`XGBoostCostModel` or :class:`RandomModel` alike.

Example::

    from autotune import features
    from autotune.cost_model import XGBoostCostModel

    model = XGBoostCostModel()
    model.update([features.extract(f) for f in measured_funcs], costs)   # seconds; inf = failed
    scores = model.predict([features.extract(f) for f in new_funcs])     # higher = faster
    model.save("cost_model.bin"); model = XGBoostCostModel.load("cost_model.bin")

Targets are throughputs normalised per task: ``min_cost / cost`` in ``[0, 1]`` (1 for the
fastest candidate of its task, 0 for failed ones), so tasks of very different sizes share one
model. Candidates are given as per-store feature rows (:func:`features.extract`), which the model
pools (:func:`features.pool`), or as pooled vectors (:func:`features.extract_pooled`).
"""
from __future__ import annotations

import io
import json
from typing import NamedTuple, Sequence

import numpy as np

from . import features as _features

# xgboost and scipy are imported where used: importing autotune should stay quick.

# The objective chosen by measured ranking quality (see XGBoostCostModel's docstring).
DEFAULT_OBJECTIVE = "rank"

_PARAMS = {"max_depth": 4, "eta": 0.1, "min_child_weight": 2.0, "colsample_bytree": 0.7,
           "lambda": 1.0, "nthread": 1, "verbosity": 0}
_ROUNDS = 120
_FAILED_WEIGHT = 0.05  # failed candidates (throughput 0) still teach the regression a little


def pooled_matrix(features_list: Sequence) -> np.ndarray:
    """Stack candidates into a 2-D matrix, pooling per-store rows to one vector each."""
    vectors = []
    for f in features_list:
        f = np.asarray(f, np.float32)
        vectors.append(_features.pool(f) if f.ndim == 2 else f)
    if not vectors:
        return np.zeros((0, _features.POOLED_LENGTH), np.float32)
    lengths = {len(v) for v in vectors}
    if len(lengths) != 1:
        raise ValueError(f"candidates have feature vectors of different lengths: {sorted(lengths)}")
    return np.stack(vectors)


def normalized_throughput(costs: Sequence[float], tasks: Sequence | None = None) -> np.ndarray:
    """``min_cost / cost`` per task, in [0, 1]; failed (inf, nan, <= 0) candidates give 0."""
    costs = np.asarray(costs, np.float64)
    tasks = np.zeros(len(costs), int) if tasks is None else np.asarray(tasks, object)
    ok = np.isfinite(costs) & (costs > 0)
    target = np.zeros(len(costs))
    for task in _unique(tasks):
        mine = (tasks == task) & ok
        if mine.any():
            target[mine] = costs[mine].min() / costs[mine]
    return target


class RandomModel:
    """Random scores: the baseline, and what the search uses before any measurement."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    @property
    def is_trained(self) -> bool:
        return False

    def update(self, features_list, costs, tasks=None) -> None:
        """Ignores the data."""

    def predict(self, features_list) -> np.ndarray:
        return self._rng.random(len(features_list))

    def save(self, path) -> None:
        with open(path, "w") as f:
            json.dump({"kind": "random", "seed": self.seed}, f)

    @classmethod
    def load(cls, path) -> "RandomModel":
        with open(path) as f:
            return cls(json.load(f)["seed"])


class XGBoostCostModel:
    """Gradient-boosted trees over pooled program features, retrained on every ``update``.

    ``objective="rank"`` trains XGBoost ``rank:pairwise`` with one query group per task (only
    the order of candidates inside a task matters); ``"reg"`` trains ``reg:squarederror`` on the
    normalised throughput, each sample weighted by its throughput so the model is most accurate
    about fast candidates. The default is ``"rank"``, by measured ranking quality: on 120
    really measured random schedules of a 64x64x64 matmul (train on 80, rank the other 40,
    mean of 30 random splits) it ordered pairs a little better than ``"reg"`` (pairwise
    accuracy 0.690 against 0.683, Spearman 0.53 against 0.51; random gives 0.5 and 0). The
    two are close -- single runs of the test go either way by about 0.01 -- so
    ``tests/autotune/test_cost_model.py`` prints both figures on every run.

    All data seen is kept, so each ``update`` retrains on everything (measurements are few:
    thousands at most). Before it has two distinct finite costs, ``predict`` gives seeded random
    scores.

    Example::

        model = XGBoostCostModel(objective="rank", seed=0)
        model.update(rows_of_measured, costs_in_seconds, tasks=task_keys)
        best_first = np.argsort(-model.predict(rows_of_candidates))
    """

    def __init__(self, objective: str = DEFAULT_OBJECTIVE, seed: int = 0,
                 rounds: int = _ROUNDS):
        if objective not in ("rank", "reg"):
            raise ValueError(f"objective must be 'rank' or 'reg', got {objective!r}")
        self.objective = objective
        self.seed = seed
        self.rounds = rounds
        self._rng = np.random.default_rng(seed)
        self._booster = None
        self._x = np.zeros((0, _features.POOLED_LENGTH), np.float32)
        self._costs = np.zeros(0)
        self._tasks: list = []

    @property
    def is_trained(self) -> bool:
        return self._booster is not None

    @property
    def num_samples(self) -> int:
        return len(self._costs)

    def update(self, features_list, costs, tasks=None) -> None:
        """Add measured candidates and retrain.

        ``costs`` are seconds (inf for a candidate that failed: treated as the worst);
        ``tasks`` names each candidate's task (any hashable, default: one task for all).
        """
        x = pooled_matrix(features_list)
        costs = np.asarray(costs, np.float64).reshape(-1)
        if len(x) != len(costs):
            raise ValueError(f"{len(x)} candidates but {len(costs)} costs")
        tasks = ["0"] * len(costs) if tasks is None else [_task_name(t) for t in tasks]
        if len(tasks) != len(costs):
            raise ValueError(f"{len(tasks)} task names for {len(costs)} costs")
        if len(self._x) and x.shape[1] != self._x.shape[1]:
            raise ValueError(f"feature length {x.shape[1]} does not match the model's "
                             f"{self._x.shape[1]}")
        self._x = np.concatenate([self._x, x]) if len(self._x) else x
        self._costs = np.concatenate([self._costs, costs])
        self._tasks.extend(tasks)
        self._train()

    def predict(self, features_list) -> np.ndarray:
        """Scores of the candidates, higher = predicted faster (random before training)."""
        if self._booster is None:
            return self._rng.random(len(features_list))
        import xgboost as xgb
        x = pooled_matrix(features_list)
        return self._booster.predict(xgb.DMatrix(x)).astype(np.float64)

    def save(self, path) -> None:
        """Write the model, its settings and its training data to one file."""
        meta = {"kind": "xgboost", "objective": self.objective, "seed": self.seed,
                "rounds": self.rounds, "tasks": self._tasks}
        booster = (np.frombuffer(bytes(self._booster.save_raw("ubj")), np.uint8)
                   if self._booster is not None else np.zeros(0, np.uint8))
        buffer = io.BytesIO()
        np.savez(buffer, meta=np.array(json.dumps(meta)), booster=booster, x=self._x,
                 costs=self._costs)
        with open(path, "wb") as f:
            f.write(buffer.getvalue())

    @classmethod
    def load(cls, path) -> "XGBoostCostModel":
        """A model saved by :meth:`save`, predicting exactly as it did."""
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            model = cls(meta["objective"], meta["seed"], meta["rounds"])
            model._x, model._costs = data["x"], data["costs"]
            model._tasks = list(meta["tasks"])
            raw = data["booster"]
            if len(raw):
                import xgboost as xgb
                model._booster = xgb.Booster(params=dict(_PARAMS),
                                             model_file=bytearray(raw.tobytes()))
        return model

    # -- training ------------------------------------------------------------------------------
    def _train(self) -> None:
        finite = self._costs[np.isfinite(self._costs)]
        if len(np.unique(finite)) < 2:
            return  # nothing to learn an order from yet
        xgb = _import_xgboost()
        if xgb is None:
            return  # no xgboost here: predict stays random (noted once)
        target = normalized_throughput(self._costs, self._tasks)
        params = dict(_PARAMS, seed=self.seed)
        if self.objective == "rank":
            groups = {k: i for i, k in enumerate(dict.fromkeys(self._tasks))}
            qid = np.array([groups[k] for k in self._tasks])
            order = np.argsort(qid, kind="stable")
            matrix = xgb.DMatrix(self._x[order], label=target[order], qid=qid[order])
            params.update(objective="rank:pairwise")
        else:
            matrix = xgb.DMatrix(self._x, label=target,
                                 weight=np.maximum(target, _FAILED_WEIGHT))
            params.update(objective="reg:squarederror")
        self._booster = xgb.train(params, matrix, num_boost_round=self.rounds)


class RankingQuality(NamedTuple):
    pairwise_accuracy: float  # share of pairs with different costs put in the right order
    spearman: float           # rank correlation of scores with throughput


def pairwise_accuracy(scores, costs) -> float:
    """Share of candidate pairs with different costs that ``scores`` order correctly
    (higher score for the lower cost); ties in score count as half right."""
    scores = np.asarray(scores, np.float64)
    costs = np.asarray(costs, np.float64)
    costs = np.where(np.isfinite(costs), costs, np.inf)
    faster = costs[:, None] < costs[None, :]
    if not faster.any():
        return 0.5
    ds = scores[:, None] - scores[None, :]
    right = (ds > 0) + 0.5 * (ds == 0)
    return float(right[faster].mean())


def measure_ranking_quality(model, features_list, costs) -> RankingQuality:
    """How well a trained ``model`` orders held-out candidates with measured ``costs``.

    Example::

        model.update(train_features, train_costs)
        quality = measure_ranking_quality(model, test_features, test_costs)
        print(quality.pairwise_accuracy, quality.spearman)
    """
    from scipy.stats import spearmanr
    scores = model.predict(features_list)
    throughput = normalized_throughput(costs)
    rho = spearmanr(scores, throughput).statistic if len(scores) > 1 else 0.0
    return RankingQuality(pairwise_accuracy(scores, costs),
                          float(0.0 if np.isnan(rho) else rho))


_XGBOOST_NOTED = False


def _import_xgboost():
    """The xgboost module, or None (with a one-line notice on stderr, once per process) when
    it is not installed: the model then ranks candidates at random instead of crashing."""
    global _XGBOOST_NOTED
    try:
        import xgboost
        return xgboost
    except ImportError as exc:
        if not _XGBOOST_NOTED:
            import sys
            print(f"autotune: xgboost is not importable ({exc}); the cost model falls back to "
                  "random ranking (pip install xgboost-cpu for a learned model)", file=sys.stderr)
            _XGBOOST_NOTED = True
        return None


def _unique(values) -> list:
    return list(dict.fromkeys(values.tolist() if hasattr(values, "tolist") else values))


def _task_name(task) -> str:
    return task if isinstance(task, str) else json.dumps(task) if isinstance(
        task, (int, float, list)) else str(task)
