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


def log_progress() -> None:
    """INFO logging (stage progress, rates, ETAs), without orbax's line per checkpoint save."""
    logging.set_verbosity(logging.INFO)
    logging.get_absl_handler().addFilter(  # record levels are the standard library's, not absl's
        lambda record: record.levelno >= std_logging.WARNING or "orbax" not in record.pathname)
