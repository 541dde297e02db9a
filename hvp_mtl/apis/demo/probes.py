"""Frozen-feature probes of an exported backbone (or a seeded random one) on a labelled split.

The classification config of the demo (``configs/demo/swin-demo_cls.py``) gives the backbone, the
data pre-processor and the datasets; the backbone loads the exported checkpoint through the
config's ``Pretrained`` init (or keeps the random initialisation drawn under ``seed``), stays in
eval mode, and its average-pooled last stage is probed with

- a linear probe (:func:`hvp_mtl.evaluation.linear_probe_accuracy`: logistic regression, full-batch
  LBFGS on standardised features, trained on the train split, evaluated on val), and
- the kNN probe (k = 20 nearest training features by cosine similarity, votes ``exp(sim / T)``)
  on the raw features (the demo tables' ``knn``) and, in ``knn_spaces``, on the raw, centred and
  PCA-whitened ones (:mod:`hvp_mtl.evaluation.feature_whitening`, fitted on the bank only);
- the representation rows of the train bank (``representation``): RankMe, the top-5 principal
  components' variance share and the colour share (:mod:`hvp_mtl.evaluation.colour_share`: R² of
  the top two components and of all features from the images' per-channel mean and std);
- with ``sweep=True``, the protocol's linear probe (``linear_sweep``: the L2 strength chosen on a
  held-out 20 % of train, standardised and raw;
  :func:`hvp_mtl.evaluation.linear_probe.linear_probe_sweep`).
"""
import json

import torch

from hvp_mtl.utils.atomic_io import atomic_write

__all__ = ['probe_backbone']


def loader_colour_statistics(loader):
    """:func:`image_colour_statistics` of every image a loader yields, in order (``[N, 6]``)."""
    from hvp_mtl.evaluation.colour_share import image_colour_statistics
    stats = []
    for data in loader:
        inputs = data['inputs']
        stats.append(image_colour_statistics(
            torch.stack(list(inputs)) if isinstance(inputs, (list, tuple)) else inputs))
    return torch.cat(stats)


def representation_rows(bank, colour):
    """RankMe, the top-5 share and the colour share of a train bank (``[N, D]``, ``[N, 6]``)."""
    from hvp_mtl.evaluation.colour_share import colour_explained_share
    from hvp_mtl.evaluation.representation_rank import representation_rank_stats
    shares = colour_explained_share(bank, colour, k=2)
    return dict(representation_rank_stats(bank, k=5), colour_top2_r2=shares['top2_r2'],
                colour_total_r2=shares['total_r2'], colour_chance_r2=shares['chance_r2'])


def knn_in_spaces(bank, bank_labels, query, query_labels, num_classes, k, temperature):
    """kNN top-1 in each of the raw, centred and whitened feature spaces (fitted on the bank)."""
    from hvp_mtl.evaluation import knn_neighbours, topk_accuracy, weighted_knn_scores
    from hvp_mtl.evaluation.feature_whitening import FEATURE_SPACES, knn_feature_spaces
    out = {}
    for space in FEATURE_SPACES:
        b, q = knn_feature_spaces(bank, query, space)
        sims, labels = knn_neighbours(q.float(), b.float(), bank_labels, min(k, len(b)))
        out[space] = topk_accuracy(weighted_knn_scores(sims, labels, num_classes, temperature),
                                   query_labels, topk=(1, ))['top1']
    return out


def probe_backbone(config, checkpoint=None, seed=0, cfg_options=None, k=20, temperature=0.07,
                   out=None, sweep=False):
    """Linear and kNN top-1 of frozen features on the config's train (bank) and val splits.

    Args:
        config (str): A classification fine-tune config (mmpretrain ``ImageClassifier``).
        checkpoint (str, optional): Exported backbone (keys ``backbone.*``); ``None``: random.
        seed (int): Seed of the random initialisation (and of everything else).
        cfg_options (dict, optional): Overrides merged into the config (data roots, arch).
        k (int): kNN neighbours.
        temperature (float): kNN voting temperature.
        out (str, optional): Write the result to this JSON file (atomically).
        sweep (bool): Also the held-out L2 sweep of the linear probe, standardised and raw.

    Returns:
        dict: ``linear`` (``top1``, ``train_top1``), ``knn`` (``top1``, ``top5``),
        ``knn_spaces`` (``{raw, centred, whitened}`` top-1), ``representation`` (``rankme``,
        ``top5_share``, ``colour_top2_r2``, ``colour_total_r2``, ``colour_chance_r2``),
        ``linear_sweep`` (with ``sweep``: ``{standardised, raw}`` rows), ``chance``,
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
                  knn_spaces=knn_in_spaces(bank, bank_labels, query, query_labels, num_classes,
                                           k, temperature),
                  representation=representation_rows(bank, loader_colour_statistics(train_loader)),
                  chance=linear['chance'], num_train=len(bank), num_val=len(query),
                  feature_dim=int(bank.shape[1]), checkpoint=checkpoint, seed=seed)
    if sweep:
        from hvp_mtl.evaluation.linear_probe import linear_probe_sweep
        result['linear_sweep'] = {
            name: linear_probe_sweep(bank, bank_labels, query, query_labels, num_classes,
                                     standardise=std, seed=seed)
            for name, std in (('standardised', True), ('raw', False))}
    if out:
        with atomic_write(out, encoding='utf-8') as f:
            json.dump(result, f, indent=1)
    return result
