"""The spike scenario's load shape for Locust (issue 6): a steady base load, then 10× the
users for 60 s, then the base load again, so the recovery can be measured. Loaded beside
locustfile.py (``-f locustfile.py,spike_shape.py``) only for ``run_load.py --spike``."""

from __future__ import annotations

from locust import LoadTestShape


class SpikeShape(LoadTestShape):
    """Base users for ``--spike-before`` s, ``factor`` × base for ``--spike-seconds`` (the
    ramp up included), base again for ``--spike-after`` s, then stop."""

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None
        options = self.runner.environment.parsed_options
        base = options.spike_base_users
        rate = options.spike_spawn_rate
        t = self.get_run_time()
        if t < options.spike_before:
            return base, rate
        if t < options.spike_before + options.spike_seconds:
            return base * options.spike_factor, rate
        if t < options.spike_before + options.spike_seconds + options.spike_after:
            return base, rate
        return None
