"""The constant-rate family: BuFLO, CS-BuFLO, Tamaraw and RegulaTor.

Each sends fixed-size packets on a schedule of its own, so packet sizes and
times say nothing of the traffic beyond its length; real bytes wait in a queue
until a slot takes them (the added delay), and a slot with nothing queued sends
a dummy. The schedules differ in rate, in when they stop, and in who sends.
"""

from __future__ import annotations

import math

import numpy as np

from echolab.analysis.defenses.registry import Defense, Param
from echolab.analysis.defenses.trace import (MAX_DEFENDED_PACKETS, Defended, check_packets, constant_rate,
                                             direction, directions)


def _schedule(times: np.ndarray, sizes: np.ndarray, sign: int, interval: float, size: int):
    t, b = direction(times, sizes, sign)
    return constant_rate(t, b, start=0.0, interval=interval, size=size)


def _extend(slots: np.ndarray, real: np.ndarray, interval: float, count: int) -> tuple[np.ndarray, np.ndarray]:
    """*slots* (slot k at k * interval) continued to *count* slots, the new ones dummies.

    Each slot's time is computed from its index, as :func:`constant_rate` does, never by adding
    intervals up: rounding would otherwise differ with where the real traffic ended, and the
    order of two directions' packets at one instant would tell it.
    """
    have = len(slots)
    if count <= have:
        return slots, real
    check_packets(count)
    extra = interval * np.arange(have, count)
    return np.concatenate([slots, extra]), np.concatenate([real, np.zeros(count - have, np.int64)])


class Buflo(Defense):
    """BuFLO: packets of d bytes every rho seconds in each direction, for at least tau seconds."""

    name = "buflo"
    params = (Param("d", "int", 1500, "packet size, bytes", 1),
              Param("rho", "float", 0.02, "seconds between two packets of one direction", 1e-6),
              Param("tau", "float", 10.0, "shortest time the sending lasts, seconds"))
    models = ("device and cloud both send a d-byte packet every rho seconds from the first packet, real bytes "
              "queued until a slot takes them, until both queues are empty and tau seconds have passed; "
              "every real byte may be delayed")
    cite = ("Dyer et al., Peek-a-Boo, I Still See You, IEEE S&P 2012; on an Echo: Kennedy et al., I Can Hear "
            "Your Alexa, IEEE CNS 2019 (d=1500, 20 ms)")

    def _apply(self, times: np.ndarray, sizes: np.ndarray, rng: np.random.Generator) -> Defended:
        sched = {sign: _schedule(times, sizes, sign, self.rho, self.d) for sign in (1, -1)}
        busy = max((len(s) for s, _ in sched.values()), default=0)
        count = max(busy, int(math.floor(self.tau / self.rho + 1e-9)) + 1)
        parts = []
        for sign, (slots, real) in sched.items():
            slots, real = _extend(slots, real, self.rho, count)
            parts.append((slots, np.full(len(slots), sign * self.d), real))
        return Defended.merge(parts)


class Tamaraw(Defense):
    """Tamaraw: a fixed rate per direction, each direction's packet count padded to a multiple of L."""

    name = "tamaraw"
    params = (Param("size", "int", 750, "packet size, bytes", 1),
              Param("rho_out", "float", 0.04, "seconds between packets from the device", 1e-6),
              Param("rho_in", "float", 0.012, "seconds between packets to the device", 1e-6),
              Param("L", "int", 100, "each direction's packet count is padded to a multiple of L", 1))
    models = ("device (every rho_out) and cloud (every rho_in) send fixed-size packets, each direction on its "
              "own until its queue is empty, then dummies until its count is a multiple of L; every real byte "
              "may be delayed")
    cite = ("Cai, Nithyanand, Wang, Johnson & Goldberg, A systematic approach to developing and evaluating "
            "website fingerprinting defenses, CCS 2014")

    def _apply(self, times: np.ndarray, sizes: np.ndarray, rng: np.random.Generator) -> Defended:
        parts = []
        for sign, interval in ((1, self.rho_out), (-1, self.rho_in)):
            slots, real = _schedule(times, sizes, sign, interval, self.size)
            count = int(math.ceil(len(slots) / self.L) * self.L)
            slots, real = _extend(slots, real, interval, count)
            parts.append((slots, np.full(len(slots), sign * self.size), real))
        return Defended.merge(parts)


class CsBuflo(Defense):
    """CS-BuFLO: BuFLO per direction with a rate that follows the traffic, and an early stop."""

    name = "csbuflo"
    params = (Param("d", "int", 1500, "packet size, bytes", 1),
              Param("rho", "float", 0.2, "first interval between packets, seconds", 1e-6),
              Param("rho_min", "float", 0.0625, "shortest interval, seconds", 1e-6),
              Param("rho_max", "float", 8.0, "longest interval, seconds", 1e-6),
              Param("quiet", "float", 2.0, "seconds without real bytes after which a direction may stop"))
    models = ("device and cloud each send d-byte packets on their own clock: the interval halves (down to "
              "rho_min) while real bytes wait after a slot and doubles (up to rho_max) after a slot with none; "
              "once its queue is empty and it had no real byte for `quiet` seconds, a direction stops when its packet "
              "count reaches a power of two; every "
              "real byte may be delayed")
    cite = ("Cai, Nithyanand & Johnson, CS-BuFLO: A congestion sensitive website fingerprinting defense, "
            "WPES 2014 (rate adaptation and early termination, simplified to doubling and halving)")

    def _apply(self, times: np.ndarray, sizes: np.ndarray, rng: np.random.Generator) -> Defended:
        parts = []
        for sign, t, b in directions(times, sizes):
            cum = np.concatenate([[0], np.cumsum(b)])
            total = int(cum[-1])
            now, rho, sent = 0.0, self.rho, 0
            slots, real = [], []
            end = float(t[-1]) + self.quiet
            while sent < total or now < end or (len(slots) & (len(slots) - 1)):
                arrived = int(cum[np.searchsorted(t, now + 1e-12, side="right")])
                take = min(self.d, arrived - sent)
                sent += take
                slots.append(now), real.append(take)
                if len(slots) > MAX_DEFENDED_PACKETS:
                    check_packets(len(slots), "CS-BuFLO")
                if arrived > sent:
                    rho = max(rho / 2, self.rho_min)
                elif take == 0:
                    rho = min(rho * 2, self.rho_max)
                now += rho
            parts.append((np.asarray(slots), np.full(len(slots), sign * self.d), np.asarray(real, np.int64)))
        return Defended.merge(parts)


class Regulator(Defense):
    """RegulaTor: downloads at a surging, decaying rate; uploads at a ratio of downloads, delay capped."""

    name = "regulator"
    params = (Param("R", "float", 277.0, "packets per second at the start of a surge", 1e-3),
              Param("D", "float", 0.94, "rate decay per second of a surge (rate = R * D**t)", 1e-6),
              Param("T", "float", 3.55, "a new surge starts when the queued packets exceed T times the rate", 0),
              Param("N", "int", 3550, "padding budget: dummy packets the cloud may send per capture", 0),
              Param("U", "float", 3.95, "the device sends one packet per U packets it receives", 1e-3),
              Param("C", "float", 1.77, "longest a device packet waits, seconds", 0),
              Param("size", "int", 1500, "packet size, bytes", 1))
    models = ("the cloud sends fixed-size packets at a rate R*D**t since the last surge (a surge starts with "
              "the first download and whenever the queue outgrows T times the rate), dummies when its queue is "
              "empty while the padding budget N lasts and the rate is at least one a second; the device sends one "
              "packet per U received, a dummy when it has nothing, a real one at once after waiting C seconds")
    cite = "Holland & Hopper, RegulaTor: A straightforward website fingerprinting defense, PoPETs 2022"

    def _apply(self, times: np.ndarray, sizes: np.ndarray, rng: np.random.Generator) -> Defended:
        down = self._download(*direction(times, sizes, -1))
        up = self._upload(*direction(times, sizes, 1), down[0])
        return Defended.merge([(down[0], -np.full(len(down[0]), self.size), down[1]),
                               (up[0], np.full(len(up[0]), self.size), up[1])])

    def _download(self, t: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not len(b):
            return np.zeros(0), np.zeros(0, np.int64)
        cum = np.concatenate([[0], np.cumsum(b)])
        total, size = int(cum[-1]), self.size
        slots, real = [], []
        sent, budget = 0, self.N
        now = surge = float(t[0])
        while True:
            if len(slots) > MAX_DEFENDED_PACKETS:
                check_packets(len(slots), "RegulaTor")
            rate = self.R * self.D ** (now - surge)
            arrived = int(cum[np.searchsorted(t, now + 1e-12, side="right")])
            queued = -(-(arrived - sent) // size)
            if queued > self.T * rate:
                surge, rate = now, self.R
            if arrived > sent:
                take = min(size, arrived - sent)
                sent += take
                slots.append(now), real.append(take)
            elif rate >= 1.0 and budget > 0:
                budget -= 1
                slots.append(now), real.append(0)
            elif sent >= total:
                break
            else:  # idle until the next real packet, which starts a surge (its queue outgrows a tiny rate)
                now = float(t[np.searchsorted(t, now + 1e-12, side="right")])
                continue
            now += 1.0 / rate
        return np.asarray(slots), np.asarray(real, np.int64)

    def _upload(self, t: np.ndarray, b: np.ndarray, down: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One packet per U downloads (real if queued), and each real packet at the latest C seconds after it came."""
        ticks = down[np.minimum((np.arange(1, int(len(down) / self.U) + 1) * self.U).astype(int) - 1, len(down) - 1)] \
            if len(down) >= self.U else np.zeros(0)
        slots, real = [], []
        queue: list[list[float]] = []  # [arrival time, bytes left] of each waiting real packet
        i, total = 0, int(b.sum())
        check_packets(len(ticks) + len(b) + total / self.size, "RegulaTor")
        sent = 0
        tick_i = 0
        while sent < total or tick_i < len(ticks):
            next_tick = ticks[tick_i] if tick_i < len(ticks) else math.inf
            next_arrival = t[i] if i < len(t) else math.inf
            deadline = queue[0][0] + self.C if queue else math.inf
            now = min(next_tick, next_arrival, deadline)
            if now == next_arrival:
                queue.append([float(t[i]), int(b[i])])
                i += 1
                continue
            if now == deadline or (now == next_tick and queue):
                take = min(self.size, int(queue[0][1]))
                queue[0][1] -= take
                if queue[0][1] == 0:
                    queue.pop(0)
                sent += take
                slots.append(now), real.append(take)
                if now == next_tick:
                    tick_i += 1
            else:  # a tick with nothing queued
                slots.append(now), real.append(0)
                tick_i += 1
        return np.asarray(slots), np.asarray(real, np.int64)
