"""Post-hoc calibrators (fit on validation logits, applied to test logits) and the
``losscli calibrate`` pipeline. Importing this package registers every calibrator."""

from losscli.calibrate.base import CALIBRATORS, Calibrator, build_calibrator, check_logits  # noqa: F401
from losscli.calibrate import scaling as _scaling, binning as _binning  # noqa: F401,E401  (registration)
from losscli.calibrate.scaling import (  # noqa: F401
    DirichletCalibration,
    MatrixScaling,
    TemperatureScaling,
    VectorScaling,
    fit_inverse_temperature,
)
from losscli.calibrate.binning import HistogramBinning, IsotonicCalibration  # noqa: F401
from losscli.calibrate.correctness import CorrectnessAwareCalibration, ca_loss  # noqa: F401  (registration)
from losscli.calibrate.hcalib import HCalibration, h_calibration_loss  # noqa: F401  (registration)
from losscli.calibrate.api import (  # noqa: F401
    DEFAULT_METHODS,
    SCHEMA,
    calibrate_files,
    calibrate_logits,
    calibrate_run,
    fit_calibrators,
    load_array,
    load_calibrator,
    load_run_logits,
    render_markdown,
    resolve_methods,
    summary_rows,
    write_calibration_outputs,
)
