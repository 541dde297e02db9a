"""A tiny HVP-MTL model and one real batch of its config's dataloader, for model tests."""
from mmengine.registry import init_default_scope
from mmengine.runner import Runner, set_random_seed
from mmpretrain.registry import MODELS

__all__ = ['model_and_batch', 'total_loss']


def model_and_batch(cfg, seed=0):
    """The model and one preprocessed batch from the config's real dataloader."""
    init_default_scope('mmpretrain')
    set_random_seed(seed)  # torch, numpy and random: the batch's crops and mask too
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.after_train_step(before_training=True)  # the post-step hook's before_train
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=seed)
    data = model.data_preprocessor(next(iter(loader)), True)
    return model, data


def total_loss(losses):
    """The sum of the ``loss*`` entries, as mmengine's ``parse_losses``."""
    return sum(v for k, v in losses.items() if k.startswith('loss'))
