"""The non-local block's converter map and its 1/sqrt(positions) scale, against the reference fixture
resnext_nlb_concat_head. (The heads' parity, through VideoClassifier and the converter, is
tests/models/test_classifier_head_parity.py.)"""
import numpy as np

from harness import fixture_weights, load_fixture, ncthw_to_nthwc
from keras_bert3d.convert.heads import non_local_map
from keras_bert3d.layers.non_local_block import NonLocalBlock


def _load(weights, state_dict):
    report = weights.load(state_dict)
    assert not report.missing, report.summary()
    assert not report.unexpected, report.summary()
    assert len(report.loaded) == len(state_dict)
    return report


def test_nlb_scale_is_sqrt_of_positions():
    """Dividing by sqrt(channels) instead of sqrt(P) must break mid:nlb_out (guards the formula)."""
    arrays, tol = load_fixture("resnext_nlb_concat_head")
    clip = ncthw_to_nthwc(arrays["input"])
    layer = NonLocalBlock(name="NLB")
    layer.build(clip.shape)
    state = {k: v for k, v in fixture_weights(arrays).items() if k.startswith("NLB.")}
    _load(non_local_map(layer, "NLB."), state)
    np.testing.assert_allclose(np.asarray(layer(clip, training=False)),
                               ncthw_to_nthwc(arrays["mid:nlb_out"]), atol=tol)
    num_positions = int(np.prod(clip.shape[1:4]))
    channels = clip.shape[-1]
    # Rescaling theta by sqrt(P / C) turns the block's /sqrt(P) into /sqrt(C).
    scale = np.sqrt(num_positions / channels)
    layer.theta.kernel.assign(layer.theta.kernel.numpy() * scale)
    layer.theta.bias.assign(layer.theta.bias.numpy() * scale)
    out = np.asarray(layer(clip, training=False))
    assert np.max(np.abs(out - ncthw_to_nthwc(arrays["mid:nlb_out"]))) > 100 * tol
