"""Validation of received series: dciodvfy per instance, completeness, HTML report."""

from dicomflow.validation.dciodvfy import (
    Finding,
    InstanceValidation,
    Severity,
    ValidatorUnavailableError,
    parse_dciodvfy_output,
    run_dciodvfy,
)
from dicomflow.validation.report import render_report_html
from dicomflow.validation.runner import Validator
from dicomflow.validation.series import SeriesValidation, sample_evenly, validate_series

__all__ = [
    "Finding",
    "InstanceValidation",
    "SeriesValidation",
    "Severity",
    "Validator",
    "ValidatorUnavailableError",
    "parse_dciodvfy_output",
    "render_report_html",
    "run_dciodvfy",
    "sample_evenly",
    "validate_series",
]
