"""Tasks: the problem sets the pipeline samples and scores, each with its own prompt and stop
convention (`base.Task`); `registry` names them for `config.eval.tasks`."""
