"""Why a PySpark kernel died or its SparkSession fails: rules (rules.yaml) applied to its logs."""

from .classify import Diagnosis, Rule, classify, diagnose_kernel, load_rules, read_kernel_logs

__all__ = ["Diagnosis", "Rule", "classify", "diagnose_kernel", "load_rules", "read_kernel_logs"]
