"""ssm: structured state space sequence models in JAX/Equinox."""

from ssm.layers import DSS, HOPE, S4, S4D, S5, AbstractSSMLayer, ssm_param_mask

__all__ = ["AbstractSSMLayer", "ssm_param_mask", "S4", "S4D", "DSS", "S5", "HOPE", "load"]


def __getattr__(name: str):
    # ``ssm.load`` imports the training system (model, data registry, checkpoints) only when used.
    if name == "load":
        from ssm.inference import load

        return load
    raise AttributeError(f"module 'ssm' has no attribute {name!r}")
