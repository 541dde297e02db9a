"""Install hvp_mtl, an HVP-MTL pre-training plugin for the OpenMMLab 2.x stack.

Three ways in (README, "Install"):

- ``make env`` / ``tools/setup_env.sh``: the full pinned stack in ``.venv`` (mmcv built with ops);
- ``pip install -e .[downstream]`` into an existing OpenMMLab environment that already has
  torch and mmcv 2.1 with its ops (what Mask R-CNN needs);
- ``pip install -e .[pretrain]``: pre-training only, with ``mmcv-lite`` (no compiled ops, no
  compiler, seconds).

``install_requires`` holds what ``import hvp_mtl`` needs on every path. mmcv is not in it: the
full package has to be built against the user's torch (with CUDA ops on GPU machines), so it is
either already there or comes from the ``pretrain`` extra as ``mmcv-lite``.
"""
import os

from setuptools import find_packages, setup

#: what ``import hvp_mtl`` and the pre-training configs import, on every install path
INSTALL_REQUIRES = [
    'torch>=2.1,<2.10',  # torch >= 2.10 headers need C++20; mmcv 2.1 builds its ops with C++17
    'torchvision',
    'mmengine>=0.10.3,<0.11',
    'mmpretrain==1.2.0',
    'numpy',
    'scipy',
    'pillow',
    'matplotlib',
    'tqdm',
    'pyyaml',
    'tensorboard',  # the pre-training configs' visualizer writes TensorBoard event files
    'setuptools<70',  # mmengine's package_utils needs pkg_resources at run time
]

EXTRAS_REQUIRE = {
    # pre-training alone needs no compiled mmcv op: mmcv-lite is pure Python
    'pretrain': ['mmcv-lite==2.1.0'],
    # mmdet / mmseg fine-tuning; mmcv 2.1.0 *with ops* must already be installed (built against
    # the environment's torch; tools/setup_env.sh does it for the project's own environment)
    'downstream': ['mmdet==3.3.0', 'mmsegmentation==1.2.2', 'pycocotools', 'ftfy', 'regex'],
    # the timm / Hugging Face-style exports (hvp_to_backbone.py --format timm / hf)
    'timm': ['timm==1.0.31', 'safetensors', 'huggingface_hub'],
    # optional experiment trackers (tools/train.py --vis wandb / mlflow)
    'wandb': ['wandb'],
    'mlflow': ['mlflow'],
}


def read_readme():
    """The README as the long description (absent in some source trees)."""
    if not os.path.exists('README.md'):
        return ''
    with open('README.md', encoding='utf-8') as f:
        return f.read()


setup(
    name='hvp_mtl',
    version='0.1.0',
    description='HVP-MTL: multi-task hierarchical visual pre-training for mmpretrain/mmdet/mmseg',
    long_description=read_readme(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['hvp_mtl', 'hvp_mtl.*']),
    python_requires='>=3.10',
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    license='Apache-2.0',
)
