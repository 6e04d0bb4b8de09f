"""Hypothesis profiles: kernels compile on first call, so no per-example deadline.

dev (default): quick random runs.  ci (when CI is set): derandomized, reproducible.
thorough: many examples, for long runs (HYPOTHESIS_PROFILE=thorough pytest).
"""

import os

from hypothesis import HealthCheck, settings

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=60, **_common)
settings.register_profile("ci", max_examples=100, derandomize=True, print_blob=True, **_common)
settings.register_profile("thorough", max_examples=2000, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
