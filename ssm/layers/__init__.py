"""S4-family layers. Each is an immutable Equinox module acting on one ``(L, H)`` example."""

from ssm.layers.base import AbstractSSMLayer, ssm_param_mask

__all__ = ["AbstractSSMLayer", "ssm_param_mask"]
