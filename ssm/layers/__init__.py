"""S4-family layers. Each is an immutable Equinox module acting on one ``(L, H)`` example."""

from ssm.layers.base import AbstractConvSSMLayer, AbstractSSMLayer, ssm_param_mask
from ssm.layers.dss import DSS
from ssm.layers.hope import HOPE
from ssm.layers.s4 import S4
from ssm.layers.s4d import S4D
from ssm.layers.s5 import S5

__all__ = ["AbstractSSMLayer", "AbstractConvSSMLayer", "ssm_param_mask", "DSS", "S4", "S4D", "S5", "HOPE"]
