"""ssm: structured state space sequence models in JAX/Equinox."""

from ssm.layers import DSS, S4, S4D, AbstractSSMLayer, ssm_param_mask

__all__ = ["AbstractSSMLayer", "ssm_param_mask", "S4", "S4D", "DSS"]
