"""Reference BERT5/BERT2 keys <-> BERTPooling variables (REFERENCE.md 6.3)."""
from keras_bert3d.convert.weight_map import WeightMap


class HeadSplit:
    """Linear (d_out, d_in) -> MHA kernel (d_in, heads, d_head) and its inverse; biases (heads, d_head)."""

    def __init__(self, heads, output=False):
        self.heads = heads
        self.output = output

    def __call__(self, w):
        if w.ndim == 1:  # Q/K/V bias
            return w.reshape(self.heads, -1)
        if self.output:  # (d, d) -> (heads, d_head, d)
            return w.T.reshape(self.heads, -1, w.shape[0])
        return w.T.reshape(w.shape[1], self.heads, -1)

    def inverse(self, v):
        if v.ndim == 2:
            return v.reshape(-1)
        if self.output:
            return v.reshape(-1, v.shape[-1]).T
        return v.reshape(v.shape[0], -1).T


def _norm_map(weights, prefix, norm):
    """The reference LayerNorm's ``a_2`` (gain) / ``b_2`` (bias); either norm choice has gamma/beta."""
    weights.add(f"{prefix}.a_2", norm.gamma)
    weights.add(f"{prefix}.b_2", norm.beta)


def bert_map(layer, prefix="bert."):
    """Keys of a reference BERT module (``bert.``, ``bert_slow.``, ``bert_fast.``) -> ``layer``."""
    weights = WeightMap()
    weights.add(f"{prefix}clsToken", layer.cls_token)
    weights.add(f"{prefix}embedding.learnedPosition.pe", layer.position_embedding)
    for i in range(layer.num_layers):
        block = f"{prefix}transformer_blocks.{i}"
        attention = layer.attentions[i]
        split = HeadSplit(layer.num_heads)
        for j, dense in enumerate((attention.query_dense, attention.key_dense, attention.value_dense)):
            weights.add(f"{block}.attention.linear_layers.{j}.weight", dense.kernel, split)
            weights.add(f"{block}.attention.linear_layers.{j}.bias", dense.bias, split)
        weights.add(f"{block}.attention.output_linear.weight", attention.output_dense.kernel,
                    HeadSplit(layer.num_heads, output=True))
        weights.add(f"{block}.attention.output_linear.bias", attention.output_dense.bias)
        weights.dense(f"{block}.feed_forward.w_1", layer.ffn_intermediates[i])
        weights.dense(f"{block}.feed_forward.w_2", layer.ffn_outputs[i])
        _norm_map(weights, f"{block}.input_sublayer.norm", layer.attention_norms[i])
        _norm_map(weights, f"{block}.output_sublayer.norm", layer.ffn_norms[i])
    return weights


def bert_param_count(dim, num_tokens, num_layers=1):
    """The reference formula d + (N+1) d + L (12 d^2 + 13 d)."""
    return dim + (num_tokens + 1) * dim + num_layers * (12 * dim * dim + 13 * dim)

