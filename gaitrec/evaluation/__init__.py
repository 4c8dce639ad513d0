"""Evaluation: features file -> distances -> protocol figures -> report.

``evaluate(features, protocol)`` gives the figures OpenGait's evaluator gives, as an ``EvaluationResult``;
``print_table`` and ``write_report`` show them.
"""
from .features import check_features, load_features, save_features
from .protocols import PROTOCOLS, evaluate, protocol_for_eval_func
from .report import print_table, write_report
from .result import EvaluationResult, Row

__all__ = ["PROTOCOLS", "EvaluationResult", "Row", "check_features", "evaluate", "load_features", "print_table",
           "protocol_for_eval_func", "save_features", "write_report"]
