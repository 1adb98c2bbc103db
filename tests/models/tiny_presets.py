"""The one table of tiny configs: overrides of each backbone family, so every preset can run in a test in
seconds, and the tiny R(2+1)D that the tests of training, serving, export and the command line share.

Import it as ``from models.tiny_presets import ...`` (tests/ is on the path; tests/models and tests/backends
also put this folder on it, hence ``from tiny_presets import ...`` there)."""
I3D_MIXED = [[4, 4, 6, 2, 2, 2], [4, 4, 4, 2, 4, 2]] + [[2, 2, 4, 2, 2, 2]] * 6 + [[4, 2, 4, 2, 4, 4]]

TINY = {
    "R2Plus1DBackbone": dict(num_frames=8, image_size=32, stage_blocks=[1, 1, 1, 1], stage_filters=[8, 8, 16, 16],
                             stem_filters=[6, 8]),
    "ResNeXt3DBackbone": dict(num_frames=16, image_size=64, stage_blocks=[1, 1, 1, 2], stage_filters=[8, 8, 16, 32],
                              stem_filters=8, cardinality=2, reduction_dim=16),
    "I3DBackbone": dict(num_frames=16, image_size=32, stem_filters=[8, 8, 12], mixed_filters=I3D_MIXED,
                        reduction_dim=16),
    "SlowFastBackbone": dict(num_frames=16, image_size=32, stage_blocks=[1, 1, 1, 2], slow_width=8, beta_inv=4,
                             reduction_dim=16, fast_reduction_dim=8),
}
CLASSIFIER = dict(num_heads=2, lstm_hidden_dim=6)
# rgb_r2plus1d_32f_34 (TGAP) and rgb_r2plus1d_32f_34_bert10 at tiny size: 8 frames of 32x32, one token.
# Tests that need more frames or other widths say so: dict(TINY_R2PLUS1D_BERT, num_frames=16).
TINY_R2PLUS1D = TINY["R2Plus1DBackbone"]
TINY_R2PLUS1D_BERT = dict(TINY_R2PLUS1D, num_heads=CLASSIFIER["num_heads"])


def tiny_overrides(name):
    from keras_bert3d.models.builder import get_preset

    preset = get_preset(name)
    overrides = dict(TINY[preset["backbone"]["class"]], **CLASSIFIER)
    if preset["classifier"].get("head_hidden_dim"):
        overrides["head_hidden_dim"] = 10
    return overrides
