"""What every script shares: --config (an ml_collections config file, overridden field by field
as --config.train.steps=100: the one way to set a config value), --workdir, --multihost,
--verbose, logging without known-harmless library chatter, and one-line errors.

    def main(argv): ...
    if __name__ == "__main__":
        cli.run(main)
"""

import logging as std_logging
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable

from absl import app, flags, logging
from ml_collections import config_flags

DEFAULT_CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "tiny.py"
)
_VERBOSE = flags.DEFINE_bool(
    "verbose", False, "Show the traceback of an error, not only its one line."
)

# Library lines that say nothing a user can act on (orbax opening checkpoints read-only to look
# at them, JAX probing for accelerators a CPU machine does not have).
_CHATTER = re.compile(
    r"read.only|Unable to initialize backend|An NVIDIA GPU may be present|"
    r"Platform '\w+' is experimental|TPU backend|jax_cpu_collectives"
)


def fail(message: str) -> None:
    """Ends the script with one line on stderr and exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def define_config_flag() -> flags.FlagHolder:
    """--config, default configs/tiny.py of this checkout; fields override as --config.train.steps=100.

    ml_collections applies the overrides while defining the flag: a misspelled field fails here,
    with one line naming it.
    """
    try:
        return config_flags.DEFINE_config_file(
            "config", DEFAULT_CONFIG, "ml_collections config file."
        )
    except (AttributeError, KeyError, ValueError, TypeError) as error:
        overrides = [arg.split("=")[0] for arg in sys.argv[1:] if arg.startswith("--config.")]
        text = str(error).strip("'\"").replace("\\n", " ").replace("\\'", "'").replace("\n", " ")
        fail(
            f"{', '.join(overrides) or '--config'}: {text} (configs/tiny.py documents every field)"
        )
        raise  # unreachable: fail exits


def define_workdir_flag(
    default: str | None = "workdir", help_text: str = "Folder for every artifact of the pipeline."
) -> flags.FlagHolder:
    return flags.DEFINE_string("workdir", default, help_text)


def define_multihost_flag() -> flags.FlagHolder:
    return flags.DEFINE_bool(
        "multihost",
        False,
        "Join the other hosts' processes first (jax.distributed; "
        "run the same command on every host, with a workdir they all see).",
    )


def start(multihost: bool) -> None:
    """What a script does first: join the other hosts' processes (--multihost), then `log_progress`."""
    from codex_jax.training import distributed

    distributed.initialize(multihost)
    log_progress()


def _not_chatter(record: std_logging.LogRecord) -> bool:
    if "orbax" in record.pathname and record.levelno < std_logging.WARNING:
        return False  # its lines per checkpoint save
    return not _CHATTER.search(record.getMessage())


def log_progress() -> None:
    """INFO logging (stage progress, rates, ETAs) in process 0, warnings elsewhere; without
    orbax's lines per checkpoint save and without the chatter above."""
    from codex_jax.training import distributed

    logging.set_verbosity(logging.INFO if distributed.is_main_process() else logging.WARNING)
    logging.get_absl_handler().addFilter(_not_chatter)  # record levels are the standard library's
    for name in ("jax._src.xla_bridge", "absl"):
        std_logging.getLogger(name).addFilter(_not_chatter)
    warnings.filterwarnings("ignore", message=".*read.only.*")


def run(main: Callable[[list[str]], None]) -> None:
    """`absl.app.run(main)`, where a user's mistake (a bad value, a missing or malformed file: the
    project's ValueError and FileNotFoundError name the input and what was expected) ends in one
    line and exit status 2; --verbose shows the traceback."""

    def guarded(argv: list[str]) -> None:
        try:
            main(argv)
        except (ValueError, FileNotFoundError) as error:
            if _VERBOSE.value:
                traceback.print_exc()
            fail(f"{error}" + ("" if _VERBOSE.value else "  (--verbose shows the traceback)"))

    app.run(guarded)
