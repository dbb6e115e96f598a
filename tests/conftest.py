"""Test setup shared by every test module.

Eight simulated CPU devices let the sharding tests build real meshes; the flag must be set
before JAX initialises its backend, so it is set here, before any test imports JAX.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")


import pytest  # noqa: E402  (the flag above must be set before anything can import JAX)


@pytest.fixture(scope="session")
def folder_source():
    """A factory: `folder_source(folder, files)` writes `files` ({relative path: str or bytes}) under
    `folder` and returns the tiny config whose only corpus source is that folder, filtered in this
    process, so the real corpus stage builds from it in about a second."""
    from configs import tiny

    def make(folder, files):
        for name, content in files.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        config = tiny.get_config()
        config.corpus.sources = (str(folder),)
        config.corpus.n_workers = 1
        return config

    return make
