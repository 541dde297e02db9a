# The runtime every pre-training config inherits: mmpretrain's default runtime with a visualizer
# that writes each logged scalar twice, to <work_dir>/<timestamp>/vis_data/scalars.json (local)
# and as TensorBoard event files next to it (`tensorboard --logdir work_dirs/<run>`).
# W&B / MLflow: `tools/train.py CONFIG --vis wandb` (or mlflow) adds their backend
# (docs/PRETRAIN.md, "Logs"); both are optional installs.
_base_ = 'mmpretrain::_base_/default_runtime.py'

visualizer = dict(
    type='UniversalVisualizer',
    vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
