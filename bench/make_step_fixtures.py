"""Training-step fixtures from the reference code (issue 19): weights before and after one optimizer step of the
reference's own training loop, and after N accumulated micro-batches, in float64.

    python bench/make_step_fixtures.py /path/to/LateTemporalModeling3DCNN [--out tests/fixtures]

Needs torch and a checkout of the reference (``git archive HEAD models opt``). Writes one file per small
sub-model of the reference, each followed by ``fc_action`` (-> 5 classes), dropout off and every token kept:
``step_bert5_head.npz``: the reference's BERT5 head (as ``rgb_r2plus1d_32f_34_bert10`` has it, at width 64,
one block, 8 heads, 4 tokens); ``step_r2plus1d_stem.npz``: R(2+1)D's stem (convolutions and two BatchNorms);
``step_i3d_inception.npz``: I3D's Conv3d_1a (a ``Unit3D``, 3 -> 8), MaxPool3d_2a and an ``InceptionModule``
(8 -> [4, 4, 8, 2, 4, 4]), keys ``features.0.`` and ``features.2.``, BatchNorm eps 1e-3 and torch momentum
0.01 as rgb_I3D.py sets them; ``step_slowfast_s1_s2.npz``: SlowFast's ``model.s1`` stems, ``model.s1_fuse``
(FuseFastToSlow) and ``model.s2`` (one bottleneck per pathway, with its shortcut) at slow width 16, beta_inv 8,
alpha 4, eps 1e-5 and torch momentum 0.1, fed ``x[:, :, ::8]`` and ``x[:, :, ::2]`` of one clip as
rgb_slowfast.py does. The last three are average-pooled into ``fc_action`` (SlowFast: slow channels first), with
every BatchNorm in training mode: their running statistics move. All trained with the reference's
``opt/AdamW.py`` exactly as two_stream_bert2.py trains (cross-entropy / iter_size, backward every micro-batch,
``step()`` and ``zero_grad()`` every iter_size batches). Keys: ``w:<key>`` the weights before, ``one:<key>`` after
one step on ``x0``/``y0``, ``acc:<key>`` after one step accumulated over ``x0``..``x{N-1}`` (``iter_size`` N = 2),
all under the reference's state-dict keys (read with keras_bert3d.convert); ``lr``, ``weight_decay``. The tests
(tests/optimizers/test_reference_step.py) need no torch.
"""
import argparse
import importlib.util
import os
import sys
import types

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
    # Bare packages: the reference's __init__ files import every family (SlowFast's its config, its checkpoint
    # reader and fvcore); only the module files named below run.
    for package in ("models", "models.SlowFast", "models.SlowFast.slowfast", "models.SlowFast.slowfast.models"):
        sys.modules[package] = types.ModuleType(package)
        sys.modules[package].__path__ = [os.path.join(os.path.abspath(checkout), *package.split("."))]
    if importlib.util.find_spec("fvcore") is None:  # weight_init_helper's import; the weights are set below
        for name in ("fvcore", "fvcore.nn", "fvcore.nn.weight_init"):
            sys.modules[name] = types.ModuleType(name)
        sys.modules["fvcore.nn.weight_init"].c2_msra_fill = torch.nn.init.kaiming_normal_
    from models.BERT.bert import BERT5
    from models.r2plus1d.resnet import R2Plus1dStem
    from models.rgb_I3D import InceptionModule, MaxPool3dSamePadding, Unit3D
    from models.SlowFast.slowfast.models.resnet_helper import ResStage
    from models.SlowFast.slowfast.models.stem_helper import VideoModelStem
    from models.SlowFast.slowfast.models.video_model_builder import FuseFastToSlow
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

    class I3D(torch.nn.Module):
        """I3D's Conv3d_1a + MaxPool3d_2a and an InceptionModule (rgb_I3D.py's classes, few channels; BatchNorm
        eps 1e-3, torch momentum 0.01), average-pooled into ``fc_action`` (20 -> 5)."""

        def __init__(self):
            super().__init__()
            self.features = torch.nn.Sequential(
                Unit3D(3, 8, kernel_shape=[7, 7, 7], stride=(2, 2, 2), name="Conv3d_1a_7x7"),
                MaxPool3dSamePadding(kernel_size=[1, 3, 3], stride=(1, 2, 2), padding=0),
                InceptionModule(8, [4, 4, 8, 2, 4, 4], "Mixed_3b"))
            self.fc_action = torch.nn.Linear(20, 5)

        def forward(self, x):
            return self.fc_action(self.features(x).mean(dim=(2, 3, 4)))

    class SlowFast(torch.nn.Module):
        """SlowFast's s1 stems, s1_fuse and s2 (PySlowFast's classes as video_model_builder.py builds them, at slow
        width 16, beta_inv 8, fusion ratio 2, kernel 7, alpha 4, one block per pathway; eps 1e-5, torch momentum
        0.1) on ``x[:, :, ::8]`` and ``x[:, :, ::2]``, average-pooled, concatenated slow first into ``fc_action``
        (64 + 8 -> 5)."""

        def __init__(self):
            super().__init__()
            self.model = torch.nn.Module()
            self.model.s1 = VideoModelStem([3, 3], [16, 2], [[1, 7, 7], [5, 7, 7]], [[1, 2, 2]] * 2,
                                           [[0, 3, 3], [2, 3, 3]])
            self.model.s1_fuse = FuseFastToSlow(2, 2, 7, 4)
            self.model.s2 = ResStage(dim_in=[20, 2], dim_out=[64, 8], stride=[1, 1], temp_kernel_sizes=[[1], [3]],
                                     num_blocks=[1, 1], dim_inner=[16, 2], num_groups=[1, 1],
                                     num_block_temp_kernel=[1, 1], nonlocal_inds=[[], []], nonlocal_group=[1, 1],
                                     nonlocal_pool=[[1, 2, 2], [1, 2, 2]], dilation=[1, 1],
                                     instantiation="dot_product", trans_func_name="bottleneck_transform")
            self.fc_action = torch.nn.Linear(72, 5)

        def forward(self, x):
            slow, fast = self.model.s2(self.model.s1_fuse(self.model.s1([x[:, :, ::8], x[:, :, ::2]])))
            return self.fc_action(torch.cat([slow.mean(dim=(2, 3, 4)), fast.mean(dim=(2, 3, 4))], 1))

    return torch, {"bert5_head": (Head, (3, 4, 64)), "r2plus1d_stem": (Stem, (2, 3, 8, 32, 32)),
                   "i3d_inception": (I3D, (2, 3, 8, 32, 32)), "slowfast_s1_s2": (SlowFast, (2, 3, 16, 24, 24))}, AdamW


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
