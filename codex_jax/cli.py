"""What every script shares: --config (an ml_collections config file), --workdir, logging."""

import logging as std_logging
import os

from absl import flags, logging
from ml_collections import config_flags

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "tiny.py")


def define_config_flag() -> flags.FlagHolder:
    """--config, default configs/tiny.py of this checkout; fields override as --config.train.steps=100."""
    return config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "ml_collections config file.")


def define_workdir_flag(default: str | None = "workdir",
                        help_text: str = "Folder for every artifact of the pipeline.") -> flags.FlagHolder:
    return flags.DEFINE_string("workdir", default, help_text)


def define_multihost_flag() -> flags.FlagHolder:
    return flags.DEFINE_bool("multihost", False, "Join the other hosts' processes first (jax.distributed; "
                             "run the same command on every host, with a workdir they all see).")


def start(multihost: bool) -> None:
    """What a script does first: join the other hosts' processes (--multihost), then `log_progress`."""
    from codex_jax import distributed

    distributed.initialize(multihost)
    log_progress()


def log_progress() -> None:
    """INFO logging (stage progress, rates, ETAs) in process 0, warnings elsewhere; without
    orbax's lines per checkpoint save."""
    from codex_jax import distributed

    logging.set_verbosity(logging.INFO if distributed.is_main_process() else logging.WARNING)
    logging.get_absl_handler().addFilter(  # record levels are the standard library's, not absl's
        lambda record: record.levelno >= std_logging.WARNING or "orbax" not in record.pathname)
