"""MaxPooling3D: Keras' 3D max-pooling that also runs in float64 on TensorFlow.

TensorFlow has no float64 kernel for ``MaxPool3D``, so I3D (its pools and the Inception pooling branch),
SlowFast's and ResNeXt's stem pools failed under a float64 policy (issue 19: every layer computes in float64).
A maximum is exact in any dtype, so for a float64 input this layer takes the elementwise maximum of the
window's strided slices (``pool_size`` slices, ``padding="same"`` padded with -inf as TensorFlow pads it:
``total // 2`` before), which is Keras' result bit for bit. Every other dtype runs Keras' own pooling, so
nothing changes in float32 or mixed precision. The class keeps Keras' name: configs and ``.keras`` files that
hold ``MaxPooling3D`` layers are unaffected (it has no weights).
"""
import math

import keras


@keras.saving.register_keras_serializable(package="keras_bert3d")
class MaxPooling3D(keras.layers.MaxPooling3D):
    """`keras.layers.MaxPooling3D` (channels_last) with an exact float64 path on every backend."""

    def call(self, inputs):
        if keras.backend.standardize_dtype(inputs.dtype) != "float64":
            return super().call(inputs)
        if self.data_format != "channels_last":
            raise ValueError(f"the float64 path takes channels_last inputs; received data_format={self.data_format}")
        return max_pool_by_slices(inputs, self.pool_size, self.strides, self.padding)


def max_pool_by_slices(x, pool_size, strides, padding):
    """Max-pooling of ``x`` (B, T, H, W, C) as the maximum of its window's strided slices (static T, H, W)."""
    dims = tuple(x.shape[1:4])
    if any(d is None for d in dims):
        raise ValueError(f"the float64 max-pool needs static T, H, W; received shape {tuple(x.shape)}")
    if padding == "same":
        pads = []
        for d, k, s in zip(dims, pool_size, strides):
            total = max((math.ceil(d / s) - 1) * s + k - d, 0)
            pads.append((total // 2, total - total // 2))
        x = keras.ops.pad(x, [(0, 0), *pads, (0, 0)], constant_values=-math.inf)
        dims = tuple(d + a + b for d, (a, b) in zip(dims, pads))
    counts = [(d - k) // s + 1 for d, k, s in zip(dims, pool_size, strides)]
    result = None
    for i in range(pool_size[0]):
        for j in range(pool_size[1]):
            for m in range(pool_size[2]):
                window = x[:, i:i + (counts[0] - 1) * strides[0] + 1:strides[0],
                           j:j + (counts[1] - 1) * strides[1] + 1:strides[1],
                           m:m + (counts[2] - 1) * strides[2] + 1:strides[2], :]
                result = window if result is None else keras.ops.maximum(result, window)
    return result
