"""Post-hoc calibrators, fitted on validation logits and applied to test logits.

Every module of this package except ``base`` and ``fitting`` registers its calibrators in
``CALIBRATORS`` when imported, and importing the package imports them all: adding a calibrator
is one file with a ``@CALIBRATORS.register("name")`` class. Calibrators from plugins (``pkg.module:Class``,
installed ``losscli.calibrators`` entry points) resolve through the same registry (:mod:`.plugin`).
"""

import importlib as _importlib
import pkgutil as _pkgutil

from losscli.calibrate.base import CALIBRATORS, Calibrator, build_calibrator, check_logits  # noqa: F401


def _register_all() -> None:
    for mod in _pkgutil.iter_modules(__path__):
        if mod.name not in ("base", "fitting", "plugin") and not mod.name.startswith("_"):
            _importlib.import_module(f"{__name__}.{mod.name}")


_register_all()

from losscli.calibrate.plugin import adapt_calibrator  # noqa: E402

CALIBRATORS.enable_plugins("losscli.calibrators", adapt_calibrator)

from losscli.calibrate.binning import HistogramBinning, IsotonicCalibration  # noqa: E402,F401
from losscli.calibrate.fitting import (  # noqa: E402,F401
    DEFAULT_METHODS,
    SCHEMA,
    calibrate_logits,
    fit_and_score,
    fit_calibrators,
    resolve_methods,
)
from losscli.calibrate.scaling import (  # noqa: E402,F401
    DirichletCalibration,
    MatrixScaling,
    TemperatureScaling,
    VectorScaling,
    fit_inverse_temperature,
)
from losscli.calibrate.correctness import CorrectnessAwareCalibration, ca_loss  # noqa: E402,F401
from losscli.calibrate.hcalib import HCalibration, h_calibration_loss  # noqa: E402,F401
