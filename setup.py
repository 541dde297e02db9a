"""Install hvp_mtl, an HVP-MTL pre-training plugin for the OpenMMLab 2.x stack."""
from setuptools import find_packages, setup


def read_requirements(name):
    with open(f'requirements/{name}.txt') as f:
        return [line.strip() for line in f if line.strip() and not line.startswith('#')]


setup(
    name='hvp_mtl',
    version='0.1.0',
    description='HVP-MTL: multi-task hierarchical visual pre-training for mmpretrain/mmdet/mmseg',
    long_description=open('README.md').read() if __import__('os').path.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['hvp_mtl', 'hvp_mtl.*']),
    python_requires='>=3.10',
    # the pinned stack is installed by tools/setup_env.sh (mmcv needs a source build)
    install_requires=[],
    license='Apache-2.0',
)
