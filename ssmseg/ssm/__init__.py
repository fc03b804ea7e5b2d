"""Selective scan (every device), the Mamba block and the 2D four-direction scan."""

from ssmseg.ssm.scan import BACKENDS, backend_report, choose_backend, selective_scan, set_default_backend

__all__ = ["BACKENDS", "backend_report", "choose_backend", "selective_scan", "set_default_backend"]
