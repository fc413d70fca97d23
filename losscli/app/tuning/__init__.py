"""``compare --tune N``: equal-budget hyperparameter tuning per loss and setting (Optuna)."""

from losscli.app.tuning.run import default_storage, run_tuning  # noqa: F401
from losscli.app.tuning.space import Dim, search_space, suggest  # noqa: F401
