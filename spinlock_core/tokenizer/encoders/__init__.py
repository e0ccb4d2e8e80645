"""Family encoders (SPEC 8): each cleaned family passes through one before the outputs are
concatenated. Identity and pooling have no weights; the MLP and the temporal 1-D ResNet are
pre-trained as autoencoders of their family and then frozen.

One encoder per file plus one line in :data:`.registry.ENCODER_CLASSES` (keys: the config's
``ENCODERS``). Every encoder has ``reads`` ("vector" ``[B, F]`` or "sequence" ``[B, T', F]``),
``trained``, ``output_dim``, ``init_kwargs`` and ``output_names(input_names)``.
"""

from .encode import encode_chunks
from .identity import IdentityEncoder
from .mlp import MLPDecoder, MLPEncoder
from .pooled import PooledIdentityEncoder
from .pretrain import PretrainResult, pretrain_autoencoder, reconstruction_mse
from .registry import ENCODER_CLASSES, build_decoder, build_encoder
from .state import encoder_from_state, encoder_state
from .temporal_cnn import TemporalCNNEncoder, TemporalDecoder, parse_architecture

__all__ = [
    "ENCODER_CLASSES",
    "IdentityEncoder",
    "MLPEncoder",
    "MLPDecoder",
    "TemporalCNNEncoder",
    "TemporalDecoder",
    "PooledIdentityEncoder",
    "PretrainResult",
    "build_encoder",
    "build_decoder",
    "parse_architecture",
    "pretrain_autoencoder",
    "reconstruction_mse",
    "encode_chunks",
    "encoder_state",
    "encoder_from_state",
]
