"""ssm: structured state space sequence models in JAX/Equinox."""

from ssm.layers import AbstractSSMLayer, ssm_param_mask

__all__ = ["AbstractSSMLayer", "ssm_param_mask"]
