"""keras_bert3d: late temporal modeling (BERT pooling) for 3D-CNN action recognition, in Keras 3."""
import runpy

from setuptools import find_packages, setup

setup(
    name="keras_bert3d",
    version=runpy.run_path("keras_bert3d/version.py")["__version__"],
    description=(
        "Keras 3 / TensorFlow implementation of 'Late Temporal Modeling in 3D CNN "
        "Architectures with BERT for Action Recognition' (Kalfaoglu et al., 2020)"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["keras_bert3d", "keras_bert3d.*"]),
    python_requires=">=3.10,<3.14",  # the versions TensorFlow 2.21 ships wheels for
    install_requires=[
        "tensorflow==2.21.*",
        "keras>=3.14,<4",  # earlier releases have published safe_mode bypasses (CVE-2025-8747, -9905, 2026-1462)
        "keras-tuner>=1.4.7",
        "tensorboard==2.21.*",
        "numpy>=1.26",
        "av>=12",
        "h5py",
        "pillow",               # JPEG encoding of TFRecord frames
        "pyyaml>=6",            # training configs
        "tqdm>=4.60",           # progress bars of the long-running tools
        "matplotlib>=3.7",      # confusion matrices and attention pictures (PNG)
        "tensorflow-serving-api==2.21.*",  # TF Serving warmup records and the gRPC client
    ],
    extras_require={
        # Reading the reference's .pth checkpoints (bert3d convert); .npz files need no torch.
        "torch": ["torch==2.13.0"],
        # TV-L1 optical flow extraction.
        "flow": ["opencv-contrib-python-headless>=4.8"],
        # ONNX export (bert3d export --onnx) and checking it.
        "onnx": ["tf2onnx>=1.17", "onnxruntime"],
        # KerasTuner's BayesianOptimization (training/tune.py --tuner bayesian).
        "tune": ["scipy", "scikit-learn"],
        # Keras 3 on JAX (CPU wheels; see the JAX docs for CUDA/TPU ones): `make test-backends`.
        "jax": ["jax>=0.4.34", "jaxlib>=0.4.34"],
        "all": ["jax>=0.4.34", "jaxlib>=0.4.34", "torch==2.13.0", "tf2onnx>=1.17", "onnxruntime", "scipy",
                "scikit-learn", "opencv-contrib-python-headless>=4.8"],
        "test": ["pytest>=8", "pytest-xdist>=3", "opencv-contrib-python-headless>=4.8"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        *[f"Programming Language :: Python :: 3.{minor}" for minor in (10, 11, 12, 13)],
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    entry_points={"console_scripts": ["bert3d=keras_bert3d.cli:main"]},
)
