"""Composable blocks and backbones around the SSM layers of :mod:`ssm.layers` (docs/architectures.md).

Every block acts on ONE example and owns ``init_state`` / ``step`` / ``prefill`` (:class:`AbstractBlock`).
"""

from ssm.nn.adaptive import AdaptiveEmbedding, AdaptiveLogSoftmax
from ssm.nn.base import AbstractBlock, count_params
from ssm.nn.ffn import FFN, ffn_sublayer
from ssm.nn.lm import AdaptiveLM
from ssm.nn.mixer import SSMMixer, ssm_sublayer
from ssm.nn.norm import LayerNorm, ScalarLayerNorm
from ssm.nn.pooled import PooledBackbone, s4torch_schedule
from ssm.nn.pooling import AvgPool, DownPool, UpPool
from ssm.nn.residual import Residual, ResidualStack, residual_stack
from ssm.nn.sampling import decode, generate, sample_token, top_p_filter
from ssm.nn.sashimi import SaShiMi, SaShiMiModel

__all__ = [
    "AbstractBlock", "count_params", "FFN", "ffn_sublayer", "SSMMixer", "ssm_sublayer", "LayerNorm",
    "ScalarLayerNorm", "AvgPool", "DownPool", "UpPool", "Residual", "ResidualStack", "residual_stack", "SaShiMi",
    "SaShiMiModel", "AdaptiveEmbedding", "AdaptiveLogSoftmax", "AdaptiveLM", "PooledBackbone", "s4torch_schedule",
    "decode", "generate", "sample_token", "top_p_filter",
]
