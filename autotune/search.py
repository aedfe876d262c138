"""Evolutionary search over the sketches of one task, guided by the cost model.

A candidate is a sketch index plus its decisions (``sketch.to_record`` text). Each call of
:meth:`EvolutionarySearch.next_batch` runs one round:

1. the population (kept from the previous round) is seeded with the task's best measured records
   (their sketch record is kept in ``TuningRecord.extra["sketch"]``) and random samples across
   all sketches;
2. for a few generations, children are made by mutation (``Sketch.mutate``) and by crossover
   (two parents of the same sketch; each decision taken from either parent, then
   ``Sketch.check``), every child is lowered and scored by the cost model on its pooled
   features, and the best ``population`` candidates survive;
3. the batch is the best-scored candidates not measured yet plus an ``epsilon`` share of random
   ones (exploration, so the model also sees what it thinks is bad).

A candidate is never proposed twice: the search keeps a set of schedules it handed out and asks
the database (``Database.has``) about the rest. Candidates whose schedule fails to apply or lower
are dropped and counted in ``stats.failed``; they never stop the search. Lowered candidates are
cached by their record text (schedule JSON and features), so survivors are not lowered again.

Example::

    search = EvolutionarySearch(task, database=db, seed=0)
    batch = search.next_batch(16, cost_model)         # [Candidate], none measured before
    inputs = [MeasureInput(task.to_dict(), c.schedule_json) for c in batch]
"""
from __future__ import annotations

import dataclasses
import random
import time
from typing import Iterable

import numpy as np

import tensorlang as tl
from tensorlang.errors import TensorlangError, UserError

from . import features as _features
from . import sketch as _sketch
from .database import Database, TuningRecord
from .task import Task, _vector_lanes

__all__ = ["Candidate", "EvolutionarySearch", "SearchStats"]


@dataclasses.dataclass
class Candidate:
    """A lowered candidate: its sketch record, schedule trace JSON, features and score."""

    sketch_index: int
    decisions: dict
    record: str                  # sketch.to_record(sketch_index, decisions)
    schedule_json: str           # what is measured and stored (tl.schedule_from_json replays it)
    features: np.ndarray | None  # None only for a fallback candidate the search never lowered
    score: float = 0.0


@dataclasses.dataclass
class SearchStats:
    """Counters of one search: candidates lowered and scored, dropped, seconds spent."""

    scored: int = 0              # distinct candidates lowered and featurized
    failed: int = 0              # candidates dropped: apply or lower raised
    rounds: int = 0
    seconds: float = 0.0         # wall time in next_batch

    @property
    def scored_per_second(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else 0.0


class EvolutionarySearch:
    """Proposes batches of unmeasured candidates for one task.

    Args:
        task: the task; its sketches come from ``generate_sketches(task.outputs, lanes)`` with
            the vector width of the task's target (``sketch_gpu.generate_gpu_sketches`` with
            the device limits for a CUDA task, whose candidates are also checked against the
            limits once lowered and featurized by ``features.extract_pooled_gpu``).
        database: where measured records live (seeds the population, filters duplicates).
        seed: seeds the random choices (the same seed and data give the same batches).
        population: candidates kept between generations.
        generations: generations of mutation and crossover per round.
        epsilon: share of each batch drawn at random instead of by the model.
        crossover: share of children made by crossover (the rest by mutation).
        children: children made per generation (default ``population // 2``).

    Lowering a candidate for its features dominates the time (about 25 ms for a 256^3 matmul on
    one core), so the population carries over between rounds and only new children, a quarter of
    ``population`` random samples and new database seeds are lowered in a later round.

    Example::

        search = EvolutionarySearch(task, database=db, population=64, generations=3)
        batch = search.next_batch(16, XGBoostCostModel())
        search.stats.scored_per_second
    """

    def __init__(self, task: Task, database: Database | None = None, *, seed: int = 0,
                 population: int = 64, generations: int = 3, epsilon: float = 0.2,
                 crossover: float = 0.3, children: int | None = None):
        if population < 2 or generations < 0 or not 0 <= epsilon <= 1:
            raise UserError(f"search needs population >= 2, generations >= 0 and 0 <= epsilon "
                            f"<= 1; got {population}, {generations}, {epsilon}")
        self.task, self.database = task, database
        self.population, self.generations = population, generations
        self.epsilon, self.crossover = epsilon, crossover
        self.children = children if children is not None else max(1, population // 2)
        self.rng = random.Random(seed)
        if getattr(task, "is_cuda", False):
            from .sketch_gpu import generate_gpu_sketches
            self.sketches = generate_gpu_sketches(task.outputs, task.gpu_limits())
            self._extract = _features.extract_pooled_gpu
        else:
            self.sketches = _sketch.generate_sketches(task.outputs, _vector_lanes(task))
            self._extract = _features.extract_pooled
        self.stats = SearchStats()
        self._cache: dict[str, Candidate | None] = {}   # record text -> lowered (None: failed)
        self._proposed: set[str] = set()                # schedule JSON handed out or measured
        self._population: list[Candidate] = []

    # -- lowering and features -------------------------------------------------------------------
    def lower(self, sketch_index: int, decisions: dict) -> Candidate | None:
        """The lowered candidate, or ``None`` when its schedule fails (cached either way)."""
        record = _sketch.to_record(sketch_index, decisions)
        if record in self._cache:
            return self._cache[record]
        candidate = None
        try:
            sketch = self.sketches[sketch_index]
            sketch.check(decisions)
            schedule = sketch.apply(self.task.tensors, decisions)
            func = tl.lower(schedule, self.task.tensors)
            check = getattr(sketch, "check_lowered", None)
            if check is not None:  # GPU: threads per block and shared memory within limits
                check(func)
            candidate = Candidate(sketch_index, decisions, record, schedule.to_json(),
                                  self._extract(func))
            self.stats.scored += 1
        except (TensorlangError, ValueError, TypeError, KeyError, IndexError, ZeroDivisionError):
            # a candidate the schedule language rejects is the candidate's fault, not the search's
            self.stats.failed += 1
        self._cache[record] = candidate
        return candidate

    def record_features(self, record: TuningRecord) -> np.ndarray | None:
        """Features of a measured record (from its sketch record when it has one, else by
        replaying its schedule JSON); ``None`` when it no longer lowers."""
        text = record.extra.get("sketch")
        if text:
            try:
                index, decisions = _sketch.from_record(text)
            except UserError:
                index = None
            if index is not None and 0 <= index < len(self.sketches):
                found = self.lower(index, decisions)
                if found is not None and found.schedule_json == record.schedule:
                    return found.features
        key = "json:" + record.schedule
        if key not in self._cache:
            try:
                schedule = tl.schedule_from_json(record.schedule, self.task.tensors)
                func = tl.lower(schedule, self.task.tensors)
                self._cache[key] = Candidate(-1, {}, key, record.schedule,
                                             self._extract(func))
            except (TensorlangError, ValueError, TypeError, KeyError, IndexError):
                self._cache[key] = None
        found = self._cache[key]
        return None if found is None else found.features

    # -- proposing ---------------------------------------------------------------------------------
    def mark_measured(self, schedules: Iterable[str]) -> None:
        """Remember schedules (trace JSON) measured elsewhere, so they are never proposed."""
        self._proposed.update(schedules)

    def is_new(self, candidate: Candidate) -> bool:
        """Not proposed by this search and not in the database."""
        if candidate.schedule_json in self._proposed:
            return False
        if self.database is not None and self.database.has(
                self.task.key, self.task.target_key, candidate.schedule_json):
            self._proposed.add(candidate.schedule_json)
            return False
        return True

    def next_batch(self, size: int, model) -> list[Candidate]:
        """Up to ``size`` candidates never measured: the model's best plus an ``epsilon`` share
        of random ones. Fewer (possibly none) when the search space is nearly exhausted."""
        start = time.perf_counter()
        try:
            batch = self._round(size, model)
        finally:
            self.stats.seconds += time.perf_counter() - start
            self.stats.rounds += 1
        self._proposed.update(c.schedule_json for c in batch)
        return batch

    def _round(self, size: int, model) -> list[Candidate]:
        if size <= 0:
            return []
        # the population carries over between rounds (its features are cached), refreshed by
        # the best measured records and a quarter of new random samples
        defaults = self._defaults()
        kept = _unique(defaults + self._seeds() + self._population)
        randoms = self._random(max(self.population - len(kept), self.population // 4))
        population = _unique(kept + randoms)
        self._score(population, model)
        explored = {c.record: c for c in population}
        population = sorted(population, key=lambda c: -c.score)[:self.population]
        for _ in range(self.generations):
            children = [c for c in self._children(population) if c.record not in explored]
            self._score(children, model)
            explored.update((c.record, c) for c in children)
            population = sorted(_unique(population + children), key=lambda c: -c.score)
            population = population[:self.population]
        self._population = population
        n_random = int(round(self.epsilon * size))
        batch: list[Candidate] = []
        taken: set[str] = set()  # schedules: decisions that change nothing give equal ones
        # each sketch's default decisions are measured first (half a batch at most per round):
        # a tuned result is then never worse than the untuned default schedule
        for c in defaults:
            if len(batch) >= max(1, size // 2):
                break
            if c.schedule_json not in taken and self.is_new(c):
                batch.append(c)
                taken.add(c.schedule_json)
        for c in self.rng.sample(randoms, len(randoms)):
            if len(batch) >= n_random:
                break
            if c.schedule_json not in taken and self.is_new(c):
                batch.append(c)
                taken.add(c.schedule_json)
        for c in sorted(explored.values(), key=lambda c: -c.score):
            if len(batch) >= size:
                break
            if c.schedule_json not in taken and self.is_new(c):
                batch.append(c)
                taken.add(c.schedule_json)
        if len(batch) < size:  # a small space: fill with whatever random samples remain new
            for c in self._random(4 * (size - len(batch))):
                if len(batch) >= size:
                    break
                if c.schedule_json not in taken and self.is_new(c):
                    batch.append(c)
                    taken.add(c.schedule_json)
        return batch

    def _defaults(self) -> list[Candidate]:
        """Each sketch with its default decisions, the default schedule's sketch first."""
        found = (self.lower(i, sk.default_decisions()) for i, sk in enumerate(self.sketches))
        return [c for c in found if c is not None]

    def _seeds(self) -> list[Candidate]:
        """The task's best measured candidates that carry a sketch record."""
        if self.database is None:
            return []
        seeds = []
        for rec in self.database.best(self.task.key, self.task.target_key,
                                      k=self.population // 2):
            text = rec.extra.get("sketch")
            try:
                index, decisions = _sketch.from_record(text) if text else (None, None)
            except UserError:
                continue
            if index is None or not 0 <= index < len(self.sketches):
                continue
            candidate = self.lower(index, decisions)
            if candidate is not None:
                seeds.append(candidate)
        return seeds

    def _random(self, count: int) -> list[Candidate]:
        out = []
        for _ in range(max(0, count)):
            index = self.rng.randrange(len(self.sketches))
            candidate = self.lower(index, self.sketches[index].sample(self.rng))
            if candidate is not None:
                out.append(candidate)
        return out

    def _children(self, population: list[Candidate]) -> list[Candidate]:
        if not population:
            return []
        by_sketch: dict[int, list[Candidate]] = {}
        for c in population:
            by_sketch.setdefault(c.sketch_index, []).append(c)
        children = []
        for _ in range(self.children):
            parent = self._pick(population)
            mates = [c for c in by_sketch[parent.sketch_index] if c is not parent]
            sketch = self.sketches[parent.sketch_index]
            if mates and self.rng.random() < self.crossover:
                decisions = crossover(sketch, parent.decisions, self._pick(mates).decisions,
                                      self.rng)
                if decisions is None:
                    self.stats.failed += 1
                    continue
            else:
                decisions = sketch.mutate(parent.decisions, self.rng)
            child = self.lower(parent.sketch_index, decisions)
            if child is not None:
                children.append(child)
        return _unique(children)

    def _pick(self, candidates: list[Candidate]) -> Candidate:
        """Tournament of two: the better-scored of two random candidates."""
        a, b = self.rng.choice(candidates), self.rng.choice(candidates)
        return a if a.score >= b.score else b

    @staticmethod
    def _score(candidates: list[Candidate], model) -> None:
        if not candidates:
            return
        scores = model.predict([c.features for c in candidates])
        for c, s in zip(candidates, scores):
            c.score = float(s)


def crossover(sketch, first: dict, second: dict, rng: random.Random) -> dict | None:
    """Each decision taken from either parent (of the same sketch); ``None`` if the child fails
    ``sketch.check``."""
    child = {name: (first if rng.random() < 0.5 else second)[name] for name in first}
    try:
        sketch.check(child)
    except UserError:
        return None
    return child


def _unique(candidates: list[Candidate]) -> list[Candidate]:
    seen, out = set(), []
    for c in candidates:
        if c.record not in seen:
            seen.add(c.record)
            out.append(c)
    return out
