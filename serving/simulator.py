"""The request-level simulation of an iteration-level server (docs/serving.md 5).

Event skipping: between scheduling events (an admission, a finish, a preemption, an arrival
that can be admitted) every iteration is a decode step of the same running set, whose
forwards' aggregates grow linearly with the iteration index (each sequence's context grows by
one token, a Block Transformer's block-decoder context by one block every L_B steps, in a
pattern periodic in L_B). A stretch of k such iterations is therefore timed in one vectorised
call of the predictor over a [k, kinds, 8] aggregate array; Python runs once per event, not per
iteration or per op. Iterations that schedule prefill work run one at a time. Every forward's
aggregates carry its longest q, which puts it in the predictor's one-position (q = 1) or
multi-position (some q > 1) regime (serving/predictor.py, docs/serving.md 3).

State per request: g (tokens generated so far), the prefill progress of its current (re)prefill
in units (tokens, or blocks for a Block Transformer), first-token and finish times, preemptions.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from costmodel.errors import UserError

from .predictor import N_AGG, Q_MAX, RECT, Predictor, aggregates
from .requests import Trace
from .scheduler import SchedulerConfig

MAX_SEGMENT = 4096  # iterations timed per vectorised call


@dataclass
class RawRun:
    """What a simulation leaves behind (arrays per request, samples over time)."""

    first_token_s: np.ndarray
    finish_s: np.ndarray
    preemptions: np.ndarray
    rejected: np.ndarray  # bool: could never fit the KV pool
    iterations: int
    samples_t: list[float] = field(default_factory=list)
    samples_waiting: list[int] = field(default_factory=list)
    samples_running: list[int] = field(default_factory=list)
    samples_kv: list[float] = field(default_factory=list)
    kv_capacity_bytes: float = 0.0


class Simulator:
    def __init__(self, pred: Predictor, trace: Trace, cfg: SchedulerConfig,
                 progress: Callable[[int, int], None] | None = None) -> None:
        self.p, self.tr, self.cfg, self.progress = pred, trace, cfg, progress
        self.lb, self.P = pred.block_length, pred.prefix_length
        self.block = pred.kind == "block"
        S = trace.prompt_tokens.astype(np.int64)
        self.S, self.G = S, trace.generated_tokens.astype(np.int64)
        self.n_p = -(-S // self.lb)  # prompt blocks (left-padded), or tokens for vanilla
        # regime of each forward kind in a decode stretch (multi-position: the prefix forward's
        # P positions; every other forward q = 1), as `_segment_aggregates` sets q_max
        self.stretch_regimes = (False, self.P > 1, False) if self.block else (False,)
        cap = cfg.kv_capacity_bytes
        if cap is None:
            cap = cfg.memory_fraction * pred.capacity_bytes - pred.weights_bytes
            if cap <= 0:
                raise UserError(f"memory_fraction: {cfg.memory_fraction:g} of the device "
                                f"memory ({pred.capacity_bytes / 2**30:.1f} GiB) does not "
                                f"hold the weights ({pred.weights_bytes / 2**30:.2f} GiB)")
        self.cap = float(cap)
        self.page_bytes = cfg.page_tokens * pred.kv_bytes_per_entry
        n = len(trace)
        self.g = np.zeros(n, dtype=np.int64)
        self.done = np.zeros(n, dtype=np.int64)  # prefill units done of the current prefill
        self.first = np.full(n, np.nan)
        self.finish = np.full(n, np.nan)
        self.preempt = np.zeros(n, dtype=np.int64)
        self.rejected = np.zeros(n, dtype=bool)

    # -- per-request quantities (vectorised over ids) -------------------------------------
    def entries_next(self, ids: np.ndarray | int, extra: np.ndarray | int = 0):
        """Entries of the growing cache after the next forward, `extra` iterations ahead."""
        g = self.g[ids] + extra
        if self.block:
            return self.n_p[ids] + g // self.lb
        return self.S[ids] + g

    def kv_bytes(self, entries) -> np.ndarray:
        pages = -(-np.asarray(entries) // self.cfg.page_tokens)
        return pages * self.page_bytes + self.p.fixed_kv_bytes_per_seq

    def prefill_units(self, i: int) -> int:
        """Units of a (re)prefill: prompt plus generated tokens (blocks for a block model)."""
        g = int(self.g[i])
        if self.block:
            return int(self.n_p[i]) + g // self.lb
        return int(self.S[i]) + g

    def units_v(self, ids: np.ndarray) -> np.ndarray:
        """`prefill_units` of many requests."""
        if self.block:
            return self.n_p[ids] + self.g[ids] // self.lb
        return self.S[ids] + self.g[ids]

    def unit_tokens(self) -> int:
        return self.lb if self.block else 1

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> RawRun:
        tr, cfg = self.tr, self.cfg
        arr = tr.arrival_s
        n = len(tr)
        waiting: deque[int] = deque()
        run: list[int] = []  # running ids, admission order (newest last)
        nxt = 0  # next arrival not yet queued
        t = 0.0
        iters = 0
        finished = 0
        out = RawRun(self.first, self.finish, self.preempt, self.rejected, 0,
                     kv_capacity_bytes=self.cap)
        last_report = 0
        while finished < n:
            while nxt < n and arr[nxt] <= t:
                waiting.append(nxt)
                nxt += 1
            # room for the next forward of everything running (preempt newest otherwise)
            refused, used = self._fit_memory(run, waiting)
            finished += refused
            self._sample(out, t, len(waiting), len(run), used)
            if not run and not waiting:
                if nxt >= n:
                    break
                t = float(arr[nxt])
                continue
            if cfg.policy == "prefill-first":
                batch = self._admit(run, waiting, used)
                if batch:
                    t, k_fin = self._mixed(t, [], batch, run)
                    iters += 1
                    finished += k_fin
                    continue
            else:
                ids = np.asarray(run, dtype=np.int64)
                partial = bool(len(ids)) and bool((self.done[ids] < self.units_v(ids)).any())
                if partial or self._can_admit(run, waiting, used):
                    t, k_fin = self._chunked(t, run, waiting)
                    iters += 1
                    finished += k_fin
                    continue
            if not run:  # the head of the queue can never fit: refuse it
                i = waiting.popleft()
                self.rejected[i] = True
                self.first[i] = self.finish[i] = np.nan
                finished += 1
                continue
            t, k, k_fin = self._decode_segment(t, run, waiting, nxt)
            iters += k
            finished += k_fin
            if self.progress and finished - last_report >= max(1, n // 100):
                self.progress(finished, n)
                last_report = finished
        if self.progress:
            self.progress(n, n)
        self._sample(out, t, len(waiting), len(run), self._used(run))
        out.iterations = iters
        return out

    def _sample(self, out: RawRun, t: float, waiting: int, running: int, used: float) -> None:
        out.samples_t.append(t)
        out.samples_waiting.append(waiting)
        out.samples_running.append(running)
        out.samples_kv.append(used / self.cap)

    def _in_prefill(self, i: int) -> bool:
        return self.done[i] < self.prefill_units(i)

    def _used(self, run: list[int]) -> float:
        if not run:
            return 0.0
        return float(self.kv_bytes(self.entries_next(np.asarray(run, dtype=np.int64))).sum())

    def _fit_memory(self, run: list[int], waiting: deque[int]) -> tuple[int, float]:
        """Preempt the newest running requests until the next forward fits. Returns (requests
        refused because even alone they never fit, KV bytes then held)."""
        if not run:
            return 0, 0.0
        held = np.cumsum(self.kv_bytes(self.entries_next(np.asarray(run, dtype=np.int64))))
        if held[-1] <= self.cap:
            return 0, float(held[-1])
        keep = int(np.searchsorted(held, self.cap, side="right"))
        if keep == 0:  # the oldest alone does not fit: it never will
            i = run.pop(0)
            self.rejected[i] = True
            refused, used = self._fit_memory(run, waiting)
            return refused + 1, used
        while len(run) > keep:
            i = run.pop()  # newest first: preempt by recompute
            self.preempt[i] += 1
            self.done[i] = 0
            waiting.appendleft(i)
        return 0, float(held[keep - 1])

    def _can_admit(self, run: list[int], waiting: deque[int], used: float) -> bool:
        if not waiting or len(run) >= self.cfg.max_running:
            return False
        need = float(self.kv_bytes(self.entries_next(waiting[0])))
        return used + need <= self.cap

    def _admit(self, run: list[int], waiting: deque[int], used: float) -> list[int]:
        """Prefill-first admission: FCFS while slots, KV pages and the token budget allow."""
        batch: list[int] = []
        tokens = 0
        budget = self.cfg.budget
        while waiting and len(run) < self.cfg.max_running:
            i = waiting[0]
            need = float(self.kv_bytes(self.entries_next(i)))
            tok = self.prefill_units(i) * self.unit_tokens()
            if used + need > self.cap or (batch and tokens + tok > budget):
                break
            waiting.popleft()
            run.append(i)
            batch.append(i)
            self.done[i] = 0
            used += need
            tokens += tok
        return batch

    # -- one iteration with prefill work ---------------------------------------------------
    def _mixed(self, t: float, decodes: list[int], chunks: list[tuple[int, int]] | list[int],
               run: list[int]) -> tuple[float, int]:
        """One iteration: `decodes` (one token each) and prefill `chunks` ((id, units) or ids
        for whole prefills). Returns (end time, finished requests)."""
        p, lb, P = self.p, self.lb, self.P
        if chunks and isinstance(chunks[0], tuple):
            ch_ids = np.array([i for i, _ in chunks], dtype=np.int64)
            ch_q = np.array([u for _, u in chunks], dtype=np.float64)
        else:  # whole (re)prefills
            ch_ids = np.asarray(chunks, dtype=np.int64)
            ch_q = (self.units_v(ch_ids) - self.done[ch_ids]).astype(np.float64)
        ch_c = self.done[ch_ids].astype(np.float64)
        completes = ch_ids[self.done[ch_ids] + ch_q.astype(np.int64) >= self.units_v(ch_ids)]
        dec = np.asarray(decodes, dtype=np.int64)
        gd = self.g[dec]
        if self.block:
            bound = dec[gd % lb == 0]
            tok = dec[gd % lb != 0]
            bq = np.concatenate([np.ones(len(bound)), ch_q])
            bc = np.concatenate([(self.n_p[bound] + self.g[bound] // lb - 1).astype(float), ch_c])
            pq = np.concatenate([np.full(len(bound), P, float),
                                 (P + self.g[completes] % lb).astype(float)])
            agg = np.stack([aggregates(bq, bc), aggregates(pq, np.zeros(len(pq))),
                            aggregates(np.ones(len(tok)), (P + self.g[tok] % lb - 1))])
        else:
            q = np.concatenate([np.ones(len(dec)), ch_q])
            c = np.concatenate([(self.S[dec] + gd - 1).astype(float), ch_c])
            agg = aggregates(q, c)[None, :]
        agg[:, 0] = agg[:, 5] > 0
        dt = float(p.iteration_time_s(agg[None])[0])
        t_end = t + dt
        self.done[ch_ids] += ch_q.astype(np.int64)
        emitted = np.concatenate([dec, completes])
        fresh = emitted[self.g[emitted] == 0]
        self.first[fresh] = t_end
        self.g[emitted] += 1
        fin = emitted[self.g[emitted] >= self.G[emitted]]
        self.finish[fin] = t_end
        if len(fin):
            gone = set(fin.tolist())
            run[:] = [i for i in run if i not in gone]
        return t_end, len(fin)

    def _chunked(self, t: float, run: list[int], waiting: deque[int]) -> tuple[float, int]:
        budget = self.cfg.budget
        ut = self.unit_tokens()
        decodes = [i for i in run if not self._in_prefill(i)]
        left = budget - len(decodes)
        chunks: list[tuple[int, int]] = []
        for i in run:
            if self._in_prefill(i) and left >= ut:
                u = min(self.prefill_units(i) - int(self.done[i]), left // ut)
                chunks.append((i, u))
                left -= u * ut
        used = self._used(run)
        while waiting and left >= ut and len(run) < self.cfg.max_running:
            i = waiting[0]
            need = float(self.kv_bytes(self.entries_next(i)))
            if used + need > self.cap:
                break
            waiting.popleft()
            run.append(i)
            self.done[i] = 0
            used += need
            u = min(self.prefill_units(i), left // ut)
            chunks.append((i, u))
            left -= u * ut
        return self._mixed(t, decodes, chunks, run)

    # -- a stretch of decode-only iterations -------------------------------------------------
    def _segment_aggregates(self, ids: np.ndarray, k: int, start: int = 0) -> np.ndarray:
        """[k, kinds, N_AGG] aggregates of each forward kind for decode iterations
        start..start+k-1 of `ids` (g as it is before iteration 0). Each kind keeps one regime
        over the stretch (block and token forwards q = 1, prefix forwards q = P): q_max is set
        even where a forward is absent (its constant aggregate 0 makes it cost 0 in either
        regime), so the whole stretch is one matrix product."""
        T = np.arange(start, start + k, dtype=np.float64)
        g = self.g[ids]
        n = float(len(ids))
        if not self.block:
            c = float((self.S[ids] + g - 1).sum()) + n * T
            agg = np.zeros((k, 1, N_AGG))
            agg[:, 0, 0] = 1.0
            agg[:, 0, 1] = agg[:, 0, 3] = agg[:, 0, 5] = n
            agg[:, 0, 2] = agg[:, 0, 4] = c
            agg[:, 0, Q_MAX] = 1.0
            return agg
        lb, P = self.lb, self.P
        r = g % lb
        cnt = np.bincount(r, minlength=lb).astype(np.float64)  # sequences per phase r
        base = np.bincount(r, weights=(self.n_p[ids] + g // lb).astype(np.float64),
                           minlength=lb)
        Ti = np.arange(start, start + k)[:, None] + np.arange(lb)[None, :]
        m = Ti % lb  # [k, lb] position in the block of each phase group
        at_b = (m == 0).astype(np.float64)
        nb = at_b @ cnt
        cb = at_b @ base + (at_b * (Ti // lb - 1)) @ cnt
        nt = n - nb
        ct = ((1.0 - at_b) * (P + m - 1)) @ cnt
        # block, prefix, token (forward_kinds order), each
        # [1, sum q, sum qc, sum q^2, sum c, n, q_max n_max, q_max]
        agg = np.zeros((k, 3, N_AGG))
        agg[:, 0, 0] = nb > 0
        agg[:, 0, 1:6:2] = nb[:, None]
        agg[:, 0, 2:6:2] = cb[:, None]
        agg[:, 0, Q_MAX] = 1.0
        agg[:, 1, 0] = nb > 0
        agg[:, 1, 1] = P * nb
        agg[:, 1, 3] = P * P * nb
        agg[:, 1, 5] = nb
        if P > 1:  # a multi-position forward: its mask rectangle P x P (c = 0)
            agg[:, 1, RECT] = float(P * P) * (nb > 0)
        agg[:, 1, Q_MAX] = P
        agg[:, 2, 0] = nt > 0
        agg[:, 2, 1:6:2] = nt[:, None]
        agg[:, 2, 2:6:2] = ct[:, None]
        agg[:, 2, Q_MAX] = 1.0
        return agg

    def _decode_segment(self, t: float, run: list[int], waiting: deque[int],
                        nxt: int) -> tuple[float, int, int]:
        ids = np.asarray(run, dtype=np.int64)
        k = int(min((self.G[ids] - self.g[ids]).min(), MAX_SEGMENT))
        # KV pages: largest k whose last iteration still fits
        if self._need(ids, k - 1) > self.cap:
            lo, hi = 1, k  # need(lo - 1) fits (checked by _fit_memory)
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if self._need(ids, mid - 1) <= self.cap:
                    lo = mid
                else:
                    hi = mid - 1
            k = lo
        # time the stretch in growing chunks: an arrival that could be admitted ends it at
        # the iteration it lands in
        watch = nxt < len(self.tr) and not waiting and len(run) < self.cfg.max_running
        t_arr = float(self.tr.arrival_s[nxt]) if watch else np.inf
        done_k, t_cur, chunk = 0, t, 32
        ends = np.empty(0)
        while done_k < k:
            m = min(chunk, k - done_k)
            dt = self.p.iteration_time_s(self._segment_aggregates(ids, m, done_k),
                                         self.stretch_regimes)
            e = t_cur + np.cumsum(dt)
            if e[-1] >= t_arr:
                cut = int(np.searchsorted(e, t_arr, side="left"))
                ends = np.concatenate([ends, e[: cut + 1]])
                k = done_k + cut + 1
                break
            ends = np.concatenate([ends, e])
            done_k += m
            t_cur = float(e[-1])
            chunk *= 4
        t_end = float(ends[k - 1])
        self.g[ids] += k
        fin = ids[self.g[ids] >= self.G[ids]]
        self.finish[fin] = t_end
        if len(fin):
            gone = set(fin.tolist())
            run[:] = [i for i in run if i not in gone]
        return t_end, k, len(fin)

    def _need(self, ids: np.ndarray, extra: int) -> float:
        return float(self.kv_bytes(self.entries_next(ids, extra)).sum())
