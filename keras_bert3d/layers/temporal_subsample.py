"""TemporalSubsample: keep every ``stride``-th frame of a clip (the SlowFast pathway samplers)."""
import keras


@keras.saving.register_keras_serializable(package="keras_bert3d")
class TemporalSubsample(keras.layers.Layer):
    """``x[:, offset::stride]`` on the time axis of a channels-last clip ``(B, T, H, W, C)``.

    The SlowFast reference feeds its slow pathway ``x[:, :, ::8]`` and its fast pathway
    ``x[:, :, ::2]`` of one 64-frame clip (rgb_slowfast.py:100-101): frames 0, 8, ..., 56
    and 0, 2, ..., 62. With ``T`` frames the output has ``ceil((T - offset) / stride)``
    frames (0 when ``offset >= T``).

    Args:
        stride: keep one frame in ``stride`` (positive int).
        offset: index of the first frame kept (non-negative int).
    """

    def __init__(self, stride, offset=0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(f"`stride` must be a positive int; received stride={stride!r}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"`offset` must be a non-negative int; received offset={offset!r}")
        self.stride = stride
        self.offset = offset

    def build(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f"TemporalSubsample needs inputs (B, T, ...); received shape {input_shape}")

    def call(self, inputs):
        return inputs[:, self.offset::self.stride]

    def compute_output_shape(self, input_shape):
        frames = input_shape[1]
        if frames is not None:
            frames = max(0, -(-(frames - self.offset) // self.stride))
        return (input_shape[0], frames, *input_shape[2:])

    def get_config(self):
        config = super().get_config()
        config.update({"stride": self.stride, "offset": self.offset})
        return config
