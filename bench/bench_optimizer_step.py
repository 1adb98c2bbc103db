"""The optimizer update alone: `ReferenceAdamW` against `keras.optimizers.AdamW` (and `ReferenceSGD` against
`keras.optimizers.SGD`) on the trainable weights of a preset, alternating, on TensorFlow.

    python bench/bench_optimizer_step.py                                  # rgb_r2plus1d_32f_34_bert10, 51 classes
    python bench/bench_optimizer_step.py --model rgb_I3D64f_bert2 --rounds 5 --steps 10

Each round times ``--steps`` compiled ``apply`` calls (one tf.function per optimizer, traced before the timing)
of every optimizer in turn, with fixed random gradients; the median per-step time of each optimizer and the ratio
to Keras' are printed per round, so the machine's load hits both alike. The training step is the forward and
backward pass plus this update: the update's share bounds what the optimizer can change in the step's time.
"""
import argparse
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from keras_bert3d.models.builder import build_model
from keras_bert3d.optimizers import ReferenceAdamW, ReferenceSGD


def timed_apply(optimizer, variables, grads, steps):
    apply = tf.function(lambda: optimizer.apply(grads, variables))
    apply()  # trace and build
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        apply()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="rgb_r2plus1d_32f_34_bert10")
    parser.add_argument("--num-classes", type=int, default=51)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    model = build_model(args.model, args.num_classes)
    params = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    rng = np.random.default_rng(0)
    grads = [tf.constant(rng.normal(size=v.shape).astype("float32") * 1e-3) for v in model.trainable_weights]
    pairs = {"adamw": (lambda: keras.optimizers.AdamW(1e-5, weight_decay=1e-3), lambda: ReferenceAdamW(1e-5, weight_decay=1e-3)),
             "sgd": (lambda: keras.optimizers.SGD(1e-2, momentum=0.9), lambda: ReferenceSGD(1e-2, 0.9, 0.9, 1e-3))}
    print(f"{args.model}: {len(grads)} tensors, {params / 1e6:.1f} M parameters; median s per apply")
    for name, (make_keras, make_ours) in pairs.items():
        ratios = []
        for r in range(args.rounds):
            keras_time = timed_apply(make_keras(), model.trainable_weights, grads, args.steps)
            ours_time = timed_apply(make_ours(), model.trainable_weights, grads, args.steps)
            ratios.append(ours_time / keras_time)
            print(f"  {name} round {r}: keras {keras_time:.4f} s, reference {ours_time:.4f} s, ratio {ratios[-1]:.3f}")
        print(f"{name}: reference / keras, median of {args.rounds} rounds: {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
