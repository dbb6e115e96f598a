"""Test setup shared by every test module.

Eight simulated CPU devices let the sharding tests build real meshes; the flag must be set
before JAX initialises its backend, so it is set here, before any test imports JAX.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
