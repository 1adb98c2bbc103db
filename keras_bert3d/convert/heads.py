"""Reference keys of the alternative temporal heads (LSTM, non-local block) -> Keras variables.

The heads sit in the full models under ``lstm.`` (``rgb_resneXt3D64f101_FRMB_lstm``) and
``NLB.`` (``rgb_resneXt3D64f101_FRMB_NLB_concatenation``); the classifier that composes them
passes those prefixes. Their linear layers map with ``WeightMap.dense``.
"""
from keras_bert3d.convert.weight_map import WeightMap, dense_kernel


def _require_built(layer):
    if not layer.built:
        raise ValueError(f"Layer {layer.name!r} must be built before its weights can be mapped")


def lstm_map(layer, prefix=""):
    """An :class:`LSTMPooling` at ``prefix`` (e.g. ``"lstm."``), as PyTorch ``nn.LSTM`` keys.

    ``weight_ih_l{k}`` (4h, in) and ``weight_hh_l{k}`` (4h, h) are transposed into the
    kernels; ``bias_ih_l{k}`` and ``bias_hh_l{k}`` map one to one (the layer keeps both).
    Gate blocks are i, f, g, o on both sides.
    """
    _require_built(layer)
    weights = WeightMap()
    for k in range(layer.num_layers):
        weights.add(f"{prefix}weight_ih_l{k}", layer.kernels[k], dense_kernel)
        weights.add(f"{prefix}weight_hh_l{k}", layer.recurrent_kernels[k], dense_kernel)
        weights.add(f"{prefix}bias_ih_l{k}", layer.input_biases[k])
        weights.add(f"{prefix}bias_hh_l{k}", layer.recurrent_biases[k])
    return weights


def non_local_map(layer, prefix=""):
    """A :class:`NonLocalBlock` at ``prefix`` (e.g. ``"NLB."``), as ``NLBlockND`` keys.

    ``g``, ``theta``, ``phi``: Conv3d with bias; ``W_z.0``: the output conv; ``W_z.1``: its
    BatchNorm3d (running statistics included).
    """
    _require_built(layer)
    weights = WeightMap()
    weights.conv(f"{prefix}g", layer.g)
    weights.conv(f"{prefix}theta", layer.theta)
    weights.conv(f"{prefix}phi", layer.phi)
    weights.conv(f"{prefix}W_z.0", layer.w_z_conv)
    weights.bn(f"{prefix}W_z.1", layer.w_z_bn)
    return weights
