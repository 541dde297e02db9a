"""Frozen-feature probes of an exported backbone (or a seeded random one) on a labelled split.

The classification config of the demo (``configs/demo/swin-demo_cls.py``) gives the backbone, the
data pre-processor and the datasets; the backbone loads the exported checkpoint through the
config's ``Pretrained`` init (or keeps the random initialisation drawn under ``seed``), stays in
eval mode, and its average-pooled last stage is probed with

- a linear probe (:func:`hvp_mtl.evaluation.linear_probe_accuracy`: logistic regression, full-batch
  LBFGS on standardised features, trained on the train split, evaluated on val), and
- the kNN probe (k = 20 nearest training features by cosine similarity, votes ``exp(sim / T)``).
"""
import json

import torch

from hvp_mtl.utils.atomic_io import atomic_write

__all__ = ['probe_backbone']


def probe_backbone(config, checkpoint=None, seed=0, cfg_options=None, k=20, temperature=0.07,
                   out=None):
    """Linear and kNN top-1 of frozen features on the config's train (bank) and val splits.

    Args:
        config (str): A classification fine-tune config (mmpretrain ``ImageClassifier``).
        checkpoint (str, optional): Exported backbone (keys ``backbone.*``); ``None``: random.
        seed (int): Seed of the random initialisation (and of everything else).
        cfg_options (dict, optional): Overrides merged into the config (data roots, arch).
        k (int): kNN neighbours.
        temperature (float): kNN voting temperature.
        out (str, optional): Write the result to this JSON file (atomically).

    Returns:
        dict: ``linear`` (``top1``, ``train_top1``), ``knn`` (``top1``, ``top5``), ``chance``,
        ``num_train``, ``num_val``, ``feature_dim``, ``checkpoint``, ``seed``.
    """
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import set_random_seed
    from mmpretrain.registry import MODELS

    from hvp_mtl.evaluation import (
        build_sharded_dataloader,
        extract_features,
        knn_neighbours,
        linear_probe_accuracy,
        topk_accuracy,
        weighted_knn_scores,
    )

    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope('mmpretrain')
    set_random_seed(seed)
    backbone_cfg = cfg.model.backbone
    backbone_cfg.init_cfg = None if checkpoint is None else dict(
        type='Pretrained', checkpoint=checkpoint, prefix='backbone.')
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.eval()

    def loader(split):
        dataset = dict(cfg[f'{split}_dataloader'].dataset)
        dataset['pipeline'] = cfg.test_dataloader.dataset.pipeline  # no augmentation
        return build_sharded_dataloader(dict(batch_size=64, num_workers=0, dataset=dataset))

    train_loader, val_loader = loader('train'), loader('val')
    bank, bank_labels = extract_features(model, train_loader, normalize=False)
    query, query_labels = extract_features(model, val_loader, normalize=False)
    num_classes = len(train_loader.dataset.metainfo['classes'])
    linear = linear_probe_accuracy(bank, bank_labels, query, query_labels, num_classes)
    normed_bank = torch.nn.functional.normalize(bank, dim=1)
    normed_query = torch.nn.functional.normalize(query, dim=1)
    sims, labels = knn_neighbours(normed_query, normed_bank, bank_labels, min(k, len(bank)))
    knn = topk_accuracy(weighted_knn_scores(sims, labels, num_classes, temperature),
                        query_labels, topk=(1, 5))
    result = dict(linear=dict(top1=linear['top1'], train_top1=linear['train_top1']),
                  knn=dict(top1=knn['top1'], top5=knn['top5'], k=k, temperature=temperature),
                  chance=linear['chance'], num_train=len(bank), num_val=len(query),
                  feature_dim=int(bank.shape[1]), checkpoint=checkpoint, seed=seed)
    if out:
        with atomic_write(out, encoding='utf-8') as f:
            json.dump(result, f, indent=1)
    return result
