"""Training-step fixtures from the reference code (issue 19): weights before and after one optimizer step of the
reference's own training loop, and after N accumulated micro-batches, in float64.

    python bench/make_step_fixtures.py /path/to/LateTemporalModeling3DCNN [--out tests/fixtures]

Needs torch and a checkout of the reference (``git archive HEAD models opt``). Writes
``step_bert5_head.npz``: the reference's BERT5 head (as ``rgb_r2plus1d_32f_34_bert10`` has it, at width 64,
one block, 8 heads, 4 tokens) and ``fc_action`` (64 -> 5), dropout off and every token kept; and
``step_r2plus1d_stem.npz``: R(2+1)D's stem (convolutions and two BatchNorms, in training mode: their running
statistics move) average-pooled into ``fc_action``. Both trained with the
reference's ``opt/AdamW.py`` exactly as two_stream_bert2.py trains (cross-entropy / iter_size, backward every
micro-batch, ``step()`` and ``zero_grad()`` every iter_size batches). Keys: ``w:<key>`` the weights before,
``one:<key>`` after one step on ``x0``/``y0``, ``acc:<key>`` after one step accumulated over ``x0``..``x{N-1}``
(``iter_size`` N = 2), all under the reference's state-dict keys (read with keras_bert3d.convert); ``lr``,
``weight_decay``. The tests (tests/optimizers/test_reference_step.py) need no torch.
I3D and SlowFast have no step fixture yet: their BatchNorms are the same layer, their forward passes are
covered by the parity fixtures.
"""
import argparse
import os
import sys

import numpy as np

ITER_SIZE = 2
LR, WEIGHT_DECAY = 1e-3, 1e-3  # a visible step; the recipe's lr is 1e-5 (the epsilon matters even more there)


def _reference(checkout):
    import torch

    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # the reference hard-codes .cuda() and device='cuda'
    to = torch.Tensor.to
    torch.Tensor.to = lambda self, *args, **kwargs: to(self, *("cpu" if a == "cuda" else a for a in args),
                                                       **{k: "cpu" if v == "cuda" else v for k, v in kwargs.items()})
    sys.path.insert(0, os.path.abspath(checkout))
    from models.BERT.bert import BERT5
    from models.r2plus1d.resnet import R2Plus1dStem
    from opt.AdamW import AdamW

    class Head(torch.nn.Module):
        """rgb_r2plus1d_32f_34_bert10 after its features: BERT5 on the tokens, CLS, fc_action."""

        def __init__(self):
            super().__init__()
            self.bert = BERT5(64, 4, hidden=64, n_layers=1, attn_heads=8, dropout=0.0, mask_prob=1.0)
            self.fc_action = torch.nn.Linear(64, 5)
            for module in self.modules():  # BERTEmbedding2 hard-codes Dropout(0.1): off, as every other dropout
                if isinstance(module, torch.nn.Dropout):
                    module.p = 0.0

        def forward(self, x):
            output, _ = self.bert(x)
            return self.fc_action(output[:, 0, :])

    class Stem(torch.nn.Module):
        """R(2+1)D's stem as every rgb_r2plus1d model has it (``features.0``, BatchNorm eps 1e-3 and torch
        momentum 0.9 as r2plus1d_34 sets them), average-pooled into ``fc_action`` (64 -> 5)."""

        def __init__(self):
            super().__init__()
            self.features = torch.nn.Sequential(R2Plus1dStem())
            for module in self.modules():
                if isinstance(module, torch.nn.BatchNorm3d):
                    module.eps, module.momentum = 1e-3, 0.9
            self.fc_action = torch.nn.Linear(64, 5)

        def forward(self, x):
            return self.fc_action(self.features(x).mean(dim=(2, 3, 4)))

    return torch, {"bert5_head": (Head, (3, 4, 64)), "r2plus1d_stem": (Stem, (2, 3, 8, 32, 32))}, AdamW


def _train(torch, model, optimizer, batches):
    """two_stream_bert2.py's loop for one optimizer step over ``batches`` (iter_size = len(batches))."""
    model.train()
    optimizer.zero_grad()
    criterion = torch.nn.CrossEntropyLoss()
    for x, y in batches:
        loss = criterion(model(torch.from_numpy(x)), torch.from_numpy(y)) / len(batches)
        loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def _state(model):
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def make(checkout, out):
    torch, models, AdamW = _reference(checkout)
    torch.set_default_dtype(torch.float64)
    for name, (cls, input_shape) in models.items():
        torch.manual_seed(0)
        model = cls().double()
        with torch.no_grad():  # zero-initialised biases, BatchNorm and the CLS token get values: every tensor moves
            for key, p in model.named_parameters():
                if p.dim() == 1 or "clsToken" in key:
                    p.normal_(0, 0.05)
            for key, b in model.named_buffers():
                if key.endswith("running_mean"):
                    b.normal_(0, 0.1)
                elif key.endswith("running_var"):
                    b.uniform_(0.5, 1.5)
        before = {k: v for k, v in _state(model).items() if not k.endswith("num_batches_tracked")}
        rng = np.random.default_rng(0)
        # float32-exact inputs: Keras' data adapters cast float64 arrays to floatx, which then changes nothing.
        batches = [(np.abs(rng.normal(size=input_shape)).astype(np.float32).astype(np.float64),
                    rng.integers(0, 5, input_shape[0])) for _ in range(ITER_SIZE)]
        arrays = {f"w:{k}": v for k, v in before.items()}
        for tag, used in (("one", batches[:1]), ("acc", batches)):
            model.load_state_dict({k: torch.from_numpy(v) for k, v in before.items()}, strict=False)
            optimizer = AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
            _train(torch, model, optimizer, used)
            arrays.update({f"{tag}:{k}": _state(model)[k] for k in before})
        for i, (x, y) in enumerate(batches):
            arrays[f"x{i}"], arrays[f"y{i}"] = x, y
        arrays["lr"], arrays["weight_decay"] = np.float64(LR), np.float64(WEIGHT_DECAY)
        path = os.path.join(out, f"step_{name}.npz")
        np.savez_compressed(path, **arrays)
        print(f"{path}: {os.path.getsize(path) / 1e6:.2f} MB, {len(before)} tensors")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", help="the reference code (a folder with models/ and opt/)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                      "tests", "fixtures"))
    args = parser.parse_args()
    make(args.checkout, args.out)
