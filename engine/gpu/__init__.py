"""GPUs: NVML sampling for the panel and the run metrics, the memory estimator and its calibration.

Every module here is light at import (no torch, no pynvml): the TUI imports them inside functions.
"""
