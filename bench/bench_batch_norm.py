"""Training-step time of a BatchNorm-heavy stack: Keras' BatchNormalization vs keras_bert3d's (PyTorch's rule).

    python bench/bench_batch_norm.py                       # 8 x (1x1x1 Conv3D -> BN -> ReLU), batch 2, 8x28x28x32
    python bench/bench_batch_norm.py --rounds 7 --steps 20 --precision mixed_bfloat16

Both models are built in this process with the same weights and compiled the same way (SGD, ``train_on_batch``);
1x1x1 convolutions keep the convolutions cheap, so the BatchNorms are a large share of the step: a worst case
for any cost of the rule. The first steps (tracing) are not timed; then the two variants run alternately, step by step
(the order swapped every step), ``--steps`` steps each per round; every round prints the ratio of the median step
times new / Keras, and the end the median of the rounds' ratios.
"""
import argparse
import statistics
import time


def build(bn_class, shape, blocks, keras):
    inputs = keras.Input(shape[1:])
    x = inputs
    for i in range(blocks):
        x = keras.layers.Conv3D(shape[-1], 1, use_bias=False, name=f"conv{i}")(x)
        x = bn_class(momentum=0.9, name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
    outputs = keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling3D(name="pool")(x))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="2,8,28,28,32", help="B,T,H,W,C of the batch")
    parser.add_argument("--blocks", type=int, default=8, help="conv -> BN -> ReLU blocks")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--precision", default="float32")
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    from keras_bert3d.layers.batch_normalization import BatchNormalization

    keras.config.set_dtype_policy(args.precision)
    shape = tuple(int(s) for s in args.shape.split(","))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=shape).astype("float32"), rng.normal(size=(shape[0], 2)).astype("float32")
    models = {"keras": build(keras.layers.BatchNormalization, shape, args.blocks, keras),
              "new": build(BatchNormalization, shape, args.blocks, keras)}
    models["new"].set_weights(models["keras"].get_weights())
    for model in models.values():
        for _ in range(3):  # tracing
            model.train_on_batch(x, y)
    ratios = []
    for r in range(args.rounds):
        times = {name: [] for name in models}
        for step in range(args.steps):  # step by step, the order swapped every step
            for name in sorted(models, reverse=bool(step % 2)):
                start = time.perf_counter()
                models[name].train_on_batch(x, y)
                times[name].append(time.perf_counter() - start)
        medians = {name: statistics.median(t) for name, t in times.items()}
        ratios.append(medians["new"] / medians["keras"])
        print(f"round {r}: keras {medians['keras'] * 1e3:.2f} ms, new {medians['new'] * 1e3:.2f} ms, "
              f"new / keras {ratios[-1]:.3f}", flush=True)
    print(f"{keras.config.backend()}, {args.precision}, shape {shape}, {args.blocks} blocks: median ratio "
          f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}) over {args.rounds} rounds")


if __name__ == "__main__":
    main()
