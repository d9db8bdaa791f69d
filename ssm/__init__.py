"""ssm: structured state space sequence models in JAX/Equinox."""

from ssm.layers import DSS, S4, S4D, AbstractSSMLayer, ssm_param_mask

__all__ = ["AbstractSSMLayer", "ssm_param_mask", "S4", "S4D", "DSS", "load"]


def __getattr__(name: str):
    # ``ssm.load`` imports the training system (model, data registry, checkpoints) only when used.
    if name == "load":
        from ssm.inference import load

        return load
    raise AttributeError(f"module 'ssm' has no attribute {name!r}")
